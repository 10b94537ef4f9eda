package lesson

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
