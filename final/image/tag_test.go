package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/registrytest"
)

// tag adds a name (by name, id or digest), moves a name taken by another
// image, and refuses what docker refuses.
func TestTag(t *testing.T) {
	s := newStore(t)
	r := registrytest.Start(t)
	rootfs := smallRootfs(t)
	a := registrytest.PushRootfs(t, r, rootfs, "minibox/a", registrytest.ImageOptions{Files: map[string]string{"a": "a"}})
	b := registrytest.PushRootfs(t, r, rootfs, "minibox/b", registrytest.ImageOptions{Files: map[string]string{"b": "b"}})
	imgA, _ := pull(t, s, a.Ref)
	imgB, _ := pull(t, s, b.Ref)

	require.NoError(t, s.Tag(a.Ref, "app"))
	require.NoError(t, s.Tag(imgA.ID, "app:2"))
	require.NoError(t, s.Tag(imgA.Digest.String(), "127.0.0.1:5000/app:3"))
	names := indexNames(t, s)
	assert.Equal(t, "latest", names["docker.io/library/app:latest"])
	assert.Equal(t, "2", names["docker.io/library/app:2"])
	assert.Equal(t, "3", names["127.0.0.1:5000/app:3"])
	for _, n := range []string{"app", "app:2", "127.0.0.1:5000/app:3"} {
		img, err := s.Lookup(n)
		require.NoError(t, err)
		assert.Equal(t, imgA.Digest, img.Digest, n)
	}

	require.NoError(t, s.Tag(b.Ref, "app"), "a name moves to another image")
	img, err := s.Lookup("app")
	require.NoError(t, err)
	assert.Equal(t, imgB.Digest, img.Digest)
	img, err = s.Lookup(a.Ref)
	require.NoError(t, err, "the first image keeps its other names")
	assert.Equal(t, imgA.Digest, img.Digest)

	assert.ErrorIs(t, s.Tag("nothing:here", "x"), ErrNotFound)
	assert.ErrorContains(t, s.Tag(a.Ref, "Upper/Case"), "lower case")
	assert.ErrorContains(t, s.Tag(a.Ref, "x@"+imgA.Digest.String()), "digest")
}

// history pairs the config's steps with the layers, newest first.
func TestHistory(t *testing.T) {
	s := newStore(t)
	r := registrytest.Start(t)
	want := registrytest.PushRootfs(t, r, smallRootfs(t), "minibox/h", registrytest.ImageOptions{Files: map[string]string{"h": "h"}})
	img, _ := pull(t, s, want.Ref)
	require.NotEmpty(t, img.Config.History, "umoci records history")
	hist, err := s.History(want.Ref)
	require.NoError(t, err)
	require.Len(t, hist, len(img.Config.History))
	assert.Equal(t, img.ID, hist[0].ID)
	for _, h := range hist[1:] {
		assert.Equal(t, "<missing>", h.ID)
	}
	var sizes []int64
	for i := len(hist) - 1; i >= 0; i-- {
		assert.Equal(t, img.Config.History[len(hist)-1-i].CreatedBy, hist[i].CreatedBy)
		if !hist[i].EmptyLayer {
			sizes = append(sizes, hist[i].Size)
		}
	}
	require.Len(t, sizes, len(want.Layers))
	for i, l := range want.Layers {
		assert.Equal(t, l.Size, sizes[i], "layer %d", i)
	}
	_, err = s.History("nothing:here")
	assert.ErrorIs(t, err, ErrNotFound)
}

// prune removes dangling images (not those in use), with all every image
// no container uses, then every blob and unpacked layer nothing uses.
func TestPrune(t *testing.T) {
	s := newStore(t)
	r := registrytest.Start(t)
	rootfs := smallRootfs(t)
	a := registrytest.PushRootfs(t, r, rootfs, "minibox/a", registrytest.ImageOptions{Files: map[string]string{"a": "a"}})
	b := registrytest.PushRootfs(t, r, rootfs, "minibox/b", registrytest.ImageOptions{Files: map[string]string{"b": "b"}})
	c := registrytest.PushRootfs(t, r, rootfs, "minibox/c", registrytest.ImageOptions{Files: map[string]string{"c": "c"}})
	imgA, _ := pull(t, s, a.Ref)
	imgB, _ := pull(t, s, b.Ref)
	_, _ = pull(t, s, c.Ref)
	dirsA, err := s.LayerDirs(imgA)
	require.NoError(t, err)

	// A dangling: untagged by rmi -f while a container used it.
	inUseA := func(id string) bool { return id == imgA.ID }
	require.NoError(t, s.Remove(a.Ref, true, inUseA))
	// Garbage: a blob and an unpacked layer no image has.
	stray := digest.FromString("stray")
	require.NoError(t, os.WriteFile(s.blobPath(stray), []byte("stray"), 0o644))
	require.NoError(t, os.MkdirAll(s.layerDir(stray), 0o755))

	rep, err := s.Prune(false, inUseA)
	require.NoError(t, err)
	assert.Empty(t, rep.Deleted, "in use: kept")
	assert.Equal(t, []digest.Digest{stray}, rep.Blobs)
	assert.Equal(t, int64(len("stray")), rep.Reclaimed)
	assert.NoDirExists(t, s.layerDir(stray))
	_, err = s.Lookup(imgA.ID)
	require.NoError(t, err)

	rep, err = s.Prune(false, nil)
	require.NoError(t, err)
	assert.Equal(t, []digest.Digest{imgA.FullID()}, rep.Deleted)
	assert.Empty(t, rep.Untagged, "it had no name")
	have := blobs(t, s)
	for _, gone := range []string{a.Manifest.Digest, a.Config.Digest, a.Layers[1].Digest} {
		assert.False(t, have[gone], "%s still there", gone)
	}
	assert.True(t, have[a.Layers[0].Digest], "the base layer B and C share")
	assert.NoDirExists(t, dirsA[1])
	assert.DirExists(t, dirsA[0])
	assert.Len(t, indexNames(t, s), 2, "named images stay without -a")

	// -a: every image no container uses; the blobs of a build cache
	// entry stay (final/build's cache keeps working), until it goes.
	cache := filepath.Join(s.root, "build", "cache")
	require.NoError(t, os.MkdirAll(cache, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(cache, "step"), []byte(c.Manifest.Digest+"\n"), 0o600))
	rep, err = s.Prune(true, func(id string) bool { return id == imgB.ID })
	require.NoError(t, err)
	assert.Equal(t, []string{c.Ref}, rep.Untagged)
	assert.Equal(t, map[string]string{b.Ref: "latest"}, indexNames(t, s))
	assert.True(t, blobs(t, s)[c.Layers[1].Digest], "a build cache entry's layer went")
	require.NoError(t, os.Remove(filepath.Join(cache, "step")))
	_, err = s.Prune(false, nil)
	require.NoError(t, err)
	assert.False(t, blobs(t, s)[c.Layers[1].Digest])
	assert.False(t, blobs(t, s)[c.Manifest.Digest])
	_, err = s.LayerDirs(imgB)
	require.NoError(t, err)
	layers, _ := filepath.Glob(filepath.Join(s.root, "layers", "*"))
	assert.Len(t, layers, 2, "B's two layers: %s", strings.Join(layers, " "))
	assertStoreClean(t, s)
}
