package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/registrytest"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// newStore is a store in a fresh data root. Unpacking needs root (it
// chowns, and writes overlayfs's trusted.* attributes for whiteouts).
func newStore(t *testing.T) *Store {
	t.Helper()
	testenv.RequireRoot(t)
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	return s
}

// smallRootfs is a tiny rootfs: a few files and 256 KiB that do not
// compress (a layer big enough to stall in the middle of).
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

// pullQuiet pulls with the progress in a buffer, and returns both.
func pull(t *testing.T, s *Store, ref string) (*Image, string) {
	t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	img, err := s.Pull(ctx, ref, PullOptions{Progress: &out})
	require.NoError(t, err, "pull %s\n%s", ref, &out)
	return img, out.String()
}

// pullErr pulls ref and returns the error it must fail with.
func pullErr(t *testing.T, s *Store, ref string, o PullOptions) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	img, err := s.Pull(ctx, ref, o)
	require.Error(t, err, "pull %s should fail", ref)
	require.Nil(t, img)
	return err
}

// indexNames is what index.json names: full name -> ref.name annotation.
func indexNames(t *testing.T, s *Store) map[string]string {
	t.Helper()
	idx, err := s.readIndex()
	require.NoError(t, err)
	out := map[string]string{}
	for _, m := range idx.Manifests {
		out[m.Annotations[NameAnnotation]] = m.Annotations[ocispec.AnnotationRefName]
	}
	return out
}

// assertStoreClean checks the store holds no partial write and every blob
// has the digest its name says.
func assertStoreClean(t *testing.T, s *Store) {
	t.Helper()
	ingest, err := os.ReadDir(filepath.Join(s.dir, "ingest"))
	require.NoError(t, err)
	require.Empty(t, ingest, "partial blobs left in ingest/")
	blobs, err := os.ReadDir(filepath.Join(s.dir, "blobs", "sha256"))
	require.NoError(t, err)
	for _, b := range blobs {
		data, err := os.ReadFile(filepath.Join(s.dir, "blobs", "sha256", b.Name()))
		require.NoError(t, err)
		require.Equal(t, b.Name(), digest.FromBytes(data).Encoded(), "blob %s lies about its content", b.Name())
	}
	layers, _ := filepath.Glob(filepath.Join(s.root, "layers", "tmp-*"))
	require.Empty(t, layers, "half-unpacked layers left")
}

func blobs(t *testing.T, s *Store) map[string]bool {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.dir, "blobs", "sha256"))
	require.NoError(t, err)
	out := map[string]bool{}
	for _, e := range entries {
		out["sha256:"+e.Name()] = true
	}
	return out
}

// tarEntry is one entry of a test layer.
type tarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
}

// tarOf is an uncompressed tar of the entries (a regular file when typ is 0).
func tarOf(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Size: int64(len(e.body))}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		require.NoError(t, tw.WriteHeader(h))
		if h.Size > 0 {
			_, err := tw.Write([]byte(e.body))
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

func gzipOf(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(data)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func zstdOf(t *testing.T, data []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	require.NoError(t, err)
	defer zw.Close()
	return zw.EncodeAll(data, nil)
}

// crafted is an image made by hand, byte by byte: what a hostile or broken
// registry might send.
type crafted struct {
	manifest     []byte
	manifestType string
	blobs        map[digest.Digest][]byte
}

// layerBlob is one layer of a crafted image: its blob, media type and the
// diff_id its config states.
type layerBlob struct {
	data      []byte
	mediaType string
	diffID    digest.Digest
}

// layerOf makes a layer: the tar compressed by compress (nil: none), the
// right diff_id.
func layerOf(tarData []byte, mediaType string, compress func([]byte) []byte) layerBlob {
	data := tarData
	if compress != nil {
		data = compress(tarData)
	}
	return layerBlob{data: data, mediaType: mediaType, diffID: digest.FromBytes(tarData)}
}

// craft makes an OCI image of the layers, with Cmd cmd; edit may change
// the manifest before it is encoded.
func craft(t *testing.T, layers []layerBlob, edit func(*ocispec.Manifest)) crafted {
	t.Helper()
	c := crafted{blobs: map[digest.Digest][]byte{}, manifestType: ocispec.MediaTypeImageManifest}
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg := ocispec.Image{Created: &created, Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config: ocispec.ImageConfig{Cmd: []string{"/bin/sh"}}, RootFS: ocispec.RootFS{Type: "layers"}}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Layers: []ocispec.Descriptor{}}
	for _, l := range layers {
		d := digest.FromBytes(l.data)
		c.blobs[d] = l.data
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.diffID)
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: l.mediaType, Digest: d, Size: int64(len(l.data))})
	}
	cfgData, err := json.Marshal(cfg)
	require.NoError(t, err)
	m.Config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfgData), Size: int64(len(cfgData))}
	c.blobs[m.Config.Digest] = cfgData
	if edit != nil {
		edit(&m)
	}
	c.manifest, err = json.Marshal(m)
	require.NoError(t, err)
	return c
}

// serveCrafted serves images (by repository, tag "v1") as a registry on
// 127.0.0.1 and returns its address.
func serveCrafted(t *testing.T, images map[string]crafted) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
			return
		}
		for repo, img := range images {
			switch rest := strings.TrimPrefix(r.URL.Path, "/v2/"+repo+"/"); {
			case rest == r.URL.Path:
				continue
			case rest == "manifests/v1" || rest == "manifests/"+digest.FromBytes(img.manifest).String():
				w.Header().Set("Content-Type", img.manifestType)
				_, _ = w.Write(img.manifest)
				return
			case strings.HasPrefix(rest, "blobs/"):
				if data, ok := img.blobs[digest.Digest(strings.TrimPrefix(rest, "blobs/"))]; ok {
					_, _ = w.Write(data)
					return
				}
			}
		}
		http.NotFound(w, r)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// pushLayout writes the crafted image as an OCI layout and pushes it with
// skopeo into the real registry r as name:v1 (proof that a real tool and
// a real registry carry such an image, zstd layers included).
func pushLayout(t *testing.T, r *registrytest.Registry, name string, c crafted) {
	t.Helper()
	_, err := exec.LookPath("skopeo")
	testenv.Require(t, err == nil, "needs skopeo (Debian package skopeo)")
	layout := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(layout, "blobs", "sha256"), 0o755))
	write := func(data []byte) digest.Digest {
		d := digest.FromBytes(data)
		require.NoError(t, os.WriteFile(filepath.Join(layout, "blobs", "sha256", d.Encoded()), data, 0o644))
		return d
	}
	for _, b := range c.blobs {
		write(b)
	}
	md := write(c.manifest)
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{{
		MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(c.manifest)),
		Annotations: map[string]string{ocispec.AnnotationRefName: "v1"},
	}}}
	data, err := json.Marshal(idx)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(layout, "index.json"), data, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(layout, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644))
	out, err := exec.Command("skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci:"+layout+":v1", "docker://"+r.Addr+"/"+name+":v1").CombinedOutput()
	require.NoError(t, err, "skopeo: %s", out)
}
