package main

// Images, what stage 06 adds: an image is a stack of layer tars and a
// config (command, environment, working directory, user), tied together by
// a manifest. All three are blobs named by their sha256, so a layer that
// ten images share is stored once, and a name ("busybox:latest") is only a
// pointer to a manifest. The store is an OCI image layout (image-spec,
// image-layout.md): oci-layout, index.json naming the images, and
// blobs/sha256/<hex>. Lesson 6 explains it.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// nameAnnotation holds an image's full name in index.json, as containerd
// and docker's OCI export write it; ref.name holds the tag alone.
const nameAnnotation = "io.containerd.image.name"

var ocispecVersioned = specs.Versioned{SchemaVersion: 2}

// store is $ROOT/images.
type store struct{ dir string }

// openStore makes the layout on first use. Root's alone, like the layers.
func openStore(root string) (*store, error) {
	s := &store{dir: filepath.Join(root, "images")}
	for _, d := range []string{"blobs/sha256", "ingest", "cache"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	layout := filepath.Join(s.dir, ocispec.ImageLayoutFile)
	if _, err := os.Stat(layout); errors.Is(err, fs.ErrNotExist) {
		data, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := writeFileAtomic(layout, data); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	return s, nil
}

func (s *store) blobPath(d digest.Digest) string {
	return filepath.Join(s.dir, "blobs", d.Algorithm().String(), d.Encoded())
}

// putBlob copies r into the store, hashing it on the way, and returns its
// digest and size. It is written to ingest/ first and renamed into blobs/
// only once whole and checked (want, if given, must match): a killed pull
// leaves a temporary file, never a blob whose name lies about its bytes.
func (s *store) putBlob(r io.Reader, want digest.Digest) (digest.Digest, int64, error) {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "ingest"), "tmp-")
	if err != nil {
		return "", 0, fmt.Errorf("image store: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	defer tmp.Close()
	digester := digest.SHA256.Digester()
	size, err := io.Copy(io.MultiWriter(tmp, digester.Hash()), r)
	got := digester.Digest()
	switch {
	case err != nil:
		return "", 0, err
	case want != "" && got != want:
		return "", 0, fmt.Errorf("digest mismatch: expected %s, got %s (%d bytes): the data was damaged or tampered with", want, got, size)
	}
	if err := tmp.Sync(); err != nil { // fsync(2): the bytes are on disk before the name is
		return "", 0, err
	}
	if err := os.Rename(tmp.Name(), s.blobPath(got)); err != nil {
		return "", 0, fmt.Errorf("image store: %w", err)
	}
	narrate("mv %s %s   # its sha256, checked", tmp.Name(), s.blobPath(got))
	return got, size, nil
}

// putJSON stores v as a JSON blob: a config, a manifest.
func (s *store) putJSON(v any) (digest.Digest, int64, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", 0, err
	}
	return s.putBlob(strings.NewReader(string(data)), "")
}

// readJSON reads blob d into v, checking that its bytes still have its digest.
func (s *store) readJSON(d digest.Digest, v any) error {
	if err := d.Validate(); err != nil {
		return err
	}
	data, err := os.ReadFile(s.blobPath(d))
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if digest.FromBytes(data) != d {
		return fmt.Errorf("blob %s: its content no longer matches its digest", d)
	}
	return json.Unmarshal(data, v)
}

// image is one image: its name (if any), its manifest's descriptor (the
// digest that names it), the manifest and the config.
type image struct {
	Name     string
	desc     ocispec.Descriptor
	manifest ocispec.Manifest
	config   ocispec.Image
}

// ID is docker's image id: the config's digest, 12 hex digits of it.
func (img *image) ID() string { return img.manifest.Config.Digest.Encoded()[:12] }

// loadImage reads a manifest and its config from the store, and checks
// every digest they name before any becomes a file name.
func (s *store) loadImage(manifest digest.Digest) (*image, error) {
	img := &image{desc: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: manifest}}
	if err := s.readJSON(manifest, &img.manifest); err != nil {
		return nil, err
	}
	if err := checkDigests(img.manifest); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", manifest, err)
	}
	if info, err := os.Stat(s.blobPath(manifest)); err == nil {
		img.desc.Size = info.Size()
	}
	if img.manifest.MediaType != "" {
		img.desc.MediaType = img.manifest.MediaType
	}
	if err := s.readJSON(img.manifest.Config.Digest, &img.config); err != nil {
		return nil, err
	}
	if len(img.config.RootFS.DiffIDs) != len(img.manifest.Layers) {
		return nil, fmt.Errorf("manifest %s: %d layers, its config %d diff_ids", manifest, len(img.manifest.Layers), len(img.config.RootFS.DiffIDs))
	}
	return img, nil
}

