package cleanup_test

import (
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

	"github.com/minibox-lab/minibox/internal/cleanup"
	"github.com/minibox-lab/minibox/internal/testenv"
)

func TestIsContainerID(t *testing.T) {
	for name, want := range map[string]bool{
		"0123456789ab":  true,
		"3f2a9c1b7d04":  true,
		"0123456789AB":  false, // the stages write lower case
		"0123456789a":   false,
		"0123456789abc": false,
		"0123456789ag":  false,
		"../containers": false,
		"":              false,
	} {
		assert.Equal(t, want, cleanup.IsContainerID(name), name)
	}
}

func TestDataRoot(t *testing.T) {
	t.Setenv("MINIBOX_ROOT", "")
	assert.Equal(t, "/var/lib/minibox", cleanup.DataRoot(""))
	t.Setenv("MINIBOX_ROOT", "/srv/mb")
	assert.Equal(t, "/srv/mb", cleanup.DataRoot(""))
	assert.Equal(t, "/tmp/r", cleanup.DataRoot("/tmp/r"), "--root wins")
	assert.Equal(t, []string{"/srv/mb"}, cleanup.DefaultEnv("").DataRoots)
}

// dataEnv is an Env that looks only in the data root root: an empty mount
// table, no cgroups.
func dataEnv(t *testing.T, root string) cleanup.Env {
	t.Helper()
	env := envWith(t, "")
	env.TempDir = ""
	env.Rootfs = ""
	env.DataRoots = []string{root}
	return env
}

// mkdirAged makes dir (and its parents) and dates it age ago.
func mkdirAged(t *testing.T, dir string, age time.Duration) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	past := time.Now().Add(-age)
	require.NoError(t, os.Chtimes(dir, past, past))
}

// containerDir makes ROOT/containers/ID as a stage leaves it: upper, work,
// merged, a pid file holding pid (none if 0), "kept" if kept; dated age ago.
func containerDir(t *testing.T, root, id string, pid int, kept bool, age time.Duration) string {
	t.Helper()
	dir := filepath.Join(root, "containers", id)
	for _, d := range []string{"upper/etc", "work/work", "merged", "lower"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "upper/etc/hostname"), []byte(id), 0o644))
	require.NoError(t, os.Symlink("/", filepath.Join(dir, "lower", "0")), "a link to a layer: never followed")
	if pid != 0 {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(pid)), 0o644))
	}
	if kept {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "kept"), nil, 0o644))
	}
	mkdirAged(t, dir, age)
	return dir
}

// sleeper starts `sleep 60` in dir ("" for here) and stops it when the
// test ends.
func sleeper(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.Dir = dir
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// deadPID returns the PID of a process that has ended.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	return cmd.Process.Pid
}

func byName(objs []cleanup.Object) map[string]cleanup.Object {
	out := map[string]cleanup.Object{}
	for _, o := range objs {
		out[o.Name] = o
	}
	return out
}

