package image

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/registrytest"
)

// A pull by tag stores an OCI layout stage 06 reads (index.json names
// with both annotations, verified blobs), unpacks the layers, prints
// docker's lines; a second pull finds everything there; a pull by digest
// names the image by digest; Lookup finds it every way docker does.
func TestPullByTagAndByDigest(t *testing.T) {
	s := newStore(t)
	r := registrytest.Start(t)
	want := registrytest.PushRootfs(t, r, smallRootfs(t), "minibox/tagged", registrytest.ImageOptions{
		Tag: "v1", Files: map[string]string{"etc/marker": "tagged\n"}, Config: registrytest.Config{Cmd: []string{"/bin/sh"}},
	})

	img, out := pull(t, s, want.Ref)
	assert.Equal(t, r.Addr+"/minibox/tagged:v1", img.Name)
	assert.Equal(t, want.Manifest.Digest, img.Digest.String())
	assert.Equal(t, strings.TrimPrefix(want.Config.Digest, "sha256:")[:12], img.ID)
	assert.Equal(t, []string{"/bin/sh"}, img.Config.Config.Cmd)
	size := want.Config.Size
	for _, l := range want.Layers {
		size += l.Size
	}
	assert.Equal(t, size, img.Size)
	assert.Equal(t, map[string]string{img.Name: "v1"}, indexNames(t, s))
	for _, l := range want.Layers {
		assert.Contains(t, out, l.Digest[7:19]+": Pull complete\n")
	}
	assert.Contains(t, out, "v1: Pulling from minibox/tagged\n")
	assert.Contains(t, out, "Digest: "+want.Manifest.Digest+"\n")
	assert.Contains(t, out, "Status: Downloaded newer image for "+want.Ref+"\n")
	assert.NotContains(t, out, "\033[", "no terminal codes when not on a terminal")
	assertStoreClean(t, s)

	dirs, err := s.LayerDirs(img)
	require.NoError(t, err)
	require.Len(t, dirs, 2)
	assert.Equal(t, filepath.Join(s.root, "layers", strings.TrimPrefix(want.Layers[1].Digest, "sha256:")), dirs[1], "named after the blob, as stage 06 does")
	marker, err := os.ReadFile(filepath.Join(dirs[1], "etc", "marker"))
	require.NoError(t, err)
	assert.Equal(t, "tagged\n", string(marker))
	assert.FileExists(t, filepath.Join(dirs[0], "bin", "noise"))

	_, out = pull(t, s, want.Ref)
	assert.Contains(t, out, want.Layers[0].Digest[7:19]+": Already exists\n")
	assert.Contains(t, out, "Status: Image is up to date for "+want.Ref+"\n")

	byDigest, _ := pull(t, s, want.ByDigest())
	assert.Equal(t, r.Addr+"/minibox/tagged@"+want.Manifest.Digest, byDigest.Name)
	assert.Equal(t, "<none>", indexNames(t, s)[byDigest.Name], "ref.name of a name by digest")

	for _, ref := range []string{want.Ref, want.ByDigest(), img.ID, img.ID[:5], "sha256:" + img.ID, want.Manifest.Digest, want.Config.Digest} {
		found, err := s.Lookup(ref)
		if assert.NoError(t, err, ref) {
			assert.Equal(t, img.Digest, found.Digest, ref)
		}
	}
	_, err = s.Lookup(r.Addr + "/minibox/tagged:v2")
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = s.Lookup("busybox")
	assert.ErrorIs(t, err, ErrNotFound)
}

// Docker schema 2 manifests (skopeo --format v2s2) pull the same way; the
// stored manifest keeps the registry's bytes (its digest is the registry's).
func TestPullDockerSchema2(t *testing.T) {
	s := newStore(t)
	r := registrytest.Start(t)
	want := registrytest.PushRootfs(t, r, smallRootfs(t), "minibox/docker", registrytest.ImageOptions{Docker: true})
	require.Equal(t, registrytest.MediaTypeDockerManifest, want.Manifest.MediaType)
	img, _ := pull(t, s, want.Ref)
	assert.Equal(t, want.Manifest.Digest, img.Digest.String())
	assert.Equal(t, mediaTypeDockerManifest, img.Manifest.MediaType)
	dirs, err := s.LayerDirs(img)
	require.NoError(t, err)
	assert.FileExists(t, filepath.Join(dirs[0], "etc", "hostname"))
}

