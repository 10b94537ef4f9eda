package image

// Writing images: what build and commit make. A layer is a directory (a
// container's overlay upper directory, or what COPY put there) written as
// a tar in the OCI layer format, gzip-compressed, stored as a blob and
// unpacked from that blob under $ROOT/layers/<hex> like a pulled one; an
// image is a config and a manifest (OCI media types) over such layers,
// named in index.json or left unnamed (a build step, found by digest).

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Layer is a layer AddLayer stored: its descriptor in a manifest and its
// diff_id in a config (the digest of the uncompressed tar).
type Layer struct {
	Desc   ocispec.Descriptor
	DiffID digest.Digest
}

// AddLayer stores directory dir as a layer: a tar of its contents in
// name order (overlayfs's whiteouts, 0/0 character devices, become
// .wh.NAME; an opaque directory, trusted.overlay.opaque=y, gets
// .wh..wh..opq), numeric owners, whole-second times, gzip without a time
// stamp: the same files give the same blob. The blob is then unpacked
// into $ROOT/layers/<hex> as a pulled layer is, so the engine and the
// stages find it where they look.
func (s *Store) AddLayer(ctx context.Context, dir string) (Layer, error) {
	return s.AddLayerFiltered(ctx, dir, nil)
}

// AddLayerFiltered is AddLayer without the entries skip returns true for
// (rel: slash path relative to dir; a directory skipped is skipped with
// its contents): the mount points and /etc files a runtime made, which
// docker's commit leaves out too.
func (s *Store) AddLayerFiltered(ctx context.Context, dir string, skip func(rel string, info fs.FileInfo) bool) (Layer, error) {
	unlock, err := s.flock(gcLock, unix.LOCK_SH) // rmi frees nothing meanwhile
	if err != nil {
		return Layer{}, err
	}
	defer unlock()
	l, err := s.putLayer(ctx, dir, skip)
	if err != nil {
		return Layer{}, fmt.Errorf("layer from %s: %w", dir, err)
	}
	if _, err := s.unpacked(ctx, l.Desc, l.DiffID); err != nil {
		return Layer{}, err
	}
	return l, nil
}

// putLayer writes dir's tar, compressed, to ingest/ while hashing the tar
// (the diff_id) and the gzip stream (the blob's digest), then renames it
// into blobs/.
func (s *Store) putLayer(ctx context.Context, dir string, skip func(string, fs.FileInfo) bool) (Layer, error) {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "ingest"), "tmp-")
	if err != nil {
		return Layer{}, err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	defer tmp.Close()
	blobHash, tarHash := digest.SHA256.Digester(), digest.SHA256.Digester()
	counter := &countWriter{w: io.MultiWriter(tmp, blobHash.Hash())}
	zw := gzip.NewWriter(counter)
	if err := WriteLayerTar(ctx, dir, io.MultiWriter(zw, tarHash.Hash()), skip); err != nil {
		return Layer{}, err
	}
	if err := zw.Close(); err != nil {
		return Layer{}, err
	}
	if err := tmp.Sync(); err != nil {
		return Layer{}, err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return Layer{}, err
	}
	l := Layer{
		Desc:   ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: blobHash.Digest(), Size: counter.n},
		DiffID: tarHash.Digest(),
	}
	if err := os.Rename(tmp.Name(), s.blobPath(l.Desc.Digest)); err != nil {
		return Layer{}, err
	}
	return l, nil
}

