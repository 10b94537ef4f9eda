package registrytest_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/registrytest"
)

// smallRootfs is a directory like a tiny rootfs: a few files and 256 KiB
// that do not compress (a layer big enough to stall in the middle of).
func smallRootfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "etc"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "etc", "hostname"), []byte("fixture\n"), 0o644))
	noise := make([]byte, 256<<10)
	_, err := rand.Read(noise)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bin", "noise"), noise, 0o755))
	return dir
}

// get does a GET of url with the Accept and Authorization headers given
// (either may be ""), returning the status, headers and body.
func get(t *testing.T, url, accept, token string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, body
}

func TestStartAnswersAndStopsAtTheEnd(t *testing.T) {
	var pid int
	var addr string
	t.Run("registry", func(t *testing.T) {
		r := registrytest.Start(t)
		pid, addr = r.PID(), r.Addr
		assert.True(t, strings.HasPrefix(r.Addr, "127.0.0.1:"), r.Addr)
		status, h, _ := get(t, "http://"+r.Addr+"/v2/", "", "")
		assert.Equal(t, http.StatusOK, status)
		assert.Equal(t, "registry/2.0", h.Get("Docker-Distribution-Api-Version"))
	})
	// The subtest's clean-up stopped and reaped it: the PID is gone and
	// nothing listens at its address any more.
	assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "the registry (pid %d) still runs after its test", pid)
	_, err := net.DialTimeout("tcp", addr, time.Second)
	assert.Error(t, err, "something still listens at %s", addr)
}

func TestTwoRegistriesAtOnce(t *testing.T) {
	a, b := registrytest.Start(t), registrytest.Start(t)
	assert.NotEqual(t, a.Addr, b.Addr)
	assert.NotEqual(t, a.StorageDir, b.StorageDir)
}

func TestPushRootfsOCI(t *testing.T) {
	r := registrytest.Start(t)
	img := registrytest.PushRootfs(t, r, smallRootfs(t), "fixture/oci", registrytest.ImageOptions{
		Tag: "v1",
		Config: registrytest.Config{
			Cmd: []string{"/bin/sh", "-c", "echo hi"}, Env: []string{"FOO=bar"},
			WorkingDir: "/tmp", User: "1000:1000", Labels: map[string]string{"a": "b"},
		},
		Files: map[string]string{"/etc/motd": "hello\n"},
	})
	assert.Equal(t, r.Addr+"/fixture/oci:v1", img.Ref)
	assert.Equal(t, r.Addr+"/fixture/oci@"+img.Manifest.Digest, img.ByDigest())
	assert.Equal(t, registrytest.MediaTypeOCIManifest, img.Manifest.MediaType)
	assert.Equal(t, runtime.GOARCH, img.Arch)
	require.Len(t, img.Layers, 2, "the directory, then Files")
	for _, l := range img.Layers {
		assert.Equal(t, "application/vnd.oci.image.layer.v1.tar+gzip", l.MediaType)
		assert.FileExists(t, r.BlobPath(l.Digest))
	}

	// By tag, with OCI's Accept: the manifest skopeo reported.
	url := "http://" + r.Addr + "/v2/fixture/oci/manifests/v1"
	status, h, body := get(t, url, registrytest.MediaTypeOCIManifest, "")
	require.Equal(t, http.StatusOK, status, "%s", body)
	assert.Equal(t, img.Manifest.Digest, h.Get("Docker-Content-Digest"))
	assert.Equal(t, registrytest.MediaTypeOCIManifest, h.Get("Content-Type"))
	// Without the OCI type in Accept the registry answers 404 (host.md):
	// a client must send the right Accept header.
	status, _, _ = get(t, url, "", "")
	assert.Equal(t, http.StatusNotFound, status)

	// The config is what umoci config set.
	status, _, body = get(t, "http://"+r.Addr+"/v2/fixture/oci/blobs/"+img.Config.Digest, "", "")
	require.Equal(t, http.StatusOK, status)
	var config struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Config       struct {
			Cmd        []string          `json:"Cmd"`
			Env        []string          `json:"Env"`
			WorkingDir string            `json:"WorkingDir"`
			User       string            `json:"User"`
			Labels     map[string]string `json:"Labels"`
		} `json:"config"`
	}
	require.NoError(t, json.Unmarshal(body, &config))
	assert.Equal(t, runtime.GOARCH, config.Architecture)
	assert.Equal(t, "linux", config.OS)
	assert.Equal(t, []string{"/bin/sh", "-c", "echo hi"}, config.Config.Cmd)
	assert.Contains(t, config.Config.Env, "FOO=bar")
	assert.Equal(t, "/tmp", config.Config.WorkingDir)
	assert.Equal(t, "1000:1000", config.Config.User)
	assert.Equal(t, "b", config.Config.Labels["a"])
}

