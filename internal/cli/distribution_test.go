package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/registrytest"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// miniboxIn runs the CLI in-process with stdin.
func miniboxIn(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Execute(args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

// login (a registry with htpasswd), tag, push, logout, save, load,
// history and image prune: docker's output and exit codes.
func TestDistributionCommands(t *testing.T) {
	testenv.RequireRoot(t)
	root := t.TempDir()
	t.Setenv("MINIBOX_ROOT", root)
	config := filepath.Join(t.TempDir(), "docker")
	t.Setenv("DOCKER_CONFIG", config)
	t.Setenv("REGISTRY_AUTH_FILE", "")
	require.NoError(t, os.Unsetenv("REGISTRY_AUTH_FILE")) // docker-registry reads REGISTRY_* (even empty)
	src := registrytest.Start(t)
	img := registrytest.PushRootfs(t, src, fixtureRootfs(t), "minibox/cli", registrytest.ImageOptions{Tag: "v1"})
	id := strings.TrimPrefix(img.Config.Digest, "sha256:")[:12]
	_, stderr, code := minibox(t, "pull", img.Ref)
	require.Equal(t, 0, code, stderr)

	priv := registrytest.StartHtpasswd(t, map[string]string{"alice": "s3cret"})
	name := priv.Addr + "/team/app:1"
	_, stderr, code = minibox(t, "tag", img.Ref, name)
	require.Equal(t, 0, code, stderr)
	_, stderr, code = minibox(t, "tag", "nothing:here", "x")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "no such image: nothing:here")

	_, stderr, code = minibox(t, "push", name)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "minibox login "+priv.Addr)

	_, stderr, code = miniboxIn(t, "wrong\n", "login", "-u", "alice", "--password-stdin", priv.Addr)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "incorrect username or password")
	out, stderr, code := miniboxIn(t, "s3cret\n", "login", "-u", "alice", "--password-stdin", priv.Addr)
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "Login Succeeded\n", out)
	assert.NotContains(t, stderr, "WARNING! Using --password")
	info, err := os.Stat(filepath.Join(config, "config.json"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	_, stderr, code = minibox(t, "login", "-u", "alice", "-p", "s3cret", priv.Addr)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stderr, "WARNING! Using --password via the CLI is insecure. Use --password-stdin.")

	out, stderr, code = minibox(t, "push", name)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "The push refers to repository ["+priv.Addr+"/team/app]\n")
	assert.Contains(t, out, img.Layers[0].Digest[7:19]+": Pushed\n")
	assert.True(t, strings.HasSuffix(out, "1: digest: "+img.Manifest.Digest+" size: "+strconv.FormatInt(img.Manifest.Size, 10)+"\n"), out)
	out, _, code = minibox(t, "image", "push", name)
	require.Equal(t, 0, code)
	assert.Contains(t, out, img.Layers[0].Digest[7:19]+": Layer already exists\n")

	out, _, code = minibox(t, "logout", priv.Addr)
	require.Equal(t, 0, code)
	assert.Equal(t, "Removing login credentials for "+priv.Addr+"\n", out)
	out, _, _ = minibox(t, "logout", priv.Addr)
	assert.Equal(t, "Not logged in to "+priv.Addr+"\n", out)

	// save and load into another data root.
	file := filepath.Join(t.TempDir(), "app.tar")
	_, stderr, code = minibox(t, "save", "-o", file, name)
	require.Equal(t, 0, code, stderr)
	other := t.TempDir()
	out, stderr, code = minibox(t, "load", "-i", file, "--root", other)
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "Loaded image: "+name+"\n", out)
	out, _, _ = minibox(t, "image", "ls", "-q", "--root", other)
	assert.Equal(t, id+"\n", out)
	_, stderr, code = minibox(t, "load", "-i", filepath.Join(t.TempDir(), "missing.tar"))
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "no such file")

	out, _, code = minibox(t, "history", name)
	require.Equal(t, 0, code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	assert.Regexp(t, `^IMAGE\s+CREATED\s+CREATED BY\s+SIZE\s+COMMENT$`, lines[0])
	assert.True(t, strings.HasPrefix(lines[1], id+" "), out)

	// image prune -a -f: unused images go (the in-use hook says none is).
	defer func(saved func(string, string) bool) { ImageInUse = saved }(ImageInUse)
	ImageInUse = func(string, string) bool { return false }
	out, _, code = miniboxIn(t, "n\n", "image", "prune", "-a")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "Are you sure you want to continue? [y/N]")
	assert.NotContains(t, out, "Deleted Images")
	out, stderr, code = minibox(t, "image", "prune", "-a", "-f")
	require.Equal(t, 0, code, stderr)
	assert.True(t, strings.HasPrefix(out, "Deleted Images:\n"), out)
	assert.Contains(t, out, "\nuntagged: "+img.Ref+"\n")
	assert.Contains(t, out, "\nuntagged: "+name+"\n")
	assert.Contains(t, out, "\ndeleted: "+img.Config.Digest+"\n\n")
	assert.Regexp(t, `Total reclaimed space: \d+(\.\d+)?[kM]B\n$`, out)
	out, _, _ = minibox(t, "images", "-q")
	assert.Empty(t, out)
}
