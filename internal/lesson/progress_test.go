package lesson

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/testenv"
)

func TestProgressPath(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	assert.Equal(t, "/x/p.json", ProgressPath(env(map[string]string{"MINIBOX_STATE": "/x/p.json", "HOME": "/h"})))
	assert.Equal(t, "/s/minibox/progress.json", ProgressPath(env(map[string]string{"XDG_STATE_HOME": "/s", "HOME": "/h"})))
	assert.Equal(t, "/h/.local/state/minibox/progress.json", ProgressPath(env(map[string]string{"HOME": "/h"})))
}

func TestProgressRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "progress.json")
	p, err := LoadProgress(path)
	require.NoError(t, err, "a missing file is no progress yet")
	assert.False(t, p.IsFinished(1))

	require.NoError(t, p.MarkFinished(2, func(string) string { return "" }))
	p, err = LoadProgress(path)
	require.NoError(t, err)
	assert.True(t, p.IsFinished(2))
	assert.False(t, p.IsFinished(1))

	require.NoError(t, os.WriteFile(path, []byte("{broken"), 0o644))
	_, err = LoadProgress(path)
	assert.ErrorContains(t, err, "delete the file to start over")
}

// Under sudo, progress belongs to the student: every directory created on
// the way to the file is theirs, not root's.
func TestProgressUnderSudoIsOwnedByTheStudent(t *testing.T) {
	testenv.RequireRoot(t)
	home := t.TempDir()
	path := filepath.Join(home, ".local", "state", "minibox", "progress.json")
	p, err := LoadProgress(path)
	require.NoError(t, err)
	env := map[string]string{"SUDO_UID": "65534", "SUDO_GID": "65534"}
	require.NoError(t, p.MarkFinished(1, func(k string) string { return env[k] }))
	for _, rel := range []string{".local", ".local/state", ".local/state/minibox", ".local/state/minibox/progress.json"} {
		info, err := os.Stat(filepath.Join(home, rel))
		require.NoError(t, err)
		st := info.Sys().(*syscall.Stat_t)
		assert.Equal(t, uint32(65534), st.Uid, rel)
	}
	owner, err := os.Stat(home)
	require.NoError(t, err)
	assert.Equal(t, uint32(0), owner.Sys().(*syscall.Stat_t).Uid, "what existed before is left alone")
}
