package stages_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/stages"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// testUser is a throw-away account standing in for the student who runs
// sudo: its home is a fresh directory, both removed when the test ends.
type testUser struct {
	name     string
	uid, gid int
	home     string
}

func newTestUser(t *testing.T) testUser {
	t.Helper()
	testenv.RequireRoot(t)
	_, err := exec.LookPath("useradd")
	testenv.Require(t, err == nil, "useradd (Debian package passwd) makes the test's throw-away user")

	var b [4]byte
	_, err = rand.Read(b[:])
	require.NoError(t, err)
	name := "mbtest" + hex.EncodeToString(b[:])
	home, err := os.MkdirTemp("", "minibox-home-")
	require.NoError(t, err)
	// Registered before useradd, so a failure half-way still cleans up;
	// cleanups run last-registered first: the account goes, then its home.
	t.Cleanup(func() { os.RemoveAll(home) })
	out, err := exec.Command("useradd", "--no-create-home", "--home-dir", home,
		"--shell", "/usr/sbin/nologin", "--user-group", name).CombinedOutput()
	require.NoError(t, err, "useradd: %s", out)
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	require.NoError(t, err)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	require.NoError(t, os.Chmod(home, 0o755))
	require.NoError(t, os.Chown(home, uid, gid))
	return testUser{name: name, uid: uid, gid: gid, home: home}
}

// actAsSudo makes this (root) process look like `sudo` run by u.
func (u testUser) actAsSudo(t *testing.T) {
	t.Setenv("SUDO_UID", strconv.Itoa(u.uid))
	t.Setenv("SUDO_GID", strconv.Itoa(u.gid))
	t.Setenv("SUDO_USER", u.name)
	// As sudo's env_reset leaves it: root's HOME, no Go settings of root's.
	t.Setenv("HOME", "/root")
	for _, v := range []string{"GOCACHE", "GOMODCACHE", "GOPATH", "XDG_CACHE_HOME", "XDG_CONFIG_HOME"} {
		unsetenv(t, v)
	}
}

func unsetenv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "") // restores the old value at the end
	require.NoError(t, os.Unsetenv(name))
}

// copyTree copies the files of src (not .git, not bin) to a new directory
// readable by everyone and owned by uid:gid, as a student's checkout is.
func copyTree(t *testing.T, src string, uid, gid int) string {
	t.Helper()
	dst, err := os.MkdirTemp("", "minibox-src-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dst) })
	require.NoError(t, os.Chmod(dst, 0o755))
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() && (rel == ".git" || rel == "bin") {
			return filepath.SkipDir
		}
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			if err := os.MkdirAll(to, 0o755); err != nil {
				return err
			}
		case d.Type().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if err := os.WriteFile(to, data, 0o644); err != nil {
				return err
			}
		default:
			return nil // symlinks and the like: a checkout has none that matter
		}
		return os.Lchown(to, uid, gid)
	})
	require.NoError(t, err)
	return dst
}

// rootOwned lists what under dir belongs to root.
func rootOwned(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Sys().(*syscall.Stat_t).Uid == 0 {
			found = append(found, path)
		}
		return nil
	})
	require.NoError(t, err)
	return found
}

// fileProxy is a copy of root's module download cache that any user can
// read, served as GOPROXY=file://…: the warm-up needs no network.
func fileProxy(t *testing.T) string {
	t.Helper()
	goTool, err := stages.GoTool()
	require.NoError(t, err)
	out, err := exec.Command(goTool, "env", "GOMODCACHE").Output()
	require.NoError(t, err)
	cache := filepath.Join(strings.TrimSpace(string(out)), "cache", "download")
	dst := copyTree(t, cache, 0, 0)
	return "file://" + dst
}

func ownerOf(t *testing.T, path string) int {
	t.Helper()
	info, err := os.Stat(path)
	require.NoError(t, err)
	return int(info.Sys().(*syscall.Stat_t).Uid)
}

