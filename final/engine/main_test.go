package engine_test

// The engine's end-to-end tests drive the real minibox binary as a user
// would: TestMain builds it once (go build ./cmd/minibox), and every test
// runs `minibox run`, `ps`, `logs`… with a data root of its own, on an
// image pushed to a real registry on 127.0.0.1 (internal/registrytest) and
// pulled with `minibox pull` once per package.
//
// The bridge network changes the network namespace the engine runs in, so
// as root TestMain runs the whole package again in a network namespace of
// its own (`unshare --net`), which vanishes with it and plays the host;
// afterwards it checks that the machine's own links, addresses, routes,
// iptables rules and forwarding are unchanged (as final/network's tests do).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/final/engine"
	"github.com/minibox-lab/minibox/final/runtime"
	"github.com/minibox-lab/minibox/internal/cleanup"
	"github.com/minibox-lab/minibox/internal/registrytest"
	"github.com/minibox-lab/minibox/internal/rootfs"
	"github.com/minibox-lab/minibox/internal/testenv"
)

const (
	innerEnv  = "MINIBOX_ENGINE_TEST_INNER"   // "1" inside the throw-away namespace
	hostNSEnv = "MINIBOX_ENGINE_TEST_HOST_NS" // the machine's namespace, which the inner run must not be in
	binEnv    = "MINIBOX_ENGINE_TEST_BIN"     // the minibox binary TestMain built
)

// bin is the minibox binary under test.
var bin string

func TestMain(m *testing.M) {
	// This binary as a container's supervisor, keeper and init, as
	// minibox-shim is: TestEarlySupervisorIsUsedOnlyIfItIsOurs starts it so,
	// for a supervisor of the test's own build.
	if runtime.IsInit() {
		runtime.Init()
	}
	if engine.IsKeeper() {
		os.Exit(engine.Keep())
	}
	if len(os.Args) == 5 && os.Args[1] == "supervise" && os.Args[2] == "--root" {
		os.Exit(supervise(os.Args[3], os.Args[4]))
	}
	if os.Geteuid() != 0 {
		os.Exit(m.Run()) // the kernel tests skip (or fail under MINIBOX_REQUIRE_ROOT=1)
	}
	if os.Getenv(innerEnv) == "1" {
		os.Exit(inner(m))
	}
	os.Exit(outer())
}

// supervise is `supervise --root ROOT ID` (cmd/minibox-shim).
func supervise(root, id string) int {
	ready := os.NewFile(3, "ready")
	engine.TellBuild(ready)
	e, err := engine.New(root)
	if err == nil {
		err = e.Supervise(id, ready)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "engine test binary, supervise:", err)
		return 1
	}
	return 0
}

// outer builds minibox, runs the package in a network namespace of its
// own and checks the machine's network afterwards.
func outer() int {
	dir, err := os.MkdirTemp("", "minibox-engine-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "engine tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// With minibox-shim next to it: the supervisors run the small binary.
	binary, err := testenv.BuildMinibox("", dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "engine tests:", err)
		return 1
	}
	hostNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		fmt.Fprintln(os.Stderr, "engine tests:", err)
		return 1
	}
	before := testenv.HostNetwork()
	cmd := exec.Command("unshare", append([]string{"--net", "--", os.Args[0]}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), innerEnv+"=1", hostNSEnv+"="+hostNS, binEnv+"="+binary)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	code := 0
	if err := cmd.Run(); err != nil {
		code = 1
		if exit, ok := err.(*exec.ExitError); ok && exit.ExitCode() > 0 {
			code = exit.ExitCode()
		} else {
			fmt.Fprintln(os.Stderr, "engine tests: run in a network namespace of their own (unshare --net, util-linux):", err)
		}
	}
	if changed := testenv.DiffLines(before, testenv.HostNetwork()); changed != "" {
		fmt.Fprintf(os.Stderr, "\nFAIL: the tests changed the network of the machine's own namespace; lines gone (-) and new (+):\n%s\n", changed)
		code = 1
	}
	return code
}

