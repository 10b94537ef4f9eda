package image

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is one image of the store.
type Image struct {
	Name     string        // full name (docker.io/library/busybox:latest); "" for an unnamed image
	ID       string        // docker's image id: 12 hex digits of the config's digest
	Digest   digest.Digest // the manifest's digest
	Manifest ocispec.Manifest
	Config   ocispec.Image
	// Size is what a pull downloads: the config and the (compressed)
	// layers, as stage 06 counts it.
	Size int64
}

// Created is when the image was built (zero if its config does not say).
func (img *Image) Created() time.Time {
	if img.Config.Created == nil {
		return time.Time{}
	}
	return *img.Config.Created
}

// FullID is the config's digest, sha256:…, docker's long image id.
func (img *Image) FullID() digest.Digest { return img.Manifest.Config.Digest }

// The manifest media types the store holds: OCI's and Docker schema 2's
// (same JSON shape). Indexes are resolved at pull time, never stored as
// an image.
const (
	mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerConfig   = "application/vnd.docker.container.image.v1+json"
)

// loadImage reads manifest d and its config from the store, checking
// every digest they name before any becomes a file name.
func (s *Store) loadImage(d digest.Digest) (*Image, error) {
	data, err := s.readBlob(d, maxManifest)
	if err != nil {
		return nil, err
	}
	m, err := parseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d, err)
	}
	img := &Image{Digest: d, Manifest: m, ID: m.Config.Digest.Encoded()[:12], Size: m.Config.Size}
	for _, l := range m.Layers {
		img.Size += l.Size
	}
	cfg, err := s.readBlob(m.Config.Digest, maxConfig)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: config: %w", d, err)
	}
	if err := parseConfig(cfg, m, &img.Config); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d, err)
	}
	return img, nil
}

// parseManifest reads an image manifest, OCI or Docker schema 2, and
// checks its descriptors.
func parseManifest(data []byte) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return m, err
	}
	switch m.MediaType {
	case "", ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
	default:
		return m, fmt.Errorf("media type %q is not an image manifest", m.MediaType)
	}
	if m.SchemaVersion != 2 {
		return m, fmt.Errorf("schema version %d: only schema 2 manifests are read (Docker's schema 1 is deprecated)", m.SchemaVersion)
	}
	if len(m.Layers) > maxLayers {
		return m, fmt.Errorf("%d layers: at most %d", len(m.Layers), maxLayers)
	}
	return m, checkDescriptors(m)
}

// parseConfig reads an image config and checks it against its manifest:
// one diff_id per layer, each a sha256 digest.
func parseConfig(data []byte, m ocispec.Manifest, cfg *ocispec.Image) error {
	if err := json.Unmarshal(data, cfg); err != nil {
		return fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return fmt.Errorf("%d layers, but its config %s lists %d diff_ids", len(m.Layers), m.Config.Digest, len(cfg.RootFS.DiffIDs))
	}
	for _, d := range cfg.RootFS.DiffIDs {
		if err := checkSHA256(d); err != nil {
			return fmt.Errorf("config %s: diff_id: %w", m.Config.Digest, err)
		}
	}
	return nil
}

// entry is one name of index.json.
type entry struct {
	name string
	desc ocispec.Descriptor
}

// entries are index.json's named manifests.
func (s *Store) entries() ([]entry, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	var out []entry
	for _, m := range idx.Manifests {
		if err := checkSHA256(m.Digest); err != nil {
			return nil, fmt.Errorf("image store %s/index.json: %w", s.dir, err)
		}
		out = append(out, entry{name: m.Annotations[NameAnnotation], desc: m})
	}
	return out, nil
}

// List returns every named image, newest first (one per name, as docker
// images lists them).
func (s *Store) List() ([]*Image, error) {
	entries, err := s.entries()
	if err != nil {
		return nil, err
	}
	var list []*Image
	for _, e := range entries {
		img, err := s.loadImage(e.desc.Digest)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", e.name, err)
		}
		img.Name = e.name
		list = append(list, img)
	}
	sort.SliceStable(list, func(i, j int) bool {
		if ci, cj := list[i].Created(), list[j].Created(); !ci.Equal(cj) {
			return ci.After(cj)
		}
		return list[i].Name < list[j].Name
	})
	return list, nil
}

// Lookup finds an image: by name (docker's normalisation: busybox is
// docker.io/library/busybox:latest; NAME@sha256:… by its manifest), by
// the sha256:… of its manifest or config, or by a prefix of its id.
func (s *Store) Lookup(ref string) (*Image, error) {
	matches, err := s.match(ref)
	if err != nil {
		return nil, err
	}
	img, err := s.loadImage(matches[0].desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	img.Name = matches[0].name
	return img, nil
}

// match returns the index entries ref names: one for a name, every name of
// the image for a digest or id. An unnamed manifest (a step of a stage 06
// build) is found by its full digest, with an empty name.
func (s *Store) match(ref string) ([]entry, error) {
	entries, err := s.entries()
	if err != nil {
		return nil, err
	}
	if d, err := parseSHA256(ref); err == nil {
		if found := s.byDigest(entries, d); len(found) > 0 {
			return found, nil
		}
		if s.hasBlob(d) {
			if _, err := s.loadImage(d); err == nil {
				return []entry{{desc: ocispec.Descriptor{Digest: d}}}, nil
			}
		}
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	if r, err := ParseReference(ref); err == nil {
		for _, e := range entries {
			if e.name == r.String() {
				return []entry{e}, nil
			}
		}
		if r.Digest != "" { // repo@digest, pulled by tag: the same image
			repo := r.Registry + "/" + r.Repository
			for _, e := range entries {
				if e.desc.Digest == r.Digest && strings.HasPrefix(e.name, repo+":") {
					return []entry{e}, nil
				}
			}
		}
	}
	if prefix := strings.TrimPrefix(ref, "sha256:"); isHex(prefix) {
		return s.byIDPrefix(entries, ref, prefix)
	}
	return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
}

// byDigest: the entries whose manifest or config is d.
func (s *Store) byDigest(entries []entry, d digest.Digest) []entry {
	var out []entry
	for _, e := range entries {
		if e.desc.Digest == d {
			out = append(out, e)
		} else if img, err := s.loadImage(e.desc.Digest); err == nil && img.FullID() == d {
			out = append(out, e)
		}
	}
	return out
}

// byIDPrefix: the entries of the one image whose id starts with prefix.
func (s *Store) byIDPrefix(entries []entry, ref, prefix string) ([]entry, error) {
	var out []entry
	ids := map[digest.Digest]bool{}
	for _, e := range entries {
		img, err := s.loadImage(e.desc.Digest)
		if err == nil && strings.HasPrefix(img.FullID().Encoded(), prefix) {
			out = append(out, e)
			ids[img.FullID()] = true
		}
	}
	switch {
	case len(ids) == 0:
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	case len(ids) > 1:
		return nil, fmt.Errorf("image id %s is ambiguous: %d images start with it; give more digits", ref, len(ids))
	}
	return out, nil
}

func isHex(s string) bool {
	return s != "" && len(s) <= 64 && strings.Trim(s, "0123456789abcdef") == ""
}