func TestPushRootfsDocker(t *testing.T) {
	r := registrytest.Start(t)
	img := registrytest.PushRootfs(t, r, smallRootfs(t), "fixture/docker", registrytest.ImageOptions{Docker: true})
	assert.Equal(t, registrytest.MediaTypeDockerManifest, img.Manifest.MediaType)
	assert.Equal(t, "latest", img.Tag)
	assert.Equal(t, "application/vnd.docker.container.image.v1+json", img.Config.MediaType)
	require.Len(t, img.Layers, 1)
	assert.Equal(t, "application/vnd.docker.image.rootfs.diff.tar.gzip", img.Layers[0].MediaType)
	status, h, _ := get(t, "http://"+r.Addr+"/v2/fixture/docker/manifests/latest", registrytest.MediaTypeDockerManifest, "")
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, img.Manifest.Digest, h.Get("Docker-Content-Digest"))
}

func TestPushIndex(t *testing.T) {
	for _, docker := range []bool{false, true} {
		name := map[bool]string{false: "oci", true: "docker"}[docker]
		t.Run(name, func(t *testing.T) {
			r := registrytest.Start(t)
			ix := registrytest.PushIndex(t, r, smallRootfs(t), "fixture/multi", registrytest.ImageOptions{
				Tag: "multi", Docker: docker, Config: registrytest.Config{Cmd: []string{"/bin/true"}},
			})
			wantIndex, wantManifest := registrytest.MediaTypeOCIIndex, registrytest.MediaTypeOCIManifest
			if docker {
				wantIndex, wantManifest = registrytest.MediaTypeDockerList, registrytest.MediaTypeDockerManifest
			}
			assert.Equal(t, wantIndex, ix.Index.MediaType)
			assert.Equal(t, runtime.GOARCH, ix.Host.Arch)
			assert.NotEqual(t, runtime.GOARCH, ix.Other.Arch)
			assert.Equal(t, wantManifest, ix.Host.Manifest.MediaType)
			assert.NotEqual(t, ix.Host.Config.Digest, ix.Other.Config.Digest)
			require.Len(t, ix.Other.Layers, 2)
			assert.NotContains(t, ix.Host.Layers, ix.Other.Layers[1], "the other arch's top layer must be its own")

			// By tag: the index, the other platform listed first.
			status, h, body := get(t, "http://"+r.Addr+"/v2/fixture/multi/manifests/multi", registrytest.AcceptAll, "")
			require.Equal(t, http.StatusOK, status)
			assert.Equal(t, ix.Index.Digest, h.Get("Docker-Content-Digest"))
			var index struct {
				Manifests []struct {
					Digest   string `json:"digest"`
					Platform struct {
						Architecture string `json:"architecture"`
					} `json:"platform"`
				} `json:"manifests"`
			}
			require.NoError(t, json.Unmarshal(body, &index))
			require.Len(t, index.Manifests, 2)
			assert.Equal(t, ix.Other.Manifest.Digest, index.Manifests[0].Digest)
			assert.Equal(t, ix.Host.Manifest.Digest, index.Manifests[1].Digest)
			assert.Equal(t, runtime.GOARCH, index.Manifests[1].Platform.Architecture)
		})
	}
}

// token asks the proxy's token endpoint for a token for scope.
func token(t *testing.T, realm, scope string) string {
	t.Helper()
	u := realm + "?service=registrytest"
	if scope != "" {
		u += "&scope=" + url.QueryEscape(scope)
	}
	status, _, body := get(t, u, "", "")
	require.Equal(t, http.StatusOK, status, "%s", body)
	var tok struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	require.NoError(t, json.Unmarshal(body, &tok))
	require.NotEmpty(t, tok.Token)
	assert.Equal(t, tok.Token, tok.AccessToken)
	return tok.Token
}

