package cli

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/internal/rootfs"
	"github.com/minibox-lab/minibox/internal/stages"
	"github.com/minibox-lab/minibox/internal/testenv"
)

func TestCleanupNeedsRoot(t *testing.T) {
	defer func(f func() int) { geteuid = f }(geteuid)
	geteuid = func() int { return 1000 }
	out, stderr, code := minibox(t, "cleanup")
	assert.Equal(t, 1, code)
	assert.Empty(t, out, "nothing done")
	assert.Contains(t, stderr, "cleanup needs root")
	assert.Contains(t, stderr, "sudo minibox cleanup")
}

// emptyDataRoot points $MINIBOX_ROOT at an empty directory for the test:
// cleanup then never touches the machine's own /var/lib/minibox (a
// developer's kept containers), and "nothing to clean up" does not depend
// on it.
func emptyDataRoot(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("MINIBOX_ROOT", dir)
	return dir
}

// minboxGroups lists the minibox/<id> groups of this host, in the v2 tree
// and in every v1 tree, read here independently of the cleanup registry.
func minboxGroups(t *testing.T) []string {
	t.Helper()
	v2, err := filepath.Glob("/sys/fs/cgroup/minibox/*")
	require.NoError(t, err)
	v1, err := filepath.Glob("/sys/fs/cgroup/*/minibox/*")
	require.NoError(t, err)
	var out []string
	for _, g := range append(v2, v1...) {
		if info, err := os.Stat(g); err == nil && info.IsDir() {
			out = append(out, g)
		}
	}
	return out
}

func procs(group string) string {
	data, _ := os.ReadFile(filepath.Join(group, "cgroup.procs"))
	return strings.TrimSpace(string(data))
}

// A stage 03 killed with SIGKILL takes its container with it (the death
// signal it sets) but leaves its cgroup: cleanup removes it and says so.
func TestCleanupRemovesAKilledStagesGroup(t *testing.T) {
	testenv.RequireRoot(t)
	busybox, err := rootfs.FindStaticBusybox()
	testenv.Require(t, err == nil, "needs a static busybox (apt-get install busybox-static)")
	emptyDataRoot(t)
	testenv.CheckLeaks(t)

	wd, err := os.Getwd()
	require.NoError(t, err)
	src, err := stages.FindSource(wd)
	require.NoError(t, err)
	stage, err := stages.Find(src, 3)
	require.NoError(t, err)
	bin := t.TempDir()
	require.NoError(t, stages.Build(context.Background(), src, bin, []stages.Stage{stage}, nil))
	root := filepath.Join(t.TempDir(), "rootfs")
	require.NoError(t, rootfs.Build(root, busybox))

	before := minboxGroups(t)
	cmd := exec.Command(filepath.Join(bin, stage.Binary()), "run", "--memory", "32m", root, "--", "sleep", "60")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// Wait until the container has joined its group(s).
	var groups []string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		groups = newStrings(before, minboxGroups(t))
		if len(groups) > 0 && procs(groups[0]) != "" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NotEmpty(t, groups, "stage 03 made no minibox/<id> group")
	require.NotEmpty(t, procs(groups[0]), "the container never joined %s", groups[0])

	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	// The container dies with its parent; the groups stay behind.
	deadline = time.Now().Add(10 * time.Second)
	for procs(groups[0]) != "" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	require.Empty(t, procs(groups[0]), "the container outlived its killed stage")
	for _, g := range groups {
		require.DirExists(t, g, "a killed stage leaves its group")
	}

	out, stderr, code := minibox(t, "cleanup", "--dry-run")
	require.Equal(t, 0, code, stderr)
	for _, g := range groups {
		assert.Contains(t, out, "would remove cgroup "+g+"\n")
		assert.DirExists(t, g, "a dry run removes nothing")
	}

	out, stderr, code = minibox(t, "cleanup")
	require.Equal(t, 0, code, "%s\n%s", out, stderr)
	for _, g := range groups {
		assert.Contains(t, out, "removed cgroup "+g+"\n")
		assert.NoDirExists(t, g)
		assert.NoDirExists(t, filepath.Dir(g), "the empty minibox/ parent goes too")
	}

	out, stderr, code = minibox(t, "cleanup")
	assert.Equal(t, 0, code, stderr)
	assert.Equal(t, "nothing to clean up\n", out, "safe to run twice")
}

