package build

// COPY and ADD. The plan lists every entry the step writes (its path in
// the image, type, mode and, for a file, the sha256 of its bytes): that
// list is the step's content for the cache. Doing it writes the entries
// into an overlay of the image so far (so directories that exist keep
// their mode and owner, and the upper directory is exactly the new
// layer), every path resolved inside the image's root (openat2
// RESOLVE_IN_ROOT: an image's symlink /app -> / cannot lead a copy onto
// the host), each file checked against the digest planned.

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/build/changes"
	"github.com/minibox-lab/minibox/final/image"
)

// copySpec is COPY's or ADD's instruction, expanded.
type copySpec struct {
	cmd                string // COPY or ADD
	from, chown, chmod string
	link, parents      bool
	src                instructions.SourcesAndDest
}

// An entry is one thing the step writes.
type entry struct {
	dest    string // absolute and clean, in the image
	base    string // a single file's name if dest turns out to be a directory
	kind    byte   // 'd' directory, 'f' file, 'l' symlink, 'a' ADD's archive, 'h' heredoc
	src     string // its path in the source tree
	mode    fs.FileMode
	link    string
	size    int64
	sum     string // sha256 of the bytes: a file, an archive, a heredoc
	data    []byte // a heredoc's bytes
	mtime   time.Time
	newOnly bool // a directory the copy needs: its mode only if it is new
}

// planCopy works out COPY or ADD.
func (bd *build) planCopy(s *stage, c copySpec) (*plan, error) {
	if c.parents {
		return nil, fmt.Errorf("%s --parents is not supported", c.cmd)
	}
	chmod := fs.FileMode(0)
	if c.chmod != "" {
		n, err := strconv.ParseUint(c.chmod, 8, 32)
		if err != nil || n > 0o7777 {
			return nil, fmt.Errorf("%s --chmod=%s: expected an octal mode such as 755", c.cmd, c.chmod)
		}
		chmod = fs.FileMode(n)
	}
	src, fromID, err := bd.copySource(s, c)
	if err != nil {
		return nil, err
	}
	dest := changes.InWorkdir(s.cfg.Config.WorkingDir, c.src.DestPath)
	intoDir := strings.HasSuffix(c.src.DestPath, "/") || c.src.DestPath == "." || strings.HasSuffix(c.src.DestPath, "/.")
	var entries []entry
	roots := 0
	for _, p := range c.src.SourcePaths {
		if isURL(p) {
			return nil, fmt.Errorf("ADD %s: remote sources are not supported (minibox builds offline); download the file into the context and ADD it", p)
		}
		matched, err := src.match(p)
		if errors.Is(err, errNoSource) {
			where := "the build context"
			if c.from != "" {
				where = "--from=" + c.from
			}
			return nil, fmt.Errorf("%s %s: no such file in %s", c.cmd, p, where)
		} else if err != nil {
			return nil, fmt.Errorf("%s %s: %w", c.cmd, p, err)
		}
		roots += len(matched)
		for _, rel := range matched {
			es, err := planSource(src, c.cmd == "ADD", rel, dest, intoDir)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", c.cmd, p, err)
			}
			entries = append(entries, es...)
		}
	}
	for _, h := range c.src.SourceContents { // COPY <<EOF file
		roots++
		name := dest
		if intoDir {
			name = path.Join(dest, h.Path)
		}
		sum := sha256.Sum256([]byte(h.Data))
		entries = append(entries, entry{dest: name, base: h.Path, kind: 'h', mode: 0o644, data: []byte(h.Data), size: int64(len(h.Data)), sum: hex.EncodeToString(sum[:])})
	}
	if roots > 1 && !intoDir {
		return nil, fmt.Errorf("When using %s with more than one source file, the destination must be a directory and end with a /", c.cmd)
	}
	if chmod != 0 {
		for i := range entries {
			if entries[i].kind != 'l' && entries[i].kind != 'a' {
				entries[i].mode = chmod
			}
		}
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].dest < entries[j].dest })
	content := contentHash(entries)
	kind := "file"
	if len(entries) != 1 || entries[0].kind == 'd' {
		kind = "dir"
	}
	text := fmt.Sprintf("%s --from=%s --chown=%s --chmod=%s %q %s", c.cmd, fromID, c.chown, c.chmod, c.src.SourcePaths, c.src.DestPath)
	createdBy := fmt.Sprintf("/bin/sh -c #(nop) %s %s:%s in %s ", c.cmd, kind, content[:16], dest)
	p := &plan{key: text, content: content, apply: func(*stage) {}}
	p.do = func(ctx context.Context) (stepResult, error) {
		layer, err := bd.inScratch(ctx, s, func(sc *scratch) error {
			return writeEntries(sc, src, entries, c.chown, !intoDir && roots == 1)
		})
		if err != nil {
			return stepResult{}, err
		}
		return stepResult{createdBy: createdBy, layer: &layer}, nil
	}
	return p, nil
}