// inner runs the tests, refusing to if this is not a namespace of their
// own; lo is up, as on a host.
func inner(m *testing.M) int {
	self, err := os.Readlink("/proc/self/ns/net")
	if host := os.Getenv(hostNSEnv); err != nil || host == "" || self == host {
		fmt.Fprintf(os.Stderr, "engine tests: not in a network namespace of their own (%s, the machine's %s): refusing\n", self, host)
		return 1
	}
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "engine tests: ip link set lo up: %v %s\n", err, out)
		return 1
	}
	bin = os.Getenv(binEnv)
	code := m.Run()
	if fixture.dir != "" {
		os.RemoveAll(fixture.dir)
	}
	return code
}

// --- The image, pulled once ---------------------------------------------------------

// fixture is the package's image: a busybox rootfs pushed to a real
// registry with a config of its own, pulled by `minibox pull` into a seed
// data root, which every test's data root copies (images and layers).
var fixture struct {
	once sync.Once
	err  error
	dir  string // temporary: the seed root, the busybox rootfs
	seed string // the seed data root
	ref  string // the image's name
	bbfs string // the busybox rootfs the image was made of
}

// The image's config: what `run IMAGE` with no command does.
const (
	imageCmd     = `echo "cmd:$GREETING:$(pwd)"`
	imageWorkdir = "/srv"
	imageMotd    = "served from the image\n"
)

func pullFixture(t *testing.T) {
	dir, err := os.MkdirTemp("", "minibox-engine-test-")
	if err != nil {
		fixture.err = err
		return
	}
	fixture.dir = dir
	require.NoError(t, os.Chmod(dir, 0o755))
	busybox, err := rootfs.FindStaticBusybox()
	testenv.Require(t, err == nil, fmt.Sprint(err))
	fixture.bbfs = filepath.Join(dir, "busybox")
	require.NoError(t, rootfs.Build(fixture.bbfs, busybox))
	r := registrytest.Start(t) // stops when this test ends: the image is pulled by then
	img := registrytest.PushRootfs(t, r, fixture.bbfs, "minibox/busybox", registrytest.ImageOptions{
		Tag:    "e2e",
		Config: registrytest.Config{Cmd: []string{"sh", "-c", imageCmd}, Env: []string{"GREETING=hello"}, WorkingDir: imageWorkdir},
		Files:  map[string]string{"srv/motd": imageMotd},
	})
	fixture.seed = filepath.Join(dir, "seed")
	out, stderr, code := minibox(t, fixture.seed, "pull", img.Ref)
	require.Equal(t, 0, code, "minibox pull %s: %s%s", img.Ref, out, stderr)
	fixture.ref = img.Ref
}

// --- Per-test helpers ---------------------------------------------------------------

// env is one test's data root.
type env struct {
	t    *testing.T
	root string
	ref  string // the fixture image
}

// newEnv checks the prerequisites, gets the image (pulling it on first
// use) and makes a data root of the test's own, with the image in it.
// When the test ends, every container left is removed with rm -f, and
// nothing of any container may be left: mounts, cgroups, veths, rules,
// leases, directories, processes (testenv.CheckLeaks).
func newEnv(t *testing.T) *env {
	t.Helper()
	testenv.RequireRoot(t)
	tools := []string{"unshare", "ip", "iptables-save", "runc"}
	if inV2VM() {
		tools = tools[:2] // busybox's; the VM has no netfilter and no runc
	}
	for _, tool := range tools {
		_, err := exec.LookPath(tool)
		testenv.Require(t, err == nil, "the engine tests need "+tool+" (Debian packages util-linux, iproute2, iptables, runc)")
	}
	require.Equal(t, "1", os.Getenv(innerEnv), "an engine test outside its throw-away network namespace")
	require.NotEmpty(t, bin, "TestMain built no minibox")
	testenv.CheckLeaks(t)
	started := false
	fixture.once.Do(func() {
		started = true
		defer func() {
			if fixture.ref == "" && fixture.err == nil {
				fixture.err = fmt.Errorf("the fixture image was not pulled (see the first test's failure)")
			}
		}()
		pullFixture(t)
	})
	if !started {
		require.NoError(t, fixture.err)
	}
	e := &env{t: t, root: t.TempDir(), ref: fixture.ref}
	// cp -a: the layers keep their owners, modes and links.
	out, err := exec.Command("cp", "-a", fixture.seed+"/.", e.root).CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Cleanup(e.removeAllAndCheck)
	return e
}

