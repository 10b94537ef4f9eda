package rootfs_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/rootfs"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// staticBusybox returns the host's static busybox: a prerequisite (Debian
// package busybox-static), so missing it skips, or fails in CI.
func staticBusybox(t *testing.T) string {
	t.Helper()
	p, err := rootfs.FindStaticBusybox()
	if err != nil {
		testenv.Require(t, false, err.Error())
	}
	return p
}

// dynamicBusybox is a dynamically linked binary named busybox: a copy of
// /bin/ls.
func dynamicBusybox(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/bin/ls")
	require.NoError(t, err)
	static, err := rootfs.IsStatic("/bin/ls")
	require.NoError(t, err)
	require.False(t, static, "the test needs a dynamically linked /bin/ls")
	dir := t.TempDir()
	p := filepath.Join(dir, "busybox")
	require.NoError(t, os.WriteFile(p, data, 0o755))
	return p
}

// applets is what `busybox --list-full` lists, as Build should install it.
func applets(t *testing.T, busybox string) []string {
	t.Helper()
	out, err := exec.Command(busybox, "--list-full").Output()
	require.NoError(t, err)
	var list []string
	for _, a := range strings.Fields(string(out)) {
		if a != "linuxrc" && a != "bin/busybox" {
			list = append(list, a)
		}
	}
	require.NotEmpty(t, list)
	return list
}

func TestIsStatic(t *testing.T) {
	bb := staticBusybox(t)
	static, err := rootfs.IsStatic(bb)
	require.NoError(t, err)
	assert.True(t, static, "%s is static", bb)

	static, err = rootfs.IsStatic("/bin/ls")
	require.NoError(t, err)
	assert.False(t, static, "/bin/ls has a program interpreter")

	text := filepath.Join(t.TempDir(), "script")
	require.NoError(t, os.WriteFile(text, []byte("#!/bin/sh\necho hi\n"), 0o755))
	_, err = rootfs.IsStatic(text)
	require.Error(t, err, "a script is not an ELF binary")
	assert.Contains(t, err.Error(), "read ELF "+text)

	_, err = rootfs.IsStatic("/nonexistent/busybox")
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestFindStaticBusybox(t *testing.T) {
	bb := staticBusybox(t)
	assert.True(t, filepath.IsAbs(bb))
	static, err := rootfs.IsStatic(bb)
	require.NoError(t, err)
	assert.True(t, static)

	// A dynamic busybox first on PATH is passed over for a static one in
	// the usual places.
	dyn := dynamicBusybox(t)
	t.Setenv("PATH", filepath.Dir(dyn)+":"+os.Getenv("PATH"))
	p, err := exec.LookPath("busybox")
	require.NoError(t, err)
	require.Equal(t, dyn, p, "the dynamic busybox is first on PATH")
	got, err := rootfs.FindStaticBusybox()
	require.NoError(t, err)
	assert.NotEqual(t, dyn, got)
	static, err = rootfs.IsStatic(got)
	require.NoError(t, err)
	assert.True(t, static)
}

func TestErrNoStaticBusyboxNamesThePackage(t *testing.T) {
	assert.Contains(t, rootfs.ErrNoStaticBusybox.Error(), "apt-get install busybox-static")
}

func TestBuild(t *testing.T) {
	bb := staticBusybox(t)
	dir := filepath.Join(t.TempDir(), "rootfs")
	require.NoError(t, rootfs.Build(dir, bb))

	// bin/busybox: a regular, executable copy of the host's busybox.
	st, err := os.Lstat(filepath.Join(dir, "bin/busybox"))
	require.NoError(t, err)
	assert.True(t, st.Mode().IsRegular())
	assert.Equal(t, os.FileMode(0o755), st.Mode().Perm())
	want, err := os.ReadFile(bb)
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(dir, "bin/busybox"))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, got), "bin/busybox is a copy of %s", bb)

	// Every applet is a symlink to /bin/busybox, at its install path.
	for _, a := range applets(t, bb) {
		target, err := os.Readlink(filepath.Join(dir, a))
		if assert.NoError(t, err, a) {
			assert.Equal(t, "/bin/busybox", target, a)
		}
	}
	for _, a := range []string{"bin/sh", "bin/ls"} {
		target, err := os.Readlink(filepath.Join(dir, a))
		require.NoError(t, err, a)
		assert.Equal(t, "/bin/busybox", target, a)
	}
	_, err = os.Lstat(filepath.Join(dir, "linuxrc"))
	assert.ErrorIs(t, err, os.ErrNotExist, "no linuxrc at the top of /")

	for _, d := range []string{"proc", "sys", "dev", "etc", "root", "usr/bin", "usr/sbin", "sbin"} {
		assert.DirExists(t, filepath.Join(dir, d))
	}
	for _, d := range []string{"tmp", "var/tmp"} {
		st, err := os.Stat(filepath.Join(dir, d))
		require.NoError(t, err)
		assert.True(t, st.IsDir())
		assert.Equal(t, os.FileMode(0o777), st.Mode().Perm(), d)
		assert.NotZero(t, st.Mode()&os.ModeSticky, "%s has the sticky bit", d)
	}

	passwd, err := os.ReadFile(filepath.Join(dir, "etc/passwd"))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(passwd), "root:x:0:0:root:/root:/bin/sh\n"), string(passwd))
	assert.Contains(t, string(passwd), "\nnobody:x:65534:")
	group, err := os.ReadFile(filepath.Join(dir, "etc/group"))
	require.NoError(t, err)
	assert.Contains(t, string(group), "root:x:0:")
	hostname, err := os.ReadFile(filepath.Join(dir, "etc/hostname"))
	require.NoError(t, err)
	assert.Equal(t, "minibox\n", string(hostname))
	for _, f := range []string{"etc/passwd", "etc/group", "etc/hostname"} {
		st, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o644), st.Mode().Perm(), f)
	}

	assertNoTempFiles(t, dir)
	assert.True(t, rootfs.IsBuilt(dir))
}