// isURL: ADD's remote sources (http, https, git).
func isURL(s string) bool {
	return strings.Contains(s, "://") || strings.HasPrefix(s, "git@")
}

// copySource is the tree COPY reads: the context, or --from's stage or
// image (mounted read-only for the build); fromID names it in the key.
func (bd *build) copySource(s *stage, c copySpec) (*tree, string, error) {
	if c.from == "" {
		return bd.context, "", nil
	}
	from, err := bd.expandWith(c.from, s.env())
	if err != nil {
		return nil, "", err
	}
	var src *stage
	if n, err := strconv.Atoi(from); err == nil && n >= 0 && n < len(bd.stages)-1 {
		src = bd.stages[n]
	}
	for _, prev := range bd.stages[:len(bd.stages)-1] {
		if prev.name != "" && strings.EqualFold(prev.name, from) {
			src = prev
		}
	}
	if src == nil { // an image: COPY --from=busybox /bin/busybox /
		img, err := bd.Images.Lookup(from)
		if errors.Is(err, image.ErrNotFound) {
			fmt.Fprintf(bd.out, "Unable to find image '%s' locally\n", from)
			img, err = bd.Images.Pull(bd.ctx, from, image.PullOptions{Progress: bd.out})
		}
		if err != nil {
			return nil, "", fmt.Errorf("COPY --from=%s: %w", from, err)
		}
		src = &stage{manifest: img.Digest}
	}
	sc, err := bd.newScratch(src)
	if err != nil {
		return nil, "", err
	}
	bd.mounts = append(bd.mounts, sc)
	t, err := walkTree(sc.rootfs, nil)
	if err != nil {
		return nil, "", err
	}
	return t, src.manifest.String(), nil
}

// planSource plans one matched source: a directory's contents, ADD's
// local archive, or one file (into dest if it is a directory).
func planSource(t *tree, add bool, rel, dest string, intoDir bool) ([]entry, error) {
	if info := t.files[rel]; info != nil && info.Mode()&fs.ModeSymlink != 0 {
		real, err := t.resolve(rel) // a source symlink is followed, as docker does
		if err != nil {
			return nil, err
		}
		base := path.Base(rel)
		if !t.isDir(real) {
			e, err := fileEntry(t, real, dest, base, intoDir)
			return []entry{e}, err
		}
		rel = real
	}
	if t.isDir(rel) {
		out := []entry{{dest: dest, kind: 'd', mode: 0o755 | fs.ModeDir, newOnly: true}}
		for _, name := range t.below(rel) {
			sub := strings.TrimPrefix(strings.TrimPrefix(name, rel), "/")
			info := t.files[name]
			e := entry{dest: path.Join(dest, sub), src: name, mode: info.Mode(), mtime: info.ModTime()}
			switch {
			case info.IsDir():
				e.kind = 'd'
			case info.Mode()&fs.ModeSymlink != 0:
				link, err := os.Readlink(path.Join(t.dir, name))
				if err != nil {
					return nil, err
				}
				e.kind, e.link = 'l', link
			case info.Mode().IsRegular():
				e.kind = 'f'
				sum, n, err := t.hashFile(name, io.Discard)
				if err != nil {
					return nil, err
				}
				e.sum, e.size = sum, n
			default:
				continue // sockets, fifos, devices: not copied
			}
			out = append(out, e)
		}
		return out, nil
	}
	if add {
		if kind, err := archiveKind(t, rel); err != nil {
			return nil, err
		} else if kind != "" {
			sum, n, err := t.hashFile(rel, io.Discard)
			if err != nil {
				return nil, err
			}
			return []entry{{dest: dest, kind: 'a', src: rel, sum: sum, size: n, link: kind}}, nil
		}
	}
	e, err := fileEntry(t, rel, dest, path.Base(rel), intoDir)
	return []entry{e}, err
}

