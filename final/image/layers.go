package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// layerDir is where the layer with this blob digest is unpacked:
// $ROOT/layers/<hex>, the name stage 06 gives it too.
func (s *Store) layerDir(blob digest.Digest) string {
	return filepath.Join(s.root, "layers", blob.Encoded())
}

// LayerDirs returns img's layers unpacked, bottom first (overlayfs wants
// them top first: reverse them for lowerdir=). A layer is unpacked once,
// then shared by every image and container that has it. An image without
// layers (FROM scratch with nothing added) has none.
func (s *Store) LayerDirs(img *Image) ([]string, error) {
	unlock, err := s.flock(gcLock, unix.LOCK_SH) // rmi frees nothing meanwhile
	if err != nil {
		return nil, err
	}
	defer unlock()
	if len(img.Config.RootFS.DiffIDs) != len(img.Manifest.Layers) {
		return nil, fmt.Errorf("image %s: %d layers, %d diff_ids", img.Digest, len(img.Manifest.Layers), len(img.Config.RootFS.DiffIDs))
	}
	dirs := make([]string, 0, len(img.Manifest.Layers))
	for i, l := range img.Manifest.Layers {
		dir, err := s.unpacked(context.Background(), l, img.Config.RootFS.DiffIDs[i])
		if err != nil {
			return nil, err
		}
		dirs = append(dirs, dir)
	}
	return dirs, nil
}

// unpacked returns the layer's directory, unpacking its blob first if no
// one has yet.
func (s *Store) unpacked(ctx context.Context, l ocispec.Descriptor, diffID digest.Digest) (string, error) {
	if err := checkLayer(l); err != nil {
		return "", err
	}
	dir := s.layerDir(l.Digest)
	if _, err := os.Lstat(dir); err == nil {
		if err := s.checkUnpacked(ctx, l, diffID, dir); err != nil {
			return "", fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		return dir, nil
	}
	if err := unpackLayer(ctx, s.blobPath(l.Digest), l.Digest, diffID, dir); err != nil {
		return "", fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	return dir, nil
}

// diffIDAttr records on an unpacked layer's directory the diff_id its
// unpacking verified (root's trusted.* namespace: invisible to users).
const diffIDAttr = "trusted.minibox.diffid"

// checkUnpacked checks the diff_id an image states for a layer that is
// already unpacked (by another image, or by stage 06): the blob is the
// same, so the diff_id must be the one verified then. A layer without the
// record (stage 06 does not write it) is hashed once, then recorded.
func (s *Store) checkUnpacked(ctx context.Context, l ocispec.Descriptor, diffID digest.Digest, dir string) error {
	buf := make([]byte, 128)
	if n, err := unix.Lgetxattr(dir, diffIDAttr, buf); err == nil {
		if recorded := digest.Digest(buf[:n]); recorded != diffID {
			return fmt.Errorf("%w: the uncompressed layer is %s, the config's diff_id says %s", ErrDigestMismatch, recorded, diffID)
		}
		return nil
	}
	if err := verifyDiffID(ctx, s.blobPath(l.Digest), l.Digest, diffID); err != nil {
		return err
	}
	_ = unix.Lsetxattr(dir, diffIDAttr, []byte(diffID), 0) // a cache: hashed again next time without it
	return nil
}

// checkLayer refuses what minibox does not unpack.
func checkLayer(l ocispec.Descriptor) error {
	if err := checkSHA256(l.Digest); err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	if !layerTypes[l.MediaType] {
		return fmt.Errorf("layer %s: media type %q is not a layer minibox unpacks (tar, tar+gzip, tar+zstd)", l.Digest, l.MediaType)
	}
	return nil
}
