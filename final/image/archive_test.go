package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/registrytest"
)

// load loads file into s and returns what it named.
func load(t *testing.T, s *Store, file string) LoadResult {
	t.Helper()
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := s.Load(ctx, f)
	require.NoError(t, err, "load %s", file)
	return res
}

// loadErr loads data into s and returns the error it must fail with.
func loadErr(t *testing.T, s *Store, data []byte) error {
	t.Helper()
	_, err := s.Load(context.Background(), bytes.NewReader(data))
	require.Error(t, err)
	return err
}

// save saves refs from s to a new file and returns its name.
func save(t *testing.T, s *Store, format string, refs ...string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "images.tar")
	require.NoError(t, s.SaveFile(context.Background(), file, refs, format))
	return file
}

// skopeoInspect is skopeo inspect's JSON for ref.
func skopeoInspect(t *testing.T, ref string) map[string]any {
	t.Helper()
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(runCmd(t, "skopeo", "inspect", ref)), &v))
	return v
}

// An OCI save of two images (one of Docker's media types) loads into
// another data root as the same images (same ids; the OCI one the same
// manifest digest), and skopeo and umoci read the file without complaint.
// The docker-archive format loads back too, and skopeo reads it.
func TestSaveLoadRoundTrip(t *testing.T) {
	requireTool(t, "skopeo")
	requireTool(t, "umoci")
	s := newStore(t)
	r := registrytest.Start(t)
	oci := registrytest.PushRootfs(t, r, smallRootfs(t), "minibox/oci", registrytest.ImageOptions{Tag: "v1", Files: map[string]string{"etc/oci": "oci\n"}})
	dock := registrytest.PushRootfs(t, r, smallRootfs(t), "minibox/dock", registrytest.ImageOptions{Tag: "v2", Docker: true})
	imgOCI, _ := pull(t, s, oci.Ref)
	imgDock, _ := pull(t, s, dock.Ref)

	file := save(t, s, "", oci.Ref, dock.Ref)
	info, err := os.Stat(file)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), info.Mode().Perm())

	// skopeo reads it as an OCI archive, by ref.name.
	v := skopeoInspect(t, "oci-archive:"+file+":v1")
	assert.Equal(t, oci.Manifest.Digest, v["Digest"])
	v = skopeoInspect(t, "oci-archive:"+file+":v2")
	assert.Len(t, v["Layers"], len(dock.Layers))
	// umoci reads the layout (the Docker image rewritten with OCI types).
	layout := t.TempDir()
	runCmd(t, "tar", "-xf", file, "-C", layout)
	tags := runCmd(t, "umoci", "ls", "--layout", layout)
	assert.ElementsMatch(t, []string{"v1", "v2"}, strings.Fields(tags))
	stat := runCmd(t, "umoci", "stat", "--image", layout+":v2", "--json")
	assert.Contains(t, stat, "history")

	s2 := newStore(t)
	res := load(t, s2, file)
	assert.ElementsMatch(t, []string{oci.Ref, dock.Ref}, res.Names)
	got, err := s2.Lookup(oci.Ref)
	require.NoError(t, err)
	assert.Equal(t, imgOCI.ID, got.ID)
	assert.Equal(t, imgOCI.Digest, got.Digest, "an OCI manifest is saved as it is")
	dirs, err := s2.LayerDirs(got)
	require.NoError(t, err)
	assert.FileExists(t, filepath.Join(dirs[1], "etc", "oci"))
	got, err = s2.Lookup(dock.Ref)
	require.NoError(t, err)
	assert.Equal(t, imgDock.ID, got.ID, "the same config: the same image id")
	assertStoreClean(t, s2)

	// docker-archive: the older docker save layout.
	file = save(t, s, FormatDockerArchive, dock.Ref)
	v = skopeoInspect(t, "docker-archive:"+file)
	assert.Len(t, v["Layers"], len(dock.Layers))
	entries := tarNames(t, file)
	assert.Contains(t, entries, "manifest.json")
	assert.Contains(t, entries, imgDock.FullID().Encoded()+".json")
	assert.Contains(t, entries, imgDock.Config.RootFS.DiffIDs[0].Encoded()+"/layer.tar")
	// gzip-compressed, as docker load takes it too.
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	file = filepath.Join(t.TempDir(), "images.tar.gz")
	require.NoError(t, os.WriteFile(file, gzipOf(t, raw), 0o644))
	s3 := newStore(t)
	res = load(t, s3, file)
	assert.Equal(t, []string{dock.Ref}, res.Names)
	got, err = s3.Lookup(dock.Ref)
	require.NoError(t, err)
	assert.Equal(t, imgDock.ID, got.ID)
	_, err = s3.LayerDirs(got)
	require.NoError(t, err)
}

