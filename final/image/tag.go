package image

import (
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Tag gives the image src (a name, id or digest, as Lookup finds it) the
// name target (NAME[:TAG]; busybox is docker.io/library/busybox:latest),
// as docker tag does: the image keeps its other names, and an image that
// had target before loses it.
func (s *Store) Tag(src, target string) error {
	r, err := ParseReference(target)
	if err != nil {
		return fmt.Errorf("tag %s: %w", target, err)
	}
	if r.Digest != "" {
		return fmt.Errorf("tag %s: a tag cannot name a digest (NAME[:TAG])", target)
	}
	matches, err := s.match(src)
	if err != nil {
		return fmt.Errorf("tag %s %s: %w", src, target, err)
	}
	desc := matches[0].desc
	img, err := s.loadImage(desc.Digest)
	if err != nil {
		return fmt.Errorf("tag %s: %w", src, err)
	}
	desc = ocispec.Descriptor{
		MediaType: orDefault(img.Manifest.MediaType, orDefault(desc.MediaType, ocispec.MediaTypeImageManifest)),
		Digest:    desc.Digest,
		Size:      desc.Size,
	}
	if desc.Size == 0 {
		data, err := s.readBlob(desc.Digest, maxManifest)
		if err != nil {
			return err
		}
		desc.Size = int64(len(data))
	}
	if err := s.tag(r.String(), desc); err != nil {
		return fmt.Errorf("tag %s %s: %w", src, target, err)
	}
	return nil
}