// checkDigests checks that the config's and layers' digests are sha256
// digests: they come from outside and become paths (blobs/sha256/HEX,
// layers/HEX), so "sha256:../../etc" must never get that far.
func checkDigests(m ocispec.Manifest) error {
	for _, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		if err := d.Digest.Validate(); err != nil || d.Digest.Algorithm() != digest.SHA256 {
			return fmt.Errorf("bad digest %q: expected sha256:<64 hex digits>", d.Digest)
		}
	}
	return nil
}

// writeImage stores img's config, then its manifest (blobs first: an
// index entry never points to a missing blob). The manifest is an OCI one,
// whatever the base image's was: Docker's layer types become OCI's.
func (s *store) writeImage(img *image) (ocispec.Descriptor, error) {
	cfg, size, err := s.putJSON(img.config)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	m := &img.manifest
	m.Versioned, m.MediaType, m.Annotations, m.Subject = ocispecVersioned, ocispec.MediaTypeImageManifest, nil, nil
	m.Config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cfg, Size: size}
	m.Layers = append([]ocispec.Descriptor{}, m.Layers...) // "layers": [] for scratch, as the spec wants
	for i := range m.Layers {
		m.Layers[i].MediaType = ociLayerType(m.Layers[i].MediaType)
	}
	d, size, err := s.putJSON(img.manifest)
	img.desc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: size}
	return img.desc, err
}

// ociLayerType is the OCI media type of a layer: Docker's
// rootfs.diff.tar.gzip is OCI's tar+gzip.
func ociLayerType(mediaType string) string {
	if strings.HasPrefix(mediaType, "application/vnd.docker.") {
		return ocispec.MediaTypeImageLayerGzip
	}
	return mediaType
}

// lookup finds an image by name (busybox, 127.0.0.1:5000/x:1), by id (as
// `images` shows it, or any longer prefix of the config digest), or by the
// sha256:HEX of its manifest.
func (s *store) lookup(ref string) (*image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	hex := strings.TrimPrefix(ref, "sha256:")
	if len(hex) >= 12 && strings.Trim(hex, "0123456789abcdef") == "" {
		for _, m := range idx.Manifests {
			if img, err := s.loadImage(m.Digest); err == nil && strings.HasPrefix(img.manifest.Config.Digest.Encoded(), hex) {
				img.Name = m.Annotations[nameAnnotation]
				return img, nil
			}
		}
		if len(hex) == 64 { // an unnamed image: a build's step
			if img, err := s.loadImage(digest.NewDigestFromEncoded(digest.SHA256, hex)); err == nil {
				return img, nil
			}
		}
	}
	name, err := normalizeName(ref)
	if err != nil {
		return nil, err
	}
	for _, m := range idx.Manifests {
		if m.Annotations[nameAnnotation] == name {
			img, err := s.loadImage(m.Digest)
			if err != nil {
				return nil, fmt.Errorf("image %s: %w", ref, err)
			}
			img.Name = name
			return img, nil
		}
	}
	return nil, fmt.Errorf("no image %s in %s (%s pull it, or build it)", ref, s.dir, stage)
}

// tag points name at manifest in index.json, replacing what it named.
func (s *store) tag(name string, manifest ocispec.Descriptor) error {
	full, err := normalizeName(name)
	if err != nil {
		return err
	}
	return s.updateIndex(func(idx *ocispec.Index) {
		keep := idx.Manifests[:0]
		for _, m := range idx.Manifests {
			if m.Annotations[nameAnnotation] != full {
				keep = append(keep, m)
			}
		}
		_, tag := shortRepository(full)
		manifest.Annotations = map[string]string{nameAnnotation: full, ocispec.AnnotationRefName: tag}
		idx.Manifests = append(keep, manifest)
		narrate("echo '{… \"manifests\": [… {\"digest\": \"%s\", … \"%s\"}]}' > %s/index.json.tmp && mv %[3]s/index.json.tmp %[3]s/index.json", manifest.Digest, full, s.dir)
	})
}

// readIndex reads index.json; a new store has none yet.
func (s *store) readIndex() (*ocispec.Index, error) {
	idx := &ocispec.Index{Versioned: ocispecVersioned, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
	data, err := os.ReadFile(filepath.Join(s.dir, "index.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return idx, nil
	}
	if err == nil {
		err = json.Unmarshal(data, idx)
	}
	if err != nil {
		return nil, fmt.Errorf("image store %s/index.json: %w", s.dir, err)
	}
	return idx, nil
}

// updateIndex changes index.json under a lock (flock(2)): two pulls at
// once must not lose one of the names. Written to a temporary file and
// renamed: a crash leaves the old index or the new one, never half of one.
func (s *store) updateIndex(change func(*ocispec.Index)) error {
	lock, err := os.OpenFile(filepath.Join(s.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	change(idx)
	sort.SliceStable(idx.Manifests, func(i, j int) bool {
		return idx.Manifests[i].Annotations[nameAnnotation] < idx.Manifests[j].Annotations[nameAnnotation]
	})
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.dir, "index.json"), data)
}

// writeFileAtomic writes a file by temporary file, fsync and rename(2).
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if err2 := tmp.Close(); err == nil {
		err = err2
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}
