package image

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/registrytest"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// useConfigDir points docker's config at a new directory of the test.
func useConfigDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "docker")
	t.Setenv("DOCKER_CONFIG", dir)
	unsetenv(t, "REGISTRY_AUTH_FILE")
	return dir
}

// unsetenv unsets key for the test (docker-registry reads every
// REGISTRY_* variable as configuration, even an empty one: it must be
// absent, not empty).
func unsetenv(t *testing.T, key string) {
	t.Helper()
	t.Setenv(key, "") // restores the old value at the end
	require.NoError(t, os.Unsetenv(key))
}

// readAuths is config.json as JSON.
func readConfigJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var v map[string]any
	require.NoError(t, json.Unmarshal(data, &v))
	return v
}

// The file is docker's: where docker looks, its format, 0600 in a 0700
// directory, other keys kept; Docker Hub under docker's key.
func TestCredentialsFile(t *testing.T) {
	dir := useConfigDir(t)
	path, err := ConfigPath()
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "config.json"), path)

	creds, err := LookupCredentials("127.0.0.1:5000")
	require.NoError(t, err)
	assert.Nil(t, creds, "no file: no credentials")

	require.NoError(t, SaveCredentials("127.0.0.1:5000", Credentials{Username: "alice", Password: "pa:ss"}))
	require.NoError(t, SaveCredentials("docker.io", Credentials{Username: "bob", Password: "hub"}))
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	info, err = os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), info.Mode().Perm())
	auths := readConfigJSON(t, path)["auths"].(map[string]any)
	assert.Equal(t, map[string]any{"auth": base64.StdEncoding.EncodeToString([]byte("alice:pa:ss"))}, auths["127.0.0.1:5000"])
	assert.Contains(t, auths, "https://index.docker.io/v1/")

	// docker's other keys, and entries written other ways, are kept and read.
	cfg := readConfigJSON(t, path)
	cfg["psFormat"] = "table {{.ID}}"
	auths["https://quay.io"] = map[string]any{"username": "carol", "password": "q"}
	cfg["auths"] = auths
	data, err := json.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o644))
	require.NoError(t, SaveCredentials("127.0.0.1:5000", Credentials{Username: "alice", Password: "new"}))
	cfg = readConfigJSON(t, path)
	assert.Equal(t, "table {{.ID}}", cfg["psFormat"])
	info, err = os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "rewritten 0600")

	for registry, want := range map[string]Credentials{
		"127.0.0.1:5000":       {Username: "alice", Password: "new"},
		"docker.io":            {Username: "bob", Password: "hub"},
		"index.docker.io":      {Username: "bob", Password: "hub"},
		"quay.io":              {Username: "carol", Password: "q"},
		"https://quay.io/v2/x": {Username: "carol", Password: "q"},
	} {
		got, err := LookupCredentials(registry)
		require.NoError(t, err, registry)
		if assert.NotNil(t, got, registry) {
			assert.Equal(t, want, *got, registry)
		}
	}

	removed, err := RemoveCredentials("127.0.0.1:5000")
	require.NoError(t, err)
	assert.True(t, removed)
	removed, err = RemoveCredentials("127.0.0.1:5000")
	require.NoError(t, err)
	assert.False(t, removed)
	cfg = readConfigJSON(t, path)
	assert.NotContains(t, cfg["auths"], "127.0.0.1:5000")
	assert.Contains(t, cfg["auths"], "https://index.docker.io/v1/")
	assert.Equal(t, "table {{.ID}}", cfg["psFormat"])
	left, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	assert.Empty(t, left, "temporary files left")

	// podman's REGISTRY_AUTH_FILE wins; HOME's .docker without DOCKER_CONFIG.
	t.Setenv("REGISTRY_AUTH_FILE", filepath.Join(dir, "auth.json"))
	path, err = ConfigPath()
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "auth.json"), path)
	unsetenv(t, "REGISTRY_AUTH_FILE")
	t.Setenv("DOCKER_CONFIG", "")
	t.Setenv("HOME", "/home/someone")
	path, err = ConfigPath()
	require.NoError(t, err)
	assert.Equal(t, "/home/someone/.docker/config.json", path)
}

