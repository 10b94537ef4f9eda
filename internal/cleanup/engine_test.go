package cleanup_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/runtime"
	"github.com/minibox-lab/minibox/internal/cleanup"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// engineID is a container ID as the engine makes them: 64 hex digits.
func engineID(c string) string { return strings.Repeat(c, 64) }

// engineContainer makes ROOT/engine/containers/ID as the engine does: its
// record (status, supervisor), lock, supervisor.lock, the overlay's
// directories and a bundle.
func engineContainer(t *testing.T, root, id, status string, supervisorPid int) string {
	t.Helper()
	dir := filepath.Join(root, "engine", "containers", id)
	for _, d := range []string{"diff", "work", "rootfs", "bundle"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	rec, err := json.Marshal(map[string]any{"Id": id, "State": map[string]any{"Status": status, "SupervisorPid": supervisorPid}})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "container.json"), rec, 0o600))
	for _, f := range []string{"lock", "supervisor.lock", "container.log", "bundle/config.json"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), nil, 0o600))
	}
	return dir
}

// mountOverlay mounts an overlay on dir/rootfs, as a supervisor does: a
// lower layer of the test's, dir's diff and work.
func mountOverlay(t *testing.T, dir string) string {
	t.Helper()
	lower := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(lower, "hello"), []byte("layer"), 0o644))
	rootfs := filepath.Join(dir, "rootfs")
	opts := "lowerdir=" + lower + ",upperdir=" + dir + "/diff,workdir=" + dir + "/work"
	require.NoError(t, unix.Mount("overlay", rootfs, "overlay", 0, opts))
	t.Cleanup(func() { _ = unix.Unmount(rootfs, unix.MNT_DETACH) })
	return rootfs
}

// holdSupervisorLock takes the container's supervisor lock as a running
// supervisor holds it (flock LOCK_EX) until the test ends.
func holdSupervisorLock(t *testing.T, dir string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "supervisor.lock"), os.O_RDWR, 0)
	require.NoError(t, err)
	require.NoError(t, unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB))
	t.Cleanup(func() { f.Close() })
}

// runtimeStateDir writes DIR/state.json as final/runtime does: the init's
// PID and start time, its cgroup's directories; exec.fifo if created
// (not started).
func runtimeStateDir(t *testing.T, dir, status string, pid int, start uint64, cgroups []string, created bool) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o711))
	st := map[string]any{"ociVersion": "1.2.0", "id": filepath.Base(dir), "status": status, "pid": pid, "bundle": "/b",
		"rootfs": "/b/rootfs", "created": time.Now().UTC(), "initStart": start, "spec": nil}
	if cgroups != nil {
		st["cgroup"] = map[string]any{"v2": false, "dirs": cgroups}
	}
	data, err := json.Marshal(st)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "state.json"), data, 0o600))
	if created {
		require.NoError(t, unix.Mkfifo(filepath.Join(dir, "exec.fifo"), 0o600))
	}
	return dir
}

// startTime is field 22 of /proc/PID/stat, as the runtime records it.
func startTime(t *testing.T, pid int) uint64 {
	t.Helper()
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	require.NoError(t, err)
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	n, err := strconv.ParseUint(f[19], 10, 64)
	require.NoError(t, err)
	return n
}

func supervisorLockFree(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "supervisor.lock"), os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
}

