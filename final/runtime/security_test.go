package runtime_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/runtime"
	"github.com/minibox-lab/minibox/internal/rootfs"
)

// privateRootfs is a busybox rootfs of the test's own, which it may fill
// with hostile symlinks.
func privateRootfs(t *testing.T) string {
	t.Helper()
	busybox, err := rootfs.FindStaticBusybox()
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "rootfs")
	require.NoError(t, rootfs.Build(dir, busybox))
	return dir
}

// assertHostUntouched checks that hostDir holds just what it held before
// (want, from listTree) and that nothing is mounted on or below it in the
// host's mount table.
func assertHostUntouched(t *testing.T, hostDir string, want []string) {
	t.Helper()
	assert.Equal(t, want, listTree(t, hostDir), "the runtime made something in the host directory %s", hostDir)
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	assert.NotContains(t, string(mountinfo), hostDir, "something is mounted on the host directory")
}

// listTree is every path below dir, relative to it.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var paths []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err == nil && p != dir {
			paths = append(paths, p[len(dir)+1:])
		}
		return err
	}))
	return paths
}

// containerMounts are the mount points of the container's init (pid) with
// the source and type given, from its mountinfo (proc(5)).
func containerMounts(t *testing.T, pid int, fstype, source string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/mountinfo")
	require.NoError(t, err)
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		left, right, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		l, r := strings.Fields(left), strings.Fields(right)
		if len(l) >= 5 && len(r) >= 2 && r[0] == fstype && r[1] == source {
			points = append(points, l[4])
		}
	}
	return points
}

// A rootfs whose symlinks point at the host (absolute, and relative with
// more ".." than there are directories) gets its mounts and devices inside
// itself: the symlinks are resolved as if the rootfs were "/".
func TestMountTargetSymlinkStaysInRoot(t *testing.T) {
	r := kernelTest(t)
	root := privateRootfs(t)
	hostDir := t.TempDir()
	require.NoError(t, os.Symlink(hostDir, filepath.Join(root, "etc/evil")))
	require.NoError(t, os.Symlink(strings.Repeat("../", 20)+hostDir[1:], filepath.Join(root, "etc/evil-rel")))
	source := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(source, "bound"), []byte("hello from the bind source\n"), 0o644))

	s := testSpec("sh", "-c", "echo x > /etc/evil/t/marker && cat /etc/evil-rel/b/bound && ls -l /etc/evil/null-dev")
	s.Root.Path = root
	s.Mounts = append(s.Mounts,
		specs.Mount{Destination: "/etc/evil/t", Type: "tmpfs", Source: "mb-evil-tmpfs"},
		specs.Mount{Destination: "/etc/evil-rel/b", Type: "bind", Source: source, Options: []string{"rbind", "ro"}},
	)
	s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: "/etc/evil/null-dev", Type: "c", Major: 1, Minor: 3})
	out, code := run(t, r, "evil-static", s)
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "hello from the bind source", "the bind mount is where the container looks")
	assert.Contains(t, out, "1,   3", "the device is where the container looks")
	assertHostUntouched(t, hostDir, nil)
	assert.DirExists(t, filepath.Join(root, hostDir, "t"), "the mount point was made inside the rootfs")
}

// swapper exchanges a and b (renameat2(2) RENAME_EXCHANGE) in a loop until
// stopped: an attacker flipping a directory of the rootfs and a symlink
// to the host while the runtime makes containers.
func swapper(t *testing.T, a, b string) (stop func()) {
	t.Helper()
	var done atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !done.Load() {
			_ = unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
		}
	}()
	return func() {
		done.Store(true)
		wg.Wait()
	}
}

