package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// ErrInUse: a container uses the image (rmi without -f).
var ErrInUse = errors.New("image is in use by a container")

// ErrMultipleNames: rmi by id of an image with several names, without -f.
var ErrMultipleNames = errors.New("image is referenced by several names")

// Removal is what a Remove did, in docker's words.
type Removal struct {
	Untagged []string        // full names
	Deleted  []digest.Digest // the image id (config digest), then the layers freed
}

// Remove is RemoveReport without the report.
func (s *Store) Remove(ref string, force bool, inUse func(id string) bool) error {
	_, err := s.RemoveReport(ref, force, inUse)
	return err
}

// RemoveReport removes ref, as docker rmi does. By name: that name goes;
// the image goes with its last name. By id or digest: every name goes
// (several only with force). An image goes by deleting its manifest,
// config and layer blobs and unpacked layers that no other image (nor
// stage 06's build cache) uses. inUse (nil: nothing is) says whether a
// container uses the image with this id: then it is refused, or with
// force only untagged and kept, unnamed ("<none>" in images, found by its
// id or digest), so that the containers on it keep their layers.
func (s *Store) RemoveReport(ref string, force bool, inUse func(id string) bool) (Removal, error) {
	var rm Removal
	// Pulls (shared) finish first, and none starts while blobs go: a
	// blob a pull found present stays until it names its image.
	unlock, err := s.flock(gcLock, unix.LOCK_EX)
	if err != nil {
		return rm, err
	}
	defer unlock()
	matches, err := s.match(ref)
	if err != nil {
		return rm, err
	}
	img, err := s.loadImage(matches[0].desc.Digest)
	if err != nil {
		return rm, fmt.Errorf("image %s: %w", ref, err)
	}
	byName := len(matches) == 1 && matches[0].name != "" && !isIDRef(ref, img)
	if !byName && countNamed(matches) > 1 && !force {
		return rm, fmt.Errorf("unable to delete %s (use -f): %w: %s", ref, ErrMultipleNames, strings.Join(names(matches), ", "))
	}
	used := inUse != nil && inUse(img.ID)
	last, err := s.lastNames(img.Digest, matches)
	if err != nil {
		return rm, err
	}
	if used && last && !force {
		return rm, fmt.Errorf("unable to remove %s (use -f to untag it; the image stays while containers use it): %w %s", ref, ErrInUse, img.ID)
	}
	rm.Untagged = names(matches)
	keepUnnamed := used && last
	if err := s.untag(img.Digest, rm.Untagged, keepUnnamed); err != nil {
		return rm, err
	}
	if !last || used {
		return rm, nil
	}
	rm.Deleted, err = s.deleteImage(img)
	return rm, err
}

// isIDRef reports whether ref named img by id or digest, not by name.
func isIDRef(ref string, img *Image) bool {
	hex := strings.TrimPrefix(ref, "sha256:")
	return strings.HasPrefix(img.FullID().Encoded(), hex) || ref == img.Digest.String()
}

func countNamed(es []entry) int {
	return len(names(es))
}

func names(es []entry) []string {
	var out []string
	for _, e := range es {
		if e.name != "" {
			out = append(out, e.name)
		}
	}
	return out
}

// lastNames reports whether the entries are all that name the manifest.
func (s *Store) lastNames(d digest.Digest, going []entry) (bool, error) {
	all, err := s.entries()
	if err != nil {
		return false, err
	}
	gone := map[string]bool{}
	for _, e := range going {
		gone[e.name] = true
	}
	for _, e := range all {
		if e.desc.Digest == d && !gone[e.name] {
			return false, nil
		}
	}
	return true, nil
}