// errSkip: walkSorted's callback leaves an entry (and its contents) out.
var errSkip = errors.New("skip")

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// WriteLayerTar writes dir's contents to w as an OCI layer tar (see
// AddLayer). Sockets are left out, as docker does; devices and fifos are
// refused: minibox unpacks no layer that holds them. skip (nil: none)
// leaves entries out.
func WriteLayerTar(ctx context.Context, dir string, w io.Writer, skip func(rel string, info fs.FileInfo) bool) error {
	tw := tar.NewWriter(w)
	links := map[uint64]string{} // inode → first name: hard links stay links
	root, err := openDir(unix.AT_FDCWD, dir)
	if err != nil {
		return err
	}
	defer root.Close()
	err = walkSorted(root, "", func(rel, at string, info fs.FileInfo) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if skip != nil && skip(filepath.ToSlash(rel), info) {
			return errSkip
		}
		return addTarEntry(tw, at, rel, info, links)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// walkSorted calls fn for every entry below the directory dir (rel, its
// path from the top) in name order, a directory before its contents. It
// never follows a symlink, nor looks a path up from the top again: each
// entry is reached from its parent's open descriptor (at is
// /proc/self/fd/N/NAME, whose last part no call follows), so a process
// of the container that swaps a directory for a symlink while a running
// container is committed cannot lead the walk out of it (openat(2)
// O_NOFOLLOW refuses the link).
func walkSorted(dir *os.File, rel string, fn func(rel, at string, info fs.FileInfo) error) error {
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		child := filepath.Join(rel, name)
		at := fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), name)
		info, err := os.Lstat(at)
		if err != nil {
			return err
		}
		if err := fn(child, at, info); err == errSkip {
			continue
		} else if err != nil {
			return err
		}
		if info.IsDir() {
			sub, err := openDir(int(dir.Fd()), name)
			if err != nil {
				return fmt.Errorf("/%s: %w", child, err)
			}
			err = walkSorted(sub, child, fn)
			sub.Close()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// openDir opens the directory name in dirfd, refusing a symlink.
func openDir(dirfd int, name string) (*os.File, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// addTarEntry writes the tar entries of one file.
func addTarEntry(tw *tar.Writer, path, name string, info fs.FileInfo, links map[uint64]string) error {
	st, _ := info.Sys().(*syscall.Stat_t)
	if st == nil {
		return fmt.Errorf("/%s: no stat", name)
	}
	mode := info.Mode()
	switch {
	case mode&fs.ModeCharDevice != 0 && st.Rdev == 0: // overlayfs's whiteout
		return writeLayerHeader(tw, &tar.Header{Name: filepath.Join(filepath.Dir(name), ".wh."+info.Name()), Typeflag: tar.TypeReg, ModTime: info.ModTime()})
	case mode&fs.ModeSocket != 0:
		return nil
	case mode&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe) != 0:
		return fmt.Errorf("/%s is a %s: a layer holds no devices or fifos (/dev comes from the runtime)", name, mode.Type())
	}
	if strings.HasPrefix(info.Name(), ".wh.") {
		return fmt.Errorf("/%s: a name that the layer format reserves for whiteouts", name)
	}
	target := ""
	if mode&fs.ModeSymlink != 0 {
		var err error
		if target, err = os.Readlink(path); err != nil {
			return err
		}
	}
	hdr, err := tar.FileInfoHeader(info, target)
	if err != nil {
		return err
	}
	hdr.Name, hdr.Uid, hdr.Gid = name, int(st.Uid), int(st.Gid)
	if info.IsDir() {
		hdr.Name += "/"
	}
	if mode.IsRegular() && st.Nlink > 1 {
		if first, seen := links[st.Ino]; seen {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		} else {
			links[st.Ino] = name
		}
	}
	if err := writeLayerHeader(tw, hdr); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
		if err := copyFileTo(tw, path, hdr.Size); err != nil {
			return fmt.Errorf("/%s: %w", name, err)
		}
	}
	if info.IsDir() && isOpaque(path) { // it hides everything below it
		return writeLayerHeader(tw, &tar.Header{Name: filepath.Join(name, ".wh..wh..opq"), Typeflag: tar.TypeReg, ModTime: info.ModTime()})
	}
	return nil
}

// isOpaque reads overlayfs's opaque mark of an upper directory.
func isOpaque(path string) bool {
	buf := make([]byte, 1)
	n, err := unix.Lgetxattr(path, "trusted.overlay.opaque", buf)
	return err == nil && n == 1 && buf[0] == 'y'
}

// copyFileTo writes the size bytes of the file at path (opened without
// following a symlink: it was a regular file when walked).
func copyFileTo(w io.Writer, path string, size int64) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err == nil && n != size {
		err = errors.New("changed while it was written into the layer")
	}
	return err
}

// writeLayerHeader leaves out what differs between two writes of the
// same files: user and group names, access and change times, sub-second
// times.
func writeLayerHeader(tw *tar.Writer, hdr *tar.Header) error {
	hdr.Uname, hdr.Gname, hdr.AccessTime, hdr.ChangeTime = "", "", time.Time{}, time.Time{}
	hdr.ModTime, hdr.Format = hdr.ModTime.Truncate(time.Second), tar.FormatPAX
	hdr.PAXRecords = nil
	return tw.WriteHeader(hdr)
}