func TestDataRootDirs(t *testing.T) {
	testenv.CheckLeaks(t)
	root := t.TempDir()
	live := sleeper(t, "")
	livePID := strconv.Itoa(live.Process.Pid)
	const old = 2 * time.Minute
	running := containerDir(t, root, "aaaaaaaaaaa1", live.Process.Pid, false, old)
	killed := containerDir(t, root, "aaaaaaaaaaa2", deadPID(t), false, old)
	kept := containerDir(t, root, "aaaaaaaaaaa3", deadPID(t), true, old)
	keptRunning := containerDir(t, root, "aaaaaaaaaaa4", live.Process.Pid, true, old)
	noPID := containerDir(t, root, "aaaaaaaaaaa5", 0, false, old)      // killed before it wrote pid
	settingUp := containerDir(t, root, "aaaaaaaaaaa6", 0, false, 0)    // a stage between mkdir and pid
	garbagePID := containerDir(t, root, "aaaaaaaaaaa7", 0, false, old) // pid file not a number
	require.NoError(t, os.WriteFile(filepath.Join(garbagePID, "pid"), []byte("x\n"), 0o644))

	// Not minibox's, or not a container directory: all left alone.
	outside := t.TempDir()
	canary := filepath.Join(outside, "canary")
	require.NoError(t, os.WriteFile(canary, []byte("host file"), 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(root, "containers", "bbbbbbbbbbbb")))
	var untouched []string
	for _, name := range []string{"not-an-id", "BBBBBBBBBBBB", "bbbbbbbbbbb", "bbbbbbbbbbbbb"} {
		untouched = append(untouched, containerDir(t, root, name, deadPID(t), true, old))
	}
	require.NoError(t, os.WriteFile(filepath.Join(root, "containers", "cccccccccccc"), nil, 0o644))
	untouched = append(untouched, filepath.Join(root, "containers", "cccccccccccc"))

	// The layer store: finished layers stay; half-unpacked ones go once
	// nothing holds them.
	layer := filepath.Join(root, "layers", "7f0e3a5d4b2c1e9f8a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f")
	mkdirAged(t, layer, time.Hour)
	untouched = append(untouched, layer)
	interrupted := filepath.Join(root, "layers", "tmp-1234567")
	mkdirAged(t, filepath.Join(interrupted, "usr/bin"), old)
	mkdirAged(t, interrupted, old)
	cwdHeld := filepath.Join(root, "layers", "tmp-2345678")
	mkdirAged(t, filepath.Join(cwdHeld, "etc"), old)
	holder := sleeper(t, filepath.Join(cwdHeld, "etc")) // working below it
	mkdirAged(t, cwdHeld, old)
	fdHeld := filepath.Join(root, "layers", "tmp-3456789")
	mkdirAged(t, fdHeld, old)
	fd, err := unix.Open(fdHeld, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0) // as the unpacker does
	require.NoError(t, err)
	defer unix.Close(fd)
	starting := filepath.Join(root, "layers", "tmp-4567890")
	mkdirAged(t, starting, 0)
	for _, name := range []string{"tmp-", "tmp-12ab", "xtmp-123"} {
		dir := filepath.Join(root, "layers", name)
		mkdirAged(t, dir, old)
		untouched = append(untouched, dir)
	}
	rootfs := filepath.Join(root, "rootfs", "bin")
	mkdirAged(t, rootfs, old)
	untouched = append(untouched, rootfs)

	env := dataEnv(t, root)
	objs, err := cleanup.Find(env)
	require.NoError(t, err)
	found := byName(objs)
	assert.Len(t, found, 11, "%v", objs)
	assert.Equal(t, "container dir "+kept+" (kept by --keep)", found[kept].String())
	assert.Equal(t, "container dir "+killed, found[killed].String())
	assert.Equal(t, "layer tmp dir "+interrupted+" (an interrupted unpack)", found[interrupted].String())
	assert.Contains(t, found[running].Busy, "in use by process "+livePID+" (sleep)")
	assert.Contains(t, found[running].Busy, "kill "+livePID)
	assert.Contains(t, found[keptRunning].Busy, "in use by process "+livePID, "--keep while it still runs")
	assert.Contains(t, found[settingUp].Busy, "setting it up")
	assert.Contains(t, found[cwdHeld].Busy, "process "+strconv.Itoa(holder.Process.Pid)+" (sleep) has it open")
	assert.Contains(t, found[fdHeld].Busy, "process "+strconv.Itoa(os.Getpid())+" ")
	assert.Contains(t, found[starting].Busy, "an unpack may be starting")

	rep, err := cleanup.Clean(env, true)
	require.NoError(t, err)
	assert.Len(t, rep.Removed, 5)
	assert.DirExists(t, killed, "a dry run removes nothing")

	rep, err = cleanup.Clean(env, false)
	require.NoError(t, err)
	assert.Empty(t, rep.Failed)
	assert.ElementsMatch(t, []string{killed, kept, noPID, garbagePID, interrupted}, names(rep.Removed))
	assert.ElementsMatch(t, []string{running, keptRunning, settingUp, cwdHeld, fdHeld, starting}, names(rep.Busy))
	for _, dir := range names(rep.Removed) {
		assert.NoDirExists(t, dir)
	}
	for _, path := range append(names(rep.Busy), untouched...) {
		_, err := os.Lstat(path)
		assert.NoError(t, err, "left alone")
	}
	assert.FileExists(t, canary, "a symlink in containers/ is not followed")
	assert.FileExists(t, filepath.Join(root, "containers", "bbbbbbbbbbbb"), "nor removed")
	assert.True(t, alive(live.Process.Pid), "cleanup kills nothing")

	// Remove checks again: the leak check removes without asking Find.
	err = cleanup.ContainerDirs.Remove(cleanup.Object{Kind: "container dir", Name: running})
	assert.ErrorContains(t, err, "process "+livePID+" (sleep), named in its pid file, is alive")
	err = cleanup.LayerTemps.Remove(cleanup.Object{Kind: "layer tmp dir", Name: fdHeld})
	assert.ErrorContains(t, err, "has it open")
	assert.DirExists(t, running)
	assert.DirExists(t, fdHeld)

	// Once its stage is gone, a running container's directory goes too;
	// what is gone already counts as removed.
	require.NoError(t, live.Process.Kill())
	_ = live.Wait()
	rep, err = cleanup.Clean(env, false)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{running, keptRunning}, names(rep.Removed))
	assert.NoError(t, cleanup.ContainerDirs.Remove(cleanup.Object{Kind: "container dir", Name: killed}))
}