// runMake runs make TARGET in dir and returns its output.
func runMake(t *testing.T, dir, target string) (string, error) {
	t.Helper()
	cmd := exec.Command("make", "--no-print-directory", target)
	cmd.Dir = dir
	// Not the flags of a make test that may be running this test.
	cmd.Env = append(os.Environ(), "MAKEFLAGS=", "MAKELEVEL=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// After one online sudo make tour, the stage programs (sudo minibox lesson
// N) and bin/minibox (sudo make tour) build with the module proxy off, as
// the student, from the student's own caches, and lesson 2 runs; nothing of
// root's lands in their home, their checkout or the built programs; and
// make check-owner catches a root-owned file in the checkout. A kernel test
// (lesson 2 makes namespaces and mounts): run it under the shared lock.
func TestSudoBuildsAsTheInvokingUser(t *testing.T) {
	u := newTestUser(t)
	_, err := exec.LookPath("make")
	testenv.Require(t, err == nil, "make runs the README's commands")
	repo, err := stages.FindSource(".")
	require.NoError(t, err)
	src := copyTree(t, repo, u.uid, u.gid)
	list, err := stages.List(src)
	require.NoError(t, err)
	require.NotEmpty(t, list)
	proxy := fileProxy(t)
	// A bin/ that an older minibox's sudo make tour left root's.
	require.NoError(t, os.Mkdir(filepath.Join(src, "bin"), 0o755))

	u.actAsSudo(t)
	t.Setenv("MINIBOX_SRC", src)
	t.Setenv("GOTOOLCHAIN", "local")
	// -mod=mod: the go command loads the whole module graph, so every
	// go.mod it needs must be in the user's cache.
	t.Setenv("GOFLAGS", "-mod=mod")
	t.Setenv("GOSUMDB", "off") // the file proxy's modules are checked against go.sum

	// Online (sudo make tour): the user's caches fill up.
	t.Setenv("GOPROXY", proxy)
	out, err := runMake(t, src, "build")
	require.NoError(t, err, out)
	for _, bin := range []string{"minibox", "minibox-shim", "minibox-init", "minibox-lessons"} {
		testenv.RequireStatic(t, filepath.Join(src, "bin", bin))
	}
	var log bytes.Buffer
	require.NoError(t, stages.Build(context.Background(), src, t.TempDir(), list, &log))
	assert.NotContains(t, log.String(), "building as root")
	assert.DirExists(t, filepath.Join(u.home, "go", "pkg", "mod", "cache", "download"), "the user's module cache")
	assert.DirExists(t, filepath.Join(u.home, ".cache", "go-build"), "the user's build cache")

	// Offline (sudo minibox lesson N): the output directory is like a
	// lesson's, inside root's private temporary directory, not created yet.
	t.Setenv("GOPROXY", "off")
	outDir := filepath.Join(t.TempDir(), "bin")
	log.Reset()
	require.NoError(t, stages.Build(context.Background(), src, outDir, list, &log))
	assert.NotContains(t, log.String(), "building as root")
	for _, s := range list {
		bin := filepath.Join(outDir, s.Binary())
		require.FileExists(t, bin)
		// Built by the user in its staging directory, then copied by root
		// out of it (never trusting a path the user could swap): root's.
		assert.Equal(t, 0, ownerOf(t, bin), "%s: root's copy of the user's build", s.Binary())
	}
	// Offline sudo make tour again.
	require.NoError(t, os.Remove(filepath.Join(src, "bin", "minibox")))
	out, err = runMake(t, src, "build")
	require.NoError(t, err, out)
	assert.Equal(t, u.uid, ownerOf(t, filepath.Join(src, "bin", "minibox")))

	// Offline sudo bin/minibox lesson 2: the classroom, end to end.
	lesson := exec.Command(filepath.Join(src, "bin", "minibox"), "lesson", "2", "--yes", "--check", "--lang", "en")
	lesson.Dir = src
	out2, err := lesson.CombinedOutput()
	require.NoError(t, err, "offline sudo minibox lesson 2:\n%s", out2)
	assert.Contains(t, string(out2), "building stage02 from 02-namespaces")
	assert.NotContains(t, string(out2), "building as root")

	assert.Empty(t, rootOwned(t, u.home), "root wrote into the user's home (Go caches)")
	assert.Empty(t, rootOwned(t, src), "root-owned files in the user's checkout")
	leftovers, err := filepath.Glob(filepath.Join(os.TempDir(), "minibox-build-*"))
	require.NoError(t, err)
	for _, d := range leftovers {
		assert.NotEqual(t, u.uid, ownerOf(t, d), "Build left its staging directory %s", d)
	}

	out, err = runMake(t, src, "check-owner")
	require.NoError(t, err, out)
	stray := filepath.Join(src, "internal", "stray.txt")
	write(t, stray, "written by root\n")
	out, err = runMake(t, src, "check-owner")
	require.Error(t, err, "make check-owner must fail on a root-owned file")
	assert.Contains(t, out, "root-owned files in the checkout")
	assert.Contains(t, out, "./internal/stray.txt")
}

// A source tree the invoking user cannot read (a test's copy in root's
// private temporary directory) is built as root, as before, and the log
// says why.
func TestBuildUnderSudoFallsBackToRoot(t *testing.T) {
	u := newTestUser(t)
	root, _ := tree(t, goMod) // t.TempDir: mode 0700, root's
	write(t, filepath.Join(root, "01-bye", "main.go"), "package main\n\nfunc main() { println(\"bye\") }\n")
	list, err := stages.List(root)
	require.NoError(t, err)
	u.actAsSudo(t)

	out := t.TempDir()
	var log bytes.Buffer
	require.NoError(t, stages.Build(context.Background(), root, out, list, &log))
	assert.Contains(t, log.String(), "note: building as root: "+u.name+" cannot read ")
	assert.Equal(t, 0, ownerOf(t, filepath.Join(out, "stage01")))
}

// make unit runs go test ./... as a normal user: as the invoking user
// under sudo, without MINIBOX_REQUIRE_ROOT (the kernel tests skip); as root
// itself it refuses.
func TestMakeUnitRunsAsANormalUser(t *testing.T) {
	u := newTestUser(t)
	_, err := exec.LookPath("make")
	testenv.Require(t, err == nil, "make runs the README's commands")
	repo, err := stages.FindSource(".")
	require.NoError(t, err)

	// A module of one test that fails if it runs as root or with
	// MINIBOX_REQUIRE_ROOT, next to minibox's Makefile and its helper.
	dir, err := os.MkdirTemp("", "minibox-unit-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	for _, f := range []string{"Makefile", "scripts/as-invoking-user.sh"} {
		write(t, filepath.Join(dir, f), mustRead(t, filepath.Join(repo, f)))
	}
	write(t, filepath.Join(dir, "go.mod"), "module example.com/unit\n\ngo 1.22\n")
	write(t, filepath.Join(dir, "unit_test.go"), `package unit

import (
	"os"
	"testing"
)

func TestNormalUser(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Fatal("make unit ran the tests as root")
	}
	if v, ok := os.LookupEnv("MINIBOX_REQUIRE_ROOT"); ok {
		t.Fatalf("MINIBOX_REQUIRE_ROOT=%s would fail the kernel tests instead of skipping them", v)
	}
}
`)
	require.NoError(t, filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, u.uid, u.gid)
	}))

	u.actAsSudo(t)
	t.Setenv("GOTOOLCHAIN", "local")
	t.Setenv("GOFLAGS", "")
	t.Setenv("MINIBOX_REQUIRE_ROOT", "1") // as .ci/run sets it
	out, err := runMake(t, dir, "unit")
	require.NoError(t, err, out)
	assert.Contains(t, out, "ok  \texample.com/unit")

	unsetenv(t, "SUDO_UID")
	out, err = runMake(t, dir, "unit")
	require.Error(t, err, "as root itself, make unit refuses")
	assert.Contains(t, out, "make unit runs the tests as a normal user")
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(data)
}