// An index (OCI) or manifest list (Docker) resolves to the host's
// platform, listed second: the other platform's blobs are never fetched.
func TestPullPicksTheHostPlatform(t *testing.T) {
	for _, docker := range []bool{false, true} {
		t.Run(fmt.Sprintf("docker=%v", docker), func(t *testing.T) {
			s := newStore(t)
			r := registrytest.Start(t)
			p := registrytest.StartProxy(t, r, registrytest.ProxyOptions{})
			ix := registrytest.PushIndex(t, p, smallRootfs(t), "minibox/multi", registrytest.ImageOptions{Docker: docker})
			img, _ := pull(t, s, ix.Ref)
			assert.Equal(t, ix.Host.Manifest.Digest, img.Digest.String())
			assert.True(t, p.Fetched(ix.Host.Manifest.Digest))
			assert.False(t, p.Fetched(ix.Other.Config.Digest), "fetched the other platform's config")
			assert.False(t, p.Fetched(ix.Other.Layers[len(ix.Other.Layers)-1].Digest), "fetched the other platform's layer")
		})
	}
}

func TestPickPlatformVariant(t *testing.T) {
	d := func(c byte) digest.Digest { return digest.Digest("sha256:" + strings.Repeat(string(c), 64)) }
	idx := ocispec.Index{Manifests: []ocispec.Descriptor{
		{Digest: d('1'), Platform: &ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}},
		{Digest: d('2'), Platform: &ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}},
		{Digest: d('3'), Platform: &ocispec.Platform{OS: "windows", Architecture: "amd64"}},
		{Digest: d('4'), Platform: &ocispec.Platform{OS: "linux", Architecture: "arm64"}},
		{Digest: d('5'), Platform: &ocispec.Platform{OS: "unknown", Architecture: "unknown"}},
	}}
	got, err := pickPlatform(idx, "arm", "v7")
	require.NoError(t, err)
	assert.Equal(t, d('2'), got.Digest)
	got, err = pickPlatform(idx, "arm64", "v8")
	require.NoError(t, err)
	assert.Equal(t, d('4'), got.Digest, "no variant stands for any")
	_, err = pickPlatform(idx, "amd64", "")
	assert.ErrorContains(t, err, "no image for linux/amd64, only for linux/arm/v6, linux/arm/v7, windows/amd64")
	idx.Manifests[3].Digest = "sha256:../../etc"
	_, err = pickPlatform(idx, "arm64", "v8")
	assert.ErrorContains(t, err, "bad digest")
}

// Docker Hub's anonymous bearer tokens: 401 + WWW-Authenticate, a token
// from the realm for this repository's pull scope, then authorised GETs.
func TestPullWithTokenAuth(t *testing.T) {
	s := newStore(t)
	r := registrytest.Start(t)
	p := registrytest.StartTokenAuth(t, r)
	want := registrytest.PushRootfs(t, p, smallRootfs(t), "minibox/private", registrytest.ImageOptions{})
	img, _ := pull(t, s, want.Ref)
	assert.Equal(t, want.Manifest.Digest, img.Digest.String())
	var token, authorized int
	for _, req := range p.Requests() {
		if req.Path == "/token" {
			token++
			assert.Contains(t, req.Query, "scope=repository%3Aminibox%2Fprivate%3Apull")
		}
		if strings.Contains(req.Path, "/blobs/") || strings.Contains(req.Path, "/manifests/") {
			assert.True(t, req.Authorized, "%s without a token", req.Path)
			authorized++
		}
	}
	assert.Equal(t, 1, token, "one token for the whole pull")
	assert.Greater(t, authorized, 2)
}

