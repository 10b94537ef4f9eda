package main

// Unpacking a layer tar is a security boundary: the tar comes from
// outside, and host root writes what it says. An entry named
// ../../etc/cron.d/x, or a symlink to /etc and then a file "through" it,
// would write onto the host; every container engine has had this bug. So,
// by construction: names are checked, and each file is made relative to a
// directory opened one component at a time with O_NOFOLLOW, which no
// symlink can redirect.

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// unpackLayer unpacks the tar (or gzipped tar) f, whose sha256 is sum,
// into dir, through a temporary directory renamed into place once whole: a
// failure leaves no half layer in the store. It checks the sum again while
// reading: a file changed since it was hashed never enters the store.
func unpackLayer(f *os.File, sum, dir string) error {
	err := os.MkdirAll(filepath.Dir(dir), 0o700) // root's alone: layers hold set-user-ID programs
	tmp := ""
	if err == nil { // layers/tmp-123: `minibox cleanup` removes one a kill left
		tmp, err = os.MkdirTemp(filepath.Dir(dir), "tmp-")
	}
	if err == nil {
		err = os.Chmod(tmp, 0o755)
	}
	h := sha256.New()
	if err == nil {
		err = unpackInto(io.TeeReader(f, h), tmp)
	}
	if err == nil && hex.EncodeToString(h.Sum(nil)) != sum {
		err = errors.New("the file changed while it was unpacked")
	}
	if err == nil {
		err = os.Rename(tmp, dir)
		if _, statErr := os.Stat(dir); err != nil && statErr == nil {
			err = os.RemoveAll(tmp) // a container beside us unpacked it first
			return err
		}
	}
	if err != nil {
		if tmp != "" {
			os.RemoveAll(tmp)
		}
		return fmt.Errorf("layer %s: %w", f.Name(), err)
	}
	narrate("tar -xf %s -C %s   # once: the store keeps it", f.Name(), dir)
	return nil
}

func unpackInto(r io.Reader, dir string) error {
	var in io.Reader = bufio.NewReader(r)
	var err error
	if magic, _ := in.(*bufio.Reader).Peek(2); string(magic) == "\x1f\x8b" {
		if in, err = gzip.NewReader(in); err != nil {
			return fmt.Errorf("bad gzip: %w", err)
		}
	} else if len(magic) == 0 {
		return errors.New("empty file, not a tar")
	}
	root, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(root)
	for tr := tar.NewReader(in); ; {
		hdr, err := tr.Next()
		if err == io.EOF { // read to the end: gzip checks its checksum there
			if _, err = io.Copy(io.Discard, in); err != nil {
				return fmt.Errorf("after the last entry: %w (corrupt)", err)
			}
			return nil
		} else if err != nil {
			return fmt.Errorf("read the tar: %w (truncated or corrupt)", err)
		} else if err = unpackEntry(root, tr, hdr); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
}

// unpackEntry makes one entry inside root, or refuses it.
func unpackEntry(root int, tr *tar.Reader, hdr *tar.Header) error {
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
	// Whiteouts, the OCI layer format's (from AUFS): .wh.NAME deletes NAME
	// of the layers below; .wh..wh..opq hides all their contents of this
	// directory. overlayfs says the same with a 0/0 character device and
	// an extended attribute.
	if base == ".wh..wh..opq" {
		return unix.Fsetxattr(dir, "trusted.overlay.opaque", []byte("y"), 0)
	} else if hidden, ok := strings.CutPrefix(base, ".wh."); ok {
		if hidden == "" || hidden == "." || hidden == ".." {
			return errors.New("a whiteout must name an entry of its own directory")
		}
		return unix.Mknodat(dir, hidden, unix.S_IFCHR, 0)
	}
	// A later entry replaces an earlier one of the same name, but only a
	// directory may stay for a directory: never chmod a symlink's target.
	var st unix.Stat_t
	if unix.Fstatat(dir, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil &&
		(hdr.Typeflag != tar.TypeDir || st.Mode&unix.S_IFMT != unix.S_IFDIR) {
		if err := unix.Unlinkat(dir, base, 0); err != nil {
			return fmt.Errorf("replace the earlier %s: %w", base, err)
		}
	}
	mode := uint32(hdr.Mode & 0o7777)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err = unix.Mkdirat(dir, base, mode); err == unix.EEXIST {
			err = nil
		}
	case tar.TypeReg:
		var fd int
		if fd, err = unix.Openat(dir, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode); err == nil {
			f := os.NewFile(uintptr(fd), name)
			_, err = io.Copy(f, tr) // a truncated tar: io.ErrUnexpectedEOF
			f.Close()
		}
	case tar.TypeSymlink:
		// An absolute target resolves inside the container at run time; a
		// relative one must not climb out of the layer.
		if _, err := cleanName(path.Join(parent, hdr.Linkname)); err != nil && !path.IsAbs(hdr.Linkname) {
			return fmt.Errorf("symlink to %s: %w", hdr.Linkname, err)
		}
		return unix.Symlinkat(hdr.Linkname, dir, base)
	case tar.TypeLink:
		target, err := cleanName(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hard link to %s: %w", hdr.Linkname, err)
		}
		tdir, err := openBeneath(root, path.Dir(target))
		if err != nil {
			return err
		}
		defer unix.Close(tdir)
		return unix.Linkat(tdir, path.Base(target), dir, base, 0)
	default:
		return fmt.Errorf("type %q is not allowed in a layer (no devices: /dev comes from the runtime)", hdr.Typeflag)
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
	for _, part := range strings.Split(dir, "/") {
		if err != nil || part == "" {
			continue
		}
		const flags = unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_RDONLY | unix.O_CLOEXEC
		next, e := unix.Openat(fd, part, flags, 0)
		if e == unix.ENOENT && unix.Mkdirat(fd, part, 0o755) == nil {
			next, e = unix.Openat(fd, part, flags, 0)
		}
		unix.Close(fd)
		if fd, err = next, e; err == unix.ELOOP || err == unix.ENOTDIR {
			err = fmt.Errorf("%s is not a directory of the layer (a symlink?): refusing to write through it", dir)
		}
	}
	return fd, err
}
