package build

// The build cache: $ROOT/build/cache/<key>, each file the manifest digest
// of the image a step made. Written by temporary file and rename(2) under
// $ROOT/build/lock (flock(2)); read without a lock (a reader sees an old
// entry or a new one). An entry whose image or any of its blobs is no
// longer in the store (rmi) is a miss.

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/image"
	"github.com/minibox-lab/minibox/internal/flock"
)

// cached returns the image step key made before, if all of it is still
// in the store.
func (bd *build) cached(key string) *image.Image {
	data, err := os.ReadFile(filepath.Join(bd.Root, "build", "cache", key))
	if err != nil {
		return nil
	}
	d, err := digest.Parse(strings.TrimSpace(string(data)))
	if err != nil || !bd.Images.HasBlob(d) {
		return nil
	}
	img, err := bd.Images.ImageByManifest(d)
	if err != nil {
		return nil
	}
	for _, l := range img.Manifest.Layers {
		if !bd.Images.HasBlob(l.Digest) {
			return nil
		}
	}
	return img
}

// remember records that step key made the image with manifest d.
func (bd *build) remember(key string, d digest.Digest) error {
	dir := filepath.Join(bd.Root, "build")
	lock, err := flock.Lock(filepath.Join(dir, "lock"), unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer lock.Close() // closing drops the lock
	tmp, err := os.CreateTemp(filepath.Join(dir, "cache"), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	_, err = tmp.WriteString(d.String() + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if err2 := tmp.Close(); err == nil {
		err = err2
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, "cache", key))
	}
	return err
}
