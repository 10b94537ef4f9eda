package image

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/internal/registrytest"
)

// A zstd layer (made here with klauspost/compress; umoci writes none),
// pushed with skopeo into the real registry, pulls and unpacks, with an
// uncompressed layer and a gzip one in the same image.
func TestPullZstdGzipAndUncompressedLayers(t *testing.T) {
	s := newStore(t)
	r := registrytest.Start(t)
	base := tarOf(t, tarEntry{name: "etc/", typ: tar.TypeDir}, tarEntry{name: "etc/base", body: "gzip\n"})
	mid := tarOf(t, tarEntry{name: "etc/mid", body: "plain\n"})
	top := tarOf(t, tarEntry{name: "etc/top", body: "zstd\n"}, tarEntry{name: "etc/.wh.base"})
	c := craft(t, []layerBlob{
		layerOf(base, ocispec.MediaTypeImageLayerGzip, func(b []byte) []byte { return gzipOf(t, b) }),
		layerOf(mid, ocispec.MediaTypeImageLayer, nil),
		layerOf(top, "application/vnd.oci.image.layer.v1.tar+zstd", func(b []byte) []byte { return zstdOf(t, b) }),
	}, nil)
	pushLayout(t, r, "minibox/zstd", c)

	img, out := pull(t, s, r.Addr+"/minibox/zstd:v1")
	assert.Equal(t, "application/vnd.oci.image.layer.v1.tar+zstd", img.Manifest.Layers[2].MediaType, "skopeo kept the zstd layer")
	assert.Contains(t, out, img.Manifest.Layers[2].Digest.Encoded()[:12]+": Pull complete")
	dirs, err := s.LayerDirs(img)
	require.NoError(t, err)
	for i, want := range map[int][2]string{0: {"etc/base", "gzip\n"}, 1: {"etc/mid", "plain\n"}, 2: {"etc/top", "zstd\n"}} {
		got, err := os.ReadFile(filepath.Join(dirs[i], want[0]))
		require.NoError(t, err)
		assert.Equal(t, want[1], string(got))
	}
	var st unix.Stat_t
	require.NoError(t, unix.Lstat(filepath.Join(dirs[2], "etc", "base"), &st))
	assert.Equal(t, uint32(unix.S_IFCHR), st.Mode&unix.S_IFMT, "a whiteout is overlayfs's 0/0 character device")
	assert.Equal(t, uint64(0), st.Rdev)
}

// What a hostile or broken registry may send is refused before anything
// is stored or named: a config whose diff_id lies, digests that are not
// sha256 (or try to be paths), a blob longer than announced, Docker's
// schema 1, a layer type minibox does not read.
func TestPullRefusesBadImages(t *testing.T) {
	s := newStore(t)
	layer := tarOf(t, tarEntry{name: "hello", body: "world\n"})
	gz := func(b []byte) []byte { return gzipOf(t, b) }
	good := layerOf(layer, ocispec.MediaTypeImageLayerGzip, gz)
	wrongDiff := good
	wrongDiff.diffID = digest.FromString("something else")
	images := map[string]crafted{
		"good":     craft(t, []layerBlob{good}, nil),
		"diffid":   craft(t, []layerBlob{wrongDiff}, nil),
		"path":     craft(t, []layerBlob{good}, func(m *ocispec.Manifest) { m.Layers[0].Digest = "sha256:../../../../etc/passwd" }),
		"md5":      craft(t, []layerBlob{good}, func(m *ocispec.Manifest) { m.Layers[0].Digest = "md5:d41d8cd98f00b204e9800998ecf8427e" }),
		"short":    craft(t, []layerBlob{good}, func(m *ocispec.Manifest) { m.Layers[0].Size-- }),
		"huge":     craft(t, []layerBlob{good}, func(m *ocispec.Manifest) { m.Config.Size = 1 << 40 }),
		"mediatyp": craft(t, []layerBlob{good}, func(m *ocispec.Manifest) { m.Layers[0].MediaType = "application/x-rar" }),
		"schema1":  craft(t, []layerBlob{good}, func(m *ocispec.Manifest) { m.SchemaVersion = 1 }),
		"cfgdig":   craft(t, []layerBlob{good}, func(m *ocispec.Manifest) { m.Config.Digest = digest.FromString("not the config") }),
	}
	addr := serveCrafted(t, images)

	img, _ := pull(t, s, addr+"/good:v1")
	_, err := s.LayerDirs(img)
	require.NoError(t, err, "the crafted image itself is sound")

	for name, want := range map[string]string{
		"diffid":   "diff_id",
		"path":     `bad digest "sha256:../../../../etc/passwd"`,
		"md5":      "bad digest",
		"short":    "the manifest says",
		"huge":     "out of bounds",
		"mediatyp": `"application/x-rar" is not a layer`,
		"schema1":  "schema version 1",
		"cfgdig":   "not found", // the registry has no blob of that digest
	} {
		t.Run(name, func(t *testing.T) {
			err := pullErr(t, s, addr+"/"+name+":v1", PullOptions{})
			assert.ErrorContains(t, err, want)
			if name == "diffid" {
				assert.ErrorIs(t, err, ErrDigestMismatch)
			}
			names := indexNames(t, s)
			assert.NotContains(t, names, addr+"/"+name+":v1")
			assertStoreClean(t, s)
		})
	}
	// The lying diff_id's layer was never unpacked under its name... the
	// good image has the same blob, unpacked: so check with a fresh store.
	fresh := newStore(t)
	pullErr(t, fresh, addr+"/diffid:v1", PullOptions{})
	entries, _ := os.ReadDir(filepath.Join(fresh.root, "layers"))
	assert.Empty(t, entries, "a layer whose diff_id lies stays unpacked nowhere")
}

