package testenv_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/internal/cleanup"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// recorder is a testing.TB that records what testenv does to a test
// instead of doing it: errors, fatals, skips and cleanups. Everything else
// goes to the real test. As in testing, Fatalf and Skip do not return: they
// end the goroutine, so call testenv through run.
type recorder struct {
	testing.TB
	errors, fatals, skips []string
	cleanups              []func()
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
	runtime.Goexit()
}
func (r *recorder) Skip(args ...any) {
	r.skips = append(r.skips, fmt.Sprint(args...))
	runtime.Goexit()
}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

// run calls f on its own goroutine, as testing runs a test, and waits.
func (r *recorder) run(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

// finish runs the recorded cleanups, last first, as testing does.
func (r *recorder) finish() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.cleanups = nil
}

func mount(point, detail string) cleanup.Object {
	return cleanup.Object{Kind: "mount", Name: point, Detail: detail}
}

func group(dir string) cleanup.Object { return cleanup.Object{Kind: "cgroup", Name: dir} }

func TestDiff(t *testing.T) {
	parent := cleanup.Object{Kind: "cgroup parent", Name: "/sys/fs/cgroup/minibox"}
	before := testenv.KernelState{
		Made:     []cleanup.Object{mount("/tmp/minibox-lesson-1/a", "tmpfs tmpfs")},
		Links:    []string{"eth0", "lo"},
		Children: []string{"10 sh"},
	}
	assert.Equal(t, "", testenv.Diff(before, before), "nothing new")
	assert.Equal(t, "", testenv.Diff(testenv.KernelState{}, testenv.KernelState{}))

	after := testenv.KernelState{
		Made: []cleanup.Object{
			mount("/tmp/minibox-lesson-1/a", "tmpfs tmpfs"),
			mount("/tmp/x", "tmpfs tmpfs"),
			group("/sys/fs/cgroup/minibox/c1"),
			parent,
		},
		Links:    []string{"eth0", "lo", "mb0", "veth1"},
		NetNS:    []string{"minibox-test"},
		Children: []string{"10 sh", "11 sleep"},
	}
	assert.Equal(t, ""+
		"  mount: /tmp/x tmpfs tmpfs\n"+
		"  cgroup: /sys/fs/cgroup/minibox/c1\n"+
		"  link: mb0\n"+
		"  link: veth1\n"+
		"  netns: minibox-test\n"+
		"  process: 11 sleep\n", testenv.Diff(before, after),
		"the new minibox/ parent is no leak: stage 03 leaves it in place")

	// What went away is not a leak.
	assert.Equal(t, "", testenv.Diff(after, before))

	// Busy or not, an object is the same object.
	busy := after
	busy.Made = append([]cleanup.Object(nil), after.Made...)
	busy.Made[2].Busy = "holds processes 12 (sleep)"
	assert.Equal(t, "", testenv.Diff(after, busy))

	// Duplicates count: a second tmpfs on the same mount point is new.
	x := mount("/tmp/x", "tmpfs tmpfs")
	once := testenv.KernelState{Made: []cleanup.Object{x}}
	twice := testenv.KernelState{Made: []cleanup.Object{x, x}}
	thrice := testenv.KernelState{Made: []cleanup.Object{x, x, x}}
	assert.Equal(t, "  mount: /tmp/x tmpfs tmpfs\n", testenv.Diff(once, twice))
	assert.Equal(t, "  mount: /tmp/x tmpfs tmpfs\n  mount: /tmp/x tmpfs tmpfs\n", testenv.Diff(once, thrice))
	assert.Equal(t, "", testenv.Diff(twice, once))

	// A cgroup named minibox that the registry does not know is reported
	// by the sweep; the ones it knows, the shared parent included, only
	// by the registry.
	swept := testenv.KernelState{
		Made:    []cleanup.Object{group("/sys/fs/cgroup/pids/minibox/c1"), {Kind: "cgroup parent", Name: "/sys/fs/cgroup/pids/minibox"}},
		Cgroups: []string{"/sys/fs/cgroup/pids/minibox", "/sys/fs/cgroup/pids/minibox/c1", "/sys/fs/cgroup/pids/user.slice/minibox-x"},
	}
	assert.Equal(t, ""+
		"  cgroup: /sys/fs/cgroup/pids/minibox/c1\n"+
		"  cgroup named minibox, outside minibox/<id> (not removed: rmdir it): /sys/fs/cgroup/pids/user.slice/minibox-x\n",
		testenv.Diff(testenv.KernelState{}, swept))
	assert.Equal(t, "", testenv.Diff(swept, swept))
}

