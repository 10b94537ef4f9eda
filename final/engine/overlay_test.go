package engine_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/engine"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// An image of 150 layers mounts: their full paths would need more than
// the page mount(2) takes its options in; the short names fit. The top
// layer wins, every layer is seen.
func TestOverlayOfManyLayers(t *testing.T) {
	testenv.RequireRoot(t)
	root := t.TempDir()
	const n = 150
	var lower []string
	for i := 0; i < n; i++ {
		sum := sha256.Sum256([]byte(fmt.Sprint(i)))
		dir := filepath.Join(root, "layers", hex.EncodeToString(sum[:]))
		require.NoError(t, os.MkdirAll(dir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("layer-%d", i)), nil, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "top"), []byte(fmt.Sprint(i)), 0o644))
		lower = append(lower, dir)
	}
	require.Greater(t, len(strings.Join(lower, ":")), 4096, "the test needs more layers than full paths allow")
	for _, d := range []string{"diff", "work", "rootfs"} {
		require.NoError(t, os.Mkdir(filepath.Join(root, d), 0o755))
	}
	target := filepath.Join(root, "rootfs")
	require.NoError(t, engine.MountOverlay(root, lower, filepath.Join(root, "diff"), filepath.Join(root, "work"), target, false))
	defer func() { require.NoError(t, unix.Unmount(target, 0)) }()
	top, err := os.ReadFile(filepath.Join(target, "top"))
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprint(n-1), string(top), "the last layer is on top")
	entries, err := os.ReadDir(target)
	require.NoError(t, err)
	assert.Len(t, entries, n+1, "every layer's file, and top")
	cwd, err := os.Getwd()
	require.NoError(t, err)
	assert.NotEqual(t, filepath.Join(root, "engine", "l"), cwd, "the process's working directory is untouched")
}

// A --rm container's writable layer is a volatile overlay (no syncfs of
// the host's file system when it is unmounted), a kept container's is
// not: its layer must survive a crash of the host. The superblock options
// in the host's mountinfo say which.
func TestRmContainersLayerIsVolatile(t *testing.T) {
	e := newEnv(t)
	kept := strings.TrimSpace(e.ok("run", "-d", e.ref, "sleep", "100"))
	gone := strings.TrimSpace(e.ok("run", "-d", "--rm", e.ref, "sleep", "100"))
	assert.NotContains(t, rootfsSuperOptions(t, e, kept), "volatile")
	assert.Contains(t, rootfsSuperOptions(t, e, gone), "volatile")
	e.ok("rm", "-f", kept, gone)
}

// rootfsSuperOptions are the overlay options of container id's root
// (the last field of its line in /proc/self/mountinfo).
func rootfsSuperOptions(t *testing.T, e *env, id string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	target := filepath.Join(e.root, "engine", "containers", id, "rootfs")
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == target {
			return f[len(f)-1]
		}
	}
	t.Fatalf("no mount on %s", target)
	return ""
}

// A volatile overlay leaves work/work/incompat/volatile behind, and
// overlayfs refuses to mount over it again (the host may have crashed
// meanwhile): MountOverlay clears it within one boot of the host, so a
// --rm container whose supervisor was killed starts again, and refuses
// after a restart.
func TestVolatileOverlayMountsAgain(t *testing.T) {
	testenv.RequireRoot(t)
	root := t.TempDir()
	sum := sha256.Sum256([]byte("layer"))
	layer := filepath.Join(root, "layers", hex.EncodeToString(sum[:]))
	require.NoError(t, os.MkdirAll(layer, 0o755))
	for _, d := range []string{"diff", "work", "rootfs"} {
		require.NoError(t, os.Mkdir(filepath.Join(root, d), 0o755))
	}
	target := filepath.Join(root, "rootfs")
	for i := 0; i < 2; i++ {
		require.NoError(t, engine.MountOverlay(root, []string{layer}, filepath.Join(root, "diff"), filepath.Join(root, "work"), target, true), "mount %d", i+1)
		require.NoError(t, os.WriteFile(filepath.Join(target, fmt.Sprint(i)), nil, 0o644))
		require.NoError(t, unix.Unmount(target, 0))
		assert.DirExists(t, filepath.Join(root, "work", "work", "incompat", "volatile"))
	}
	assert.FileExists(t, filepath.Join(root, "diff", "0"), "the first mount's file is kept in the upper directory")

	// The host restarted since (another boot id): the upper directory was
	// never synced and may be torn, so the mount is refused.
	require.NoError(t, os.WriteFile(filepath.Join(root, "work.boot_id"), []byte("another boot\n"), 0o644))
	err := engine.MountOverlay(root, []string{layer}, filepath.Join(root, "diff"), filepath.Join(root, "work"), target, true)
	require.ErrorContains(t, err, "before the host restarted")
	assert.DirExists(t, filepath.Join(root, "work", "work", "incompat", "volatile"), "the mark stays")
}