// The symlink-exchange race (CVE-2021-30465): a rootfs directory on the
// way to mount targets is swapped for a symlink to the host, over and
// over, while 50 containers are made. Every mount must be in the
// container (where the directory or the symlink, resolved inside the
// rootfs, lead), never on the host. A mount made in the init's private
// mount namespace never shows in the host's table, so an escaped mount is
// seen by its absence from the container's; with the host directory
// empty, by what the runtime created there on its way.
func TestMountTargetSwapRace(t *testing.T) {
	r := kernelTest(t)
	for _, tc := range []struct {
		name string
		host []string // what the host directory holds
	}{
		{"host directory empty", nil},
		{"host directory with the mount points", []string{"b", "b/bind", "b/target"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := privateRootfs(t)
			hostDir := t.TempDir()
			for _, p := range tc.host {
				require.NoError(t, os.MkdirAll(filepath.Join(hostDir, p), 0o755))
			}
			require.NoError(t, os.MkdirAll(filepath.Join(root, "a/b/target"), 0o755))
			require.NoError(t, os.MkdirAll(filepath.Join(root, "a/b/bind"), 0o755))
			require.NoError(t, os.Symlink(hostDir, filepath.Join(root, "a-link")))
			source := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(source, "bound"), nil, 0o644))

			s := testSpec("true")
			s.Root.Path = root
			s.Mounts = append(s.Mounts,
				specs.Mount{Destination: "/a/b/target", Type: "tmpfs", Source: "mb-race-tmpfs"},
				specs.Mount{Destination: "/a/b/bind", Type: "bind", Source: source, Options: []string{"bind"}},
			)
			bundle := writeBundle(t, s)
			stop := swapper(t, filepath.Join(root, "a"), filepath.Join(root, "a-link"))
			defer stop()
			made := 0
			for i := 0; i < 50; i++ {
				id := fmt.Sprintf("race-%d", i)
				pid, err := r.Create(id, bundle, runtime.IO{}, "", "")
				if err != nil {
					// Refusing is allowed (an error naming the mount);
					// going to the host is not.
					assert.ErrorContains(t, err, "config.json: mounts[", "run %d", i)
					continue
				}
				made++
				tmpfs := containerMounts(t, pid, "tmpfs", "mb-race-tmpfs")
				binds := containerMounts(t, pid, mountType(t, source), mountSource(t, source))
				require.NoError(t, r.Delete(id, true))
				require.Len(t, tmpfs, 1, "run %d: the tmpfs is in the container, once (not on the host)", i)
				assert.True(t, strings.HasSuffix(tmpfs[0], "/b/target"), "run %d: tmpfs on %s", i, tmpfs[0])
				require.Len(t, filterSuffix(binds, "/b/bind"), 1, "run %d: the bind mount is in the container, once (not on the host): %v", i, binds)
				require.Equal(t, tc.host, listTree(t, hostDir), "run %d: the runtime made something in the host directory %s", i, hostDir)
			}
			stop()
			assertHostUntouched(t, hostDir, tc.host)
			assert.GreaterOrEqual(t, made, 45, "the race must not stop the runtime from working")
		})
	}
}

// mountType and mountSource are how path's file system shows in
// mountinfo: its type and source (a bind mount shows the file system it
// comes from).
func mountType(t *testing.T, path string) string {
	return mountinfoOf(t, path)[0]
}

func mountSource(t *testing.T, path string) string {
	return mountinfoOf(t, path)[1]
}

// mountinfoOf is the type and source of the mount path is on, from our
// own mountinfo (the longest mount point that is a prefix of path).
func mountinfoOf(t *testing.T, path string) [2]string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	var best string
	var found [2]string
	for _, line := range strings.Split(string(data), "\n") {
		left, right, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		l, r := strings.Fields(left), strings.Fields(right)
		if len(l) < 5 || len(r) < 2 {
			continue
		}
		mp := l[4]
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, found = mp, [2]string{r[0], r[1]}
		}
	}
	require.NotEmpty(t, best, "no mount holds %s", path)
	return found
}

// filterSuffix are the paths that end with suffix.
func filterSuffix(paths []string, suffix string) []string {
	var out []string
	for _, p := range paths {
		if strings.HasSuffix(p, suffix) {
			out = append(out, p)
		}
	}
	return out
}

// A bind source is resolved once: the runtime makes the mount point from
// what it opened and binds that, so a source flipped between a directory
// and a file meanwhile never makes a mismatched mount (runc: EINVAL/ENOTDIR,
// or worse, a mount of what the name points at by then).
func TestBindSourceResolvedOnce(t *testing.T) {
	r := kernelTest(t)
	root := privateRootfs(t)
	parent := t.TempDir()
	src, other := filepath.Join(parent, "src"), filepath.Join(parent, "other")
	require.NoError(t, os.Mkdir(src, 0o755))
	require.NoError(t, os.WriteFile(other, []byte("a file\n"), 0o644))
	stop := swapper(t, src, other)
	defer stop()
	for i := 0; i < 50; i++ {
		s := testSpec("true")
		s.Root.Path = root
		dest := fmt.Sprintf("/mnt/bind-%d", i)
		s.Mounts = append(s.Mounts, specs.Mount{Destination: dest, Type: "bind", Source: src, Options: []string{"bind"}})
		id := fmt.Sprintf("bindsrc-%d", i)
		pid, err := r.Create(id, writeBundle(t, s), runtime.IO{}, "", "")
		require.NoError(t, err, "run %d: a source swapped between a file and a directory", i)
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/mountinfo")
		require.NoError(t, err)
		require.NoError(t, r.Delete(id, true))
		assert.Contains(t, string(data), " "+dest+" ", "run %d: the bind mount is there", i)
	}
}