// UnpackArchive unpacks the tar r (ADD's local archive, already
// decompressed) into dir with the checks a layer gets: no name that climbs
// out, nothing written through a symlink, no device.
func UnpackArchive(r io.Reader, dir string) error {
	return unpackTar(r, dir, false)
}

// HasBlob reports whether blob d is in the store.
func (s *Store) HasBlob(d digest.Digest) bool {
	return checkSHA256(d) == nil && s.hasBlob(d)
}

// KeepBlobs holds the store's gc lock shared until the function returned
// is called: while a build names its unnamed step images nothing frees
// their blobs.
func (s *Store) KeepBlobs() (func(), error) {
	return s.flock(gcLock, unix.LOCK_SH)
}

// WriteImage stores cfg (its rootfs.diff_ids one per layer) and a manifest
// over layers, both with OCI media types, and names it name (NAME[:TAG],
// normalised as docker does) in index.json; name "" leaves it unnamed,
// found by its digest (a build step). Every layer blob must be in the
// store already.
func (s *Store) WriteImage(cfg ocispec.Image, layers []ocispec.Descriptor, name string) (*Image, error) {
	full := ""
	if name != "" {
		var err error
		if full, err = NormalizeName(name); err != nil {
			return nil, err
		}
	}
	if len(cfg.RootFS.DiffIDs) != len(layers) {
		return nil, fmt.Errorf("write image: %d layers, %d diff_ids", len(layers), len(cfg.RootFS.DiffIDs))
	}
	unlock, err := s.flock(gcLock, unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Layers: []ocispec.Descriptor{}}
	for _, l := range layers {
		if !s.HasBlob(l.Digest) {
			return nil, fmt.Errorf("write image: layer %s is not in the store", l.Digest)
		}
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ociLayerType(l.MediaType), Digest: l.Digest, Size: l.Size})
	}
	cfg.RootFS.Type = "layers"
	if cfg.RootFS.DiffIDs == nil {
		cfg.RootFS.DiffIDs = []digest.Digest{} // "diff_ids": [], as the spec wants
	}
	if cfg.OS == "" {
		cfg.OS, cfg.Architecture = "linux", goruntime.GOARCH
	}
	cfgData, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	m.Config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfgData), Size: int64(len(cfgData))}
	if err := s.putBytes(cfgData, m.Config.Digest); err != nil {
		return nil, err
	}
	mData, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mData), Size: int64(len(mData))}
	if err := s.putBytes(mData, desc.Digest); err != nil {
		return nil, err
	}
	if full != "" {
		if err := s.tag(full, desc); err != nil {
			return nil, err
		}
	}
	img, err := s.loadImage(desc.Digest)
	if err != nil {
		return nil, err
	}
	img.Name = full
	return img, nil
}

// ociLayerType is the OCI media type of a layer: Docker's gzip layer is
// OCI's tar+gzip (the same bytes), its foreign layer OCI's
// non-distributable one.
func ociLayerType(mediaType string) string {
	switch mediaType {
	case "application/vnd.docker.image.rootfs.diff.tar.gzip":
		return ocispec.MediaTypeImageLayerGzip
	case "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
		return ocispec.MediaTypeImageLayerNonDistributableGzip //nolint:staticcheck // the OCI name of docker's foreign layer
	case "":
		return ocispec.MediaTypeImageLayerGzip
	}
	return mediaType
}

// ImageByManifest loads the image whose manifest is d, named or not (a
// build step), without searching the names: the build cache's lookup.
func (s *Store) ImageByManifest(d digest.Digest) (*Image, error) {
	if err := checkSHA256(d); err != nil {
		return nil, err
	}
	if !s.hasBlob(d) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	return s.loadImage(d)
}

// KeepUnnamed lists image img in index.json without a name (docker's
// dangling image, <none>:<none>), unless an entry already points at it:
// a commit without a name is still an image of the store, found by its
// id, listed by images and kept by rmi's accounting.
func (s *Store) KeepUnnamed(img *Image) error {
	return s.updateIndex(func(idx *ocispec.Index) error {
		for _, m := range idx.Manifests {
			if m.Digest == img.Digest {
				return nil
			}
		}
		size := int64(0)
		if info, err := os.Stat(s.blobPath(img.Digest)); err == nil {
			size = info.Size()
		}
		idx.Manifests = append(idx.Manifests, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: img.Digest, Size: size})
		return nil
	})
}