// assertNoTempFiles checks that no .minibox-* temporary file was left.
func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		require.NoError(t, err)
		assert.False(t, strings.HasPrefix(d.Name(), ".minibox-"), "temporary file left: %s", p)
		return nil
	})
	require.NoError(t, err)
}

type fileID struct {
	ino   uint64
	mtime int64 // ns
	mode  os.FileMode
}

func identify(t *testing.T, p string) fileID {
	t.Helper()
	st, err := os.Lstat(p)
	require.NoError(t, err)
	sys := st.Sys().(*syscall.Stat_t)
	return fileID{ino: sys.Ino, mtime: st.ModTime().UnixNano(), mode: st.Mode()}
}

func TestBuildIsIdempotent(t *testing.T) {
	bb := staticBusybox(t)
	dir := filepath.Join(t.TempDir(), "rootfs")
	require.NoError(t, rootfs.Build(dir, bb))

	watched := []string{"bin/busybox", "bin/sh", "bin/ls", "usr/bin/env", "etc/passwd", "etc/hostname", "tmp"}
	before := map[string]fileID{}
	for _, p := range watched {
		before[p] = identify(t, filepath.Join(dir, p))
	}
	require.NoError(t, rootfs.Build(dir, bb))
	for _, p := range watched {
		assert.Equal(t, before[p], identify(t, filepath.Join(dir, p)), "%s changed on the second build", p)
	}
	assertNoTempFiles(t, dir)
}

func TestBuildRepairs(t *testing.T) {
	bb := staticBusybox(t)
	dir := filepath.Join(t.TempDir(), "rootfs")
	require.NoError(t, rootfs.Build(dir, bb))

	// A student breaks the rootfs in a few ways…
	require.NoError(t, os.Remove(filepath.Join(dir, "bin/ls")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bin/ls"), []byte("not busybox"), 0o755))
	require.NoError(t, os.Remove(filepath.Join(dir, "bin/cat")))
	require.NoError(t, os.Symlink("/bin/true", filepath.Join(dir, "bin/cat")))
	require.NoError(t, os.Remove(filepath.Join(dir, "bin/sh")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("nobody:x:65534:65534::/:/bin/false\n"), 0o600))
	require.NoError(t, os.Chmod(filepath.Join(dir, "tmp"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bin/busybox"), []byte("truncated"), 0o644))

	// …and building again puts it back.
	require.NoError(t, rootfs.Build(dir, bb))
	for _, a := range []string{"bin/ls", "bin/cat", "bin/sh"} {
		target, err := os.Readlink(filepath.Join(dir, a))
		require.NoError(t, err, a)
		assert.Equal(t, "/bin/busybox", target, a)
	}
	passwd, err := os.ReadFile(filepath.Join(dir, "etc/passwd"))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(passwd), "root:x:0:0:"))
	st, err := os.Stat(filepath.Join(dir, "etc/passwd"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), st.Mode().Perm())
	st, err = os.Stat(filepath.Join(dir, "tmp"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o777)|os.ModeSticky|os.ModeDir, st.Mode())
	static, err := rootfs.IsStatic(filepath.Join(dir, "bin/busybox"))
	require.NoError(t, err)
	assert.True(t, static)
	st, err = os.Stat(filepath.Join(dir, "bin/busybox"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), st.Mode().Perm())
	assertNoTempFiles(t, dir)
}

func TestBuildRefusesDynamicBusybox(t *testing.T) {
	dyn := dynamicBusybox(t)
	dir := filepath.Join(t.TempDir(), "rootfs")
	err := rootfs.Build(dir, dyn)
	require.Error(t, err)
	assert.True(t, errors.Is(err, rootfs.ErrNoStaticBusybox))
	assert.Contains(t, err.Error(), dyn+" is dynamically linked")
	assert.Contains(t, err.Error(), "busybox-static")
	_, err = os.Lstat(dir)
	assert.ErrorIs(t, err, os.ErrNotExist, "the binary is checked before anything is made")
	assert.False(t, rootfs.IsBuilt(dir))
}

func TestBuildRefusesNonELF(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "busybox")
	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755))
	dir := filepath.Join(t.TempDir(), "rootfs")
	err := rootfs.Build(dir, fake)
	require.Error(t, err)
	assert.Contains(t, err.Error(), fake)
	assert.NoDirExists(t, dir)
}