// mb runs `minibox ARGS` with the test's data root.
func (e *env) mb(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	return minibox(e.t, e.root, args...)
}

// ok runs minibox and fails the test unless it exits 0; it returns stdout.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	out, stderr, code := e.mb(args...)
	require.Equal(e.t, 0, code, "minibox %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), out, stderr)
	return out
}

// minibox runs the binary with MINIBOX_ROOT=root, at most a minute.
func minibox(t *testing.T, root string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "MINIBOX_ROOT="+root)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if exit, ok := err.(*exec.ExitError); ok {
		return out.String(), errOut.String(), exit.ExitCode()
	}
	require.NoError(t, err, "minibox %s", strings.Join(args, " "))
	return out.String(), errOut.String(), 0
}

// command is `minibox ARGS` not yet started, for tests that need the
// process (a pty, SIGKILL).
func (e *env) command(args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "MINIBOX_ROOT="+e.root)
	return cmd
}

// record is what inspect prints of a container (the fields tests read).
type record struct {
	ID     string `json:"Id"`
	Name   string
	Layers []string
	State  struct {
		Status        string
		Pid           int
		SupervisorPid int
		ExitCode      int
		OOMKilled     bool
		Error         string
	}
	Config struct {
		Cmd      []string
		Hostname string
		Memory   int64
	}
	Network struct {
		IPAddress string
		Gateway   string
		Ports     []string
	}
	Mounts []struct {
		Type, Name, Source, Destination string
		RW                              bool
	}
}

// inspect is `minibox inspect ref`, parsed.
func (e *env) inspect(ref string) record {
	e.t.Helper()
	var list []record
	out := e.ok("inspect", ref)
	require.NoError(e.t, json.Unmarshal([]byte(out), &list), out)
	require.Len(e.t, list, 1)
	return list[0]
}

// waitStatus polls inspect until the container's status is want.
func (e *env) waitStatus(ref, want string, within time.Duration) record {
	e.t.Helper()
	var r record
	require.Eventually(e.t, func() bool {
		var list []record
		out, _, code := e.mb("inspect", ref)
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 {
			return false // not made yet
		}
		r = list[0]
		return r.State.Status == want
	}, within, 50*time.Millisecond, "container %s never became %s", ref, want)
	return r
}

// ids are the full ids of the data root's containers (their directories).
func (e *env) ids() []string {
	entries, _ := os.ReadDir(filepath.Join(e.root, "engine", "containers"))
	var out []string
	for _, d := range entries {
		out = append(out, d.Name())
	}
	return out
}

// removeAllAndCheck removes what the test left running (rm -f, as a user
// would) and then checks that no trace of any container is left.
func (e *env) removeAllAndCheck() {
	t := e.t
	ids := e.ids()
	for _, id := range ids {
		if _, stderr, code := minibox(t, e.root, "rm", "-f", "-v", id); code != 0 {
			t.Errorf("rm -f %s at the end of the test: %s", id[:12], stderr)
		}
	}
	e.assertNothingLeft(ids)
	removeBridge(t, e.root)
}

// removeBridge removes the bridge and its shared rules, which stay after
// the last container by design (docker0 does too), as `minibox cleanup`
// would: the next test starts from nothing, and the leak check sees none.
func removeBridge(t *testing.T, root string) {
	t.Helper()
	env := testenv.LeakEnv()
	env.DataRoots = []string{root}
	for _, k := range []cleanup.Kind{cleanup.BridgeRules, cleanup.Bridges} {
		objs, err := k.Find(env)
		assert.NoError(t, err)
		for _, o := range objs {
			assert.Empty(t, o.Busy, "%s", o)
			assert.NoError(t, k.Remove(o), "%s", o)
		}
	}
}

