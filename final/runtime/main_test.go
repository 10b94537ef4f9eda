package runtime_test

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/runtime"
	"github.com/minibox-lab/minibox/internal/rootfs"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// sharedRootfs is one busybox rootfs for the package's bundles (built once:
// containers get it read-only or write only to their own tmpfs mounts).
var sharedRootfs string

func TestMain(m *testing.M) {
	// The runtime re-executes this test binary as the container's init.
	if runtime.IsInit() {
		runtime.Init()
	}
	code := m.Run()
	if sharedRootfs != "" {
		os.RemoveAll(filepath.Dir(sharedRootfs))
	}
	os.Exit(code)
}

// kernelTest is the start of every test that makes containers.
func kernelTest(t *testing.T) *runtime.Runtime {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.CheckLeaks(t)
	if sharedRootfs == "" {
		busybox, err := rootfs.FindStaticBusybox()
		testenv.Require(t, err == nil, fmt.Sprint(err))
		dir, err := os.MkdirTemp("", "minibox-runtime-test-")
		require.NoError(t, err)
		// o+x all the way: container root in a user namespace is another uid.
		require.NoError(t, os.Chmod(dir, 0o755))
		require.NoError(t, rootfs.Build(filepath.Join(dir, "rootfs"), busybox))
		sharedRootfs = filepath.Join(dir, "rootfs")
	}
	return &runtime.Runtime{Root: t.TempDir()}
}

// testSpec is runtime.Spec() for a command, without a terminal, in the
// shared rootfs, in a cgroup of our sub-tree.
func testSpec(args ...string) *specs.Spec {
	s := runtime.Spec()
	s.Process.Terminal = false
	s.Process.Args = args
	s.Root.Path = sharedRootfs
	return &s
}

// writeBundle writes config.json into a new bundle directory.
func writeBundle(t testing.TB, s *specs.Spec) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	data, err := json.Marshal(s)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644))
	return dir
}

// run creates, starts and waits for a container and deletes it; it
// returns what the process wrote (stdout and stderr) and its status.
func run(t *testing.T, r *runtime.Runtime, id string, s *specs.Spec) (string, int) {
	t.Helper()
	bundle := writeBundle(t, s)
	rd, wr, err := os.Pipe()
	require.NoError(t, err)
	defer rd.Close()
	pid, err := r.Create(id, bundle, runtime.IO{Stdout: wr, Stderr: wr}, "", "")
	wr.Close()
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Delete(id, true) })
	require.NoError(t, r.Start(id))
	out, _ := io.ReadAll(rd)
	code := wait(t, pid)
	require.NoError(t, r.Delete(id, false))
	return string(out), code
}

// wait reaps our child pid and returns its status as a shell reports it.
func wait(t *testing.T, pid int) int {
	t.Helper()
	var ws unix.WaitStatus
	_, err := unix.Wait4(pid, &ws, 0, nil)
	require.NoError(t, err)
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// waitStatus polls until the container has the status, or fails.
func waitStatus(t *testing.T, r *runtime.Runtime, id string, want specs.ContainerState) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := r.State(id)
		require.NoError(t, err)
		if st.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: status %s, want %s", id, st.Status, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lines are the output's lines that start with prefix, prefix removed.
func field(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			return strings.TrimSpace(v)
		}
	}
	return "<no " + prefix + ">"
}

func int64p(v int64) *int64 { return &v }
