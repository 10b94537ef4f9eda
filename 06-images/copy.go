package main

// COPY and ADD: files of the build context become one layer, a tar made
// here with the same rules as commit's (whole seconds, numeric owners),
// and ADD unpacks a local tar archive into it, as the seeds describe.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A layerFile is one entry of a COPY or ADD layer: its tar header (its
// name in the image, mode, owner, time) and where its bytes come from.
type layerFile struct {
	hdr     *tar.Header
	src     string // a regular file of the context, or ADD's archive
	archive bool   // src's entries go into the directory hdr.Name is in
	digest  string // sha256 of src as planned (hash): the copy must find the same bytes
}

// layerFiles are a step's entries by name in the image: "srv/app/a.txt".
// A nil entry is a directory whose header addParents fills in from the
// image below, so that COPY into /tmp keeps /tmp's mode.
type layerFiles map[string]*layerFile

// names are the entries in path order: a directory before its contents.
func (files layerFiles) names() []string {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// plan lists what COPY or ADD puts where, by docker's rules: a file goes
// to DEST, or into it if DEST ends with /; a directory's contents go into
// DEST; ADD unpacks a local tar archive into DEST; a relative DEST is in
// WORKDIR. content is the hash of it all: names, modes and bytes (not the
// times: a touched file is no change, as in docker).
func (b *builder) plan(in instruction) (files layerFiles, content string, err error) {
	cfg := b.img.config.Config
	args := make([]string, len(in.args))
	for i := range in.args {
		args[i] = expand(in.args[i], in.escape, cfg.Env) // dockerfile.go
	}
	srcs, dest := args[:len(args)-1], args[len(args)-1]
	slash := strings.HasSuffix(dest, "/") || strings.HasSuffix("/"+dest, "/.")
	dest = inWorkdir(cfg.WorkingDir, dest)
	var lowers []string // the image so far, unpacked, for the directories there
	if len(b.img.manifest.Layers) > 0 {
		if lowers, err = b.img.layerDirs(b.root, b.s); err != nil {
			return nil, "", err
		}
	}
	_, isDir := lowerDir(lowers, strings.TrimPrefix(dest, "/"))
	intoDir := slash || isDir // a file goes into an existing directory
	files = layerFiles{}
	for _, src := range srcs {
		if in.cmd == "ADD" && strings.Contains(src, "://") {
			return nil, "", fmt.Errorf("ADD %s: URLs are not in %s (RUN wget … does it)", src, stage)
		}
		names, reals, err := b.contextFiles(src)
		if err == nil && (len(srcs) > 1 || len(names) > 1) && !slash {
			err = fmt.Errorf("%s with more than one source file: the destination %s must be a directory and end with /", in.cmd, dest)
		}
		for i := 0; err == nil && i < len(names); i++ {
			err = planSource(files, in.cmd == "ADD", names[i], reals[i], dest, intoDir)
		}
		if err != nil {
			return nil, "", err
		}
	}
	addParents(files, lowers)
	content, err = files.hash()
	return files, content, err
}

// contextFiles finds src in the context; a pattern (*.txt) may match
// several. It must stay inside: ../x, or a symlink that leads out, is an
// error. reals are the files with the symlinks followed.
func (b *builder) contextFiles(src string) (names, reals []string, err error) {
	if rel := filepath.Clean(src); rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, nil, fmt.Errorf("%s: outside the build context %s", src, b.context)
	}
	names, err = filepath.Glob(filepath.Join(b.context, src))
	if err == nil && len(names) == 0 {
		err = fmt.Errorf("%s: no such file in the build context %s", src, b.context)
	}
	for i := 0; err == nil && i < len(names); i++ {
		var real string
		real, err = filepath.EvalSymlinks(names[i]) // realpath(1)
		if err == nil && real != b.context && !strings.HasPrefix(real, b.context+"/") {
			err = fmt.Errorf("%s: a symlink out of the build context, to %s", src, real)
		}
		reals = append(reals, real)
	}
	return names, reals, err
}

