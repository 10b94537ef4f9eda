package main

import (
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/engine/keeper"
	"github.com/minibox-lab/minibox/final/runtime"
	"github.com/minibox-lab/minibox/internal/rootfs"
	"github.com/minibox-lab/minibox/internal/testenv"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds minibox and its companions side by side, once.
func binaries(t *testing.T) (minibox, shim string) {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "minibox-shim-test-"); buildErr == nil {
			_, buildErr = testenv.BuildMinibox("", binDir)
		}
	})
	require.NoError(t, buildErr)
	return filepath.Join(binDir, "minibox"), filepath.Join(binDir, runtime.ShimName)
}

// No cgo (as make build): a start pays for no dynamic loader and no cgo
// runtime, whose threads and C library also cost each supervisor memory.
func TestBinariesAreStatic(t *testing.T) {
	minibox, shim := binaries(t)
	testenv.RequireStatic(t, minibox)
	testenv.RequireStatic(t, shim)
	testenv.RequireStatic(t, initBinary(t))
	testenv.RequireStatic(t, filepath.Join(filepath.Dir(minibox), keeper.Name))
}

// initBinary is the minibox-init that binaries built.
func initBinary(t *testing.T) string {
	minibox, _ := binaries(t)
	return filepath.Join(filepath.Dir(minibox), runtime.InitName)
}

// The init starts once per container, before the container's program:
// it links the runtime and nothing of the engine (the image store, the
// registry client, HTTP, compression), whose package inits took ~2 ms
// of each start.
func TestInitLinksOnlyTheRuntime(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../minibox-init").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, pkg := range strings.Fields(string(out)) {
		for _, heavy := range []string{"github.com/minibox-lab/minibox/final/engine", "github.com/minibox-lab/minibox/final/image",
			"github.com/minibox-lab/minibox/final/network", "net/http", "github.com/klauspost/compress", "github.com/opencontainers/go-digest"} {
			require.False(t, pkg == heavy || strings.HasPrefix(pkg, heavy+"/"),
				"minibox-init links %s: its init runs at every container start", pkg)
		}
	}
}

// A keeper lives as long as its container, with the heap its package inits
// made: it links package keeper and the standard library, nothing else of
// minibox (the engine, the runtime, the image store, the network) and no
// other module but golang.org/x/sys.
func TestKeeperLinksOnlyItsPackage(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../minibox-keeper").CombinedOutput()
	require.NoError(t, err, "%s", out)
	var linked []string
	for _, pkg := range strings.Fields(string(out)) {
		if strings.Contains(strings.SplitN(pkg, "/", 2)[0], ".") && !strings.HasPrefix(pkg, "golang.org/x/sys/") {
			linked = append(linked, pkg) // not the standard library
		}
	}
	require.Equal(t, []string{"github.com/minibox-lab/minibox/final/engine/keeper", "github.com/minibox-lab/minibox/cmd/minibox-keeper"}, linked)
}

// minibox-keeper is started by a supervisor only; by hand it says so.
func TestKeeperByHandSaysWhatItIs(t *testing.T) {
	minibox, _ := binaries(t)
	cmd := exec.Command(filepath.Join(filepath.Dir(minibox), keeper.Name))
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "%s", out)
	require.Equal(t, 2, exit.ExitCode())
	require.Contains(t, string(out), "it is not a command of its own")
}