// An interrupted lesson leaves a mount in its minibox-lesson-* directory.
func TestCleanupUnmountsAnInterruptedLessonsMount(t *testing.T) {
	testenv.RequireRoot(t)
	emptyDataRoot(t)
	testenv.CheckLeaks(t)
	dir, err := os.MkdirTemp("", "minibox-lesson-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	point := filepath.Join(dir, "work", "demo mnt")
	require.NoError(t, os.MkdirAll(point, 0o755))
	require.NoError(t, unix.Mount("tmpfs", point, "tmpfs", 0, "size=1m"))
	t.Cleanup(func() { _ = unix.Unmount(point, unix.MNT_DETACH) })
	// Not minibox's: a mount in another temporary directory.
	other := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", other, "tmpfs", 0, "size=1m"))
	t.Cleanup(func() { _ = unix.Unmount(other, unix.MNT_DETACH) })

	out, stderr, code := minibox(t, "cleanup", "--dry-run")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "would remove mount "+point+" (tmpfs tmpfs)\n")
	assert.True(t, mounted(t, point), "a dry run removes nothing")

	out, stderr, code = minibox(t, "cleanup")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "removed mount "+point+" (tmpfs tmpfs)\n")
	assert.False(t, mounted(t, point))
	assert.True(t, mounted(t, other), "a mount minibox did not make stays")
	assert.NotContains(t, out, other)

	out, _, code = minibox(t, "cleanup")
	assert.Equal(t, 0, code)
	assert.Equal(t, "nothing to clean up\n", out)
}

func mounted(t *testing.T, dir string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	// Field 5 is the mount point, with a space written as \040.
	want := strings.ReplaceAll(dir, " ", `\040`)
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == want {
			return true
		}
	}
	return false
}

func newStrings(old, cur []string) []string {
	seen := map[string]bool{}
	for _, s := range old {
		seen[s] = true
	}
	var out []string
	for _, s := range cur {
		if !seen[s] {
			out = append(out, s)
		}
	}
	return out
}

// containerDir makes ROOT/containers/ID as a stage leaves it, its pid file
// holding pid, with "kept" if kept, dated an hour ago.
func containerDir(t *testing.T, root, id string, pid int, kept bool) string {
	t.Helper()
	dir := filepath.Join(root, "containers", id)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "upper", "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "upper", "etc", "hostname"), []byte(id), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(pid)), 0o644))
	if kept {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "kept"), nil, 0o644))
	}
	hourAgo := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(dir, hourAgo, hourAgo))
	return dir
}

// Container directories in the data root --root names: the ones whose
// stage is gone are removed, kept ones included; a running one is left;
// what is not a container directory is never touched.
func TestCleanupContainerDirs(t *testing.T) {
	testenv.RequireRoot(t)
	emptyDataRoot(t) // $MINIBOX_ROOT elsewhere: --root must be what counts
	testenv.CheckLeaks(t)
	root := t.TempDir()

	sleep := exec.Command("sleep", "60")
	require.NoError(t, sleep.Start())
	t.Cleanup(func() { _ = sleep.Process.Kill(); _ = sleep.Wait() })
	pid := strconv.Itoa(sleep.Process.Pid)
	ended := exec.Command("true")
	require.NoError(t, ended.Run())

	running := containerDir(t, root, "0123456789a1", sleep.Process.Pid, false)
	killed := containerDir(t, root, "0123456789a2", ended.Process.Pid, false)
	kept := containerDir(t, root, "0123456789a3", ended.Process.Pid, true)
	badName := containerDir(t, root, "not-a-container", ended.Process.Pid, true)
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "canary"), nil, 0o644))
	link := filepath.Join(root, "containers", "0123456789a4")
	require.NoError(t, os.Symlink(outside, link))
	layer := filepath.Join(root, "layers", strings.Repeat("ab", 32))
	require.NoError(t, os.MkdirAll(layer, 0o755))

	out, stderr, code := minibox(t, "cleanup", "--dry-run")
	assert.NotContains(t, out+stderr, root, "without --root: $MINIBOX_ROOT")

	out, _, code = minibox(t, "cleanup", "--root", root, "--dry-run")
	assert.Equal(t, 1, code, "a container still runs")
	assert.Contains(t, out, "would remove container dir "+killed+"\n")
	assert.Contains(t, out, "would remove container dir "+kept+" (kept by --keep)\n")
	assert.Contains(t, out, "left container dir "+running+": in use by process "+pid+" (sleep): a container still running? Stop it (kill "+pid+")")
	assert.DirExists(t, killed, "a dry run removes nothing")

	out, _, code = minibox(t, "cleanup", "--root", root)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "removed container dir "+killed+"\n")
	assert.Contains(t, out, "removed container dir "+kept+" (kept by --keep)\n")
	assert.Contains(t, out, "left container dir "+running+": in use by process "+pid+" (sleep)")
	for _, other := range []string{badName, link, outside, layer} {
		assert.NotContains(t, out, other+"\n")
		_, err := os.Lstat(other)
		assert.NoError(t, err, "%s is not a container directory: left alone", other)
	}
	assert.FileExists(t, filepath.Join(outside, "canary"))
	assert.NoDirExists(t, killed)
	assert.NoDirExists(t, kept)
	assert.DirExists(t, running)

	require.NoError(t, sleep.Process.Kill())
	_ = sleep.Wait()
	out, stderr, code = minibox(t, "cleanup", "--root", root)
	assert.Equal(t, 0, code, "%s\n%s", out, stderr)
	assert.Equal(t, "removed container dir "+running+"\n", out)
	assert.NoDirExists(t, running)
	assert.DirExists(t, layer, "layers are shared: never cleaned")
}