// planSource adds one source: a file, a directory's contents, or ADD's
// local archive.
func planSource(files layerFiles, add bool, name, real, dest string, intoDir bool) error {
	info, err := os.Stat(real)
	if err != nil {
		return err
	}
	into := strings.TrimPrefix(dest, "/")
	switch {
	case info.IsDir(): // its contents; symlinks in it are copied as symlinks
		if into != "" {
			files[into] = nil // a directory, even if the source is empty
		}
		return filepath.WalkDir(real, func(p string, _ fs.DirEntry, err error) error {
			rel, _ := filepath.Rel(real, p)
			if err != nil || rel == "." {
				return err
			}
			return addContextFile(files, p, path.Join(into, filepath.ToSlash(rel)))
		})
	case add && isArchive(real):
		// The key starts with a NUL, which no file name holds, so the
		// archive's entries are written right after the directory into
		// and before any other file COPY or ADD puts in there.
		key := path.Join(into, "\x00"+filepath.Base(real))
		files[key] = &layerFile{hdr: &tar.Header{Name: key, Size: info.Size()}, src: real, archive: true}
		if into != "" {
			files[into] = nil
		}
		return nil
	case intoDir:
		return addContextFile(files, real, path.Join(into, filepath.Base(name)))
	}
	return addContextFile(files, real, into)
}

// addContextFile adds one file of the context, owned by root (COPY's
// rule), with its mode and time.
func addContextFile(files layerFiles, src, name string) error {
	info, err := os.Lstat(src)
	link := ""
	if err == nil && info.Mode()&fs.ModeSymlink != 0 {
		link, err = os.Readlink(src)
		if err == nil {
			err = checkLink(name, link)
		}
	} else if err == nil && !info.Mode().IsRegular() && !info.IsDir() {
		err = fmt.Errorf("%s: only files, directories and symlinks are copied", src)
	}
	if err == nil && strings.HasPrefix(path.Base(name), ".wh.") {
		err = fmt.Errorf("/%s: a whiteout name: unpacked, it would delete %s of the image below", name, strings.TrimPrefix(path.Base(name), ".wh."))
	}
	var hdr *tar.Header
	if err == nil && name != "" {
		hdr, err = tar.FileInfoHeader(info, link)
	}
	if err != nil || name == "" {
		return err
	}
	hdr.Name, hdr.Uid, hdr.Gid = name, 0, 0
	files[name] = &layerFile{hdr: hdr}
	if info.Mode().IsRegular() {
		files[name].src = src
	}
	return nil
}

// checkLink refuses a relative symlink that climbs out of the layer, as
// unpack.go would when the layer is unpacked: better said at build time.
func checkLink(name, link string) error {
	if _, err := cleanName(path.Join(path.Dir(name), link)); err != nil && !path.IsAbs(link) {
		return fmt.Errorf("symlink %s to %s: %w", name, link, err)
	}
	return nil
}

// addParents adds the directories the entries are in, with their mode,
// owner and time in the image below (a COPY into /tmp leaves /tmp 1777),
// or root's 0755 for a new one.
func addParents(files layerFiles, lowers []string) {
	for _, name := range files.names() {
		if files[name] == nil {
			files[name], _ = lowerDir(lowers, name)
		}
		for dir := path.Dir(name); dir != "." && files[dir] == nil; dir = path.Dir(dir) {
			files[dir], _ = lowerDir(lowers, dir)
		}
	}
}

// lowerDir is directory name as the top-most layer that has it has it.
// There, every component must be a real directory: a symlink or a
// whiteout on the way hides the layers below, and is never followed.
func lowerDir(lowers []string, name string) (*layerFile, bool) {
	for i := len(lowers) - 1; i >= 0; i-- {
		dir, info := lowers[i], fs.FileInfo(nil)
		for _, part := range strings.Split(name, "/") {
			if info != nil && !info.IsDir() {
				break
			}
			dir = filepath.Join(dir, part)
			if info, _ = os.Lstat(dir); info == nil {
				break
			}
		}
		if info != nil && info.IsDir() {
			if hdr, err := tar.FileInfoHeader(info, ""); err == nil {
				hdr.Name = name
				return &layerFile{hdr: hdr}, true
			}
		} else if info != nil {
			break
		}
	}
	return &layerFile{hdr: &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)}}, false
}