// The point of the shim: none of the lesson renderer's start-up work.
func TestShimLinksNoLessonRenderer(t *testing.T) {
	_, shim := binaries(t)
	info, err := buildinfo.ReadFile(shim)
	require.NoError(t, err)
	for _, d := range info.Deps {
		for _, heavy := range []string{"glamour", "chroma", "goldmark", "cobra"} {
			require.NotContains(t, d.Path, heavy, "minibox-shim must link only the engine and the runtime")
		}
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NotContains(t, string(out), "minibox/internal/cli")
	require.NotContains(t, string(out), "minibox/internal/lesson")
}

// The shim starts twice for each container (supervisor, init), and every
// package it links runs its init each time: buildkit's Dockerfile parser
// and protobuf stay out (commit's -c is read by the CLI, final/engine
// only gets a function).
func TestShimLinksNoDockerfileParserNorProtobuf(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, pkg := range strings.Fields(string(out)) {
		for _, heavy := range []string{"github.com/moby/buildkit", "google.golang.org/protobuf", "github.com/gogo/protobuf"} {
			require.False(t, pkg == heavy || strings.HasPrefix(pkg, heavy+"/"),
				"minibox-shim links %s: its init runs at every container start", pkg)
		}
	}
}

// final/image's, final/engine's and final/runtime's inits stay near empty: their regular
// expressions compile on first use, never at the shim's start.
func TestShimStartCompilesNoNameRules(t *testing.T) {
	_, shim := binaries(t)
	cmd := exec.Command(shim)
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, _ := cmd.CombinedOutput() // no arguments: usage, exit status 2
	seen := map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		// init PKG @T ms, T ms clock, BYTES bytes, N allocs
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != "init" || f[8] != "bytes," {
			continue
		}
		n, err := strconv.Atoi(f[7])
		require.NoError(t, err, line)
		seen[f[1]] = n
	}
	require.NotEmpty(t, seen, "no inittrace lines in:\n%s", out)
	// A package without init work has no line: zero bytes.
	for _, pkg := range []string{"github.com/minibox-lab/minibox/final/image", "github.com/minibox-lab/minibox/final/engine", "github.com/minibox-lab/minibox/final/runtime"} {
		require.Less(t, seen[pkg], 8<<10, "%s allocates %d bytes at every shim start (a regexp.MustCompile at package level?)", pkg, seen[pkg])
	}
}

func TestSuperviseArgs(t *testing.T) {
	root, id, err := superviseArgs([]string{"--root", "/r", "abc"})
	require.NoError(t, err)
	require.Equal(t, []string{"/r", "abc"}, []string{root, id})
	root, id, err = superviseArgs([]string{"abc", "--root=/r"})
	require.NoError(t, err)
	require.Equal(t, []string{"/r", "abc"}, []string{root, id})
	_, _, err = superviseArgs([]string{"abc"})
	require.ErrorContains(t, err, "--root")
	_, _, err = superviseArgs([]string{"--root", "/r", "a", "b"})
	require.ErrorContains(t, err, `"b"`)
	_, _, err = superviseArgs([]string{"--root", "/r", "--wait-attach", "a"})
	require.ErrorContains(t, err, `"--wait-attach"`, "the word to wait for a client comes on descriptor 4 now")
	var stderr bytes.Buffer
	require.Equal(t, 2, run([]string{"lesson"}, &stderr))
	require.Contains(t, stderr.String(), "usage: minibox-shim")
}

// bundle writes a runc-style bundle of the busybox root file system.
func bundle(t *testing.T, args ...string) string {
	t.Helper()
	busybox, err := rootfs.FindStaticBusybox()
	testenv.Require(t, err == nil, fmt.Sprint(err))
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, rootfs.Build(filepath.Join(dir, "rootfs"), busybox))
	s := runtime.Spec()
	s.Process.Terminal = false
	s.Process.Args = args
	s.Root.Path = filepath.Join(dir, "rootfs")
	data, err := json.Marshal(s)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644))
	return dir
}

// containerState is `minibox runtime state ID`.
func containerState(t *testing.T, minibox, state, id string) specs.State {
	t.Helper()
	out, err := exec.Command(minibox, "runtime", "--root", state, "state", id).Output()
	require.NoError(t, err)
	var st specs.State
	require.NoError(t, json.Unmarshal(out, &st))
	return st
}