// The engine's containers: a supervisor that was killed leaves its
// container's overlay mount and the runtime's state; cleanup removes
// them, and keeps the container's directory (a stopped container stays
// until rm). A running container's (its supervisor holds its lock), and
// one whose init outlived its supervisor, are busy and left.
func TestEngineLeftovers(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.CheckLeaks(t)
	root := t.TempDir()
	runtimeDir := filepath.Join(root, "engine", "runtime")
	init := sleeper(t, "")
	initPID := init.Process.Pid

	// Running: its supervisor holds the lock (the runtime's init alive).
	running := engineContainer(t, root, engineID("a"), "running", os.Getpid())
	runningRootfs := mountOverlay(t, running)
	holdSupervisorLock(t, running)
	runningState := runtimeStateDir(t, filepath.Join(runtimeDir, engineID("a")), "running", initPID, startTime(t, initPID), nil, false)
	// Its supervisor killed with the container: the record still says
	// running, the lock is free, the init is gone.
	dead := engineContainer(t, root, engineID("b"), "running", deadPID(t))
	deadRootfs := mountOverlay(t, dead)
	deadState := runtimeStateDir(t, filepath.Join(runtimeDir, engineID("b")), "running", deadPID(t), 12345, nil, false)
	// Its supervisor killed, its container alive: left, with the init named.
	survived := engineContainer(t, root, engineID("c"), "running", deadPID(t))
	survivedRootfs := mountOverlay(t, survived)
	survivedState := runtimeStateDir(t, filepath.Join(runtimeDir, engineID("c")), "running", initPID, startTime(t, initPID), nil, false)
	// Its init's PID reused by another process (another start time): dead.
	reused := runtimeStateDir(t, filepath.Join(runtimeDir, engineID("d")), "created", initPID, 1, nil, true)
	// A stopped container: nothing of it is a leftover, not even its directory.
	stopped := engineContainer(t, root, engineID("e"), "exited", 0)
	// Not the engine's names: left alone.
	other := filepath.Join(runtimeDir, "0123456789ab")
	require.NoError(t, os.MkdirAll(other, 0o700))
	require.NoError(t, os.Symlink(deadState, filepath.Join(runtimeDir, engineID("f"))))

	env := dataEnv(t, root)
	env.Mountinfo = mountinfoBelow(t, root)
	objs, err := cleanup.Find(env)
	require.NoError(t, err)
	found := byName(objs)
	require.Len(t, objs, 7, "%v", objs)
	assert.Equal(t, "mount", found[deadRootfs].Kind)
	assert.Equal(t, "overlay overlay", found[deadRootfs].Detail)
	assert.Empty(t, found[deadRootfs].Busy)
	assert.Contains(t, found[runningRootfs].Busy, "its supervisor, process "+strconv.Itoa(os.Getpid()))
	assert.Contains(t, found[runningRootfs].Busy, "minibox stop aaaaaaaaaaaa")
	assert.Contains(t, found[survivedRootfs].Busy, "its init, process "+strconv.Itoa(initPID))
	assert.Contains(t, found[survivedRootfs].Busy, "kill "+strconv.Itoa(initPID))
	assert.Equal(t, "runtime state", found[deadState].Kind)
	assert.Empty(t, found[deadState].Busy)
	assert.Contains(t, found[runningState].Busy, "holds supervisor.lock")
	assert.Contains(t, found[survivedState].Busy, "its init, process "+strconv.Itoa(initPID))
	assert.Empty(t, found[reused].Busy, "the PID is another process's now")

	// Remove checks again: the leak check removes what it found unasked.
	k, _ := cleanup.KindNamed("mount")
	assert.ErrorContains(t, k.Remove(found[runningRootfs]), "its supervisor")
	assert.ErrorContains(t, k.Remove(found[survivedRootfs]), "its init")
	assert.ErrorContains(t, cleanup.RuntimeStates.Remove(found[runningState]), "holds supervisor.lock")
	assert.ErrorContains(t, cleanup.RuntimeStates.Remove(found[survivedState]), "its init")
	assert.True(t, isMountPoint(t, runningRootfs))
	assert.True(t, isMountPoint(t, survivedRootfs))

	rep, err := cleanup.Clean(env, false)
	require.NoError(t, err)
	assert.Empty(t, rep.Failed)
	assert.ElementsMatch(t, []string{deadRootfs, deadState, reused}, names(rep.Removed))
	assert.ElementsMatch(t, []string{runningRootfs, runningState, survivedRootfs, survivedState}, names(rep.Busy))
	assert.False(t, isMountPoint(t, deadRootfs), "the dead supervisor's overlay is unmounted")
	assert.NoDirExists(t, deadState)
	assert.NoDirExists(t, reused)
	assert.True(t, isMountPoint(t, runningRootfs), "a running container's is left")
	assert.DirExists(t, runningState)
	assert.DirExists(t, survivedState)
	for _, dir := range []string{running, dead, survived, stopped} {
		assert.FileExists(t, filepath.Join(dir, "container.json"), "a container stays until rm")
		assert.DirExists(t, filepath.Join(dir, "diff"))
	}
	assert.DirExists(t, other)
	assert.True(t, supervisorLockFree(t, dead), "cleanup let go of the supervisor lock")

	// Once the container has ended, the rest goes.
	require.NoError(t, init.Process.Kill())
	_, _ = init.Process.Wait()
	env.Mountinfo = mountinfoBelow(t, root)
	rep, err = cleanup.Clean(env, false)
	require.NoError(t, err)
	assert.Empty(t, rep.Failed)
	assert.ElementsMatch(t, []string{survivedRootfs, survivedState}, names(rep.Removed))
	assert.ElementsMatch(t, []string{runningRootfs, runningState}, names(rep.Busy))
}