func TestTokenAuth(t *testing.T) {
	r := registrytest.Start(t)
	img := registrytest.PushRootfs(t, registrytest.StartTokenAuth(t, r), smallRootfs(t), "fixture/auth", registrytest.ImageOptions{})
	p := registrytest.StartTokenAuth(t, r)
	manifest := "http://" + p.Addr + "/v2/fixture/auth/manifests/latest"

	// GET /v2/: 401 and a challenge without a scope, as Docker Hub.
	status, h, _ := get(t, "http://"+p.Addr+"/v2/", "", "")
	assert.Equal(t, http.StatusUnauthorized, status)
	realm := "http://" + p.Addr + "/token"
	assert.Equal(t, `Bearer realm="`+realm+`",service="registrytest"`, h.Get("WWW-Authenticate"))

	// The manifest: 401 naming the repository's pull scope.
	status, h, body := get(t, manifest, registrytest.AcceptAll, "")
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, `Bearer realm="`+realm+`",service="registrytest",scope="repository:fixture/auth:pull"`, h.Get("WWW-Authenticate"))
	assert.Contains(t, string(body), "UNAUTHORIZED")

	// With a token for that scope: 200 and the manifest.
	tok := token(t, realm, "repository:fixture/auth:pull")
	status, h, _ = get(t, manifest, registrytest.AcceptAll, tok)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, img.Manifest.Digest, h.Get("Docker-Content-Digest"))
	status, _, _ = get(t, "http://"+p.Addr+"/v2/fixture/auth/blobs/"+img.Config.Digest, "", tok)
	assert.Equal(t, http.StatusOK, status)

	// A token for another repository, or a made-up one, does not do.
	other := token(t, realm, "repository:fixture/other:pull")
	status, _, _ = get(t, manifest, registrytest.AcceptAll, other)
	assert.Equal(t, http.StatusUnauthorized, status)
	status, _, _ = get(t, manifest, registrytest.AcceptAll, "made-up")
	assert.Equal(t, http.StatusUnauthorized, status)

	reqs := p.Requests()
	require.Len(t, reqs, 8)
	assert.Equal(t, registrytest.Request{Method: "GET", Path: "/v2/", Status: 401}, reqs[0])
	assert.Equal(t, registrytest.Request{Method: "GET", Path: "/v2/fixture/auth/manifests/latest", Status: 401}, reqs[1])
	assert.Equal(t, "/token", reqs[2].Path)
	assert.Contains(t, reqs[2].Query, "scope=repository%3Afixture%2Fauth%3Apull")
	assert.Equal(t, registrytest.Request{Method: "GET", Path: "/v2/fixture/auth/manifests/latest", Authorized: true, Status: 200}, reqs[3])
	assert.True(t, reqs[4].Authorized)
	assert.False(t, reqs[6].Authorized)
	assert.True(t, p.Fetched(img.Config.Digest))
	assert.False(t, p.Fetched(img.Layers[0].Digest))

	// Refusing tokens: 401 even with a good one.
	p.SetOptions(registrytest.ProxyOptions{Token: true, RefuseTokens: true})
	status, _, _ = get(t, manifest, registrytest.AcceptAll, tok)
	assert.Equal(t, http.StatusUnauthorized, status)
}

func TestProxyStatus(t *testing.T) {
	r := registrytest.Start(t)
	p := registrytest.StartProxy(t, r, registrytest.ProxyOptions{Status: http.StatusTooManyRequests})
	status, _, _ := get(t, "http://"+p.Addr+"/v2/", "", "")
	assert.Equal(t, http.StatusOK, status, "GET /v2/ still answers: the failure is the image's")
	status, h, body := get(t, "http://"+p.Addr+"/v2/x/manifests/latest", registrytest.AcceptAll, "")
	assert.Equal(t, http.StatusTooManyRequests, status)
	assert.Equal(t, "60", h.Get("Retry-After"))
	assert.Contains(t, string(body), "TOOMANYREQUESTS")
}

func TestProxyStallsBlobs(t *testing.T) {
	r := registrytest.Start(t)
	img := registrytest.PushRootfs(t, r, smallRootfs(t), "fixture/stall", registrytest.ImageOptions{})
	const limit = 64 << 10
	p := registrytest.StartProxy(t, r, registrytest.ProxyOptions{StallBlobsAfter: limit})
	require.Greater(t, img.Layers[0].Size, int64(limit))

	// The config is smaller than the limit: it comes whole.
	status, _, body := get(t, "http://"+p.Addr+"/v2/fixture/stall/blobs/"+img.Config.Digest, "", "")
	assert.Equal(t, http.StatusOK, status)
	assert.Len(t, body, int(img.Config.Size))
	assert.Zero(t, p.Stalled())

	// The layer: limit bytes, then nothing until the client gives up.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Addr+"/v2/fixture/stall/blobs/"+img.Layers[0].Digest, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	got := make([]byte, limit)
	_, err = io.ReadFull(resp.Body, got)
	require.NoError(t, err)
	p.WaitStalled(t, 5*time.Second)
	assert.Equal(t, 1, p.Stalled())
	read := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(make([]byte, 1))
		read <- err
	}()
	select {
	case err := <-read:
		t.Fatalf("the stalled answer went on: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	cancel()
	assert.Error(t, <-read)

	// Without the option, the same layer comes whole.
	p.SetOptions(registrytest.ProxyOptions{})
	status, _, body = get(t, "http://"+p.Addr+"/v2/fixture/stall/blobs/"+img.Layers[0].Digest, "", "")
	assert.Equal(t, http.StatusOK, status)
	assert.Len(t, body, int(img.Layers[0].Size))
}

func TestCorruptBlob(t *testing.T) {
	r := registrytest.Start(t)
	img := registrytest.PushRootfs(t, r, smallRootfs(t), "fixture/bad", registrytest.ImageOptions{})
	layer := img.Layers[0]
	r.CorruptBlob(t, layer.Digest)
	// The registry serves it as is: same size, another digest.
	status, _, body := get(t, "http://"+r.Addr+"/v2/fixture/bad/blobs/"+layer.Digest, "", "")
	require.Equal(t, http.StatusOK, status)
	assert.Len(t, body, int(layer.Size))
	assert.NotEqual(t, layer.Digest, sha256Hex(body))
}

func TestDownAddrRefuses(t *testing.T) {
	addr := registrytest.DownAddr(t)
	_, err := net.DialTimeout("tcp", addr, time.Second)
	require.Error(t, err)
	assert.True(t, errors.Is(err, syscall.ECONNREFUSED), "%v", err)
}

// sha256Hex is "sha256:<hex>" of data.
func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}