// fileEntry plans one regular file: dest, or dest/base into a directory.
func fileEntry(t *tree, rel, dest, base string, intoDir bool) (entry, error) {
	info := t.files[rel]
	if info == nil || !info.Mode().IsRegular() {
		return entry{}, fmt.Errorf("%s: not a regular file, directory or symlink", rel)
	}
	if intoDir {
		dest = path.Join(dest, base)
	}
	sum, n, err := t.hashFile(rel, io.Discard)
	return entry{dest: dest, base: base, kind: 'f', src: rel, mode: info.Mode(), sum: sum, size: n, mtime: info.ModTime()}, err
}

// contentHash is the step's content for the cache: a line per entry,
// each field quoted or a number, so no two different lists hash alike.
func contentHash(entries []entry) string {
	h := sha256.New()
	for _, e := range entries {
		fmt.Fprintf(h, "%q %c %o %d %q %s %t\n", e.dest, e.kind, uint32(e.mode), e.size, e.link, e.sum, e.newOnly)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// archiveKind tells ADD's local archives (tar, tar.gz, tar.bz2) from
// other files; an xz archive is refused rather than copied as it is.
func archiveKind(t *tree, rel string) (string, error) {
	f, err := t.open(rel)
	if err != nil {
		return "", err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	magic, _ := br.Peek(6)
	if bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}) {
		return "", fmt.Errorf("%s: an xz archive; minibox unpacks tar, tar.gz and tar.bz2 (recompress it, or COPY it and unpack it with RUN)", rel)
	}
	r, kind, err := decompressed(br)
	if err != nil {
		return "", nil // not an archive: copied as it is
	}
	head := make([]byte, 512)
	if _, err := io.ReadFull(r, head); err != nil || string(head[257:262]) != "ustar" {
		return "", nil
	}
	return kind, nil
}

// decompressed reads gzip, bzip2 or plain data by its magic number.
func decompressed(br *bufio.Reader) (io.Reader, string, error) {
	magic, _ := br.Peek(3)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		return zr, "tar.gz", err
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzip2.NewReader(br), "tar.bz2", nil
	}
	return br, "tar", nil
}