func TestDataRootSymlinksAreRefused(t *testing.T) {
	root, elsewhere := t.TempDir(), t.TempDir()
	victim := containerDir(t, elsewhere, "dddddddddddd", deadPID(t), true, time.Hour)
	require.NoError(t, os.Symlink(filepath.Join(elsewhere, "containers"), filepath.Join(root, "containers")))
	require.NoError(t, os.Symlink(filepath.Join(elsewhere, "containers"), filepath.Join(root, "layers")))

	objs, err := cleanup.Find(dataEnv(t, root))
	assert.ErrorContains(t, err, filepath.Join(root, "containers")+" is a symlink")
	assert.ErrorContains(t, err, filepath.Join(root, "layers")+" is a symlink")
	assert.Empty(t, objs)

	err = cleanup.ContainerDirs.Remove(cleanup.Object{Name: filepath.Join(root, "containers", "dddddddddddd")})
	assert.ErrorContains(t, err, "is a symlink")
	assert.DirExists(t, victim)

	// The entry itself a symlink.
	require.NoError(t, os.Remove(filepath.Join(root, "containers")))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "containers"), 0o755))
	link := filepath.Join(root, "containers", "dddddddddddd")
	require.NoError(t, os.Symlink(victim, link))
	err = cleanup.ContainerDirs.Remove(cleanup.Object{Name: link})
	assert.ErrorContains(t, err, "is a symlink")
	assert.DirExists(t, victim)
	assert.FileExists(t, filepath.Join(victim, "upper/etc/hostname"))
}

func TestDataRootRemoveRefusesOtherPaths(t *testing.T) {
	for _, name := range []string{
		"/var/lib/minibox",
		"/var/lib/minibox/containers",
		"/var/lib/minibox/rootfs",
		"/var/lib/minibox/layers/0123456789ab",
		"/var/lib/minibox/containers/0123456789ab/upper",
		"/var/lib/minibox/containers/../containers/0123456789ab",
		"/var/lib/minibox/containers/0123456789ab/",
		"var/lib/minibox/containers/0123456789ab",
		"/var/lib/minibox/containers/not-an-id-xx",
		"/",
		"",
	} {
		err := cleanup.ContainerDirs.Remove(cleanup.Object{Kind: "container dir", Name: name})
		assert.ErrorContains(t, err, "refusing to remove", name)
	}
	for _, name := range []string{
		"/var/lib/minibox/layers/7f0e3a5d4b2c1e9f8a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f",
		"/var/lib/minibox/layers",
		"/var/lib/minibox/containers/tmp-123",
		"/var/lib/minibox/layers/tmp-123/usr",
		"/var/lib/minibox/layers/tmp-x",
	} {
		err := cleanup.LayerTemps.Remove(cleanup.Object{Kind: "layer tmp dir", Name: name})
		assert.ErrorContains(t, err, "refusing to remove", name)
	}
}

