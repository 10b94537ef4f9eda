package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// PruneReport is what a Prune did, in docker's words.
type PruneReport struct {
	Untagged []string        // full names removed
	Deleted  []digest.Digest // image ids (config digests) of the images gone
	// Blobs are the blobs deleted: those of the images gone, and any that
	// no image used any more (left by an interrupted pull, or by rmi of a
	// store stage 06 shares).
	Blobs     []digest.Digest
	Reclaimed int64 // bytes of the blobs deleted
}

// Prune removes the dangling images (kept unnamed: after rmi -f of an
// image in use whose containers are gone, or a name moved to a newer
// image), or with all every image no container uses, then collects the
// garbage: every blob and unpacked layer ($ROOT/layers/<hex>) that no
// image of index.json, nor stage 06's or final/build's build cache, uses. inUse (nil:
// nothing is) says whether a container uses the image with this id (12
// hex digits, as rmi asks). All of it under the gc lock, exclusive: no
// pull or push runs meanwhile.
func (s *Store) Prune(all bool, inUse func(id string) bool) (PruneReport, error) {
	var rep PruneReport
	unlock, err := s.flock(gcLock, unix.LOCK_EX)
	if err != nil {
		return rep, err
	}
	defer unlock()
	entries, err := s.entries()
	if err != nil {
		return rep, err
	}
	goners := map[digest.Digest]bool{} // manifests whose every entry goes
	keepers := map[digest.Digest]bool{}
	drop := map[string]bool{} // "name\x00digest" of the entries that go
	for _, e := range entries {
		img, err := s.loadImage(e.desc.Digest)
		used := err == nil && inUse != nil && inUse(img.ID)
		if err != nil || used || (!all && e.name != "") {
			keepers[e.desc.Digest] = true
			continue
		}
		drop[e.name+"\x00"+e.desc.Digest.String()] = true
		goners[e.desc.Digest] = true
		if e.name != "" {
			rep.Untagged = append(rep.Untagged, e.name)
		}
	}
	if len(drop) > 0 {
		err := s.updateIndex(func(idx *ocispec.Index) error {
			keep := idx.Manifests[:0]
			for _, m := range idx.Manifests {
				if !drop[m.Annotations[NameAnnotation]+"\x00"+m.Digest.String()] {
					keep = append(keep, m)
				}
			}
			idx.Manifests = keep
			return nil
		})
		if err != nil {
			return rep, err
		}
	}
	for d := range goners {
		if keepers[d] {
			continue
		}
		if img, err := s.loadImage(d); err == nil {
			rep.Deleted = append(rep.Deleted, img.FullID())
		}
	}
	err = s.collectGarbage(&rep)
	return rep, err
}

// collectGarbage deletes the blobs and unpacked layers nothing uses.
// Called with the gc lock held, exclusive.
func (s *Store) collectGarbage(rep *PruneReport) error {
	kept, err := s.referenced()
	if err != nil {
		return err
	}
	var errs []error
	blobDir := filepath.Join(s.dir, "blobs", "sha256")
	files, err := os.ReadDir(blobDir)
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	for _, f := range files {
		d := digest.NewDigestFromEncoded(digest.SHA256, f.Name())
		if d.Validate() != nil || kept[d] {
			continue
		}
		info, err := f.Info()
		if err == nil {
			err = os.Remove(filepath.Join(blobDir, f.Name()))
		}
		if err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
			continue
		}
		rep.Blobs = append(rep.Blobs, d)
		if info != nil {
			rep.Reclaimed += info.Size()
		}
	}
	dirs, _ := os.ReadDir(filepath.Join(s.root, "layers"))
	for _, dir := range dirs {
		d := digest.NewDigestFromEncoded(digest.SHA256, dir.Name())
		if d.Validate() != nil || kept[d] { // tmp-*: minibox cleanup's
			continue
		}
		if err := s.removeLayerDir(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