// runtimeCmd runs `minibox runtime --root STATE ARGS…`. Its output goes to
// a file, not a pipe: create hands its standard files to the init, which
// keeps them open until start, and a pipe would never reach EOF.
func runtimeCmd(t *testing.T, minibox, state string, args ...string) (string, error) {
	t.Helper()
	out, err := os.CreateTemp(t.TempDir(), "out")
	require.NoError(t, err)
	defer out.Close()
	cmd := exec.Command(minibox, append([]string{"runtime", "--root", state}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	data, _ := os.ReadFile(out.Name())
	return string(data), err
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return sha256.Sum256(data)
}

// CVE-2019-5736, the attack replayed against `minibox runtime`: while
// the container's init runs, a process takes an O_PATH handle on
// /proc/INIT/exe (what a process in the container sharing its PID
// namespace, or a `#!/proc/self/exe` program, can do); once the init has
// executed the container's program, nothing executes the host's
// minibox-init any more, and the handle is reopened for writing. That must
// fail, and the binary's bytes must be unchanged. Without selfexe.go's
// sealing the reopen succeeds on the host's binary (checked by building
// with it removed: the test then fails at "the host's binary").
func TestInitCannotOverwriteTheHostBinary(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.CheckLeaks(t)
	minibox, _ := binaries(t)
	host := initBinary(t)
	before := fileHash(t, host)
	b := bundle(t, "/bin/true")
	state := t.TempDir()
	id := "sealed-exe-test"
	out, err := runtimeCmd(t, minibox, state, "create", "--bundle", b, id)
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() { _ = exec.Command(minibox, "runtime", "--root", state, "delete", "--force", id).Run() })
	pid := containerState(t, minibox, state, id).Pid
	require.NotZero(t, pid)

	handle, err := os.OpenFile(fmt.Sprintf("/proc/%d/exe", pid), unix.O_PATH, 0)
	require.NoError(t, err)
	defer handle.Close()
	var got, want unix.Stat_t
	require.NoError(t, unix.Fstat(int(handle.Fd()), &got))
	require.NoError(t, unix.Stat(host, &want))
	require.Equal(t, want.Size, got.Size, "the init must be minibox-init (a sealed copy of it), not minibox or minibox-shim")
	require.False(t, got.Dev == want.Dev && got.Ino == want.Ino,
		"the container's init runs the host's binary itself (%s): CVE-2019-5736", host)

	out, err = runtimeCmd(t, minibox, state, "start", id)
	require.NoError(t, err, "%s", out)
	require.Eventually(t, func() bool {
		return containerState(t, minibox, state, id).Status == specs.StateStopped
	}, 10*time.Second, 20*time.Millisecond)

	w, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", handle.Fd()), os.O_WRONLY, 0)
	if err == nil { // only a sealed memfd opens; writing must still fail
		_, err = w.Write([]byte("pwned"))
		w.Close()
	}
	require.Error(t, err, "the init's binary could be written through /proc/PID/exe")
	require.True(t, os.IsPermission(err) || strings.Contains(err.Error(), "read-only file system"),
		"want EROFS (overlay) or EPERM (sealed memfd), got %v", err)
	require.Equal(t, before, fileHash(t, host), "the host's minibox-init changed")
	out, err = runtimeCmd(t, minibox, state, "delete", id)
	require.NoError(t, err, "%s", out)
}

// A shim and an init of another build are not used: minibox runs its own
// `runtime init` instead (slower, never wrong).
func TestShimOfAnotherBuildIsIgnored(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.CheckLeaks(t)
	minibox, _ := binaries(t)
	dir := t.TempDir()
	other := filepath.Join(dir, "minibox")
	data, err := os.ReadFile(minibox)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(other, data, 0o755))
	build := exec.Command("go", "build", "-ldflags=-X github.com/minibox-lab/minibox/final/runtime.SourceID=other",
		"-o", dir+"/", ".", "../minibox-init")
	build.Env = append(os.Environ(), testenv.StaticBuild) // only SourceID differs
	built, err := build.CombinedOutput()
	require.NoError(t, err, "%s", built)

	b := bundle(t, "/bin/true")
	state := t.TempDir()
	id := "other-shim-test"
	out, err := runtimeCmd(t, other, state, "create", "--bundle", b, id)
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() { _ = exec.Command(other, "runtime", "--root", state, "delete", "--force", id).Run() })
	pid := containerState(t, other, state, id).Pid
	var got, self unix.Stat_t
	require.NoError(t, unix.Stat(fmt.Sprintf("/proc/%d/exe", pid), &got))
	require.NoError(t, unix.Stat(other, &self))
	require.Equal(t, self.Size, got.Size, "a shim or an init of another build ran as the init")
	out, err = runtimeCmd(t, other, state, "delete", "--force", id)
	require.NoError(t, err, "%s", out)
}