// Remove checks the supervisor lock again: a supervisor that started the
// container since Find (and holds the lock) stops the removal.
func TestEngineRemoveRechecksTheSupervisor(t *testing.T) {
	root := t.TempDir()
	id := engineID("1")
	dir := engineContainer(t, root, id, "running", 0)
	state := runtimeStateDir(t, filepath.Join(root, "engine", "runtime", id), "stopped", deadPID(t), 1, nil, false)
	env := dataEnv(t, root)
	objs, err := cleanup.RuntimeStates.Find(env)
	require.NoError(t, err)
	require.Len(t, objs, 1)
	assert.Empty(t, objs[0].Busy)
	assert.True(t, supervisorLockFree(t, dir), "Find let go of the lock")

	holdSupervisorLock(t, dir) // a supervisor starts it again
	err = cleanup.RuntimeStates.Remove(objs[0])
	assert.ErrorContains(t, err, "refusing to remove "+state+": container 111111111111 is running: its supervisor holds supervisor.lock")
	assert.DirExists(t, state)
}

// `minibox runtime`'s own root (/run/minibox/runtime by default): a state
// whose init is gone is a leftover; a live init's, one being made, one
// whose cgroup holds processes and one a process has open are busy.
func TestRuntimeStates(t *testing.T) {
	run := filepath.Join(t.TempDir(), "runtime")
	live := sleeper(t, "")
	livePID := live.Process.Pid
	const old = 2 * time.Minute
	age := func(dir string) string { mkdirAged(t, dir, old); return dir }

	stopped := age(runtimeStateDir(t, filepath.Join(run, "web"), "running", deadPID(t), 7, nil, false))
	running := age(runtimeStateDir(t, filepath.Join(run, "db.1"), "running", livePID, startTime(t, livePID), nil, false))
	noState := filepath.Join(run, "killed_early")
	mkdirAged(t, noState, old)
	creating := runtimeStateDir(t, filepath.Join(run, "starting"), "creating", 0, 0, nil, false)
	oldCreating := age(runtimeStateDir(t, filepath.Join(run, "stuck"), "creating", 0, 0, nil, false))
	group := t.TempDir() // a stand-in for its cgroup: cgroup.procs lists a live process
	require.NoError(t, os.WriteFile(filepath.Join(group, "cgroup.procs"), []byte(strconv.Itoa(livePID)+"\n"), 0o644))
	orphans := age(runtimeStateDir(t, filepath.Join(run, "no-pidns"), "running", deadPID(t), 7, []string{group}, false))
	held := age(runtimeStateDir(t, filepath.Join(run, "held"), "created", deadPID(t), 7, nil, true))
	holder := sleeper(t, held) // the runtime at work in it
	// Not the runtime's: a bad name, a symlink, a file.
	require.NoError(t, os.MkdirAll(filepath.Join(run, ".hidden"), 0o700))
	require.NoError(t, os.Symlink(stopped, filepath.Join(run, "link")))
	require.NoError(t, os.WriteFile(filepath.Join(run, "file"), nil, 0o600))

	env := dataEnv(t, t.TempDir())
	env.RuntimeRoots = []string{run}
	objs, err := cleanup.RuntimeStates.Find(env)
	require.NoError(t, err)
	found := byName(objs)
	assert.ElementsMatch(t, []string{stopped, running, noState, creating, oldCreating, orphans, held}, names(objs))
	assert.Equal(t, "init "+strconv.Itoa(livePID), found[running].Detail)
	assert.Equal(t, "no state.json", found[noState].Detail)
	assert.Equal(t, "creating, no init", found[oldCreating].Detail)
	assert.Empty(t, found[stopped].Busy)
	assert.Empty(t, found[noState].Busy, "killed before it wrote state.json, long ago")
	assert.Empty(t, found[oldCreating].Busy)
	assert.Contains(t, found[running].Busy, "its init, process "+strconv.Itoa(livePID))
	assert.Contains(t, found[creating].Busy, "the runtime may be creating it")
	assert.Contains(t, found[orphans].Busy, "cgroup "+group+" holds processes "+strconv.Itoa(livePID))
	assert.Contains(t, found[held].Busy, "process "+strconv.Itoa(holder.Process.Pid)+" (sleep) has it open")

	rep, err := cleanOne(cleanup.RuntimeStates, env)
	require.NoError(t, err)
	assert.Empty(t, rep.Failed)
	assert.ElementsMatch(t, []string{stopped, noState, oldCreating}, names(rep.Removed))
	for _, dir := range []string{stopped, noState, oldCreating} {
		assert.NoDirExists(t, dir)
	}
	for _, dir := range []string{running, creating, orphans, held, filepath.Join(run, ".hidden")} {
		assert.DirExists(t, dir)
	}
	assert.FileExists(t, filepath.Join(run, "file"))

	// Removed twice is removed; anything not a state directory is refused.
	assert.NoError(t, cleanup.RuntimeStates.Remove(found[stopped]))
	for _, name := range []string{"/etc", run, filepath.Join(run, "..", "x"), filepath.Join(run, ".hidden"), "/run/minibox/runtime/../../etc"} {
		o := found[running]
		o.Name = name
		assert.ErrorContains(t, cleanup.RuntimeStates.Remove(o), "refusing to remove", name)
	}
}