// Each failure names the registry, the repository, what was asked and
// what it means; errors.Is tells the kinds apart; nothing is stored.
func TestPullErrorsAreClear(t *testing.T) {
	s := newStore(t)
	r := registrytest.Start(t)
	registrytest.PushRootfs(t, r, smallRootfs(t), "minibox/there", registrytest.ImageOptions{Tag: "v1"})
	for _, tc := range []struct {
		name string
		ref  string
		opts *registrytest.ProxyOptions
		kind error
		want []string
	}{
		{name: "no such repository", ref: r.Addr + "/minibox/nowhere:v1", kind: ErrRemoteNotFound, want: []string{r.Addr, "minibox/nowhere", "manifest v1", "404"}},
		{name: "no such tag", ref: r.Addr + "/minibox/there:v9", kind: ErrRemoteNotFound, want: []string{"minibox/there", "v9", "404"}},
		{name: "429", opts: &registrytest.ProxyOptions{Status: http.StatusTooManyRequests}, kind: ErrTooManyRequests, want: []string{"429", "Retry-After: 60", "minibox/there"}},
		{name: "503", opts: &registrytest.ProxyOptions{Status: http.StatusServiceUnavailable}, kind: ErrRegistryFailed, want: []string{"503", "minibox/there"}},
		{name: "401", opts: &registrytest.ProxyOptions{Token: true, RefuseTokens: true}, kind: ErrUnauthorized, want: []string{"401", "minibox/there"}},
		{name: "down", ref: registrytest.DownAddr(t) + "/minibox/there:v1", kind: ErrRegistryDown, want: []string{"connection refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := tc.ref
			if tc.opts != nil {
				p := registrytest.StartProxy(t, r, *tc.opts)
				ref = p.Ref("minibox/there", "v1")
				tc.want = append(tc.want, p.Addr)
				defer func() { assert.Less(t, len(p.Requests()), 10, "it kept retrying: %+v", p.Requests()) }()
			}
			err := pullErr(t, s, ref, PullOptions{})
			assert.ErrorIs(t, err, tc.kind)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
	assert.Empty(t, indexNames(t, s))
	assertStoreClean(t, s)
}

// A blob the registry serves damaged (its stored bytes changed, same
// size) is refused by its digest: no image, no false blob, no partial one.
func TestPullRejectsATamperedBlob(t *testing.T) {
	for _, which := range []string{"layer", "config"} {
		t.Run(which, func(t *testing.T) {
			s := newStore(t)
			r := registrytest.Start(t)
			want := registrytest.PushRootfs(t, r, smallRootfs(t), "minibox/tampered", registrytest.ImageOptions{})
			target := want.Layers[0].Digest
			if which == "config" {
				target = want.Config.Digest
			}
			r.CorruptBlob(t, target)
			err := pullErr(t, s, want.Ref, PullOptions{})
			assert.ErrorIs(t, err, ErrDigestMismatch)
			assert.Contains(t, err.Error(), target)
			assert.Empty(t, indexNames(t, s))
			assert.False(t, blobs(t, s)[target])
			assertStoreClean(t, s)
		})
	}
}

// Ctrl-C (the context cancelled) in the middle of a layer: the pull ends
// at once, leaves no image and no partial file; the next pull completes.
func TestPullInterruptedMidLayer(t *testing.T) {
	s := newStore(t)
	r := registrytest.Start(t)
	p := registrytest.StartProxy(t, r, registrytest.ProxyOptions{StallBlobsAfter: 64 << 10})
	want := registrytest.PushRootfs(t, p, smallRootfs(t), "minibox/interrupted", registrytest.ImageOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := s.Pull(ctx, want.Ref, PullOptions{})
		done <- err
	}()
	p.WaitStalled(t, 30*time.Second)
	cancel()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("the pull did not end within 10s of its cancellation")
	}
	assert.Empty(t, indexNames(t, s))
	assert.False(t, blobs(t, s)[want.Layers[0].Digest])
	assertStoreClean(t, s)

	p.SetOptions(registrytest.ProxyOptions{})
	img, _ := pull(t, s, want.Ref)
	_, err := s.LayerDirs(img)
	require.NoError(t, err)
}

// A registry not on this machine is spoken to over HTTPS; localhost,
// 127.0.0.0/8 and ::1 get plain HTTP; --insecure tries HTTPS, then HTTP.
func TestPlainHTTPOnlyForLoopbackOrInsecure(t *testing.T) {
	s := newStore(t)
	for _, tc := range []struct {
		ref      string
		insecure bool
		want     []string
	}{
		{ref: "registry.example:5000/x:v1", want: []string{"https://registry.example:5000/v2/"}},
		{ref: "registry.example:5000/x:v1", insecure: true, want: []string{"https://registry.example:5000/v2/", "http://registry.example:5000/v2/"}},
		{ref: "busybox", want: []string{"https://registry-1.docker.io/v2/"}},
		{ref: "localhost:5000/x", want: []string{"http://localhost:5000/v2/"}},
		{ref: "127.1.2.3:5000/x", want: []string{"http://127.1.2.3:5000/v2/"}},
		{ref: "[::1]:5000/x", want: []string{"http://[::1]:5000/v2/"}},
	} {
		rt := &recordingTransport{}
		err := pullErr(t, s, tc.ref, PullOptions{Insecure: tc.insecure, transport: rt})
		assert.ErrorIs(t, err, ErrRegistryDown, tc.ref)
		assert.Equal(t, tc.want, rt.urls, tc.ref)
	}
}

// recordingTransport answers every request with a refused connection,
// recording the URLs asked for: no packet leaves the test.
type recordingTransport struct{ urls []string }

func (rt *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt.urls = append(rt.urls, req.URL.String())
	return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
}

// On a terminal: one line per layer, redrawn in place (cursor up, erase).
func TestProgressOnATerminal(t *testing.T) {
	var out strings.Builder
	p := newProgress(&out, true)
	p.layers([]string{"aaaaaaaaaaaa", "bbbbbbbbbbbb"})
	p.bytes(0, 50, 100)
	p.set(0, "Pull complete")
	p.set(1, "Already exists")
	s := out.String()
	assert.Contains(t, s, "\033[2A", "moves up over the block to redraw it")
	last := s[strings.LastIndex(s, "\033[2A"):]
	assert.Regexp(t, regexp.MustCompile(`^\033\[2A\r\033\[Kaaaaaaaaaaaa: Pull complete\n\r\033\[Kbbbbbbbbbbbb: Already exists\n$`), last)
	assert.Contains(t, s, "aaaaaaaaaaaa: Downloading [===============>              ] 50B/100B")
}
