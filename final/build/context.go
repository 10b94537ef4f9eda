package build

// The sources COPY reads: the build context (its .dockerignore applied,
// with docker's pattern rules: `**`, `!` exceptions, the last match
// winning), or the root file system of an earlier stage or another image
// (COPY --from). Files are read through a descriptor of the tree's root
// that no symlink can lead out of (openat2(2) RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS): what was walked as a file of the tree is read as
// that file, or not at all.

import (
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

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"golang.org/x/sys/unix"
)

// tree is a directory's entries, as walked (symlinks not followed).
type tree struct {
	dir   string                 // its real path
	files map[string]fs.FileInfo // relative slash path → lstat
	names []string               // sorted: a directory before its contents
}

// walkContext walks the build context, leaving out what .dockerignore
// excludes.
func walkContext(dir string) (*tree, error) {
	var pm *patternmatcher.PatternMatcher
	f, err := os.Open(filepath.Join(dir, ".dockerignore"))
	if err == nil {
		patterns, err := ignorefile.ReadAll(f)
		f.Close()
		if err == nil {
			pm, err = patternmatcher.New(patterns)
		}
		if err != nil {
			return nil, fmt.Errorf(".dockerignore: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf(".dockerignore: %w", err)
	}
	return walkTree(dir, pm)
}

// walkTree lists dir's entries that pm (nil: none) does not exclude.
func walkTree(dir string, pm *patternmatcher.PatternMatcher) (*tree, error) {
	t := &tree{dir: dir, files: map[string]fs.FileInfo{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if pm != nil {
			excluded, err := pm.MatchesOrParentMatches(rel)
			if err != nil {
				return err
			}
			if excluded {
				// A directory may still hold an exception (!dir/keep):
				// walk it, without taking the directory itself.
				if d.IsDir() && !pm.Exclusions() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		t.files[rel] = info
		t.names = append(t.names, rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", dir, err)
	}
	sort.Strings(t.names)
	return t, nil
}

// match returns the entries src names: one path, or every entry a
// pattern (*, ?, [..]) matches. "" is the tree's root.
func (t *tree) match(src string) ([]string, error) {
	rel := strings.TrimPrefix(path.Clean("/"+filepath.ToSlash(src)), "/")
	if !strings.ContainsAny(rel, "*?[") {
		if rel == "" || t.files[rel] != nil || t.hasBelow(rel) {
			return []string{rel}, nil
		}
		return nil, errNoSource
	}
	if _, err := path.Match(rel, ""); err != nil {
		return nil, fmt.Errorf("bad pattern %q: %w", src, err)
	}
	var out []string
	for _, name := range t.names {
		if ok, _ := path.Match(rel, name); ok {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return nil, errNoSource
	}
	return out, nil
}

var errNoSource = errors.New("no such file")

// hasBelow reports whether entries lie below rel (a directory excluded
// itself, with exceptions inside).
func (t *tree) hasBelow(rel string) bool {
	i := sort.SearchStrings(t.names, rel+"/")
	return i < len(t.names) && strings.HasPrefix(t.names[i], rel+"/")
}

// isDir reports whether rel is a directory of the tree.
func (t *tree) isDir(rel string) bool {
	if rel == "" {
		return true
	}
	if info := t.files[rel]; info != nil {
		return info.IsDir()
	}
	return t.hasBelow(rel)
}

// below lists the entries under directory rel, in order.
func (t *tree) below(rel string) []string {
	if rel == "" {
		return t.names
	}
	i := sort.SearchStrings(t.names, rel+"/")
	var out []string
	for ; i < len(t.names) && strings.HasPrefix(t.names[i], rel+"/"); i++ {
		out = append(out, t.names[i])
	}
	return out
}

// resolve follows a symlink the way the tree's root would see it
// (openat2 RESOLVE_IN_ROOT: an absolute or climbing target stays inside)
// and returns the entry it leads to.
func (t *tree) resolve(rel string) (string, error) {
	root, err := os.Open(t.dir)
	if err != nil {
		return "", err
	}
	defer root.Close()
	fd, err := unix.Openat2(int(root.Fd()), rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return "", fmt.Errorf("%s: %w", rel, err)
	}
	real, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	unix.Close(fd)
	if err != nil {
		return "", err
	}
	out, err := filepath.Rel(t.dir, real)
	if err != nil || out == ".." || strings.HasPrefix(out, "../") {
		return "", fmt.Errorf("%s leads out of %s", rel, t.dir)
	}
	if out == "." {
		return "", nil
	}
	out = filepath.ToSlash(out)
	if t.files[out] == nil && !t.hasBelow(out) {
		return "", fmt.Errorf("%s: a symlink to %s, which is not in the build context (.dockerignore?)", rel, out)
	}
	return out, nil
}

// open opens regular file rel of the tree, following no symlink on the
// way (O_NONBLOCK: a fifo swapped in cannot hang the build).
func (t *tree) open(rel string) (*os.File, error) {
	root, err := os.Open(t.dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	fd, err := unix.Openat2(int(root.Fd()), rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s changed during the build: no longer a regular file", rel)
	}
	return f, nil
}

// hashFile is the sha256 of regular file rel, and w gets its bytes.
func (t *tree) hashFile(rel string, w io.Writer) (string, int64, error) {
	f, err := t.open(rel)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(h, w), f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