// assertNothingLeft checks that none of the containers ids (full ids) left
// anything: directories and names in the data root, the runtime's state,
// mounts below the data root, cgroups, veths, rules tagged with their
// short ids, leases.
func (e *env) assertNothingLeft(ids []string) {
	t := e.t
	t.Helper()
	for _, dir := range []string{"engine/containers", "engine/names", "engine/runtime"} {
		entries, _ := os.ReadDir(filepath.Join(e.root, dir))
		var names []string
		for _, d := range entries {
			names = append(names, d.Name())
		}
		assert.Empty(t, names, "left in $ROOT/%s", dir)
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	for _, line := range strings.Split(string(mountinfo), "\n") {
		assert.NotContains(t, line, " "+e.root+"/", "a mount left below the data root")
	}
	for _, id := range ids {
		short := id[:12]
		for _, group := range []string{"/sys/fs/cgroup/minibox/", "/sys/fs/cgroup/memory/minibox/", "/sys/fs/cgroup/pids/minibox/",
			"/sys/fs/cgroup/cpu/minibox/", "/sys/fs/cgroup/freezer/minibox/", "/sys/fs/cgroup/devices/minibox/"} {
			assert.NoDirExists(t, group+short, "the container's cgroup is left")
		}
	}
	for _, id := range ids {
		assert.Eventually(t, func() bool { return len(containerRules(t, id[:12])) == 0 }, 5*time.Second, 20*time.Millisecond,
			"the container's iptables rules are left: %v", containerRules(t, id[:12]))
	}
	networkReleased(t, e.root)
}

// networkReleased checks that no veth and no lease is left. A --rm
// container's supervisor releases them, and its rules, just after run
// returns (the kernel takes ~30 ms to delete a veth: supervise.go,
// releaseNetwork).
func networkReleased(t *testing.T, root string) {
	t.Helper()
	const within, every = 5 * time.Second, 20 * time.Millisecond
	assert.Eventually(t, func() bool { return len(veths(t)) == 0 }, within, every, "veths left: %v", veths(t))
	assert.Eventually(t, func() bool { return len(leases(t, root)) == 0 }, within, every, "leases left: %v", leases(t, root))
}

// containerRules are the iptables rules tagged minibox:<short id>, or any
// container's (short == "").
func containerRules(t *testing.T, short string) []string {
	t.Helper()
	if inV2VM() {
		return nil // no iptables there, no netfilter in its kernel: no rules can exist
	}
	out, err := exec.Command("iptables-save").CombinedOutput()
	require.NoError(t, err, "%s", out)
	tag := regexp.MustCompile(`minibox:[0-9a-f]{12}\b`)
	if short != "" {
		tag = regexp.MustCompile(`minibox:` + short + `\b`)
	}
	var rules []string
	for _, line := range strings.Split(string(out), "\n") {
		if tag.MatchString(line) {
			rules = append(rules, line)
		}
	}
	return rules
}

// veths are the links named mbx… (containers' host ends) of this namespace.
func veths(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link").CombinedOutput()
	require.NoError(t, err, "%s", out)
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], "mbx") {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@") // mbx…@ifN
			names = append(names, name)
		}
	}
	return names
}

// leases are the addresses leased on the default bridge of the data root.
func leases(t *testing.T, root string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "network", "minibox0.json"))
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var list []struct {
		IP string `json:"ip"`
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal(data, &list), "%s", data)
	var out []string
	for _, l := range list {
		out = append(out, l.IP+" "+l.ID)
	}
	return out
}

// alive reports whether process pid exists (and is not a zombie).
func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// inV2VM reports whether the tests run in the cgroup v2 VM
// (scripts/cgroupv2-vm): busybox, no netfilter, no runc, no Go.
func inV2VM() bool { return os.Getenv("MINIBOX_IN_V2VM") == "1" }