// writeEntries does the plan in the scratch overlay's root.
func writeEntries(sc *scratch, src *tree, entries []entry, chown string, maybeIntoDir bool) error {
	root, err := os.Open(sc.rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	uid, gid := 0, 0
	if chown != "" {
		u, err := image.LookupUser(root, chown, true)
		if err != nil {
			return fmt.Errorf("--chown=%s: %w", chown, err)
		}
		uid, gid = u.UID, u.GID
	}
	w := &writer{root: root, src: src, uid: uid, gid: gid, dirs: map[string]int{}}
	defer w.close()
	// COPY file /existing-dir: a single file goes into a directory that
	// is there in the image, as docker does.
	if maybeIntoDir && len(entries) == 1 && (entries[0].kind == 'f' || entries[0].kind == 'h') {
		if fd, err := openIn(root, entries[0].dest, unix.O_PATH|unix.O_DIRECTORY); err == nil {
			unix.Close(fd)
			entries[0].dest = path.Join(entries[0].dest, entries[0].base)
		}
	}
	for _, e := range entries {
		if err := w.write(e); err != nil {
			return fmt.Errorf("%s: %w", e.dest, err)
		}
	}
	return nil
}

// writer writes entries below an image's root.
type writer struct {
	root     *os.File
	src      *tree
	uid, gid int
	dirs     map[string]int // directories opened (or made), by path in the image
}

func (w *writer) close() {
	for _, fd := range w.dirs {
		unix.Close(fd)
	}
}

// dir returns a descriptor of directory p of the image, making it and
// its missing parents (owned by the --chown user, 0755).
func (w *writer) dir(p string) (int, error) {
	if fd, ok := w.dirs[p]; ok {
		return fd, nil
	}
	fd, err := openIn(w.root, p, unix.O_RDONLY|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) && p != "/" {
		parent, err := w.dir(path.Dir(p))
		if err != nil {
			return -1, err
		}
		base := path.Base(p)
		if err := unix.Mkdirat(parent, base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, err
		}
		if err := unix.Fchownat(parent, base, w.uid, w.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return -1, err
		}
		fd, err = openIn(w.root, p, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return -1, err
		}
	} else if err != nil {
		return -1, err
	}
	w.dirs[p] = fd
	return fd, nil
}

// write makes one entry.
func (w *writer) write(e entry) error {
	if e.kind == 'a' {
		return w.extract(e)
	}
	if e.dest == "/" {
		return nil // the root itself: nothing to make
	}
	parent, err := w.dir(path.Dir(e.dest))
	if err != nil {
		return err
	}
	base := path.Base(e.dest)
	var st unix.Stat_t
	exists := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	isDir := exists && st.Mode&unix.S_IFMT == unix.S_IFDIR
	if e.kind == 'd' {
		if exists && st.Mode&unix.S_IFMT == unix.S_IFLNK && w.followsToDir(e.dest) {
			return nil // the image's symlink to a directory: followed (inside the image) by w.dir
		}
		if isDir && e.newOnly {
			return nil // the destination is there: its mode and owner stay
		}
		if isDir {
			return w.attrs(parent, base, e)
		}
	} else if isDir {
		return errors.New("cannot replace a directory of the image with a file")
	}
	if exists && !isDir {
		if err := unix.Unlinkat(parent, base, 0); err != nil {
			return err
		}
	}
	switch e.kind {
	case 'd':
		if err := unix.Mkdirat(parent, base, 0o700); err != nil {
			return err
		}
	case 'l':
		if err := unix.Symlinkat(e.link, parent, base); err != nil {
			return err
		}
		return unix.Fchownat(parent, base, w.uid, w.gid, unix.AT_SYMLINK_NOFOLLOW)
	case 'f', 'h':
		if err := w.writeFile(parent, base, e); err != nil {
			return err
		}
	}
	return w.attrs(parent, base, e)
}

// followsToDir: an image's symlink that leads to a directory (COPY dir
// /app where /app -> /srv) is followed inside the image, as docker does.
func (w *writer) followsToDir(p string) bool {
	fd, err := openIn(w.root, p, unix.O_PATH|unix.O_DIRECTORY)
	if err == nil {
		unix.Close(fd)
	}
	return err == nil
}

// attrs sets owner, mode and time (chown first: it clears set-user-ID).
func (w *writer) attrs(parent int, base string, e entry) error {
	if err := unix.Fchownat(parent, base, w.uid, w.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if err := unix.Fchmodat(parent, base, unixMode(e.mode), 0); err != nil {
		return err
	}
	if e.mtime.IsZero() {
		return nil
	}
	ts := unix.NsecToTimespec(e.mtime.UnixNano())
	return unix.UtimesNanoAt(parent, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// unixMode is fs.FileMode's permission and special bits as chmod(2) wants.
func unixMode(m fs.FileMode) uint32 {
	mode := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		mode |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		mode |= unix.S_ISVTX
	}
	return mode
}

// writeFile writes a file's bytes, checking them against the plan: a
// context file changed since it was hashed fails the step.
func (w *writer) writeFile(parent int, base string, e entry) error {
	fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	if e.kind == 'h' {
		_, err = f.Write(e.data)
		return err
	}
	sum, _, err := w.src.hashFile(e.src, f)
	if err == nil && sum != e.sum {
		err = fmt.Errorf("%s changed during the build: its bytes are not the ones planned", e.src)
	}
	return err
}

// extract unpacks ADD's archive into its destination directory, with
// the checks a pulled layer gets (image.UnpackArchive).
func (w *writer) extract(e entry) error {
	dir, err := w.dir(e.dest)
	if err != nil {
		return err
	}
	f, err := w.src.open(e.src)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	br := bufio.NewReader(io.TeeReader(f, h))
	r, _, err := decompressed(br)
	if err != nil {
		return err
	}
	if err := image.UnpackArchive(r, fmt.Sprintf("/proc/self/fd/%d", dir)); err != nil {
		return fmt.Errorf("ADD %s: %w", e.src, err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return err
	}
	if hex.EncodeToString(h.Sum(nil)) != e.sum {
		return fmt.Errorf("%s changed during the build: its bytes are not the ones planned", e.src)
	}
	return nil
}

// openIn opens p (a path in the image) below root, symlinks resolved as
// inside the image.
func openIn(root *os.File, p string, flags int) (int, error) {
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		rel = "."
	}
	return unix.Openat2(int(root.Fd()), rel, &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
}
