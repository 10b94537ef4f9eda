package runtime

// Lookups inside a root: openat2(2) and the openat(2) walk that replaces
// it on older kernels must agree, and neither may leave the root. Plain
// files in a temporary directory: no mounts, no lock needed.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/internal/testenv"
)

// hostileRoot is a root full of symlinks that point out of it, and a
// directory outside it that must never be reached.
func hostileRoot(t *testing.T) (root int, rootPath, outside string) {
	t.Helper()
	base := t.TempDir()
	rootPath, outside = filepath.Join(base, "root"), filepath.Join(base, "outside")
	// rootPath+outside: where the symlinks to outside lead, inside.
	for _, d := range []string{rootPath + "/etc", rootPath + "/var", rootPath + outside, outside + "/secret"} {
		require.NoError(t, os.MkdirAll(d, 0o755))
	}
	links := map[string]string{
		"etc/abs":      outside,                          // absolute: the root's /…/outside
		"etc/rel":      "../../../../../../.." + outside, // more ".." than directories
		"etc/dot":      "..",
		"var/run":      "/run",          // dangling inside the root
		"etc/loop":     "loop",          // a symlink to itself
		"etc/magic":    "/proc/self/fd", // a magic link's name, not the magic link
		"etc/viadot":   "dot/etc/dot/var",
		"etc/file-dir": "/etc/passwd/x",
	}
	for name, target := range links {
		require.NoError(t, os.Symlink(target, filepath.Join(rootPath, name)))
	}
	require.NoError(t, os.WriteFile(filepath.Join(rootPath, "etc/passwd"), nil, 0o644))
	fd, err := unix.Open(rootPath, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	return fd, rootPath, outside
}

// where is the kernel's name for fd's file.
func where(t *testing.T, fd int) string {
	t.Helper()
	p, err := os.Readlink(fdPath(fd))
	require.NoError(t, err)
	unix.Close(fd)
	return p
}

func TestLookupsStayInRoot(t *testing.T) {
	root, rootPath, outside := hostileRoot(t)
	for path, want := range map[string]string{
		"/etc/abs":          rootPath + outside,
		"/etc/abs/secret":   "", // does not exist inside the root
		"/etc/rel":          rootPath + outside,
		"/etc/dot/../../..": rootPath,
		"/etc/viadot":       rootPath + "/var",
		"/etc/loop":         "",
		"/etc/file-dir":     "",
		"/../../etc":        rootPath + "/etc",
	} {
		for name, open := range map[string]func(int, string) (int, error){
			"openat2": openInRoot,
			"walk":    func(r int, p string) (int, error) { return walkInRoot(r, p, createNothing) },
		} {
			fd, err := open(root, path)
			if want == "" {
				assert.Error(t, err, "%s %s", name, path)
				if err == nil {
					unix.Close(fd)
				}
				continue
			}
			if assert.NoError(t, err, "%s %s", name, path) {
				assert.Equal(t, want, where(t, fd), "%s %s", name, path)
			}
		}
	}
	_, err := walkInRoot(root, "/etc/loop", createNothing)
	assert.ErrorIs(t, err, unix.ELOOP)
	_, err = walkInRoot(root, "/etc/file-dir", createNothing)
	assert.ErrorIs(t, err, unix.ENOTDIR)
}

// Creating through symlinks creates inside the root: a dangling symlink
// is followed (inside), one pointing out of the root lands inside it.
func TestCreateInRoot(t *testing.T) {
	root, rootPath, outside := hostileRoot(t)
	for _, tc := range []struct {
		path, want string
		dir        bool
	}{
		{"/etc/abs/new/dir", rootPath + outside + "/new/dir", true},
		{"/etc/rel/new-file", rootPath + outside + "/new-file", false},
		{"/var/run/lock", rootPath + "/run/lock", true},
		{"/etc/magic/9", rootPath + "/proc/self/fd/9", false},
	} {
		fd, err := openOrCreateInRoot(root, tc.path, tc.dir)
		require.NoError(t, err, tc.path)
		var st unix.Stat_t
		require.NoError(t, unix.Fstat(fd, &st))
		assert.Equal(t, tc.dir, st.Mode&unix.S_IFMT == unix.S_IFDIR, tc.path)
		assert.Equal(t, tc.want, where(t, fd), tc.path)
	}
	entries, err := os.ReadDir(outside)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, "secret", entries[0].Name(), "nothing made outside the root")
	assert.False(t, strings.HasPrefix(rootPath, outside))
}

// The fallbacks for kernels without the new mount API (mount(2) through
// /proc/self/fd) work too: bind by descriptor, a read-only bind of a path
// onto itself, a read-only tmpfs. In a mount namespace of a thread of our
// own, thrown away afterwards.
func TestLegacyMountsByFd(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.CheckLeaks(t)
	dir := t.TempDir()
	for _, d := range []string{"src", "dst", "ro", "masked"} {
		require.NoError(t, os.Mkdir(filepath.Join(dir, d), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "src/file"), nil, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "masked/file"), nil, 0o644))
	var err error
	onDisposableThread(func() { err = legacyMounts(dir) })
	require.NoError(t, err)
}

func legacyMounts(dir string) error {
	// unshare(2): a mount namespace for this thread alone.
	if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	fds := map[string]int{}
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, name := range []string{"src", "dst", "ro", "masked", "/"} {
		fd, err := openPath(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		fds[name] = fd
	}
	src, dst, ro, masked, root := fds["src"], fds["dst"], fds["ro"], fds["masked"], fds["/"]
	if err := bindFdLegacy(src, dst, false); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "dst/file")); err != nil {
		return fmt.Errorf("the bind by descriptor is not there: %w", err)
	}
	if err := readonlyPathLegacy(root, "/ro", ro, false); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ro/f"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		return fmt.Errorf("write to the read-only path: %v, want EROFS", err)
	}
	if err := mountOnFd("tmpfs", masked, "tmpfs", unix.MS_RDONLY, ""); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "masked/file")); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("the masked directory still shows its file: %v", err)
	}
	return nil
}