// made lists the registry's objects in s as their keys.
func made(s testenv.KernelState) []string {
	var out []string
	for _, o := range s.Made {
		out = append(out, o.Key())
	}
	return out
}

func TestSnapshotSeesAMount(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.CheckLeaks(t) // runs last: after the unmount below

	// Below the temporary directory: a test's own, whatever its source.
	dir := filepath.Join(t.TempDir(), "mnt with space")
	require.NoError(t, os.Mkdir(dir, 0o755))
	entry := "mount: " + dir + " tmpfs tmpfs"

	before := testenv.Snapshot()
	require.NotContains(t, made(before), entry)

	require.NoError(t, unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"))
	mounted := true
	t.Cleanup(func() {
		if mounted {
			assert.NoError(t, unix.Unmount(dir, unix.MNT_DETACH))
		}
	})

	during := testenv.Snapshot()
	assert.Contains(t, made(during), entry, "mountinfo's \\040 read as a space")
	assert.Contains(t, testenv.Diff(before, during), "  "+entry+"\n")

	require.NoError(t, unix.Unmount(dir, 0))
	mounted = false
	after := testenv.Snapshot()
	assert.NotContains(t, made(after), entry)
	assert.NotContains(t, testenv.Diff(before, after), dir)
}

func TestSnapshot(t *testing.T) {
	s := testenv.Snapshot()
	assert.Contains(t, s.Links, "lo")
	for _, o := range s.Made {
		assert.NotEqual(t, "error", o.Kind, o.Name)
	}
	assert.Empty(t, s.Children, "this test has started no process")

	cmd := exec.Command("sleep", "30")
	require.NoError(t, cmd.Start())
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	s = testenv.Snapshot()
	assert.Equal(t, []string{strconv.Itoa(cmd.Process.Pid) + " sleep"}, s.Children)
}

// alive reports whether pid is still running (a zombie is not).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	rest := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(rest) > 0 && rest[0] != "Z"
}

func TestCheckLeaksCatchesAProcess(t *testing.T) {
	rec := &recorder{TB: t}
	rec.run(func() { testenv.CheckLeaks(rec) })
	require.Empty(t, rec.fatals)
	require.Len(t, rec.cleanups, 1, "the check runs when the test ends")

	cmd := exec.Command("sleep", "30")
	require.NoError(t, cmd.Start())
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		// In case CheckLeaks did not kill it: our own child, by its pidfd.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})

	rec.finish()
	require.Len(t, rec.errors, 1)
	assert.Contains(t, rec.errors[0], "the test left these behind")
	assert.Contains(t, rec.errors[0], fmt.Sprintf("  process: %d sleep\n", pid))

	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	assert.False(t, alive(pid), "the leaked sleep was killed")
}

func TestCheckLeaksCleanRun(t *testing.T) {
	rec := &recorder{TB: t}
	rec.run(func() { testenv.CheckLeaks(rec) })

	// A process that ends in time, waited for or not, is no leak.
	require.NoError(t, exec.Command("true").Run())
	require.NoError(t, exec.Command("sleep", "0.2").Start())

	rec.finish()
	assert.Empty(t, rec.errors)
	assert.Empty(t, rec.fatals)
}

func TestCheckLeaksCatchesAMount(t *testing.T) {
	testenv.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	require.NoError(t, os.Mkdir(dir, 0o755))

	rec := &recorder{TB: t}
	rec.run(func() { testenv.CheckLeaks(rec) })
	require.Empty(t, rec.fatals)
	require.NoError(t, unix.Mount("minibox-test", dir, "tmpfs", 0, "size=1m"))
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })

	rec.finish()
	require.Len(t, rec.errors, 1)
	assert.Contains(t, rec.errors[0], "  mount: "+dir+" tmpfs minibox-test\n")
	assert.NotContains(t, made(testenv.Snapshot()), "mount: "+dir+" tmpfs minibox-test", "the leaked mount was removed")
}

