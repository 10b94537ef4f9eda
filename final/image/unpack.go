package image

// Unpacking a layer is a security boundary: the tar comes from outside
// and root writes what it says. An entry named ../../etc/cron.d/x, or a
// symlink to /etc and then a file "through" it, would write onto the host;
// every container engine has had this bug. So, as in stage 04: names are
// checked, and each file is made relative to a directory opened one
// component at a time with O_NOFOLLOW, which no symlink can redirect.

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Layer media types minibox unpacks: OCI's tar, tar+gzip and tar+zstd, and
// Docker's gzip layer. Which compression is used is read from the data's
// magic number, as docker does; the type only has to be a layer's.
var layerTypes = map[string]bool{
	"application/vnd.oci.image.layer.v1.tar":                    true,
	"application/vnd.oci.image.layer.v1.tar+gzip":               true,
	"application/vnd.oci.image.layer.v1.tar+zstd":               true,
	"application/vnd.docker.image.rootfs.diff.tar.gzip":         true,
	"application/vnd.oci.image.layer.nondistributable.v1.tar":   true,
	"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": true,
}

// The compressions' magic numbers.
var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// maxZstdWindow bounds the memory a zstd layer may ask for (zstd --long
// uses 128 MiB; the default levels far less).
const maxZstdWindow = 128 << 20

// unpackLayer unpacks blob (a layer whose blob digest is blobDigest and
// whose uncompressed tar has the digest diffID) into dir, through a
// temporary directory renamed into place once whole: a failure leaves no
// half layer. Both digests are checked while reading: a blob changed since
// it was hashed, or a config whose diff_id lies, never enters the store.
func unpackLayer(ctx context.Context, blob string, blobDigest, diffID digest.Digest, dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil { // root's alone: layers hold set-user-ID programs
		return err
	}
	// layers/tmp-123: `minibox cleanup` removes one a kill left.
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "tmp-")
	if err != nil {
		return err
	}
	err = os.Chmod(tmp, 0o755)
	if err == nil {
		err = unpackFile(ctx, blob, blobDigest, diffID, tmp)
	}
	if err == nil {
		err = os.Rename(tmp, dir)
		if _, statErr := os.Stat(dir); err != nil && statErr == nil {
			err = nil // a pull beside us unpacked it first
		}
	}
	if rmErr := os.RemoveAll(tmp); err == nil && rmErr != nil && !os.IsNotExist(rmErr) {
		err = rmErr
	}
	return err
}

// unpackFile reads blob into dir, checking both its digests.
func unpackFile(ctx context.Context, blob string, blobDigest, diffID digest.Digest, dir string) error {
	f, err := os.Open(blob)
	if err != nil {
		return err
	}
	defer f.Close()
	blobHash := sha256.New()
	in := bufio.NewReaderSize(io.TeeReader(ctxReader{ctx, f}, blobHash), 64<<10)
	tarStream, closeDecompressor, err := decompress(in)
	if err != nil {
		return err
	}
	defer closeDecompressor()
	tarHash := sha256.New()
	if dir != "" {
		if err := unpackTar(io.TeeReader(tarStream, tarHash), dir, true); err != nil {
			return err
		}
	}
	// Read to the very end: gzip checks its CRC there, and the digests
	// cover every byte (tar's padding after its end marker too).
	if _, err := io.Copy(tarHash, tarStream); err != nil {
		return fmt.Errorf("after the last entry: %w (corrupt)", err)
	}
	if _, err := io.Copy(io.Discard, in); err != nil {
		return err
	}
	if got := digest.NewDigest(digest.SHA256, blobHash); got != blobDigest {
		return fmt.Errorf("%w: blob %s reads as %s: it changed while it was unpacked", ErrDigestMismatch, blobDigest, got)
	}
	if got := digest.NewDigest(digest.SHA256, tarHash); got != diffID {
		return fmt.Errorf("%w: the uncompressed layer is %s, the config's diff_id says %s", ErrDigestMismatch, got, diffID)
	}
	if dir != "" {
		_ = unix.Setxattr(dir, diffIDAttr, []byte(diffID), 0) // checkUnpacked's record
	}
	return nil
}

// verifyDiffID checks both digests of a layer blob without unpacking it.
func verifyDiffID(ctx context.Context, blob string, blobDigest, diffID digest.Digest) error {
	return unpackFile(ctx, blob, blobDigest, diffID, "")
}