// hash is the content part of the cache key: a line per entry with its
// name, mode, owner, type, size, link target and the sha256 of its bytes,
// each field quoted or a number, so that no two different sets of files
// give the same lines. The digests stay in the files: copy checks that
// it copies those bytes.
func (files layerFiles) hash() (string, error) {
	h := sha256.New()
	for _, name := range files.names() {
		f := files[name]
		if f.src != "" {
			var err error
			if f.digest, err = readContextFile(f.src, f.hdr.Size, io.Discard); err != nil {
				return "", err
			}
		}
		fmt.Fprintf(h, "%q %o %d:%d %d %d %q %s\n", name, f.hdr.Mode, f.hdr.Uid, f.hdr.Gid, f.hdr.Typeflag, f.hdr.Size, f.hdr.Linkname, f.digest)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// copyFiles stores the files as a layer: in path order, numeric owners, whole
// seconds (commit.go's writeHeader), so the same files give the same tar.
// A context file whose bytes are not the ones planned fails the step: the
// layer stream then errors and its blob never enters the store.
func (b *builder) copyFiles(in instruction, files layerFiles, content string) error {
	dest := expand(in.args[len(in.args)-1], in.escape, b.img.config.Config.Env)
	createdBy := fmt.Sprintf("/bin/sh -c #(nop) %s files:%s in %s ", in.cmd, content[:12], dest)
	return b.putLayer(createdBy, b.context, func(w io.Writer) error {
		tw := tar.NewWriter(w)
		for _, name := range files.names() {
			f, err := files[name], error(nil)
			if f.archive {
				err = extractArchive(tw, f, path.Dir(name))
			} else if err = writeHeader(tw, f.hdr); err == nil && f.src != "" { // commit.go
				err = copyContextFile(tw, f)
			}
			if err != nil {
				return err
			}
		}
		return tw.Close()
	})
}

// copyContextFile writes a planned file's bytes, the ones hash saw.
func copyContextFile(w io.Writer, f *layerFile) error {
	sum, err := readContextFile(f.src, f.hdr.Size, w)
	if err == nil && sum != f.digest {
		err = changed(f.src, errors.New("its bytes are not the ones planned"))
	}
	return err
}

// readContextFile copies the size bytes of context file src to w and
// returns their sha256. Between the plan and the copy the context's owner
// may swap a file for a symlink to /etc/shadow: so every component of
// src's real path is opened without following a symlink, the file must
// be a regular file of the planned size, and the caller compares digests.
func readContextFile(src string, size int64, w io.Writer) (string, error) {
	f, err := openNoFollow(src)
	if err != nil {
		return "", changed(src, err)
	}
	defer f.Close()
	h := sha256.New()
	_, err = io.CopyN(io.MultiWriter(w, h), f, size)
	if err == io.EOF {
		return "", changed(src, errors.New("it is shorter than planned"))
	}
	if err != nil {
		return "", err
	}
	if n, _ := f.Read(make([]byte, 1)); n > 0 {
		return "", changed(src, errors.New("it is longer than planned"))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func changed(src string, err error) error {
	return fmt.Errorf("context file %s changed during the build: %w", src, err)
}

// openNoFollow opens the regular file at the real path src one component
// at a time from /, following no symlink (O_NOFOLLOW, as unpack.go's
// openBeneath): a component swapped for a symlink fails with ELOOP or
// ENOTDIR. O_NONBLOCK: a FIFO swapped in cannot hang the build.
func openNoFollow(src string) (*os.File, error) {
	fd, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	parts := strings.Split(strings.TrimPrefix(filepath.Clean(src), "/"), "/")
	for i, part := range parts {
		if err != nil {
			break
		}
		flags := unix.O_DIRECTORY | unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i == len(parts)-1 {
			flags = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
		}
		next, e := unix.Openat(fd, part, flags, 0)
		unix.Close(fd)
		fd, err = next, e
	}
	if err != nil {
		if err == unix.ELOOP || err == unix.ENOTDIR {
			err = fmt.Errorf("%w: a symlink on the way", err)
		}
		return nil, err
	}
	f := os.NewFile(uintptr(fd), src)
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("not a regular file but %s", info.Mode().Type())
		}
		return nil, err
	}
	return f, nil
}

// archiveReader reads ADD's local archive: a tar, or a tar compressed by
// gzip or bzip2 (docker also reads xz, which Go's standard library does
// not). ok is false for any other file: ADD copies it as it is.
func archiveReader(f io.Reader) (r io.Reader, ok bool) {
	br := bufio.NewReader(f)
	r = br
	magic, _ := br.Peek(3)
	if bytes.HasPrefix(magic, []byte{0x1f, 0x8b}) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, false
		}
		r = gz
	} else if bytes.HasPrefix(magic, []byte("BZh")) {
		r = bzip2.NewReader(br)
	}
	tr := bufio.NewReader(r)
	head, _ := tr.Peek(262)
	return tr, len(head) == 262 && string(head[257:262]) == "ustar" // tar's magic
}