// freshParent returns the minibox/ parent in a cgroup tree of this host
// (the pids tree on v1 and hybrid, the only one on v2), after removing it
// if a stage left it there empty, so that the test sees it made anew.
func freshParent(t *testing.T) string {
	t.Helper()
	tree := "/sys/fs/cgroup/pids"
	if _, err := os.Stat(tree); err != nil {
		tree = "/sys/fs/cgroup"
	}
	parent := filepath.Join(tree, "minibox")
	_ = os.Remove(parent) // fails, and the test with it, if a group is left in it
	require.NoDirExists(t, parent, "a minibox group is left on this host: sudo minibox cleanup")
	return parent
}

func TestCheckLeaksCatchesAndRemovesACgroup(t *testing.T) {
	testenv.RequireRoot(t)
	parent := freshParent(t)
	group := filepath.Join(parent, "testenv-leak")

	rec := &recorder{TB: t}
	rec.run(func() { testenv.CheckLeaks(rec) })
	require.Empty(t, rec.fatals)
	require.NoError(t, os.MkdirAll(group, 0o755))
	t.Cleanup(func() { _ = os.Remove(group); _ = os.Remove(parent) })

	rec.finish()
	require.Len(t, rec.errors, 1)
	assert.Contains(t, rec.errors[0], "  cgroup: "+group+"\n")
	assert.NotContains(t, rec.errors[0], "  cgroup parent: ", "the shared parent is not a leak")
	assert.NoDirExists(t, group, "the leaked cgroup was removed")
	assert.NoDirExists(t, parent, "the parent the test made is removed with what was in it")
}

func TestCheckLeaksRemovesTheEmptyParentItMade(t *testing.T) {
	testenv.RequireRoot(t)
	parent := freshParent(t)

	rec := &recorder{TB: t}
	rec.run(func() { testenv.CheckLeaks(rec) })
	require.Empty(t, rec.fatals)
	// What stage 03 does: a group in a new parent, then only the group
	// removed when the container ends.
	group := filepath.Join(parent, "0123456789ab")
	require.NoError(t, os.MkdirAll(group, 0o755))
	t.Cleanup(func() { _ = os.Remove(group); _ = os.Remove(parent) })
	require.NoError(t, os.Remove(group))

	rec.finish()
	assert.Empty(t, rec.errors, "the shared parent is not a leak")
	assert.NoDirExists(t, parent, "a test removes the parent it made")
}

// A parent that was there before the test stays: the test did not make it.
func TestCheckLeaksKeepsAParentThatWasThere(t *testing.T) {
	testenv.RequireRoot(t)
	parent := freshParent(t)
	require.NoError(t, os.Mkdir(parent, 0o755))
	t.Cleanup(func() { _ = os.Remove(parent) })

	rec := &recorder{TB: t}
	rec.run(func() { testenv.CheckLeaks(rec) })
	require.Empty(t, rec.fatals)
	rec.finish()
	assert.Empty(t, rec.errors)
	assert.DirExists(t, parent)
}

func TestRequire(t *testing.T) {
	for _, tc := range []struct {
		env        string
		ok         bool
		skip, fail bool
	}{
		{env: "", ok: true},
		{env: "1", ok: true},
		{env: "", ok: false, skip: true},
		{env: "0", ok: false, skip: true},
		{env: "yes", ok: false, skip: true},
		{env: "1", ok: false, fail: true},
	} {
		t.Run(fmt.Sprintf("%s=%q ok=%v", testenv.RequireRootEnv, tc.env, tc.ok), func(t *testing.T) {
			t.Setenv(testenv.RequireRootEnv, tc.env)
			rec := &recorder{TB: t}
			rec.run(func() { testenv.Require(rec, tc.ok, "needs a static busybox") })
			if tc.skip {
				assert.Equal(t, []string{"skipped: needs a static busybox"}, rec.skips)
			} else {
				assert.Empty(t, rec.skips)
			}
			if tc.fail {
				require.Len(t, rec.fatals, 1)
				assert.Contains(t, rec.fatals[0], "MINIBOX_REQUIRE_ROOT=1")
				assert.Contains(t, rec.fatals[0], "needs a static busybox")
			} else {
				assert.Empty(t, rec.fatals)
			}
			assert.Empty(t, rec.errors)
		})
	}
}

