package image

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/registrytest"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// push pushes ref with the output in a buffer, and returns both.
func push(t *testing.T, s *Store, ref string, o PushOptions) (PushResult, string) {
	t.Helper()
	var out bytes.Buffer
	o.Progress = &out
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := s.Push(ctx, ref, o)
	require.NoError(t, err, "push %s\n%s", ref, &out)
	return res, out.String()
}

// pushErr pushes ref and returns the error it must fail with.
func pushErr(t *testing.T, s *Store, ref string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := s.Push(ctx, ref, PushOptions{})
	require.Error(t, err, "push %s should fail", ref)
	return err
}

// count is how many requests the proxy got with this method whose path
// contains part and whose answer was status (0: any).
func count(reqs []recorded, method, part string, status int) int {
	n := 0
	for _, r := range reqs {
		if r.Method == method && strings.Contains(r.Path+"?"+r.Query, part) && (status == 0 || r.Status == status) {
			n++
		}
	}
	return n
}

// A push to an empty registry uploads every blob (the big layer in
// chunks, the small ones whole) and the manifest, byte for byte: skopeo
// copies it back out with the same digests. A second push finds every
// blob there (HEAD) and uploads nothing. A push into another repository
// of the same registry mounts the blobs instead of uploading them.
func TestPushUploadsSkipsAndMounts(t *testing.T) {
	s := newStore(t)
	src := registrytest.Start(t)
	want := registrytest.PushRootfs(t, src, smallRootfs(t), "minibox/src", registrytest.ImageOptions{
		Tag: "v1", Files: map[string]string{"etc/marker": "pushed\n"}, Config: registrytest.Config{Cmd: []string{"/bin/sh"}},
	})
	img, _ := pull(t, s, want.Ref)

	dst := startRecorder(t, registrytest.Start(t))
	name := dst.Addr + "/minibox/pushed:v1"
	require.NoError(t, s.Tag(want.Ref, name))
	res, out := push(t, s, name, PushOptions{ChunkSize: 64 << 10})
	assert.Equal(t, img.Digest, res.Digest, "the stored manifest, byte for byte")
	assert.Contains(t, out, "The push refers to repository ["+dst.Addr+"/minibox/pushed]\n")
	for _, l := range want.Layers {
		assert.Contains(t, out, l.Digest[7:19]+": Preparing\n")
		assert.Contains(t, out, l.Digest[7:19]+": Pushed\n")
	}
	assert.Contains(t, out, "v1: digest: "+want.Manifest.Digest+" size: ")
	reqs := dst.Requests()
	// The 256 KiB layer in 64 KiB chunks: at least 4 PATCHes; the small
	// layer and the config in one PUT each.
	assert.GreaterOrEqual(t, count(reqs, http.MethodPatch, "/blobs/uploads/", http.StatusAccepted), 4, "chunked upload: %+v\n%s", reqs, out)
	assert.Equal(t, 3, count(reqs, http.MethodPut, "digest=sha256", http.StatusCreated), "blobs closed with PUT ?digest=")
	assert.Equal(t, 1, count(reqs, http.MethodPut, "/manifests/v1", http.StatusCreated))
	assert.Equal(t, 3, count(reqs, http.MethodHead, "/blobs/sha256:", http.StatusNotFound))

	// What skopeo reads back is what minibox has.
	requireTool(t, "skopeo")
	layout := t.TempDir()
	digestFile := filepath.Join(t.TempDir(), "digest")
	runCmd(t, "skopeo", "copy", "--quiet", "--src-tls-verify=false", "--digestfile", digestFile, "docker://"+name, "oci:"+layout+":v1")
	got, err := os.ReadFile(digestFile)
	require.NoError(t, err)
	assert.Equal(t, want.Manifest.Digest, strings.TrimSpace(string(got)))
	for _, l := range want.Layers {
		assert.FileExists(t, filepath.Join(layout, "blobs", "sha256", l.Digest[7:]))
	}

	// Again: every blob is there, nothing is uploaded.
	dst.ResetRequests()
	_, out = push(t, s, name, PushOptions{})
	for _, l := range want.Layers {
		assert.Contains(t, out, l.Digest[7:19]+": Layer already exists\n")
	}
	reqs = dst.Requests()
	assert.Zero(t, count(reqs, http.MethodPost, "/blobs/uploads/", 0), "an upload after all: %+v", reqs)
	assert.Zero(t, count(reqs, http.MethodPatch, "/blobs/uploads/", 0))
	assert.Equal(t, 3, count(reqs, http.MethodHead, "/blobs/sha256:", http.StatusOK))

	// Another repository of the same registry: mounted (201), not uploaded.
	dst.ResetRequests()
	other := dst.Addr + "/minibox/other:v2"
	require.NoError(t, s.Tag(name, other))
	_, out = push(t, s, other, PushOptions{})
	for _, l := range want.Layers {
		assert.Contains(t, out, l.Digest[7:19]+": Mounted from minibox/pushed\n")
	}
	reqs = dst.Requests()
	assert.Equal(t, 3, count(reqs, http.MethodPost, "mount=sha256", http.StatusCreated), "cross-repository mounts: %+v", reqs)
	assert.Zero(t, count(reqs, http.MethodPatch, "/blobs/uploads/", 0))
	assert.Zero(t, count(reqs, http.MethodPut, "digest=sha256", 0))
	status, _ := getStatus(t, "http://"+dst.Addr+"/v2/minibox/other/manifests/v2")
	assert.Equal(t, http.StatusOK, status)
}

