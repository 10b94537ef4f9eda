package network

// Setup, Attach and Release change the network namespace they run in, so
// as root TestMain runs the whole package again in a network namespace of
// its own (`unshare --net`), which vanishes with it: that namespace plays
// the host. A container is a process in a new namespace of its own
// (`unshare --net sleep`), which is what the engine's containers are to
// this package. Afterwards TestMain checks that the machine's own links,
// addresses, routes, iptables rules and forwarding are unchanged.

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/internal/testenv"
)

// innerEnv marks the run inside the throw-away namespace; hostNSEnv
// names the namespace it must not be (the outer run's).
const (
	innerEnv  = "MINIBOX_NETWORK_TEST_INNER"
	hostNSEnv = "MINIBOX_NETWORK_TEST_HOST_NS"
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		os.Exit(m.Run()) // the kernel tests skip (or fail under MINIBOX_REQUIRE_ROOT=1)
	}
	if os.Getenv(innerEnv) == "1" {
		if err := checkOwnNamespace(); err != nil {
			fmt.Fprintln(os.Stderr, "network tests:", err)
			os.Exit(1)
		}
		if id := os.Getenv(helperEnv); id != "" {
			os.Exit(setupAndHold(id, os.Getenv(helperRootEnv)))
		}
		os.Exit(m.Run())
	}
	before := testenv.HostNetwork()
	hostNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		fmt.Fprintln(os.Stderr, "network tests:", err)
		os.Exit(1)
	}
	cmd := exec.Command("unshare", append([]string{"--net", "--", os.Args[0]}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), innerEnv+"=1", hostNSEnv+"="+hostNS)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	code := 0
	if err := cmd.Run(); err != nil {
		code = 1
		if exit, ok := err.(*exec.ExitError); ok {
			code = exit.ExitCode()
		} else {
			fmt.Fprintln(os.Stderr, "network tests: run in a network namespace of their own (unshare --net, util-linux):", err)
		}
	}
	if changed := testenv.DiffLines(before, testenv.HostNetwork()); changed != "" {
		fmt.Fprintf(os.Stderr, "\nFAIL: the tests changed the network of the machine's own namespace; lines gone (-) and new (+):\n%s\n", changed)
		code = 1
	}
	os.Exit(code)
}

// The test binary is also TestParallelSetupsFromManyProcesses's helper:
// with helperEnv set to a container ID (and helperRootEnv to the data
// root) it sets up, prints the address, waits for stdin to close, and
// releases.
const (
	helperEnv     = "MINIBOX_NETWORK_TEST_HELPER_ID"
	helperRootEnv = "MINIBOX_NETWORK_TEST_HELPER_ROOT"
)