// decompress picks gzip, zstd or none by the data's magic number.
func decompress(in *bufio.Reader) (io.Reader, func(), error) {
	magic, _ := in.Peek(4)
	switch {
	case len(magic) == 0:
		return nil, nil, errors.New("empty file, not a tar")
	case len(magic) >= 2 && magic[0] == gzipMagic[0] && magic[1] == gzipMagic[1]:
		zr, err := gzip.NewReader(in)
		if err != nil {
			return nil, nil, fmt.Errorf("bad gzip: %w", err)
		}
		zr.Multistream(true)
		return zr, func() { zr.Close() }, nil
	case len(magic) == 4 && string(magic) == string(zstdMagic):
		zr, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxZstdWindow), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, nil, fmt.Errorf("bad zstd: %w", err)
		}
		return zr, zr.Close, nil
	}
	return in, func() {}, nil // an uncompressed tar
}

// unpackTar makes every entry of the tar r inside dir. A layer's .wh.
// entries are whiteouts; another archive's (ADD's) are files like any.
func unpackTar(r io.Reader, dir string, layer bool) error {
	root, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(root)
	for tr := tar.NewReader(r); ; {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("read the tar: %w (truncated or corrupt)", err)
		} else if err = unpackEntry(root, tr, hdr, layer); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
}

