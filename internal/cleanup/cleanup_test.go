package cleanup_test

import (
	"fmt"
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

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/plain`:                 "/tmp/plain",
		`/tmp/with\040space`:         "/tmp/with space",
		`/tmp/tab\011and\012newline`: "/tmp/tab\tand\nnewline",
		`/tmp/back\134slash`:         `/tmp/back\slash`,
		`/tmp/not\08octal`:           `/tmp/not\08octal`,
		`/tmp/short\04`:              `/tmp/short\04`,
		`/tmp/end\`:                  `/tmp/end\`,
		`/tmp/over\777`:              `/tmp/over\777`,
	} {
		assert.Equal(t, want, cleanup.Unescape(in), in)
	}
}

func TestParseMountinfo(t *testing.T) {
	mi := "" +
		"22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw,errors=remount-ro\n" +
		"90 22 0:50 / /tmp/minibox-lesson-1/a\\040b rw shared:5 master:2 - tmpfs minibox\\040x rw,size=1024k\n" +
		"39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n" +
		"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n" +
		"95 22 0:51 / /mnt/o rw - overlay overlay rw,lowerdir=/l\\054x:/m\\134y,upperdir=/u\n" +
		"96 22 0:52 / /mnt/short rw - tmpfs none\n" + // no super options: still read
		"garbage\n" +
		"97 22 0:53 / /mnt/bad rw\n" + // no separator
		"98 22 0:54 / /mnt/bad rw - tmpfs\n" + // no source
		"\n"
	assert.Equal(t, []cleanup.Mount{
		{Point: "/", FSType: "ext4", Source: "/dev/sda2", Optional: []string{"shared:1"}, SuperOptions: []string{"rw", "errors=remount-ro"}},
		{Point: "/tmp/minibox-lesson-1/a b", FSType: "tmpfs", Source: "minibox x", Optional: []string{"shared:5", "master:2"}, SuperOptions: []string{"rw", "size=1024k"}},
		{Point: "/sys/fs/cgroup/pids", FSType: "cgroup", Source: "cgroup", SuperOptions: []string{"rw", "pids"}},
		{Point: "/sys/fs/cgroup/unified", FSType: "cgroup2", Source: "cgroup2", SuperOptions: []string{"rw", "nsdelegate"}},
		// An escaped comma (\054) stays in its option; \134 is a backslash.
		{Point: "/mnt/o", FSType: "overlay", Source: "overlay", SuperOptions: []string{"rw", "lowerdir=/l,x:/m\\y", "upperdir=/u"}},
		{Point: "/mnt/short", FSType: "tmpfs", Source: "none"},
	}, cleanup.ParseMountinfo(mi))
}

// envWith is an Env whose mount table is mountinfo and whose temporary
// directory is a fresh one.
func envWith(t *testing.T, mountinfo string) cleanup.Env {
	t.Helper()
	file := filepath.Join(t.TempDir(), "mountinfo")
	require.NoError(t, os.WriteFile(file, []byte(mountinfo), 0o644))
	return cleanup.Env{TempDir: "/tmp", Rootfs: "/var/lib/minibox/rootfs", Mountinfo: file, CgroupRoot: t.TempDir()}
}

func line(point, fstype, source string) string {
	return "90 22 0:50 / " + point + " rw,relatime shared:5 - " + fstype + " " + source + " rw\n"
}

func TestMountsFindsOnlyMinibox(t *testing.T) {
	mi := line("/", "ext4", "/dev/sda2") +
		line("/tmp", "tmpfs", "tmpfs") + // the host's /tmp: not ours
		line("/tmp/minibox-lesson-123/work/m", "tmpfs", "tmpfs") +
		line("/tmp/minibox-lesson-123/work/m/proc", "proc", "proc") +
		line("/tmp/minibox-lesson-123/work/m", "tmpfs", "second") + // stacked on the first
		line("/tmp/minibox-stagetest-9", "tmpfs", "tmpfs") +
		line("/tmp/minibox-lesson-1/with\\040space", "tmpfs", "tmpfs") +
		line("/tmp/other/x", "tmpfs", "tmpfs") + // a temp dir minibox did not make
		line("/tmp/miniboxer/x", "tmpfs", "tmpfs") +
		line("/var/lib/minibox", "ext4", "/dev/mapper/vg-minibox") + // the user's volume
		line("/var/lib/minibox/rootfs", "ext4", "/dev/sdb1") + // the rootfs itself: may be a volume
		line("/var/lib/minibox/rootfs/proc", "proc", "proc") + // a stage's mount that escaped
		line("/srv/minibox-data", "ext4", "/dev/sdc1") +
		line("/mnt/anything", "tmpfs", "minibox-test") +
		line("/mnt/other", "tmpfs", "minibox") +
		line("/mnt/not", "tmpfs", "miniboxes")
	objs, err := cleanup.Mounts.Find(envWith(t, mi))
	require.NoError(t, err)
	var got []string
	for _, o := range objs {
		assert.Equal(t, "mount", o.Kind)
		assert.Empty(t, o.Busy, o.Name)
		got = append(got, o.Name+" "+o.Detail)
	}
	assert.Equal(t, []string{
		// The deepest first; at one depth the last mounted first, so
		// that of the two stacked on one point the top one goes first.
		"/var/lib/minibox/rootfs/proc proc proc",
		"/tmp/minibox-lesson-123/work/m/proc proc proc",
		"/tmp/minibox-lesson-123/work/m tmpfs second",
		"/tmp/minibox-lesson-123/work/m tmpfs tmpfs",
		"/tmp/minibox-lesson-1/with space tmpfs tmpfs",
		"/mnt/other tmpfs minibox",
		"/mnt/anything tmpfs minibox-test",
		"/tmp/minibox-stagetest-9 tmpfs tmpfs",
	}, got)

	// Owned directories (the tests' own temp dirs) add every mount below.
	env := envWith(t, mi)
	env.Owned = []string{"/tmp"}
	objs, err = cleanup.Mounts.Find(env)
	require.NoError(t, err)
	var names []string
	for _, o := range objs {
		names = append(names, o.Name)
	}
	assert.Contains(t, names, "/tmp/other/x")
	assert.Contains(t, names, "/tmp/miniboxer/x")
	assert.NotContains(t, names, "/tmp", "below, not the directory itself")
}

func TestMountInUseByALessonIsBusy(t *testing.T) {
	tmp := t.TempDir()
	lessonDir := filepath.Join(tmp, "minibox-lesson-42")
	work := filepath.Join(lessonDir, "work")
	require.NoError(t, os.MkdirAll(work, 0o755))
	cmd := exec.Command("sleep", "30")
	cmd.Dir = work // as a lesson's demo shell
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	env := envWith(t, line(work+"/m", "tmpfs", "tmpfs")+line(tmp+"/minibox-lesson-7/m", "tmpfs", "tmpfs"))
	env.TempDir = tmp
	objs, err := cleanup.Mounts.Find(env)
	require.NoError(t, err)
	require.Len(t, objs, 2)
	pid := strconv.Itoa(cmd.Process.Pid)
	for _, o := range objs {
		if o.Name == work+"/m" {
			assert.Contains(t, o.Busy, "process "+pid+" works in "+lessonDir)
			assert.Contains(t, o.Busy, "kill "+pid)
		} else {
			assert.Empty(t, o.Busy, "another lesson's directory: nobody works there")
		}
	}
	rep, err := cleanup.Clean(env, true)
	require.NoError(t, err)
	assert.Len(t, rep.Busy, 1)
	assert.Len(t, rep.Removed, 1)
}

func TestRemoveRefusesCgroupsOutsideMinibox(t *testing.T) {
	for _, name := range []string{"/sys/fs/cgroup/pids/user.slice", "/sys/fs/cgroup/system.slice/x", "/sys/fs/cgroup/miniboxer/x"} {
		err := cleanup.Cgroups.Remove(cleanup.Object{Kind: "cgroup", Name: name})
		assert.ErrorContains(t, err, "not in a minibox/ sub-tree", name)
	}
	err := cleanup.CgroupParents.Remove(cleanup.Object{Kind: "cgroup parent", Name: "/sys/fs/cgroup/pids"})
	assert.ErrorContains(t, err, "not a minibox/ parent")
}

func TestRegistry(t *testing.T) {
	var names []string
	for _, k := range cleanup.Kinds {
		names = append(names, k.Name)
		assert.NotNil(t, k.Find, k.Name)
		assert.NotNil(t, k.Remove, k.Name)
	}
	// Groups before their parents, mounts first, before the directories
	// they may be in.
	// Network: a container's rules and veth before its lease, the lease
	// before the bridge whose use it tells, the bridge's rules before it.
	assert.Equal(t, []string{"mount", "container dir", "engine tmp dir", "build step dir", "layer tmp dir", "image tmp file", "runtime state",
		"container rule", "veth", "lease", "bridge rule", "bridge",
		"cgroup", "cgroup parent"}, names)
	k, ok := cleanup.KindNamed("cgroup parent")
	require.True(t, ok)
	assert.True(t, k.Shared, "stage 03 leaves the parent in place: no leak")
	k, _ = cleanup.KindNamed("cgroup")
	assert.False(t, k.Shared)
	_, ok = cleanup.KindNamed("nothing")
	assert.False(t, ok)

	assert.Equal(t, "cgroup /sys/fs/cgroup/minibox/abc", cleanup.Object{Kind: "cgroup", Name: "/sys/fs/cgroup/minibox/abc"}.String())
	assert.Equal(t, "mount /tmp/x (tmpfs minibox)", cleanup.Object{Kind: "mount", Name: "/tmp/x", Detail: "tmpfs minibox"}.String())
}

// names returns the names of objs.
func names(objs []cleanup.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Name)
	}
	return out
}

func TestCleanUnmountsALessonsLeftover(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.CheckLeaks(t)
	lessonDir, err := os.MkdirTemp("", "minibox-lesson-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(lessonDir) })
	// A space in the path: mountinfo shows it as \040.
	point := filepath.Join(lessonDir, "work", "demo root")
	require.NoError(t, os.MkdirAll(point, 0o755))
	require.NoError(t, unix.Mount("tmpfs", point, "tmpfs", 0, "size=1m"))
	require.NoError(t, unix.Mount("proc", filepath.Join(point), "proc", 0, ""), "a second one stacked on it")
	t.Cleanup(func() {
		_ = unix.Unmount(point, unix.MNT_DETACH)
		_ = unix.Unmount(point, unix.MNT_DETACH)
	})
	// Not minibox's: a tmpfs in a temporary directory of another name.
	other := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", other, "tmpfs", 0, "size=1m"))
	t.Cleanup(func() { _ = unix.Unmount(other, unix.MNT_DETACH) })

	env := cleanup.DefaultEnv("")
	env.DataRoots = nil // never the machine's own /var/lib/minibox
	rep, err := cleanup.Clean(env, true)
	require.NoError(t, err)
	assert.Equal(t, []string{point, point}, filterPrefix(names(rep.Removed), lessonDir), "dry run lists both")
	assert.True(t, isMountPoint(t, point), "a dry run removes nothing")

	rep, err = cleanup.Clean(env, false)
	require.NoError(t, err)
	assert.Equal(t, []string{point, point}, filterPrefix(names(rep.Removed), lessonDir))
	assert.Empty(t, rep.Failed)
	assert.False(t, isMountPoint(t, point), "both unmounted")
	assert.True(t, isMountPoint(t, other), "another's tmpfs is left alone")
	assert.NotContains(t, names(rep.Removed), other)

	rep, err = cleanup.Clean(env, false)
	require.NoError(t, err)
	assert.Empty(t, filterPrefix(names(rep.Removed), lessonDir), "the second run finds nothing")
}

func filterPrefix(list []string, prefix string) []string {
	var out []string
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

func isMountPoint(t *testing.T, dir string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	for _, m := range cleanup.ParseMountinfo(string(data)) {
		if m.Point == dir {
			return true
		}
	}
	return false
}

func TestCleanRemovesGroupsButNotBusyOnes(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.CheckLeaks(t)
	trees := cleanup.CgroupTrees("/sys/fs/cgroup")
	require.NotEmpty(t, trees)
	id := fmt.Sprintf("cleanup-test-%d", os.Getpid())
	var groups []string
	for _, tree := range trees {
		g := filepath.Join(tree, "minibox", id)
		require.NoError(t, os.MkdirAll(g, 0o755))
		groups = append(groups, g)
	}
	t.Cleanup(func() {
		for _, g := range groups {
			_ = os.Remove(g)
		}
	})

	// A process in the first group: a container still running.
	sleep := exec.Command("sleep", "30")
	require.NoError(t, sleep.Start())
	t.Cleanup(func() { _ = sleep.Process.Kill(); _ = sleep.Wait() })
	pid := strconv.Itoa(sleep.Process.Pid)
	require.NoError(t, os.WriteFile(filepath.Join(groups[0], "cgroup.procs"), []byte(pid), 0o644))

	env := cleanup.DefaultEnv("")
	env.DataRoots = nil // never the machine's own /var/lib/minibox
	rep, err := cleanup.Clean(env, false)
	require.NoError(t, err)
	assert.Contains(t, names(rep.Busy), groups[0])
	for _, o := range rep.Busy {
		if o.Name == groups[0] {
			assert.Contains(t, o.Busy, pid+" (sleep)")
			assert.Contains(t, o.Busy, "kill "+pid)
		}
	}
	assert.DirExists(t, groups[0], "a busy group is left alone")
	assert.True(t, alive(sleep.Process.Pid), "and its process is not killed")
	removed := names(rep.Removed)
	for _, g := range groups[1:] {
		assert.Contains(t, removed, g)
		assert.NoDirExists(t, g)
	}
	assert.DirExists(t, filepath.Dir(groups[0]), "the busy group's parent stays")
	assert.NotContains(t, removed, filepath.Dir(groups[0]))

	require.NoError(t, sleep.Process.Kill())
	_ = sleep.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rep, err = cleanup.Clean(env, false)
		require.NoError(t, err)
		if len(rep.Busy) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	assert.Contains(t, names(rep.Removed), groups[0])
	assert.NoDirExists(t, groups[0])
	removed = append(removed, names(rep.Removed)...)
	for _, tree := range trees {
		assert.NoDirExists(t, filepath.Join(tree, "minibox"), "the empty parents go last")
		assert.Contains(t, removed, filepath.Join(tree, "minibox"))
	}

	objs, err := cleanup.Find(env)
	require.NoError(t, err)
	for _, o := range objs {
		assert.NotEqual(t, "cgroup", o.Kind, "nothing left: %s", o)
	}
}

func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	rest := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(rest) > 0 && rest[0] != "Z"
}

// oneTree returns a cgroup tree of this host to make a test group in: the
// pids tree on v1 and hybrid hosts, the only one on v2.
func oneTree(t *testing.T) string {
	t.Helper()
	trees := cleanup.CgroupTrees(cleanup.CgroupRoot)
	require.NotEmpty(t, trees, "no cgroup tree under %s", cleanup.CgroupRoot)
	for _, tree := range trees {
		if filepath.Base(tree) == "pids" {
			return tree
		}
	}
	return trees[0]
}

// A container that is starting: its stage made the group and holds its
// cgroup.procs open (exec 3> …/cgroup.procs) for the container to join
// through, but the container has not joined yet, so the group is empty.
func TestCleanLeavesAGroupWhoseProcsIsOpen(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.CheckLeaks(t)
	parent := filepath.Join(oneTree(t), "minibox")
	group := filepath.Join(parent, fmt.Sprintf("cleanup-open-%d", os.Getpid()))
	require.NoError(t, os.MkdirAll(group, 0o755))
	t.Cleanup(func() { _ = os.Remove(group); _ = os.Remove(parent) })
	procs, err := os.OpenFile(filepath.Join(group, "cgroup.procs"), os.O_WRONLY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = procs.Close() })

	env := cleanup.DefaultEnv("")
	env.DataRoots = nil // never the machine's own /var/lib/minibox
	rep, err := cleanup.Clean(env, false)
	require.NoError(t, err)
	me := strconv.Itoa(os.Getpid())
	busy := map[string]string{}
	for _, o := range rep.Busy {
		busy[o.Name] = o.Busy
	}
	assert.Contains(t, busy[group], "process "+me+" (", "the holder of cgroup.procs is named")
	assert.Contains(t, busy[group], "has its cgroup.procs open")
	assert.Contains(t, busy[group], "kill "+me)
	assert.Contains(t, busy[parent], "has its cgroup.procs open", "the parent of a group in use is in use")
	assert.NotContains(t, names(rep.Removed), group)
	assert.NotContains(t, names(rep.Removed), parent)
	assert.Empty(t, rep.Failed, "busy, not a failed rmdir")
	assert.DirExists(t, group, "an empty group whose cgroup.procs is open is left alone")
	assert.DirExists(t, parent)

	require.NoError(t, procs.Close())
	rep, err = cleanup.Clean(env, false)
	require.NoError(t, err)
	assert.Contains(t, names(rep.Removed), group)
	assert.Contains(t, names(rep.Removed), parent)
	assert.NoDirExists(t, group)
	assert.NoDirExists(t, parent)
}
