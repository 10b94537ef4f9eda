package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/internal/rootfs"
	"github.com/minibox-lab/minibox/internal/stages"
	"github.com/minibox-lab/minibox/internal/testenv"
)

func TestCleanupNeedsRoot(t *testing.T) {
	defer func(f func() int) { geteuid = f }(geteuid)
	geteuid = func() int { return 1000 }
	out, stderr, code := minibox(t, "cleanup")
	assert.Equal(t, 1, code)
	assert.Empty(t, out, "nothing done")
	assert.Contains(t, stderr, "cleanup needs root")
	assert.Contains(t, stderr, "sudo minibox cleanup")
}

// minboxGroups lists the minibox/<id> groups of this host, in the v2 tree
// and in every v1 tree, read here independently of the cleanup registry.
func minboxGroups(t *testing.T) []string {
	t.Helper()
	v2, err := filepath.Glob("/sys/fs/cgroup/minibox/*")
	require.NoError(t, err)
	v1, err := filepath.Glob("/sys/fs/cgroup/*/minibox/*")
	require.NoError(t, err)
	var out []string
	for _, g := range append(v2, v1...) {
		if info, err := os.Stat(g); err == nil && info.IsDir() {
			out = append(out, g)
		}
	}
	return out
}

func procs(group string) string {
	data, _ := os.ReadFile(filepath.Join(group, "cgroup.procs"))
	return strings.TrimSpace(string(data))
}

// A stage 03 killed with SIGKILL takes its container with it (the death
// signal it sets) but leaves its cgroup: cleanup removes it and says so.
func TestCleanupRemovesAKilledStagesGroup(t *testing.T) {
	testenv.RequireRoot(t)
	busybox, err := rootfs.FindStaticBusybox()
	testenv.Require(t, err == nil, "needs a static busybox (apt-get install busybox-static)")
	testenv.CheckLeaks(t)

	wd, err := os.Getwd()
	require.NoError(t, err)
	src, err := stages.FindSource(wd)
	require.NoError(t, err)
	stage, err := stages.Find(src, 3)
	require.NoError(t, err)
	bin := t.TempDir()
	require.NoError(t, stages.Build(context.Background(), src, bin, []stages.Stage{stage}, nil))
	root := filepath.Join(t.TempDir(), "rootfs")
	require.NoError(t, rootfs.Build(root, busybox))

	before := minboxGroups(t)
	cmd := exec.Command(filepath.Join(bin, stage.Binary()), "run", "--memory", "32m", root, "--", "sleep", "60")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// Wait until the container has joined its group(s).
	var groups []string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		groups = newStrings(before, minboxGroups(t))
		if len(groups) > 0 && procs(groups[0]) != "" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NotEmpty(t, groups, "stage 03 made no minibox/<id> group")
	require.NotEmpty(t, procs(groups[0]), "the container never joined %s", groups[0])

	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	// The container dies with its parent; the groups stay behind.
	deadline = time.Now().Add(10 * time.Second)
	for procs(groups[0]) != "" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	require.Empty(t, procs(groups[0]), "the container outlived its killed stage")
	for _, g := range groups {
		require.DirExists(t, g, "a killed stage leaves its group")
	}

	out, stderr, code := minibox(t, "cleanup", "--dry-run")
	require.Equal(t, 0, code, stderr)
	for _, g := range groups {
		assert.Contains(t, out, "would remove cgroup "+g+"\n")
		assert.DirExists(t, g, "a dry run removes nothing")
	}

	out, stderr, code = minibox(t, "cleanup")
	require.Equal(t, 0, code, "%s\n%s", out, stderr)
	for _, g := range groups {
		assert.Contains(t, out, "removed cgroup "+g+"\n")
		assert.NoDirExists(t, g)
		assert.NoDirExists(t, filepath.Dir(g), "the empty minibox/ parent goes too")
	}

	out, stderr, code = minibox(t, "cleanup")
	assert.Equal(t, 0, code, stderr)
	assert.Equal(t, "nothing to clean up\n", out, "safe to run twice")
}

// An interrupted lesson leaves a mount in its minibox-lesson-* directory.
func TestCleanupUnmountsAnInterruptedLessonsMount(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.CheckLeaks(t)
	dir, err := os.MkdirTemp("", "minibox-lesson-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	point := filepath.Join(dir, "work", "demo mnt")
	require.NoError(t, os.MkdirAll(point, 0o755))
	require.NoError(t, unix.Mount("tmpfs", point, "tmpfs", 0, "size=1m"))
	t.Cleanup(func() { _ = unix.Unmount(point, unix.MNT_DETACH) })
	// Not minibox's: a mount in another temporary directory.
	other := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", other, "tmpfs", 0, "size=1m"))
	t.Cleanup(func() { _ = unix.Unmount(other, unix.MNT_DETACH) })

	out, stderr, code := minibox(t, "cleanup", "--dry-run")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "would remove mount "+point+" (tmpfs tmpfs)\n")
	assert.True(t, mounted(t, point), "a dry run removes nothing")

	out, stderr, code = minibox(t, "cleanup")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "removed mount "+point+" (tmpfs tmpfs)\n")
	assert.False(t, mounted(t, point))
	assert.True(t, mounted(t, other), "a mount minibox did not make stays")
	assert.NotContains(t, out, other)

	out, _, code = minibox(t, "cleanup")
	assert.Equal(t, 0, code)
	assert.Equal(t, "nothing to clean up\n", out)
}

func mounted(t *testing.T, dir string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	// Field 5 is the mount point, with a space written as \040.
	want := strings.ReplaceAll(dir, " ", `\040`)
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == want {
			return true
		}
	}
	return false
}

func newStrings(old, cur []string) []string {
	seen := map[string]bool{}
	for _, s := range old {
		seen[s] = true
	}
	var out []string
	for _, s := range cur {
		if !seen[s] {
			out = append(out, s)
		}
	}
	return out
}
