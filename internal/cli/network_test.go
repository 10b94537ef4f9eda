package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// network ls prints docker's table of the three built-in networks, their
// IDs stable from one data root to the next.
func TestNetworkLs(t *testing.T) {
	out, stderr, code := minibox(t, "network", "ls", "--root", t.TempDir())
	require.Equal(t, 0, code, stderr)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 4, out)
	assert.Regexp(t, `^NETWORK ID\s+NAME\s+DRIVER\s+SCOPE$`, lines[0])
	assert.Regexp(t, `^[0-9a-f]{12}\s+bridge\s+bridge\s+local$`, lines[1])
	assert.Regexp(t, `^[0-9a-f]{12}\s+host\s+host\s+local$`, lines[2])
	assert.Regexp(t, `^[0-9a-f]{12}\s+none\s+null\s+local$`, lines[3])

	ids, _, code := minibox(t, "network", "ls", "-q", "--root", t.TempDir())
	require.Equal(t, 0, code)
	assert.Equal(t, []string{lines[1][:12], lines[2][:12], lines[3][:12]}, strings.Fields(ids))
	full, _, _ := minibox(t, "network", "ls", "-q", "--no-trunc", "--root", t.TempDir())
	assert.Regexp(t, `^([0-9a-f]{64}\n){3}$`, full)

	js, _, code := minibox(t, "network", "ls", "--format", "json", "--root", t.TempDir())
	require.Equal(t, 0, code)
	var first map[string]any
	require.NoError(t, json.Unmarshal([]byte(strings.Split(js, "\n")[0]), &first))
	assert.Equal(t, "bridge", first["Name"])
	assert.Equal(t, "minibox0", first["Bridge"])

	_, stderr, code = minibox(t, "network", "ls", "--format", "yaml")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, `--format "yaml"`)
}