// process.cwd through a magic link (/proc/self/fd/4 is the init's
// descriptor of the state directory, on the host) must not put the
// process outside the root (CVE-2024-21626).
func TestCwdCannotLeaveRoot(t *testing.T) {
	r := kernelTest(t)
	for _, cwd := range []string{"/proc/self/fd/4", "/proc/self/fd/4/.."} {
		s := testSpec("sh", "-c", "pwd; ls ..")
		s.Process.Cwd = cwd
		_, err := r.Create("cwd", writeBundle(t, s), runtime.IO{}, "", "")
		if err == nil {
			_ = r.Delete("cwd", true)
		}
		assert.ErrorContains(t, err, "process.cwd", "cwd %s", cwd)
	}
}

// linux.sysctl is written only to a procfs: in a rootfs without a proc
// mount, /proc/sys/… is the image's own file, and writing it would let the
// image choose where the runtime writes (CVE-2025-52881's class).
func TestSysctlOnlyOnProcfs(t *testing.T) {
	r := kernelTest(t)
	root := privateRootfs(t)
	fake := filepath.Join(root, "proc/sys/net/ipv4/ip_forward")
	require.NoError(t, os.MkdirAll(filepath.Dir(fake), 0o755))
	require.NoError(t, os.WriteFile(fake, []byte("0\n"), 0o644))
	s := testSpec("true")
	s.Root.Path = root
	var mounts []specs.Mount
	for _, m := range s.Mounts {
		if m.Type != "proc" {
			mounts = append(mounts, m)
		}
	}
	s.Mounts = mounts
	s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1"}
	_, err := r.Create("sysctl", writeBundle(t, s), runtime.IO{}, "", "")
	if err == nil {
		_ = r.Delete("sysctl", true)
	}
	assert.ErrorContains(t, err, "linux.sysctl net.ipv4.ip_forward")
	assert.ErrorContains(t, err, "not on a procfs")
	data, err := os.ReadFile(fake)
	require.NoError(t, err)
	assert.Equal(t, "0\n", string(data), "the image's file is untouched")
}

// A rootfs whose /dev is a symlink to the host, with no tmpfs mounted on
// /dev: the devices and /dev's symlinks (fd, stdin…, ptmx) are made in the
// rootfs, where the symlink leads inside it, not in the host directory.
func TestDevSymlinkStaysInRoot(t *testing.T) {
	r := kernelTest(t)
	root := privateRootfs(t)
	hostDir := t.TempDir()
	require.NoError(t, os.RemoveAll(filepath.Join(root, "dev")))
	require.NoError(t, os.Symlink(hostDir, filepath.Join(root, "dev")))
	s := testSpec("sh", "-c", "ls -l /dev/null /dev/stdin")
	s.Root.Path = root
	var mounts []specs.Mount
	for _, m := range s.Mounts {
		if !strings.HasPrefix(m.Destination, "/dev") {
			mounts = append(mounts, m)
		}
	}
	s.Mounts = mounts
	out, code := run(t, r, "devlink", s)
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "1,   3", "the container has its /dev/null")
	assertHostUntouched(t, hostDir, nil)
	assert.FileExists(t, filepath.Join(root, hostDir, "null"), "made where /dev leads inside the rootfs")
}

// exec's working directory cannot lead out of the container either: a
// /proc/self/fd/N path is refused before the fork (the child would chdir
// while the runtime's descriptors are open).
func TestExecCwdCannotLeaveRoot(t *testing.T) {
	r := kernelTest(t)
	s := testSpec("sleep", "100")
	_, err := r.Create("execcwd", writeBundle(t, s), runtime.IO{}, "", "")
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Delete("execcwd", true) })
	require.NoError(t, r.Start("execcwd"))
	for _, cwd := range []string{"/proc/self/fd/3", "/proc/self/fd/3/..", "/proc/self/cwd/../.."} {
		proc, err := r.Exec("execcwd", specs.Process{Args: []string{"pwd"}, Cwd: cwd}, runtime.IO{})
		if err == nil {
			_, _ = proc.Wait()
		}
		assert.ErrorContains(t, err, "process.cwd", "cwd %s", cwd)
	}
	proc, err := r.Exec("execcwd", specs.Process{Args: []string{"true"}, Cwd: "/tmp"}, runtime.IO{})
	require.NoError(t, err, "an ordinary directory")
	_, _ = proc.Wait()
}
