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
	require.NoError(t, engine.MountOverlay(root, lower, filepath.Join(root, "diff"), filepath.Join(root, "work"), target))
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