// The unpacker refuses what would write outside the layer, devices, and
// forged overlay attributes; it keeps whiteouts and opaque directories.
func TestUnpackIsSafe(t *testing.T) {
	newStore(t) // root
	for name, tc := range map[string]struct {
		entries []tarEntry
		want    string
	}{
		"dotdot":               {[]tarEntry{{name: "../escape", body: "x"}}, "climbs out"},
		"absolute":             {[]tarEntry{{name: "/etc/escape", body: "x"}}, "absolute name"},
		"through symlink":      {[]tarEntry{{name: "etc", typ: tar.TypeSymlink, link: "/etc"}, {name: "etc/escape", body: "x"}}, "refusing to write through it"},
		"relative symlink out": {[]tarEntry{{name: "up", typ: tar.TypeSymlink, link: "../../.."}}, "climbs out"},
		"hard link out":        {[]tarEntry{{name: "pw", typ: tar.TypeLink, link: "../../etc/passwd"}}, "climbs out"},
		"device":               {[]tarEntry{{name: "sda", typ: tar.TypeBlock}}, "not allowed"},
		"fifo":                 {[]tarEntry{{name: "p", typ: tar.TypeFifo}}, "not allowed"},
	} {
		t.Run(name, func(t *testing.T) {
			outside := t.TempDir()
			dir := filepath.Join(outside, "layers", "x")
			blob := filepath.Join(outside, "blob")
			data := tarOf(t, tc.entries...)
			require.NoError(t, os.WriteFile(blob, data, 0o644))
			err := unpackLayer(context.Background(), blob, digest.FromBytes(data), digest.FromBytes(data), dir)
			assert.ErrorContains(t, err, tc.want)
			assert.NoDirExists(t, dir)
			left, _ := filepath.Glob(filepath.Join(outside, "layers", "*"))
			assert.Empty(t, left, "a failed unpack leaves nothing")
			assert.NoFileExists(t, filepath.Join(outside, "escape"))
		})
	}

	t.Run("whiteouts and opaque directories", func(t *testing.T) {
		tmp := t.TempDir()
		data := tarOf(t, tarEntry{name: "d/", typ: tar.TypeDir}, tarEntry{name: "d/.wh..wh..opq"}, tarEntry{name: "d/kept", body: "k"}, tarEntry{name: ".wh.gone"},
			tarEntry{name: "link", typ: tar.TypeLink, link: "d/kept"}, tarEntry{name: "abs", typ: tar.TypeSymlink, link: "/etc/passwd"})
		blob := filepath.Join(tmp, "blob")
		require.NoError(t, os.WriteFile(blob, gzipOf(t, data), 0o644))
		dir := filepath.Join(tmp, "layers", "x")
		blobData, _ := os.ReadFile(blob)
		require.NoError(t, unpackLayer(context.Background(), blob, digest.FromBytes(blobData), digest.FromBytes(data), dir))
		buf := make([]byte, 8)
		n, err := unix.Getxattr(filepath.Join(dir, "d"), "trusted.overlay.opaque", buf)
		require.NoError(t, err)
		assert.Equal(t, "y", string(buf[:n]))
		var st unix.Stat_t
		require.NoError(t, unix.Lstat(filepath.Join(dir, "gone"), &st))
		assert.Equal(t, uint32(unix.S_IFCHR), st.Mode&unix.S_IFMT)
		target, err := os.Readlink(filepath.Join(dir, "abs"))
		require.NoError(t, err)
		assert.Equal(t, "/etc/passwd", target, "an absolute symlink resolves inside the container")
		var a, b unix.Stat_t
		require.NoError(t, unix.Stat(filepath.Join(dir, "link"), &a))
		require.NoError(t, unix.Stat(filepath.Join(dir, "d", "kept"), &b))
		assert.Equal(t, a.Ino, b.Ino)
	})
}