// A registry with htpasswd (basic authentication): a push and a pull fail
// before login, saying to log in; a wrong password is refused and stores
// nothing; after login both work; after logout the pull fails again.
func TestLoginPushPullLogout(t *testing.T) {
	dir := useConfigDir(t)
	s := newStore(t)
	src := registrytest.Start(t)
	want := registrytest.PushRootfs(t, src, smallRootfs(t), "minibox/src", registrytest.ImageOptions{})
	_, _ = pull(t, s, want.Ref)
	priv := registrytest.StartHtpasswd(t, map[string]string{"alice": "s3cret"})
	name := priv.Addr + "/minibox/private:v1"
	require.NoError(t, s.Tag(want.Ref, name))

	err := pushErr(t, s, name)
	assert.ErrorIs(t, err, ErrUnauthorized)
	assert.Contains(t, err.Error(), "minibox login "+priv.Addr)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = Login(ctx, priv.Addr, Credentials{Username: "alice", Password: "wrong"}, LoginOptions{})
	assert.ErrorIs(t, err, ErrUnauthorized)
	assert.Contains(t, err.Error(), "incorrect username or password")
	err = Login(ctx, registrytest.DownAddr(t), Credentials{Username: "alice", Password: "s3cret"}, LoginOptions{})
	assert.ErrorIs(t, err, ErrRegistryDown)
	assert.NoFileExists(t, filepath.Join(dir, "config.json"))

	require.NoError(t, Login(ctx, priv.Addr, Credentials{Username: "alice", Password: "s3cret"}, LoginOptions{}))
	require.NoError(t, SaveCredentials(priv.Addr, Credentials{Username: "alice", Password: "s3cret"}))
	res, _ := push(t, s, name, PushOptions{})
	assert.Equal(t, want.Manifest.Digest, res.Digest.String())
	s2 := newStore(t)
	img, _ := pull(t, s2, name)
	assert.Equal(t, want.Manifest.Digest, img.Digest.String())

	removed, err := RemoveCredentials(priv.Addr)
	require.NoError(t, err)
	require.True(t, removed)
	err = pullErr(t, newStore(t), name, PullOptions{})
	assert.ErrorIs(t, err, ErrUnauthorized)
	assert.Contains(t, err.Error(), "minibox login "+priv.Addr)
}

// Behind bearer tokens, login asks the token server with the credentials
// (basic authentication, account=USER), and a pull then does too.
func TestLoginWithTokenServer(t *testing.T) {
	useConfigDir(t)
	s := newStore(t)
	p := registrytest.StartTokenAuth(t, registrytest.Start(t))
	want := registrytest.PushRootfs(t, p, smallRootfs(t), "minibox/tok", registrytest.ImageOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, Login(ctx, p.Addr, Credentials{Username: "alice", Password: "pw"}, LoginOptions{}))
	require.NoError(t, SaveCredentials(p.Addr, Credentials{Username: "alice", Password: "pw"}))
	_, _ = pull(t, s, want.Ref)
	tokens := 0
	for _, req := range p.Requests() {
		if req.Path == "/token" {
			tokens++
			assert.Contains(t, req.Query, "account=alice")
		}
	}
	assert.Equal(t, 2, tokens, "one for login, one for the pull")
	assert.True(t, strings.Contains(p.Requests()[len(p.Requests())-1].Path, "/v2/"))
}

// A user's config.json stays theirs (sudo -E keeps their HOME): its owner
// is kept, its mode never widened, and a symlink to it (dotfiles) stays
// a symlink, the file it points to rewritten.
func TestCredentialsFileKeepsOwnerAndLink(t *testing.T) {
	testenv.RequireRoot(t)
	dir := useConfigDir(t)
	dotfiles := t.TempDir()
	real := filepath.Join(dotfiles, "docker-config.json")
	require.NoError(t, os.WriteFile(real, []byte(`{"psFormat":"x"}`), 0o640))
	require.NoError(t, os.Chown(real, 1234, 5678))
	require.NoError(t, os.MkdirAll(dir, 0o700))
	require.NoError(t, os.Symlink(real, filepath.Join(dir, "config.json")))
	require.NoError(t, SaveCredentials("127.0.0.1:5000", Credentials{Username: "alice", Password: "pw"}))
	link, err := os.Lstat(filepath.Join(dir, "config.json"))
	require.NoError(t, err)
	assert.True(t, link.Mode()&os.ModeSymlink != 0, "still a symlink")
	info, err := os.Stat(real)
	require.NoError(t, err)
	st := info.Sys().(*syscall.Stat_t)
	assert.Equal(t, [2]uint32{1234, 5678}, [2]uint32{st.Uid, st.Gid}, "the user's still")
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "0640 narrowed to 0600: it holds a password")
	assert.Equal(t, "x", readConfigJSON(t, real)["psFormat"])
}

// A credentials file that cannot be read stops no pull: docker warns and
// asks the registry without credentials.
func TestBadCredentialsFileIsAWarning(t *testing.T) {
	dir := useConfigDir(t)
	require.NoError(t, os.MkdirAll(dir, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte("{not json"), 0o600))
	asked := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			w.WriteHeader(http.StatusOK)
			return
		}
		asked = true
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	host := strings.TrimPrefix(srv.URL, "http://")
	_, err = s.Pull(context.Background(), host+"/x:1", PullOptions{})
	require.Error(t, err)
	assert.True(t, asked, "the registry was asked for the image: %v", err)
	assert.NotContains(t, err.Error(), "config.json")
}