// recorded is one request a recorder passed on.
type recorded struct {
	Method, Path, Query string
	Status              int
}

// recorder is a reverse proxy in front of a registry that records the
// requests. Unlike registrytest's proxy it passes the Host header on, so
// that the registry's absolute Location headers (upload sessions) name
// the recorder, and the uploads are seen too.
type recorder struct {
	Addr string
	mu   sync.Mutex
	reqs []recorded
}

func startRecorder(t *testing.T, upstream *registrytest.Registry) *recorder {
	t.Helper()
	rec := &recorder{}
	target := &url.URL{Scheme: "http", Host: upstream.Addr}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.Host = pr.In.Host
	}}
	rp.ModifyResponse = func(resp *http.Response) error {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		rec.reqs = append(rec.reqs, recorded{resp.Request.Method, resp.Request.URL.Path, resp.Request.URL.RawQuery, resp.StatusCode})
		return nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rec.Addr = l.Addr().String()
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return rec
}

func (r *recorder) Requests() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.reqs...)
}

func (r *recorder) ResetRequests() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = nil
}

// Zstd and uncompressed layers go up as they are stored, their media
// types kept; a registry that hashes a corrupt blob refuses it, and the
// error says so.
func TestPushKeepsCompressionAndReportsDigestMismatch(t *testing.T) {
	s := newStore(t)
	plain := tarOf(t, tarEntry{name: "etc/", typ: '5'}, tarEntry{name: "etc/plain", body: "plain\n"})
	zst := tarOf(t, tarEntry{name: "etc/", typ: '5'}, tarEntry{name: "etc/zstd", body: strings.Repeat("zstd\n", 1000)})
	c := craft(t, []layerBlob{
		layerOf(plain, "application/vnd.oci.image.layer.v1.tar", nil),
		layerOf(zst, "application/vnd.oci.image.layer.v1.tar+zstd", func(b []byte) []byte { return zstdOf(t, b) }),
	}, nil)
	// Served as crafted (skopeo would gzip the plain layer on its way up).
	addr := serveCrafted(t, map[string]crafted{"minibox/mixed": c})
	img, _ := pull(t, s, addr+"/minibox/mixed:v1")

	dst := registrytest.Start(t)
	name := dst.Addr + "/minibox/mixed:v1"
	require.NoError(t, s.Tag(img.Name, name))
	res, _ := push(t, s, name, PushOptions{})
	assert.Equal(t, digest.FromBytes(c.manifest), res.Digest)
	var m struct {
		Layers []struct{ MediaType string }
	}
	_, body := getStatus(t, "http://"+dst.Addr+"/v2/minibox/mixed/manifests/v1")
	require.NoError(t, json.Unmarshal(body, &m))
	require.Len(t, m.Layers, 2)
	assert.Equal(t, "application/vnd.oci.image.layer.v1.tar", m.Layers[0].MediaType)
	assert.Equal(t, "application/vnd.oci.image.layer.v1.tar+zstd", m.Layers[1].MediaType)
	data, err := os.ReadFile(dst.BlobPath(img.Manifest.Layers[1].Digest.String()))
	require.NoError(t, err)
	assert.Equal(t, zstdMagic, data[:4], "pushed as stored, zstd")

	// A layer whose bytes no longer match its digest (same size): the
	// registry hashes it and refuses it.
	fresh := registrytest.Start(t)
	bad := fresh.Addr + "/minibox/bad:v1"
	require.NoError(t, s.Tag(img.Name, bad))
	blob := s.blobPath(img.Manifest.Layers[0].Digest)
	data, err = os.ReadFile(blob)
	require.NoError(t, err)
	data[len(data)/2] ^= 0xff
	require.NoError(t, os.WriteFile(blob, data, 0o644))
	err = pushErr(t, s, bad)
	assert.ErrorIs(t, err, ErrDigestMismatch)
	assert.Contains(t, err.Error(), "DIGEST_INVALID")
	status, _ := getStatus(t, "http://"+fresh.Addr+"/v2/minibox/bad/manifests/v1")
	assert.Equal(t, http.StatusNotFound, status, "no manifest after a failed blob")
}