func isArchive(src string) bool {
	f, err := openNoFollow(src)
	if err != nil {
		return false
	}
	defer f.Close()
	_, ok := archiveReader(f)
	return ok
}

// extractArchive copies ADD's archive's entries below dest, checked as
// unpack.go checks a layer: no name that climbs out, no whiteout, no
// device, links only inside. Their owners, modes and times stay. The
// archive is read as a context file is (readContextFile) and must be the
// one planned: every byte read is hashed, the rest after the tar too.
func extractArchive(tw *tar.Writer, archive *layerFile, dest string) error {
	src := archive.src
	f, err := openNoFollow(src)
	if err != nil {
		return changed(src, err)
	}
	defer f.Close()
	h := sha256.New()
	raw := io.TeeReader(f, h)
	r, ok := archiveReader(raw)
	if !ok {
		return changed(src, errors.New("it is no longer a tar archive"))
	}
	for tr := tar.NewReader(r); ; {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err == nil {
			err = extractEntry(tw, tr, hdr, dest)
		}
		if err != nil {
			return fmt.Errorf("ADD %s: %w", filepath.Base(src), err)
		}
	}
	if _, err := io.Copy(io.Discard, raw); err != nil {
		return err
	}
	if hex.EncodeToString(h.Sum(nil)) != archive.digest {
		return changed(src, errors.New("its bytes are not the ones planned"))
	}
	return nil
}

func extractEntry(tw *tar.Writer, tr *tar.Reader, hdr *tar.Header, dest string) error {
	name, err := cleanName(hdr.Name) // unpack.go
	if name == "." {
		return nil // the archive's own top directory: dest is made already
	}
	out := &tar.Header{Name: path.Join(dest, name), Typeflag: hdr.Typeflag, Mode: hdr.Mode, Uid: hdr.Uid, Gid: hdr.Gid, Size: hdr.Size, ModTime: hdr.ModTime}
	switch {
	case err != nil:
	case strings.HasPrefix(path.Base(name), ".wh."): // whatever its type: unpacked, the name alone deletes
		err = errors.New("a whiteout name: an archive holds files, not deletions")
	case hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeDir:
	case hdr.Typeflag == tar.TypeSymlink:
		out.Linkname, err = hdr.Linkname, checkLink(name, hdr.Linkname)
	case hdr.Typeflag == tar.TypeLink:
		out.Linkname, err = cleanName(hdr.Linkname)
		out.Linkname = path.Join(dest, out.Linkname)
	default:
		err = fmt.Errorf("type %q is not allowed in a layer (no devices)", hdr.Typeflag)
	}
	if err == nil {
		err = writeHeader(tw, out) // commit.go
	}
	if err == nil && out.Typeflag == tar.TypeReg {
		_, err = io.Copy(tw, tr)
	}
	if err != nil {
		return fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	return nil
}