func TestRequireRoot(t *testing.T) {
	t.Setenv(testenv.RequireRootEnv, "1")
	rec := &recorder{TB: t}
	rec.run(func() { testenv.RequireRoot(rec) })
	if os.Geteuid() == 0 {
		assert.Empty(t, rec.fatals)
	} else {
		require.Len(t, rec.fatals, 1)
		assert.Contains(t, rec.fatals[0], "needs root")
	}
	assert.Empty(t, rec.skips)

	t.Setenv(testenv.RequireRootEnv, "")
	rec = &recorder{TB: t}
	rec.run(func() { testenv.RequireRoot(rec) })
	if os.Geteuid() == 0 {
		assert.Empty(t, rec.skips)
	} else {
		require.Len(t, rec.skips, 1)
		assert.Contains(t, rec.skips[0], "sudo make test")
	}
	assert.Empty(t, rec.fatals)
}

// A stage whose mounts escaped its mount namespace leaves them below the
// demo rootfs, wherever the CLI would find it ($MINIBOX_ROOTFS here): the
// leak check judges that place too, not only the temporary directory.
func TestCheckLeaksCatchesAMountBelowTheDemoRootfs(t *testing.T) {
	testenv.RequireRoot(t)
	// Outside the temporary directory, whose every mount counts anyway.
	dir, err := os.MkdirTemp("/var/tmp", "testenv-rootfs-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.False(t, strings.HasPrefix(dir, filepath.Clean(os.TempDir())+"/"), "%s is in the temporary directory", dir)
	t.Setenv("MINIBOX_ROOTFS", dir)
	proc := filepath.Join(dir, "proc")
	require.NoError(t, os.Mkdir(proc, 0o755))

	rec := &recorder{TB: t}
	rec.run(func() { testenv.CheckLeaks(rec) })
	require.Empty(t, rec.fatals)
	// A source minibox did not name: only the place makes it minibox's.
	require.NoError(t, unix.Mount("tmpfs", proc, "tmpfs", 0, "size=1m"))
	t.Cleanup(func() { _ = unix.Unmount(proc, unix.MNT_DETACH) })

	rec.finish()
	require.Len(t, rec.errors, 1)
	assert.Contains(t, rec.errors[0], "  mount: "+proc+" tmpfs tmpfs\n")
	assert.NotContains(t, made(testenv.Snapshot()), "mount: "+proc+" tmpfs tmpfs", "the leaked mount was removed")
}

// A cgroup named minibox outside the minibox/<id> layout is reported, and
// left in place: the registry does not know it for minibox's. The test
// makes it only below a minibox sub-tree of its own, and points the leak
// check there, as if that sub-tree were the host's cgroup root.
func TestCheckLeaksReportsAStrayMiniboxCgroup(t *testing.T) {
	testenv.RequireRoot(t)
	parent := freshParent(t)
	root := filepath.Join(parent, "testenv-x")
	require.NoError(t, os.MkdirAll(root, 0o755))
	t.Cleanup(func() { _ = os.Remove(root); _ = os.Remove(parent) })
	testenv.SetCgroupRoot(t, root)

	rec := &recorder{TB: t}
	rec.run(func() { testenv.CheckLeaks(rec) })
	require.Empty(t, rec.fatals)
	stray := filepath.Join(root, "minibox-stray")
	deeper := filepath.Join(root, "a", "b", "minibox-deep")
	other := filepath.Join(root, "not-ours")
	for _, dir := range []string{stray, deeper, other} {
		require.NoError(t, os.MkdirAll(dir, 0o755))
	}
	t.Cleanup(func() {
		for _, dir := range []string{stray, deeper, filepath.Dir(deeper), filepath.Dir(filepath.Dir(deeper)), other} {
			_ = os.Remove(dir)
		}
	})

	rec.finish()
	require.Len(t, rec.errors, 1)
	assert.Contains(t, rec.errors[0], "  cgroup named minibox, outside minibox/<id> (not removed: rmdir it): "+stray+"\n")
	assert.Contains(t, rec.errors[0], ": "+deeper+"\n", "found below other groups")
	assert.NotContains(t, rec.errors[0], other, "only names with minibox in them")
	assert.DirExists(t, stray, "reported, not removed")
	assert.DirExists(t, deeper)
}