// layerTar writes a layer tar holding etc/from-layer and returns its path.
func layerTar(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "layer.tar")
	f, err := os.Create(file)
	require.NoError(t, err)
	defer f.Close()
	tw := tar.NewWriter(f)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}))
	body := "from the layer\n"
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "etc/from-layer", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}))
	_, err = tw.Write([]byte(body))
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	return file
}

// A stage 04 killed with SIGKILL takes its container, and with it the
// container's mount namespace and overlay, but leaves the container's
// directory in the data root: cleanup removes it, and only it.
func TestCleanupRemovesAKilledStage04sContainerDir(t *testing.T) {
	testenv.RequireRoot(t)
	busybox, err := rootfs.FindStaticBusybox()
	testenv.Require(t, err == nil, "needs a static busybox (apt-get install busybox-static)")
	root := emptyDataRoot(t) // the leak check looks in it too
	testenv.CheckLeaks(t)

	wd, err := os.Getwd()
	require.NoError(t, err)
	src, err := stages.FindSource(wd)
	require.NoError(t, err)
	stage, err := stages.Find(src, 4)
	require.NoError(t, err)
	bin := t.TempDir()
	require.NoError(t, stages.Build(context.Background(), src, bin, []stages.Stage{stage}, nil))
	lower := filepath.Join(t.TempDir(), "rootfs")
	require.NoError(t, rootfs.Build(lower, busybox))

	cmd := exec.Command(filepath.Join(bin, stage.Binary()), "run", "--root", root, "--layer", layerTar(t), lower, "--",
		"sh", "-c", "cat /etc/from-layer > /ready; exec sleep 60")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// Running: its first write is in its upper layer.
	var ready []string
	deadline := time.Now().Add(20 * time.Second)
	for len(ready) == 0 && time.Now().Before(deadline) {
		ready, _ = filepath.Glob(filepath.Join(root, "containers", "*", "upper", "ready"))
		time.Sleep(20 * time.Millisecond)
	}
	require.Len(t, ready, 1, "the container never wrote /ready in its upper layer; stage stderr:\n%s", &stderr)
	dir := filepath.Dir(filepath.Dir(ready[0]))
	data, err := os.ReadFile(ready[0])
	require.NoError(t, err)
	require.Equal(t, "from the layer\n", string(data), "the tar layer is in the stack")
	layers, err := filepath.Glob(filepath.Join(root, "layers", "*"))
	require.NoError(t, err)
	require.Len(t, layers, 1, "the tar was unpacked into the layer store")

	out, _, code := minibox(t, "cleanup", "--root", root, "--dry-run")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "left container dir "+dir+": in use by process "+strconv.Itoa(cmd.Process.Pid)+" (stage04)")

	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	assert.DirExists(t, dir, "a killed stage cannot remove its container's directory")
	assert.NoFileExists(t, filepath.Join(dir, "kept"))
	// The overlay was mounted only in the container's mount namespace,
	// which died with it: nothing of the container is mounted here.
	assert.Empty(t, mountsBelow(t, root))

	out, stderr2, code := minibox(t, "cleanup", "--root", root)
	require.Equal(t, 0, code, "%s\n%s", out, stderr2)
	assert.Equal(t, "removed container dir "+dir+"\n", out)
	assert.NoDirExists(t, dir)
	assert.DirExists(t, layers[0], "the layer store is never cleaned")
	assert.NoFileExists(t, filepath.Join(lower, "ready"), "the lower layer was never written")
	assert.Empty(t, mountsBelow(t, root))

	out, _, code = minibox(t, "cleanup", "--root", root)
	assert.Equal(t, 0, code)
	assert.Equal(t, "nothing to clean up\n", out)
}