// untag drops the names of manifest d from index.json (and its unnamed
// entry, unless keepUnnamed: then it stays as one).
func (s *Store) untag(d digest.Digest, gone []string, keepUnnamed bool) error {
	drop := map[string]bool{}
	for _, n := range gone {
		drop[n] = true
	}
	return s.updateIndex(func(idx *ocispec.Index) error {
		keep := idx.Manifests[:0]
		hasUnnamed := false
		for _, m := range idx.Manifests {
			name := m.Annotations[NameAnnotation]
			switch {
			case m.Digest != d:
			case name == "" && keepUnnamed:
				hasUnnamed = true
			case name == "" || drop[name]:
				continue
			}
			keep = append(keep, m)
		}
		idx.Manifests = keep
		if keepUnnamed && !hasUnnamed {
			size := int64(0)
			if info, err := os.Stat(s.blobPath(d)); err == nil {
				size = info.Size()
			}
			idx.Manifests = append(idx.Manifests, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: size})
		}
		return nil
	})
}

// deleteImage deletes img's blobs and unpacked layers that nothing else
// in the store uses. Called with the gc lock held.
func (s *Store) deleteImage(img *Image) ([]digest.Digest, error) {
	kept, err := s.referenced()
	if err != nil {
		return nil, err
	}
	var deleted []digest.Digest
	var errs []error
	remove := func(d digest.Digest) bool {
		if kept[d] {
			return false
		}
		if err := os.Remove(s.blobPath(d)); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
		return true
	}
	if remove(img.Digest) && remove(img.FullID()) {
		deleted = append(deleted, img.FullID())
	}
	for _, l := range img.Manifest.Layers {
		if !remove(l.Digest) {
			continue
		}
		if err := s.removeLayerDir(l.Digest); err != nil {
			errs = append(errs, err)
		}
		deleted = append(deleted, l.Digest)
	}
	return deleted, errors.Join(errs...)
}

// referenced is every blob an image of index.json or a stage 06 build
// cache entry (cache/<hex>: a manifest digest) uses.
func (s *Store) referenced() (map[digest.Digest]bool, error) {
	entries, err := s.entries()
	if err != nil {
		return nil, err
	}
	roots := map[digest.Digest]bool{}
	for _, e := range entries {
		roots[e.desc.Digest] = true
	}
	// The build caches name images too: stage 06's ($ROOT/images/cache)
	// and final/build's ($ROOT/build/cache), a manifest digest per file.
	// As in docker, rmi and prune leave a build's cache working.
	cache, _ := filepath.Glob(filepath.Join(s.dir, "cache", "*"))
	built, _ := filepath.Glob(filepath.Join(s.root, "build", "cache", "*"))
	for _, f := range append(cache, built...) {
		if data, err := os.ReadFile(f); err == nil {
			if d, err := parseSHA256(strings.TrimSpace(string(data))); err == nil {
				roots[d] = true
			}
		}
	}
	kept := map[digest.Digest]bool{}
	for d := range roots {
		kept[d] = true
		img, err := s.loadImage(d)
		if err != nil {
			if s.hasBlob(d) {
				return nil, fmt.Errorf("image %s: %w (nothing deleted: its blobs cannot be told apart)", d, err)
			}
			continue // a cache entry of a build step since removed
		}
		kept[img.FullID()] = true
		for _, l := range img.Manifest.Layers {
			kept[l.Digest] = true
		}
	}
	return kept, nil
}

// removeLayerDir removes $ROOT/layers/<hex>: renamed to layers/tmp-<n>
// first (gone at once for every reader; a kill midway leaves a name that
// minibox cleanup removes), then deleted.
func (s *Store) removeLayerDir(d digest.Digest) error {
	dir := s.layerDir(d)
	if _, err := os.Lstat(dir); os.IsNotExist(err) {
		return nil
	}
	tmp := filepath.Join(filepath.Dir(dir), "tmp-"+strconv.FormatInt(time.Now().UnixNano(), 10))
	if err := os.Rename(dir, tmp); err != nil {
		return fmt.Errorf("remove layer %s: %w", d, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove layer %s: %w", d, err)
	}
	return nil
}