// TestBuiltRootfsRuns chroots into a built rootfs: the shell and applets
// work with nothing from the host.
func TestBuiltRootfsRuns(t *testing.T) {
	testenv.RequireRoot(t)
	bb := staticBusybox(t)
	testenv.CheckLeaks(t)
	dir := filepath.Join(t.TempDir(), "rootfs")
	require.NoError(t, rootfs.Build(dir, bb))

	cmd := exec.Command("/bin/sh", "-c", "cat /etc/hostname; grep ^root: /etc/passwd; ls -d /proc /tmp; id -u")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: dir}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin"}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Equal(t, "minibox\nroot:x:0:0:root:/root:/bin/sh\n/proc\n/tmp\n0\n", string(out))
}

func TestDir(t *testing.T) {
	t.Setenv("MINIBOX_ROOTFS", "/from/env")
	assert.Equal(t, "/from/flag", rootfs.Dir("/from/flag"), "the flag wins")
	assert.Equal(t, "/from/env", rootfs.Dir(""), "then $MINIBOX_ROOTFS")

	t.Setenv("MINIBOX_ROOTFS", "")
	assert.Equal(t, "/from/flag", rootfs.Dir("/from/flag"))
	assert.Equal(t, rootfs.DefaultDir, rootfs.Dir(""), "then the default")
	assert.Equal(t, "/var/lib/minibox/rootfs", rootfs.DefaultDir)
}

func TestIsBuilt(t *testing.T) {
	bb := staticBusybox(t)
	dir := filepath.Join(t.TempDir(), "rootfs")
	assert.False(t, rootfs.IsBuilt(dir), "missing directory")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	assert.False(t, rootfs.IsBuilt(dir), "empty directory")

	require.NoError(t, rootfs.Build(dir, bb))
	assert.True(t, rootfs.IsBuilt(dir))

	for _, p := range []string{"bin/busybox", "bin/sh", "etc/passwd"} {
		t.Run("without "+p, func(t *testing.T) {
			d := filepath.Join(t.TempDir(), "rootfs")
			require.NoError(t, rootfs.Build(d, bb))
			require.NoError(t, os.Remove(filepath.Join(d, p)))
			assert.False(t, rootfs.IsBuilt(d))
		})
	}
}

// TestIsBuiltJudgesTheRootfsNotTheHost: the applet symlinks are absolute,
// meant for inside the rootfs. On a host whose busybox is not at
// /bin/busybox (Fedora's is /usr/sbin/busybox) they dangle when read from
// outside, and the rootfs is still built. The rootfs here links bin/sh to a
// path that exists only inside it.
func TestIsBuiltJudgesTheRootfsNotTheHost(t *testing.T) {
	const inside = "/minibox-rootfs-test-only/busybox"
	_, err := os.Lstat(inside)
	require.ErrorIs(t, err, os.ErrNotExist, "the host must not have %s", inside)

	dir := t.TempDir()
	for _, p := range []string{"bin/busybox", "etc/passwd", strings.TrimPrefix(inside, "/")} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, p), []byte("x"), 0o755))
	}
	require.NoError(t, os.Symlink(inside, filepath.Join(dir, "bin/sh")))
	assert.True(t, rootfs.IsBuilt(dir))
}

func TestDirFromDataRoot(t *testing.T) {
	t.Setenv("MINIBOX_ROOTFS", "")
	t.Setenv("MINIBOX_ROOT", "/srv/minibox")
	assert.Equal(t, "/srv/minibox/rootfs", rootfs.Dir(""))
	t.Setenv("MINIBOX_ROOTFS", "/elsewhere")
	assert.Equal(t, "/elsewhere", rootfs.Dir(""), "$MINIBOX_ROOTFS is more specific")
}

// A rootfs whose bin/ was replaced by a symlink (from inside a container)
// is refused: rebuilding through it would change the host's files.
func TestBuildRefusesSymlinkedDirectories(t *testing.T) {
	busybox, err := rootfs.FindStaticBusybox()
	testenv.Require(t, err == nil, "needs a static busybox (apt-get install busybox-static)")
	dir := t.TempDir()
	hostDir := t.TempDir()
	require.NoError(t, os.Symlink(hostDir, filepath.Join(dir, "usr")))
	err = rootfs.Build(dir, busybox)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "usr is not a plain directory")
	entries, _ := os.ReadDir(hostDir)
	assert.Empty(t, entries, "nothing written through the symlink")
}
