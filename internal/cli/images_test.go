package cli

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/registrytest"
	"github.com/minibox-lab/minibox/internal/testenv"
)

func fixtureRootfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "etc"), 0o755))
	noise := make([]byte, 64<<10)
	_, err := rand.Read(noise)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "etc", "noise"), noise, 0o644))
	return dir
}

// pull, images (table, -q, --format json) and rmi, docker's output, in
// the data root given by --root or $MINIBOX_ROOT.
func TestPullImagesRmi(t *testing.T) {
	testenv.RequireRoot(t)
	root := t.TempDir()
	t.Setenv("MINIBOX_ROOT", root)
	r := registrytest.Start(t)
	img := registrytest.PushRootfs(t, r, fixtureRootfs(t), "minibox/cli", registrytest.ImageOptions{Tag: "v1"})

	out, stderr, code := minibox(t, "pull", img.Ref)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "v1: Pulling from minibox/cli\n")
	assert.Contains(t, out, img.Layers[0].Digest[7:19]+": Pull complete\n")
	assert.Contains(t, out, "Digest: "+img.Manifest.Digest+"\n")
	assert.True(t, strings.HasSuffix(out, "Status: Downloaded newer image for "+img.Ref+"\n"+img.Ref+"\n"), out)
	assert.FileExists(t, filepath.Join(root, "images", "index.json"), "$MINIBOX_ROOT is the data root")

	id := strings.TrimPrefix(img.Config.Digest, "sha256:")[:12]
	out, _, code = minibox(t, "images")
	require.Equal(t, 0, code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, out)
	assert.Regexp(t, `^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$`, lines[0])
	assert.Regexp(t, `^`+r.Addr+`/minibox/cli\s+v1\s+`+id+`\s+(Less than a second|\d+ seconds|About a minute) ago\s+\d+(\.\d+)?[kM]B$`, lines[1])

	out, _, _ = minibox(t, "images", "-q")
	assert.Equal(t, id+"\n", out)
	out, _, _ = minibox(t, "images", "--format", "json")
	var row map[string]string
	require.NoError(t, json.Unmarshal([]byte(out), &row), out)
	assert.Equal(t, id, row["ID"])
	assert.Equal(t, r.Addr+"/minibox/cli", row["Repository"])
	assert.Equal(t, "v1", row["Tag"])
	assert.Equal(t, img.Manifest.Digest, row["Digest"])
	_, stderr, code = minibox(t, "images", "--format", "yaml")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, `--format "yaml"`)

	// rmi: refused while the engine says a container uses it.
	defer func(saved func(string, string) bool) { ImageInUse = saved }(ImageInUse)
	ImageInUse = func(dataRoot, got string) bool { return dataRoot == root && got == id }
	_, stderr, code = minibox(t, "rmi", img.Ref)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "in use")
	ImageInUse = func(string, string) bool { return false }

	out, stderr, code = minibox(t, "rmi", img.Ref, "minibox/nothere")
	assert.Equal(t, 1, code, "one of two failed")
	assert.Contains(t, out, "Untagged: "+img.Ref+"\nDeleted: "+img.Config.Digest+"\n")
	assert.Contains(t, stderr, "no such image: minibox/nothere")
	out, _, _ = minibox(t, "images", "-q")
	assert.Empty(t, out)
	left, _ := os.ReadDir(filepath.Join(root, "images", "blobs", "sha256"))
	assert.Empty(t, left)

	// --root wins over $MINIBOX_ROOT.
	other := t.TempDir()
	_, stderr, code = minibox(t, "pull", "--root", other, img.Ref)
	require.Equal(t, 0, code, stderr)
	out, _, _ = minibox(t, "images", "-q", "--root", other)
	assert.Equal(t, id+"\n", out)
}

func TestPullErrorsExitOne(t *testing.T) {
	testenv.RequireRoot(t)
	t.Setenv("MINIBOX_ROOT", t.TempDir())
	down := registrytest.DownAddr(t)
	_, stderr, code := minibox(t, "pull", down+"/x:v1")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "minibox: pull "+down+"/x:v1: http://"+down+": the registry is not answering")
	_, stderr, code = minibox(t, "pull", "Bad/Name")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "NAME in lower case")
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "Less than a second", time.Second: "1 second", 59 * time.Second: "59 seconds",
		time.Minute: "About a minute", 5 * time.Minute: "5 minutes", time.Hour: "About an hour",
		3 * time.Hour: "3 hours", 72 * time.Hour: "3 days", 15 * 24 * time.Hour: "2 weeks",
		90 * 24 * time.Hour: "3 months", 800 * 24 * time.Hour: "2 years",
	} {
		assert.Equal(t, want, humanDuration(d), d.String())
	}
}