// unpackEntry makes one entry inside root, or refuses it.
func unpackEntry(root int, tr *tar.Reader, hdr *tar.Header, layer bool) error {
	name, err := cleanName(hdr.Name)
	if err != nil || name == "." {
		return err // "." is the layer itself: nothing to make
	}
	for key := range hdr.PAXRecords { // tar --xattrs: SCHILY.xattr.NAME
		if strings.HasPrefix(key, "SCHILY.xattr.trusted.overlay.") {
			return fmt.Errorf("forged overlay attribute %s: only the kernel writes those", key)
		}
	}
	parent, base := path.Split(name)
	dir, err := openBeneath(root, parent)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	// Whiteouts (the OCI layer format's, from AUFS), in a layer only.
	if layer {
		if done, err := whiteout(dir, base); done {
			return err
		}
	}
	// A later entry replaces an earlier one of the same name, but only a
	// directory may stay for a directory: never chmod a symlink's target.
	var st unix.Stat_t
	if unix.Fstatat(dir, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil &&
		(hdr.Typeflag != tar.TypeDir || st.Mode&unix.S_IFMT != unix.S_IFDIR) {
		if err := removeEntry(dir, base); err != nil {
			return fmt.Errorf("replace the earlier %s: %w", base, err)
		}
	}
	mode := uint32(hdr.Mode & 0o7777)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err = unix.Mkdirat(dir, base, mode); err == unix.EEXIST {
			err = nil
		}
	case tar.TypeReg: // archive/tar reports old tars' TypeRegA as TypeReg
		err = writeFile(dir, base, name, mode, tr)
	case tar.TypeSymlink:
		// An absolute target resolves inside the container at run time; a
		// relative one must not climb out of the layer.
		if _, err := cleanName(path.Join(parent, hdr.Linkname)); err != nil && !path.IsAbs(hdr.Linkname) {
			return fmt.Errorf("symlink to %s: %w", hdr.Linkname, err)
		}
		if err := unix.Symlinkat(hdr.Linkname, dir, base); err != nil {
			return err
		}
		return unix.Fchownat(dir, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW)
	case tar.TypeLink:
		return hardLink(root, dir, base, hdr.Linkname)
	default:
		return fmt.Errorf("type %q is not allowed in a layer (no devices, fifos or sockets: /dev comes from the runtime)", hdr.Typeflag)
	}
	// base is no symlink here: made just now, or a real directory (above).
	if err == nil { // chown before chmod: chown clears set-user-ID bits
		err = unix.Fchownat(dir, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err == nil {
		err = unix.Fchmodat(dir, base, mode, 0)
	}
	return err
}

// writeFile makes a regular file (O_EXCL|O_NOFOLLOW: never through a
// symlink) with the entry's content.
func writeFile(dir int, base, name string, mode uint32, r io.Reader) error {
	fd, err := unix.Openat(dir, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	_, err = io.Copy(f, r) // a truncated tar: io.ErrUnexpectedEOF
	if err2 := f.Close(); err == nil {
		err = err2
	}
	return err
}

// hardLink links base in dir to target, an earlier entry of the same layer.
func hardLink(root, dir int, base, linkname string) error {
	target, err := cleanName(linkname)
	if err == nil && target == "." {
		err = errors.New("a hard link to the layer itself")
	}
	if err != nil {
		return fmt.Errorf("hard link to %s: %w", linkname, err)
	}
	tdir, err := openBeneath(root, path.Dir(target))
	if err != nil {
		return err
	}
	defer unix.Close(tdir)
	return unix.Linkat(tdir, path.Base(target), dir, base, 0)
}

// removeEntry removes name from dir, a directory with its contents.
func removeEntry(dir int, name string) error {
	err := unix.Unlinkat(dir, name, 0)
	if err == unix.EISDIR || err == unix.EPERM {
		err = unix.Unlinkat(dir, name, unix.AT_REMOVEDIR)
		if err == unix.ENOTEMPTY || err == unix.EEXIST {
			err = removeDirAt(dir, name)
		}
	}
	if err == unix.ENOENT {
		return nil
	}
	return err
}

// removeDirAt removes the directory name in dir and everything in it,
// following no symlink.
func removeDirAt(dir int, name string) error {
	fd, err := unix.Openat(dir, name, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	names, err := f.Readdirnames(-1)
	if err == nil {
		for _, n := range names {
			if err = removeEntry(fd, n); err != nil {
				break
			}
		}
	}
	f.Close()
	if err != nil {
		return err
	}
	return unix.Unlinkat(dir, name, unix.AT_REMOVEDIR)
}

// cleanName checks an entry's name: relative, without "..": "./a/b/" is
// "a/b", the layer itself is "." (or "/", as umoci writes it).
func cleanName(name string) (string, error) {
	clean := path.Clean(name)
	switch {
	case clean == "/":
		return ".", nil
	case path.IsAbs(name):
		return "", errors.New("absolute name: a layer holds relative paths")
	case clean == ".." || strings.HasPrefix(clean, "../"):
		return "", errors.New("the name climbs out of the layer with ..")
	}
	return clean, nil
}

// openBeneath opens directory dir of the layer one component at a time,
// following no symlink (O_NOFOLLOW): a symlink made by the tar can never
// lead a later entry elsewhere. A missing directory is made.
func openBeneath(root int, dir string) (int, error) {
	fd, err := unix.Dup(root)
	if err != nil {
		return -1, err
	}
	for _, part := range strings.Split(dir, "/") {
		if part == "" || part == "." {
			continue
		}
		const flags = unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_RDONLY | unix.O_CLOEXEC
		next, e := unix.Openat(fd, part, flags, 0)
		if e == unix.ENOENT && unix.Mkdirat(fd, part, 0o755) == nil {
			next, e = unix.Openat(fd, part, flags, 0)
		}
		unix.Close(fd)
		if e == unix.ELOOP || e == unix.ENOTDIR {
			return -1, fmt.Errorf("%s is not a directory of the layer (a symlink?): refusing to write through it", dir)
		} else if e != nil {
			return -1, e
		}
		fd = next
	}
	return fd, nil
}

// ctxReader stops reading once ctx is done: Ctrl-C interrupts an unpack.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}

// whiteout makes the overlayfs form of a layer's whiteout entry base in
// dir, if it is one (done): .wh.NAME deletes NAME of the layers below;
// .wh..wh..opq hides all their contents of this directory. overlayfs says
// the same with a 0/0 character device and an extended attribute.
func whiteout(dir int, base string) (done bool, err error) {
	if base == ".wh..wh..opq" {
		return true, unix.Fsetxattr(dir, "trusted.overlay.opaque", []byte("y"), 0)
	}
	hidden, ok := strings.CutPrefix(base, ".wh.")
	if !ok {
		return false, nil
	}
	if hidden == "" || hidden == "." || hidden == ".." || strings.HasPrefix(hidden, ".wh.") {
		return true, errors.New("a whiteout must name an entry of its own directory")
	}
	if err := removeEntry(dir, hidden); err != nil {
		return true, err
	}
	return true, unix.Mknodat(dir, hidden, unix.S_IFCHR, 0)
}
