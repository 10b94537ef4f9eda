package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// upperDir makes what an overlay upper directory holds after a
// container ran: a new file, a hard link, a symlink, a whiteout (a 0/0
// character device) and an opaque directory.
func upperDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) { t.Helper(); require.NoError(t, err) }
	must(os.MkdirAll(filepath.Join(dir, "etc"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "etc", "new.conf"), []byte("new\n"), 0o640))
	must(os.Chown(filepath.Join(dir, "etc", "new.conf"), 12, 34))
	must(os.Link(filepath.Join(dir, "etc", "new.conf"), filepath.Join(dir, "etc", "linked.conf")))
	must(os.Symlink("new.conf", filepath.Join(dir, "etc", "link")))
	must(unix.Mknod(filepath.Join(dir, "etc", "gone"), unix.S_IFCHR, 0))
	must(os.MkdirAll(filepath.Join(dir, "var", "cache"), 0o755))
	must(unix.Setxattr(filepath.Join(dir, "var", "cache"), "trusted.overlay.opaque", []byte("y"), 0))
	must(os.WriteFile(filepath.Join(dir, "var", "cache", "only"), []byte("x"), 0o644))
	past := time.Unix(1700000000, 123456789)
	for _, p := range []string{"etc/new.conf", "etc", "var/cache/only", "var/cache", "var"} {
		must(os.Chtimes(filepath.Join(dir, p), past, past))
	}
	return dir
}

// layerEntries reads a layer blob's tar headers.
func layerEntries(t *testing.T, s *Store, d digest.Digest) []*tar.Header {
	t.Helper()
	f, err := os.Open(s.blobPath(d))
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	var out []*tar.Header
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		out = append(out, hdr)
	}
}

func TestAddLayerFromAnUpperDirectory(t *testing.T) {
	s := newStore(t)
	dir := upperDir(t)
	l, err := s.AddLayer(context.Background(), dir)
	require.NoError(t, err)
	assert.Equal(t, ocispec.MediaTypeImageLayerGzip, l.Desc.MediaType)
	info, err := os.Stat(s.blobPath(l.Desc.Digest))
	require.NoError(t, err)
	assert.Equal(t, info.Size(), l.Desc.Size)

	var names []string
	byName := map[string]*tar.Header{}
	for _, h := range layerEntries(t, s, l.Desc.Digest) {
		names = append(names, h.Name)
		byName[h.Name] = h
	}
	assert.Equal(t, []string{"etc/", "etc/.wh.gone", "etc/link", "etc/linked.conf", "etc/new.conf", "var/", "var/cache/", "var/cache/.wh..wh..opq", "var/cache/only"}, names, "name order, whiteouts in the layer format")
	assert.Equal(t, byte(tar.TypeLink), byName["etc/new.conf"].Typeflag, "the second name of a hard link is a link")
	assert.Equal(t, "etc/linked.conf", byName["etc/new.conf"].Linkname)
	assert.Equal(t, [2]int{12, 34}, [2]int{byName["etc/linked.conf"].Uid, byName["etc/linked.conf"].Gid})
	assert.Equal(t, "", byName["etc/linked.conf"].Uname, "numeric owners only")
	assert.Equal(t, int64(0), int64(byName["var/cache/only"].ModTime.Nanosecond()), "whole seconds")

	// The unpacked layer is where the engine looks, whiteouts as overlayfs's.
	unpacked := filepath.Join(s.root, "layers", l.Desc.Digest.Encoded())
	var st unix.Stat_t
	require.NoError(t, unix.Lstat(filepath.Join(unpacked, "etc", "gone"), &st))
	assert.Equal(t, uint32(unix.S_IFCHR), st.Mode&unix.S_IFMT)
	buf := make([]byte, 1)
	n, err := unix.Lgetxattr(filepath.Join(unpacked, "var", "cache"), "trusted.overlay.opaque", buf)
	require.NoError(t, err)
	assert.Equal(t, "y", string(buf[:n]))

	// The same files are the same layer.
	again, err := s.AddLayer(context.Background(), dir)
	require.NoError(t, err)
	assert.Equal(t, l, again)

	// And skip leaves entries out.
	skipped, err := s.AddLayerFiltered(context.Background(), dir, func(rel string, _ os.FileInfo) bool { return rel == "var" })
	require.NoError(t, err)
	for _, h := range layerEntries(t, s, skipped.Desc.Digest) {
		assert.NotContains(t, h.Name, "var")
	}
}