// What skopeo writes, docker-archive: (uncompressed layer files named in
// manifest.json) and oci-archive: (an OCI layout, named by ref.name),
// loads under the name it carries, as the same image.
func TestLoadSkopeoArchives(t *testing.T) {
	requireTool(t, "skopeo")
	r := registrytest.Start(t)
	want := registrytest.PushRootfs(t, r, smallRootfs(t), "minibox/src", registrytest.ImageOptions{Files: map[string]string{"etc/x": "x\n"}})
	id := strings.TrimPrefix(want.Config.Digest, "sha256:")[:12]
	dir := t.TempDir()
	for _, tc := range []struct{ dest, name string }{
		{"docker-archive:" + filepath.Join(dir, "d.tar") + ":minibox/fromdocker:v1", "docker.io/minibox/fromdocker:v1"},
		{"oci-archive:" + filepath.Join(dir, "o.tar") + ":minibox/fromoci:v3", "docker.io/minibox/fromoci:v3"},
	} {
		t.Run(strings.SplitN(tc.dest, ":", 2)[0], func(t *testing.T) {
			runCmd(t, "skopeo", "copy", "--quiet", "--src-tls-verify=false", "docker://"+want.Ref, tc.dest)
			s := newStore(t)
			res := load(t, s, strings.SplitN(tc.dest, ":", 3)[1])
			assert.Equal(t, []string{tc.name}, res.Names)
			img, err := s.Lookup(tc.name)
			require.NoError(t, err)
			assert.Equal(t, id, img.ID)
			dirs, err := s.LayerDirs(img)
			require.NoError(t, err)
			assert.FileExists(t, filepath.Join(dirs[len(dirs)-1], "etc", "x"))
			assertStoreClean(t, s)
		})
	}
}

// A blob whose bytes do not match its name, a layer that does not match
// its diff_id, a cut archive: the load fails and names nothing.
func TestLoadRefusesDamagedArchives(t *testing.T) {
	s := newStore(t)
	r := registrytest.Start(t)
	want := registrytest.PushRootfs(t, r, smallRootfs(t), "minibox/src", registrytest.ImageOptions{})
	_, _ = pull(t, s, want.Ref)
	data, err := os.ReadFile(save(t, s, "", want.Ref))
	require.NoError(t, err)
	layer := "blobs/sha256/" + strings.TrimPrefix(want.Layers[0].Digest, "sha256:")

	// A flipped byte in the layer blob.
	damaged := rewriteTar(t, data, func(name string, body []byte) []byte {
		if name == layer {
			body[len(body)/2] ^= 0xff
		}
		return body
	})
	s2 := newStore(t)
	err = loadErr(t, s2, damaged)
	assert.ErrorIs(t, err, ErrDigestMismatch)
	assert.Empty(t, indexNames(t, s2))

	// The archive cut in the middle.
	err = loadErr(t, s2, data[:len(data)/2])
	assert.Contains(t, err.Error(), "load")
	assert.Empty(t, indexNames(t, s2))

	// A layer missing from the archive.
	missing := rewriteTar(t, data, func(name string, body []byte) []byte {
		if name == layer {
			return nil
		}
		return body
	})
	err = loadErr(t, s2, missing)
	assert.Contains(t, err.Error(), "not in the archive")
	assert.Empty(t, indexNames(t, s2))
	assertStoreClean(t, s2)

	err = loadErr(t, s2, []byte("not a tar at all, not at all, no"))
	assert.Contains(t, err.Error(), "load")
}

// tarNames lists the entries of the tar file.
func tarNames(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names
		}
		require.NoError(t, err)
		names = append(names, hdr.Name)
	}
}

// rewriteTar copies a tar, passing each file's body through edit (nil:
// the entry is dropped).
func rewriteTar(t *testing.T, data []byte, edit func(name string, body []byte) []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		body, err := io.ReadAll(tr)
		require.NoError(t, err)
		if hdr.Typeflag == tar.TypeReg {
			if body = edit(hdr.Name, body); body == nil {
				continue
			}
			hdr.Size = int64(len(body))
		}
		require.NoError(t, tw.WriteHeader(hdr))
		_, err = tw.Write(body)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	return out.Bytes()
}