// A stage whose overlay escaped its mount namespace leaves it mounted in
// its container directory: the mount goes first, then the directory, and
// the directory is never removed through a mount.
func TestContainerDirWithAMountInIt(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.CheckLeaks(t)
	root := t.TempDir()
	dir := containerDir(t, root, "eeeeeeeeeeee", deadPID(t), false, time.Hour)
	merged := filepath.Join(dir, "merged")
	// What a broken stage could leave: the host's data bound in.
	host := t.TempDir()
	canary := filepath.Join(host, "canary")
	require.NoError(t, os.WriteFile(canary, []byte("host file"), 0o644))
	require.NoError(t, unix.Mount(host, merged, "", unix.MS_BIND, ""))
	t.Cleanup(func() { _ = unix.Unmount(merged, unix.MNT_DETACH) })

	err := cleanup.ContainerDirs.Remove(cleanup.Object{Name: dir})
	assert.ErrorContains(t, err, merged+" is mounted in it")
	assert.FileExists(t, canary, "never removed through a mount")

	// The real mount table, less what is not ours: a clean never touches
	// another test's mounts.
	env := dataEnv(t, root)
	env.Mountinfo = mountinfoBelow(t, root)
	rep, err := cleanup.Clean(env, false)
	require.NoError(t, err)
	assert.Empty(t, rep.Failed)
	require.Len(t, rep.Removed, 2, "%v", rep.Removed)
	assert.Equal(t, "mount "+merged, rep.Removed[0].Kind+" "+rep.Removed[0].Name, "the mount in the data root's containers/ is minibox's, and goes first")
	assert.Equal(t, "container dir "+dir, rep.Removed[1].String())
	assert.NoDirExists(t, dir)
	assert.FileExists(t, canary)
}

// mountinfoBelow writes a mountinfo file with the lines of this process's
// mount table whose mount point is below dir, and returns its path.
func mountinfoBelow(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	var keep []string
	for _, l := range strings.Split(string(data), "\n") {
		if m := cleanup.ParseMountinfo(l); len(m) == 1 && strings.HasPrefix(m[0].Point, dir+"/") {
			keep = append(keep, l)
		}
	}
	file := filepath.Join(t.TempDir(), "mountinfo")
	require.NoError(t, os.WriteFile(file, []byte(strings.Join(keep, "\n")+"\n"), 0o644))
	return file
}

// A build step directory between mkdir and lock (new-<pid>-<digits>): in
// use while its builder may be starting, a killed build's at once.
func TestBuildStepOfAKilledBuild(t *testing.T) {
	root := t.TempDir()
	exited := exec.Command("true")
	require.NoError(t, exited.Run())
	dead := filepath.Join(root, "build", "tmp", "new-"+strconv.Itoa(exited.Process.Pid)+"-1")
	alive := filepath.Join(root, "build", "tmp", "new-"+strconv.Itoa(os.Getpid())+"-2")
	mkdirAged(t, dead, 0)
	mkdirAged(t, alive, 0)
	objects, err := cleanup.BuildSteps.Find(dataEnv(t, root))
	require.NoError(t, err)
	busy := map[string]string{}
	for _, o := range objects {
		busy[o.Name] = o.Busy
	}
	require.Contains(t, busy, dead)
	assert.Empty(t, busy[dead], "its builder has exited: removable at once")
	assert.Contains(t, busy[alive], "a build may be starting")
}