// mountsBelow lists the mount points at or below dir in this mount
// namespace.
func mountsBelow(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// netnsForTest makes a named network namespace, ip netns add, to play the
// host for stage 05 (its bridge, rules and ip_forward go there, never into
// the machine's own namespace), and deletes it when the test ends.
func netnsForTest(t *testing.T) string {
	t.Helper()
	name := "minibox-cleanup-" + strconv.Itoa(os.Getpid())
	out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
	require.NoError(t, err, "ip netns add %s: %s", name, out)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return name
}

// inNetns runs fn with this goroutine locked to its thread and the thread
// in the named network namespace: minibox cleanup, run in-process, looks
// and removes there, and so do the commands it runs.
func inNetns(t *testing.T, name string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	require.NoError(t, err)
	defer orig.Close()
	target, err := netns.GetFromName(name)
	require.NoError(t, err)
	defer target.Close()
	require.NoError(t, netns.Set(target))
	defer func() {
		// Back in the machine's namespace, or the thread ends with the
		// test (still locked) rather than serve another goroutine.
		if err := netns.Set(orig); err != nil {
			t.Fatalf("back to the original network namespace: %v", err)
		}
		runtime.UnlockOSThread()
	}()
	fn()
}

// inNS runs a command in the named network namespace and returns its
// output.
func inNS(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", name}, args...)...).CombinedOutput()
	require.NoError(t, err, "%s: %s", strings.Join(args, " "), out)
	return string(out)
}

// hostNetwork is what stage 05 could change in the machine's own network
// namespace: its links and its iptables rules (without iptables-save's
// dated comment lines).
func hostNetwork(t *testing.T) string {
	t.Helper()
	links, err := exec.Command("ip", "-o", "link", "show").Output()
	require.NoError(t, err)
	var names []string
	for _, l := range strings.Split(string(links), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			names = append(names, f[1])
		}
	}
	saved, err := exec.Command("iptables-save").Output()
	require.NoError(t, err)
	var rules []string
	for _, l := range strings.Split(string(saved), "\n") {
		if !strings.HasPrefix(l, "#") {
			rules = append(rules, l)
		}
	}
	return strings.Join(names, " ") + "\n" + strings.Join(rules, "\n")
}