func TestWriteImage(t *testing.T) {
	s := newStore(t)
	l, err := s.AddLayer(context.Background(), upperDir(t))
	require.NoError(t, err)
	cfg := ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"sh"}}, RootFS: ocispec.RootFS{DiffIDs: []digest.Digest{l.DiffID}}}
	img, err := s.WriteImage(cfg, []ocispec.Descriptor{l.Desc}, "made:1")
	require.NoError(t, err)
	assert.Equal(t, "docker.io/library/made:1", img.Name)
	assert.Equal(t, ocispec.MediaTypeImageManifest, img.Manifest.MediaType)
	assert.Equal(t, ocispec.MediaTypeImageConfig, img.Manifest.Config.MediaType)
	assert.Equal(t, "linux", img.Config.OS)
	assert.Equal(t, "layers", img.Config.RootFS.Type)

	found, err := s.Lookup("made:1")
	require.NoError(t, err)
	assert.Equal(t, img.Digest, found.Digest)
	dirs, err := s.LayerDirs(found)
	require.NoError(t, err)
	assert.Equal(t, []string{filepath.Join(s.root, "layers", l.Desc.Digest.Encoded())}, dirs)

	// Unnamed: found by its manifest digest only.
	unnamed, err := s.WriteImage(ocispec.Image{}, nil, "")
	require.NoError(t, err)
	assert.Equal(t, "", unnamed.Name)
	assert.Empty(t, unnamed.Manifest.Layers)
	byDigest, err := s.ImageByManifest(unnamed.Digest)
	require.NoError(t, err)
	assert.Equal(t, unnamed.FullID(), byDigest.FullID())
	assert.NotContains(t, indexNames(t, s), "")

	// Layers must be in the store, one diff_id each.
	_, err = s.WriteImage(cfg, nil, "bad:1")
	assert.ErrorContains(t, err, "1 diff_ids")
	missing := l.Desc
	missing.Digest = digest.FromString("not stored")
	_, err = s.WriteImage(cfg, []ocispec.Descriptor{missing}, "bad:1")
	assert.ErrorContains(t, err, "is not in the store")
}

// A running container committed cannot lead the layer writer out of its
// upper directory: a directory swapped for a symlink to the host while
// the walk is inside it changes nothing of what is read (the walk holds
// each directory open and never looks a path up from the top again).
func TestLayerWalkCannotBeRedirected(t *testing.T) {
	dir, host := t.TempDir(), t.TempDir()
	must := func(err error) { require.NoError(t, err) }
	must(os.MkdirAll(filepath.Join(host, "etc"), 0o755))
	must(os.WriteFile(filepath.Join(host, "etc", "shadow"), []byte("HOSTSECRET"), 0o600))
	must(os.MkdirAll(filepath.Join(dir, "d", "etc"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "d", "etc", "aaa"), []byte("first"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "d", "etc", "shadow"), []byte("container's own"), 0o600))
	swapped := false
	skip := func(rel string, info fs.FileInfo) bool {
		if rel == "d/etc/aaa" && !swapped { // the container swaps d for a link to the host's /
			must(os.Rename(filepath.Join(dir, "d"), filepath.Join(dir, "d.old")))
			must(os.Symlink(host, filepath.Join(dir, "d")))
			swapped = true
		}
		return false
	}
	var buf bytes.Buffer
	require.NoError(t, WriteLayerTar(context.Background(), dir, &buf, skip))
	require.True(t, swapped)
	files := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		files[hdr.Name] = string(data)
	}
	assert.Equal(t, "container's own", files["d/etc/shadow"])
	for name, data := range files {
		assert.NotContains(t, data, "HOSTSECRET", "%s came from the host", name)
	}
}