// A symlinked runtime root is never followed.
func TestRuntimeStatesSymlinkedRoot(t *testing.T) {
	real := t.TempDir()
	runtimeStateDir(t, filepath.Join(real, "web"), "running", deadPID(t), 7, nil, false)
	link := filepath.Join(t.TempDir(), "runtime")
	require.NoError(t, os.Symlink(real, link))
	env := dataEnv(t, t.TempDir())
	env.RuntimeRoots = []string{link}
	objs, err := cleanup.RuntimeStates.Find(env)
	assert.ErrorContains(t, err, "is a symlink")
	assert.Empty(t, objs)
}

// cleanup's default runtime root is the runtime's.
func TestDefaultRuntimeRoot(t *testing.T) {
	assert.Equal(t, runtime.DefaultRoot, cleanup.DefaultRuntimeRoot)
	assert.Equal(t, []string{runtime.DefaultRoot}, cleanup.DefaultEnv("").RuntimeRoots)
	assert.True(t, cleanup.IsEngineID(engineID("0")))
	assert.False(t, cleanup.IsEngineID("0123456789ab"))
	assert.False(t, cleanup.IsEngineID(strings.ToUpper(engineID("a"))))
}

// The tests' leak check sees what an engine test left in the data root
// it gives ($MINIBOX_ROOT): the overlay mount, the runtime's state and
// the supervisor process (`minibox supervise ID`).
func TestLeakCheckSeesEngineLeftovers(t *testing.T) {
	testenv.RequireRoot(t)
	root := t.TempDir()
	t.Setenv("MINIBOX_ROOT", root)
	id := engineID("9")
	before := testenv.Snapshot()
	dir := engineContainer(t, root, id, "running", 0)
	rootfs := mountOverlay(t, dir)
	state := runtimeStateDir(t, filepath.Join(root, "engine", "runtime", id), "running", deadPID(t), 7, nil, false)
	// A supervisor's command line, on a process that only waits.
	fifo := filepath.Join(t.TempDir(), "fifo")
	require.NoError(t, unix.Mkfifo(fifo, 0o600))
	sup := exec.Command("sh", "-c", "read x < "+fifo, "supervise", "--root", root, id)
	require.NoError(t, sup.Start())
	t.Cleanup(func() { _ = sup.Process.Kill(); _ = sup.Wait() })

	leaked := testenv.Diff(before, testenv.Snapshot())
	assert.Contains(t, leaked, "mount: "+rootfs+" overlay overlay")
	assert.Contains(t, leaked, "runtime state: "+state+" init ")
	assert.Contains(t, leaked, "supervisor of a container still running (minibox rm -f ID, or kill PID): "+
		strconv.Itoa(sup.Process.Pid)+" sh -c read x < "+fifo+" supervise --root "+root+" "+id)
}