// waitFor polls cond for up to 20 seconds.
func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// A stage 05 killed with SIGKILL takes its container with it (and the
// container's network namespace, with its end of the veth pair), but
// leaves its DNAT rules and its lease, and, as every stage 05 does, the
// bridge and its shared rules: cleanup, run in the namespace the stage ran
// in, removes them all, and leaves a running container's alone.
func TestCleanupRemovesAKilledStage05sNetwork(t *testing.T) {
	testenv.RequireRoot(t)
	busybox, err := rootfs.FindStaticBusybox()
	testenv.Require(t, err == nil, "needs a static busybox (apt-get install busybox-static)")
	for _, cmd := range []string{"ip", "iptables", "iptables-save"} {
		_, err := exec.LookPath(cmd)
		testenv.Require(t, err == nil, "needs "+cmd+" (apt-get install iproute2 iptables)")
	}
	root := emptyDataRoot(t)
	testenv.CheckLeaks(t)
	hostBefore := hostNetwork(t)
	ns := netnsForTest(t)

	wd, err := os.Getwd()
	require.NoError(t, err)
	src, err := stages.FindSource(wd)
	require.NoError(t, err)
	stage, err := stages.Find(src, 5)
	require.NoError(t, err)
	bin := t.TempDir()
	require.NoError(t, stages.Build(context.Background(), src, bin, []stages.Stage{stage}, nil))
	lower := filepath.Join(t.TempDir(), "rootfs")
	require.NoError(t, rootfs.Build(lower, busybox))

	// ip netns exec execs the stage: cmd's process is the stage itself.
	cmd := exec.Command("ip", "netns", "exec", ns, filepath.Join(bin, stage.Binary()), "run", "--root", root, "-p", "18080:80", lower, "--", "sleep", "60")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	leases := filepath.Join(root, "network", "minibox0.json")

	// Running: its lease, its two DNAT rules (PREROUTING and OUTPUT) and its veth.
	var id string
	running := waitFor(func() bool {
		data, _ := os.ReadFile(leases)
		var list []struct{ ID string }
		if json.Unmarshal(data, &list) != nil || len(list) != 1 {
			return false
		}
		id = list[0].ID
		return strings.Count(inNS(t, ns, "iptables-save"), `"minibox:`+id+`"`) == 2 &&
			strings.Contains(inNS(t, ns, "ip", "-o", "link"), " mbx"+id[:8]+"@")
	})
	require.True(t, running, "stage 05 never connected its container; stderr:\n%s", &stderr)
	pid := strconv.Itoa(cmd.Process.Pid)

	var out string
	var code int
	inNetns(t, ns, func() { out, _, code = minibox(t, "cleanup", "--root", root) })
	assert.Equal(t, 1, code, "a container still runs")
	for _, left := range []string{
		"left container rule -t nat -A PREROUTING ", "left container rule -t nat -A OUTPUT ",
		"left veth mbx" + id[:8] + ": container " + id + " is running: its stage, process " + pid + " (stage05)",
		"left lease 10.89.0.2 of container " + id + " (stage " + pid + ", " + leases + "): its stage, process " + pid + " (stage05), is alive",
		"left bridge rule -t nat -A POSTROUTING -s 10.89.0.0/24 ! -o minibox0 ",
		"left bridge minibox0: in use by container " + id,
	} {
		assert.Contains(t, out, left)
	}
	assert.NotContains(t, out, "removed ", "a running container's network is left alone")
	assert.Equal(t, 2, strings.Count(inNS(t, ns, "iptables-save"), `"minibox:`+id+`"`))
	assert.Contains(t, inNS(t, ns, "ip", "-o", "link"), " mbx"+id[:8]+"@")

	pid1 := childPIDs(cmd.Process.Pid)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	// The test ends the container itself: it tests the clean-up of what a
	// killed stage leaves, not the death signal (internal/stagetest does;
	// with a bridge it is not always delivered yet: see docs/cleanup.md).
	for _, pid := range pid1 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	// With its namespace goes its end of the veth pair, and the other end.
	require.True(t, waitFor(func() bool { return !strings.Contains(inNS(t, ns, "ip", "-o", "link"), "mbx") }),
		"the veth outlived the killed stage's container")
	saved := inNS(t, ns, "iptables-save")
	assert.Equal(t, 2, strings.Count(saved, `"minibox:`+id+`"`), "a killed stage leaves its DNAT rules")
	assert.Equal(t, 5, strings.Count(saved, `"minibox:minibox0"`), "and the bridge's shared rules")
	data, err := os.ReadFile(leases)
	require.NoError(t, err)
	assert.Contains(t, string(data), id, "and its lease")

	inNetns(t, ns, func() { out, _, code = minibox(t, "cleanup", "--root", root) })
	assert.Equal(t, 0, code, out)
	dir := filepath.Join(root, "containers", id)
	assert.Equal(t, []string{
		"removed container dir " + dir,
		"removed container rule -t nat -A PREROUTING -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 18080 -m comment --comment \"minibox:" + id + "\" -j DNAT --to-destination 10.89.0.2:80",
		"removed container rule -t nat -A OUTPUT -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 18080 -m comment --comment \"minibox:" + id + "\" -j DNAT --to-destination 10.89.0.2:80",
		"removed lease 10.89.0.2 of container " + id + " (stage " + pid + ", " + leases + ")",
	}, strings.Split(out, "\n")[:4])
	assert.Equal(t, 5, strings.Count(out, "\nremoved bridge rule -t "), out)
	assert.True(t, strings.HasSuffix(out, "\nremoved bridge minibox0\n"), "the bridge last, once nothing is on it:\n%s", out)
	saved = inNS(t, ns, "iptables-save")
	assert.NotContains(t, saved, `"minibox:`)
	links := inNS(t, ns, "ip", "-o", "link")
	assert.NotContains(t, links, "minibox0")
	assert.NotContains(t, links, "mbx")
	assert.NotContains(t, inNS(t, ns, "ip", "route"), "10.89.0.0/24", "the bridge's route went with it")
	data, err = os.ReadFile(leases)
	require.NoError(t, err)
	assert.Equal(t, "[]", string(data))

	inNetns(t, ns, func() { out, _, code = minibox(t, "cleanup", "--root", root) })
	assert.Equal(t, 0, code)
	assert.Equal(t, "nothing to clean up\n", out, "safe to run twice")
	assert.Equal(t, hostBefore, hostNetwork(t), "the machine's own network namespace never changed")
}

// childPIDs lists the children of process pid (/proc/PID/task/*/children).
func childPIDs(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		data, _ := os.ReadFile(f)
		for _, field := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(field); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}