func setupAndHold(id, root string) int {
	e, err := Setup(id, Options{Root: root})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	fmt.Printf("leased %s\n", e.IP)
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := e.Release(); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// checkOwnNamespace fails closed: the tests never run in the outer run's
// network namespace, and they start with lo up, as a host has it.
func checkOwnNamespace() error {
	self, err := os.Readlink("/proc/self/ns/net")
	if host := os.Getenv(hostNSEnv); err != nil || host == "" || self == host {
		return fmt.Errorf("not in a network namespace of their own (%s, the machine's %s): refusing", self, host)
	}
	testNS = self
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	return err
}

// testNS is the tests' namespace (net:[inode]), read at the start: later
// /proc/self/ns/net may name another one, since a goroutine of inNetns
// that ran on the main thread leaves it parked in the namespace it
// entered (the runtime cannot end the main thread).
var testNS string

// --- Per-test helpers ----------------------------------------------------------------

// newOptions checks the prerequisites and returns options with a data
// root of the test's own and the default bridge and subnet. When the test
// ends the bridge and its shared rules are removed, so the next test
// starts from nothing, after checking the test left no container's veth,
// rule or lease.
func newOptions(t *testing.T) Options {
	t.Helper()
	testenv.RequireRoot(t)
	for _, tool := range []string{"unshare", "iptables", "iptables-save", "nsenter"} {
		_, err := exec.LookPath(tool)
		testenv.Require(t, err == nil, "the network tests need "+tool+" (Debian packages util-linux, iptables)")
	}
	require.Equal(t, "1", os.Getenv(innerEnv), "a network test outside its throw-away namespace")
	o := Options{Root: t.TempDir(), Bridge: DefaultBridge, Subnet: DefaultSubnet}
	t.Cleanup(func() {
		assertNothingLeft(t, o)
		_, subnet, _ := net.ParseCIDR(DefaultSubnet)
		assert.NoError(t, deleteRules(bridgeRules(o.Bridge, subnet)))
		assert.NoError(t, deleteLink(o.Bridge))
	})
	return o
}

// newID is a random container ID, 64 hex digits as docker's.
func newID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// A ctr is a stand-in for a container: a process in a network namespace
// of its own, what Attach is given.
type ctr struct {
	cmd *exec.Cmd
	pid int
}

// startContainer starts `unshare --net sleep 60` and waits until it is in
// its own namespace; it is killed when the test ends.
func startContainer(t *testing.T) *ctr {
	t.Helper()
	cmd := exec.Command("unshare", "--net", "--", "sleep", "60")
	require.NoError(t, cmd.Start())
	c := &ctr{cmd: cmd, pid: cmd.Process.Pid}
	t.Cleanup(c.kill)
	require.Eventually(t, func() bool {
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", c.pid))
		return err == nil && ns != testNS
	}, 10*time.Second, 2*time.Millisecond, "the container never got a network namespace of its own")
	return c
}

// kill ends the container and reaps it (twice is fine).
func (c *ctr) kill() {
	if c.cmd.ProcessState == nil {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	}
}

func (c *ctr) nsPath() string { return fmt.Sprintf("/proc/%d/ns/net", c.pid) }

// inNetns runs fn on an OS thread of its own in the network namespace at
// path. The sockets fn makes belong to that namespace for good. The
// thread is never unlocked: it dies with its goroutine rather than going
// back to the scheduler in the wrong namespace.
func inNetns(path string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// leasesOf reads the bridge's leases file.
func leasesOf(t *testing.T, o Options) []lease {
	t.Helper()
	list, err := readLeases(filepath.Join(o.Root, "network", o.Bridge+".json"))
	require.NoError(t, err)
	return list
}

// miniboxRules are this namespace's iptables-save lines tagged minibox:.
func miniboxRules(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("iptables-save").CombinedOutput()
	require.NoError(t, err, "%s", out)
	var rules []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "minibox:") {
			rules = append(rules, line)
		}
	}
	return rules
}

// containerRules are the rules tagged minibox:<12 hex digits> (all
// containers' when id is "").
func containerRules(t *testing.T, id string) []string {
	t.Helper()
	tag := regexp.MustCompile(`minibox:[0-9a-f]{12}\b`)
	if id != "" {
		tag = regexp.MustCompile(`minibox:` + id[:12] + `\b`)
	}
	var out []string
	for _, r := range miniboxRules(t) {
		if tag.MatchString(r) {
			out = append(out, r)
		}
	}
	return out
}

// veths are the links named mbx… of this namespace.
func veths(t *testing.T) []string {
	t.Helper()
	links, err := netlink.LinkList()
	require.NoError(t, err)
	var out []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "mbx") {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// assertNothingLeft checks that no container's veth, rule or lease is
// left (the bridge and its shared rules stay, by design).
func assertNothingLeft(t *testing.T, o Options) {
	t.Helper()
	assert.Eventually(t, func() bool { return len(veths(t)) == 0 }, 5*time.Second, 10*time.Millisecond,
		"veths left: %v", veths(t))
	assert.Empty(t, containerRules(t, ""), "a container's rules left")
	assert.Empty(t, leasesOf(t, o), "leases left")
}
