package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/registrytest"
	"github.com/minibox-lab/minibox/internal/stages"
)

// Two images sharing their base layer: rmi of one frees its own blobs and
// layer, keeps the shared ones; an image in use is refused, and with
// force only untagged (kept unnamed, found by id) until no container
// uses it; rmi by id of an image with two names needs force.
func TestRemove(t *testing.T) {
	s := newStore(t)
	r := registrytest.Start(t)
	rootfs := smallRootfs(t)
	a := registrytest.PushRootfs(t, r, rootfs, "minibox/a", registrytest.ImageOptions{Files: map[string]string{"a": "a"}})
	b := registrytest.PushRootfs(t, r, rootfs, "minibox/b", registrytest.ImageOptions{Files: map[string]string{"b": "b"}})
	require.Equal(t, a.Layers[0].Digest, b.Layers[0].Digest, "the fixtures share their base layer")
	imgA, _ := pull(t, s, a.Ref)
	imgB, _ := pull(t, s, b.Ref)
	dirsA, err := s.LayerDirs(imgA)
	require.NoError(t, err)

	rm, err := s.RemoveReport("127.0.0.1:"+strings.Split(r.Addr, ":")[1]+"/minibox/a", false, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{a.Ref}, rm.Untagged)
	assert.Equal(t, imgA.FullID(), rm.Deleted[0])
	have := blobs(t, s)
	for _, gone := range []string{a.Manifest.Digest, a.Config.Digest, a.Layers[1].Digest} {
		assert.False(t, have[gone], "%s still there", gone)
	}
	assert.True(t, have[a.Layers[0].Digest], "the shared layer went")
	assert.NoDirExists(t, dirsA[1])
	assert.DirExists(t, dirsA[0])
	_, err = s.LayerDirs(imgB)
	require.NoError(t, err, "the other image still has its layers")
	assertStoreClean(t, s)

	// In use: refused; forced: untagged, kept unnamed while in use.
	inUse := func(id string) bool { return id == imgB.ID }
	err = s.Remove(b.Ref, false, inUse)
	assert.ErrorIs(t, err, ErrInUse)
	assert.Contains(t, indexNames(t, s), b.Ref)
	require.NoError(t, s.Remove(b.Ref, true, inUse))
	list, err := s.List()
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, "", list[0].Name, "kept without a name")
	kept, err := s.Lookup(imgB.ID)
	require.NoError(t, err)
	_, err = s.LayerDirs(kept)
	require.NoError(t, err, "a container on it keeps its layers")
	assert.ErrorIs(t, s.Remove(imgB.ID, false, inUse), ErrInUse)
	require.NoError(t, s.Remove(imgB.ID, false, nil), "no longer in use: it goes")
	list, err = s.List()
	require.NoError(t, err)
	assert.Empty(t, list)
	assert.Empty(t, blobs(t, s), "every blob freed")
	layers, _ := os.ReadDir(filepath.Join(s.root, "layers"))
	assert.Empty(t, layers, "every unpacked layer freed")

	// Two names, one image: by id only with force.
	pull(t, s, a.Ref)
	pull(t, s, a.ByDigest())
	err = s.Remove(imgA.ID, false, nil)
	assert.ErrorIs(t, err, ErrMultipleNames)
	rm, err = s.RemoveReport(imgA.ID, true, nil)
	require.NoError(t, err)
	assert.Len(t, rm.Untagged, 2)
	assert.Empty(t, blobs(t, s))
	assert.ErrorIs(t, s.Remove("minibox/a", false, nil), ErrNotFound)
}

// Stage 06 and the engine share the store: an image stage06 pulled is
// listed here and its layers are used as they are; an image pulled here
// is listed by `stage06 images`.
func TestStage06Interop(t *testing.T) {
	s := newStore(t)
	src, err := stages.FindSource(".")
	require.NoError(t, err)
	stage, err := stages.Find(src, 6)
	require.NoError(t, err)
	bin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, stages.Build(ctx, src, bin, []stages.Stage{stage}, nil))
	stage06 := filepath.Join(bin, stage.Binary())

	r := registrytest.Start(t)
	byStage := registrytest.PushRootfs(t, r, smallRootfs(t), "minibox/bystage", registrytest.ImageOptions{Docker: true})
	byUs := registrytest.PushRootfs(t, r, smallRootfs(t), "minibox/byus", registrytest.ImageOptions{})

	out, err := exec.Command(stage06, "pull", "--root", s.root, byStage.Ref).CombinedOutput()
	require.NoError(t, err, "stage06 pull: %s", out)
	img, err := s.Lookup(byStage.Ref)
	require.NoError(t, err)
	assert.Equal(t, byStage.Manifest.Digest, img.Digest.String())
	assert.Equal(t, byStage.Ref, img.Name)
	dirs, err := s.LayerDirs(img) // stage 06 unpacked it: checked (diff_id) and used as is
	require.NoError(t, err)
	assert.FileExists(t, filepath.Join(dirs[0], "etc", "hostname"))

	pull(t, s, byUs.Ref)
	out, err = exec.Command(stage06, "images", "--root", s.root).CombinedOutput()
	require.NoError(t, err, "stage06 images: %s", out)
	ours, err := s.Lookup(byUs.Ref)
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^`+r.Addr+`/minibox/byus\s+latest\s+`+ours.ID+`\s`, string(out))
	assert.Regexp(t, `(?m)^`+r.Addr+`/minibox/bystage\s+latest\s+`+img.ID+`\s`, string(out))
}
