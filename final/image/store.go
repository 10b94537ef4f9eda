// Package image is minibox's image store and distribution client, grown up
// from stage 06 (06-images/store.go, pull.go, registry.go, unpack.go): an
// OCI image layout under $ROOT/images that stage 06 reads and writes too,
// a pull that speaks the distribution API to any registry (Docker Hub,
// Quay, Harbor, a docker-registry on 127.0.0.1), and layers unpacked once
// under $ROOT/layers/<blob hex>, shared by every image and container.
//
// Layout (image-spec image-layout.md, the same as stage 06's):
//
//	$ROOT/images/oci-layout, index.json   the names: one manifest descriptor per name,
//	                                      annotated io.containerd.image.name (full name)
//	                                      and org.opencontainers.image.ref.name (tag)
//	$ROOT/images/blobs/sha256/<hex>       content-addressed blobs
//	$ROOT/images/ingest/tmp-*             a blob being written, renamed once checked
//	$ROOT/images/lock                     flock(2) while index.json changes
//	$ROOT/images/gc.lock                  shared by pulls, exclusive while rmi frees blobs
//	$ROOT/images/cache/<hex>              stage 06's build cache (its manifests are kept)
//	$ROOT/layers/<hex>                    an unpacked layer, named after its blob
package image

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

	"github.com/minibox-lab/minibox/internal/flock"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// NameAnnotation holds an image's full name in index.json, as containerd
// and docker's OCI export write it (and stage 06); ref.name holds the tag.
const NameAnnotation = "io.containerd.image.name"

// ErrNotFound: no image has that name, id or digest.
var ErrNotFound = errors.New("no such image")

// Store is an image store in a data root.
type Store struct {
	root string // the data root: $ROOT
	dir  string // $ROOT/images
}

// Open opens (making it on first use) the image store of the data root.
// Root's alone, like stage 06's: layers hold set-user-ID programs.
func Open(root string) (*Store, error) {
	s := &Store{root: root, dir: filepath.Join(root, "images")}
	for _, d := range []string{"blobs/sha256", "ingest"} {
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

// Dir is $ROOT/images, the OCI layout.
func (s *Store) Dir() string { return s.dir }

// blobPath is where blob d lives. d must have been checked (sha256).
func (s *Store) blobPath(d digest.Digest) string {
	return filepath.Join(s.dir, "blobs", d.Algorithm().String(), d.Encoded())
}

// hasBlob reports whether blob d is in the store.
func (s *Store) hasBlob(d digest.Digest) bool {
	_, err := os.Stat(s.blobPath(d))
	return err == nil
}

// putBlob copies at most limit bytes of r into the store, hashing them on
// the way. It is written to ingest/ first and renamed into blobs/ only once
// whole and checked against want: a killed pull leaves a temporary file
// (minibox cleanup knows it), never a blob whose name lies about its bytes.
func (s *Store) putBlob(r io.Reader, want digest.Digest, size int64) error {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "ingest"), "tmp-")
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	defer tmp.Close()
	h := digest.SHA256.Digester()
	// One byte more than announced: a longer blob is refused, not cut.
	n, err := io.Copy(io.MultiWriter(tmp, h.Hash()), io.LimitReader(r, size+1))
	switch {
	case err != nil:
		return err
	case n != size:
		return fmt.Errorf("%w: %s is %d bytes, the manifest says %d", ErrDigestMismatch, want, n, size)
	case h.Digest() != want:
		return fmt.Errorf("%w: expected %s, got %s: the data was damaged or tampered with", ErrDigestMismatch, want, h.Digest())
	}
	if err := tmp.Sync(); err != nil { // the bytes are on disk before the name is
		return fmt.Errorf("image store: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.blobPath(want)); err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	return nil
}

// putBytes stores data as blob want (a manifest: its bytes as the registry
// sent them, so that its digest stays the registry's).
func (s *Store) putBytes(data []byte, want digest.Digest) error {
	if s.hasBlob(want) {
		return nil
	}
	return s.putBlob(strings.NewReader(string(data)), want, int64(len(data)))
}

// readBlob reads a small blob (a manifest, a config), checking that its
// bytes still have its digest.
func (s *Store) readBlob(d digest.Digest, limit int64) ([]byte, error) {
	if err := checkSHA256(d); err != nil {
		return nil, err
	}
	f, err := os.Open(s.blobPath(d))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("blob %s: over %d bytes", d, limit)
	}
	if digest.FromBytes(data) != d {
		return nil, fmt.Errorf("blob %s: %w: its content no longer matches its digest", d, ErrDigestMismatch)
	}
	return data, nil
}

// checkSHA256 accepts only sha256:<64 hex>: digests come from outside and
// become paths (blobs/sha256/HEX, layers/HEX), so "sha256:../../etc" or
// another algorithm must never get that far.
func checkSHA256(d digest.Digest) error {
	if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("bad digest %q: expected sha256:<64 hex digits>", d)
	}
	return nil
}