// Failures say what happened, where, and what to do.
func TestPushErrors(t *testing.T) {
	s := newStore(t)
	r := registrytest.Start(t)
	want := registrytest.PushRootfs(t, r, smallRootfs(t), "minibox/src", registrytest.ImageOptions{})
	_, _ = pull(t, s, want.Ref)

	down := registrytest.DownAddr(t) + "/minibox/x:v1"
	require.NoError(t, s.Tag(want.Ref, down))
	err := pushErr(t, s, down)
	assert.ErrorIs(t, err, ErrRegistryDown)
	assert.Contains(t, err.Error(), "connection refused")

	refusing := registrytest.StartProxy(t, r, registrytest.ProxyOptions{Token: true, RefuseTokens: true})
	name := refusing.Addr + "/minibox/x:v1"
	require.NoError(t, s.Tag(want.Ref, name))
	err = pushErr(t, s, name)
	assert.ErrorIs(t, err, ErrUnauthorized)
	assert.Contains(t, err.Error(), "minibox login "+refusing.Addr)

	missing := registrytest.StartProxy(t, r, registrytest.ProxyOptions{Status: http.StatusNotFound})
	name = missing.Addr + "/minibox/x:v1"
	require.NoError(t, s.Tag(want.Ref, name))
	err = pushErr(t, s, name)
	assert.ErrorIs(t, err, ErrRemoteNotFound)
	assert.Contains(t, err.Error(), "minibox/x")

	err = pushErr(t, s, r.Addr+"/minibox/never-tagged:v1")
	assert.ErrorIs(t, err, ErrNotFound)
	assert.Contains(t, err.Error(), "minibox tag")
}

// Behind Docker Hub's bearer tokens, a push asks for pull,push (and
// shows its progress in place on a terminal).
func TestPushWithTokenAuth(t *testing.T) {
	s := newStore(t)
	r := registrytest.Start(t)
	want := registrytest.PushRootfs(t, r, smallRootfs(t), "minibox/src", registrytest.ImageOptions{})
	_, _ = pull(t, s, want.Ref)
	p := registrytest.StartTokenAuth(t, registrytest.Start(t))
	name := p.Addr + "/minibox/tokens:v1"
	require.NoError(t, s.Tag(want.Ref, name))
	res, out := push(t, s, name, PushOptions{Terminal: true})
	assert.Equal(t, want.Manifest.Digest, res.Digest.String())
	// On a terminal the layer lines are redrawn in place.
	assert.Contains(t, out, "\033[1A\r\033[K"+want.Layers[0].Digest[7:19]+": ")
	assert.Contains(t, out, want.Layers[0].Digest[7:19]+": Pushed\n")
	tokens := 0
	for _, req := range p.Requests() {
		if req.Path == "/token" {
			tokens++
			assert.Contains(t, req.Query, "scope=repository%3Aminibox%2Ftokens%3Apull%2Cpush")
		} else if req.Path != "/v2/" && req.Status != http.StatusUnauthorized {
			assert.True(t, req.Authorized, "%s %s without a token", req.Method, req.Path)
		}
	}
	assert.Equal(t, 1, tokens)
}

// getStatus GETs url (any manifest type accepted).
func getStatus(t *testing.T, url string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", registrytest.AcceptAll)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes()
}

func requireTool(t *testing.T, name string) {
	t.Helper()
	_, err := exec.LookPath(name)
	testenv.Require(t, err == nil, "needs "+name+" (Debian package "+name+")")
}

// runCmd runs a tool and fails the test with its output if it fails.
func runCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), out)
	return string(out)
}

// The stored password goes to the registry alone: an upload Location on
// another host that answers 401 with a challenge gets nothing (its
// "realm" would receive the credentials).
func TestCredentialsStayWithTheRegistry(t *testing.T) {
	dir := t.TempDir()
	var leaked sync.Map
	other, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	otherHost := strings.Replace(other.Addr().String(), "127.0.0.1", "localhost", 1)     // another host
	go http.Serve(other, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { //nolint:errcheck
		if a := r.Header.Get("Authorization"); a != "" {
			leaked.Store(r.URL.Path, a)
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+otherHost+`/token",service="evil"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(func() { other.Close() })
	reg, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { reg.Close() })
	go http.Serve(reg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { //nolint:errcheck
		switch {
		case r.URL.Path == "/v2/":
			w.WriteHeader(http.StatusOK)
		case r.Method == http.MethodHead:
			w.WriteHeader(http.StatusNotFound)
		case r.Method == http.MethodPost:
			w.Header().Set("Location", "http://"+otherHost+"/upload/1")
			w.WriteHeader(http.StatusAccepted)
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	regHost := reg.Addr().String()
	t.Setenv("DOCKER_CONFIG", dir)
	t.Setenv("REGISTRY_AUTH_FILE", filepath.Join(dir, "config.json"))
	auth := `{"auths":{"` + regHost + `":{"auth":"YWxpY2U6czNjcmV0"}}}` // alice:s3cret
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte(auth), 0o600))
	s, err := Open(filepath.Join(dir, "root"))
	require.NoError(t, err)
	l, err := s.AddLayer(context.Background(), t.TempDir())
	require.NoError(t, err)
	_, err = s.WriteImage(ocispec.Image{RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l.DiffID}}}, []ocispec.Descriptor{l.Desc}, regHost+"/x:1")
	require.NoError(t, err)
	_, err = s.Push(context.Background(), regHost+"/x:1", PushOptions{})
	require.Error(t, err, "the upload went nowhere")
	leaked.Range(func(path, a any) bool {
		t.Errorf("%s on the other host got Authorization: %s", path, a)
		return true
	})
}