// checkDescriptors checks every digest a manifest names, and the sizes.
func checkDescriptors(m ocispec.Manifest) error {
	if err := checkBlobDescriptor(m.Config, maxConfig); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	for i, l := range m.Layers {
		if err := checkBlobDescriptor(l, maxLayer); err != nil {
			return fmt.Errorf("layer %d: %w", i+1, err)
		}
	}
	return nil
}

func checkBlobDescriptor(d ocispec.Descriptor, limit int64) error {
	if err := checkSHA256(d.Digest); err != nil {
		return err
	}
	if d.Size < 0 || d.Size > limit {
		return fmt.Errorf("%s: size %d out of bounds (at most %d bytes)", d.Digest, d.Size, limit)
	}
	return nil
}

// Size limits: a registry is not trusted to send sane sizes.
const (
	maxManifest = 4 << 20  // a manifest or an index (the distribution spec's advice)
	maxConfig   = 8 << 20  // an image config
	maxLayer    = 16 << 30 // one compressed layer
	maxLayers   = 256      // layers per image (overlayfs stacks far fewer)
)

// readIndex reads index.json; a new store has none yet.
func (s *Store) readIndex() (*ocispec.Index, error) {
	idx := &ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
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

// updateIndex changes index.json under the store's lock (flock(2), the
// same file stage 06 locks): two pulls at once never lose a name. Written
// to a temporary file and renamed: a crash leaves the old index or the
// new one, never half of one.
func (s *Store) updateIndex(change func(*ocispec.Index) error) error {
	unlock, err := s.flock("lock", unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	if err := change(idx); err != nil {
		return err
	}
	sort.SliceStable(idx.Manifests, func(i, j int) bool {
		return idx.Manifests[i].Annotations[NameAnnotation] < idx.Manifests[j].Annotations[NameAnnotation]
	})
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.dir, "index.json"), data)
}

// flock takes a lock on $ROOT/images/NAME and returns its release.
func (s *Store) flock(name string, how int) (func(), error) {
	f, err := flock.Lock(filepath.Join(s.dir, name), how)
	if err != nil {
		return nil, fmt.Errorf("image store: lock %s: %w", name, err)
	}
	return func() { f.Close() }, nil // closing the file drops the lock
}

// tag points name (a full name) at the manifest in index.json, replacing
// what it named before.
func (s *Store) tag(name string, manifest ocispec.Descriptor) error {
	_, tag := SplitName(name)
	return s.updateIndex(func(idx *ocispec.Index) error {
		keep := idx.Manifests[:0]
		for _, m := range idx.Manifests {
			// The old image of this name, and the same image kept
			// unnamed by rmi -f (a name again, as in docker), go.
			old := m.Annotations[NameAnnotation]
			if old != name && (old != "" || m.Digest != manifest.Digest) {
				keep = append(keep, m)
			}
		}
		manifest.Annotations = map[string]string{NameAnnotation: name, ocispec.AnnotationRefName: tag}
		manifest.Platform = nil
		idx.Manifests = append(keep, manifest)
		return nil
	})
}

// writeFileAtomic writes a file by temporary file (.tmp-NAME<digits>,
// which minibox cleanup knows), fsync and rename(2).
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
