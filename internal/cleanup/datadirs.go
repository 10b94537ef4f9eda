package cleanup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultDataRoot is where minibox keeps its data when neither --root nor
// $MINIBOX_ROOT says otherwise.
const DefaultDataRoot = "/var/lib/minibox"

// DataRoot returns the data root: flagValue (--root), else $MINIBOX_ROOT,
// else /var/lib/minibox, as the stages decide.
func DataRoot(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if env := os.Getenv("MINIBOX_ROOT"); env != "" {
		return env
	}
	return DefaultDataRoot
}

// A dataDir is a kind of directory minibox makes in a data root: the
// entries of $ROOT/<sub> whose names match.
type dataDir struct {
	sub   string // "containers", "layers"
	match func(name string) bool
}

// list returns the paths of the matching directories in each data root,
// sorted by name. Symlinks are never followed: a symlinked <sub>
// directory is an error, a symlinked entry is not minibox's.
func (d dataDir) list(env Env) ([]string, error) {
	var out []string
	var errs []error
	for _, root := range env.DataRoots {
		if root == "" {
			continue
		}
		dir := filepath.Join(root, d.sub)
		if err := checkRealDir(dir); err != nil {
			if !errors.Is(err, fs.ErrNotExist) { // not there: nothing ran here
				errs = append(errs, err)
			}
			continue
		}
		entries, err := os.ReadDir(dir) // sorted; types from lstat
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			if e.IsDir() && d.match(e.Name()) {
				out = append(out, filepath.Join(dir, e.Name()))
			}
		}
	}
	return out, errors.Join(errs...)
}

// objects lists d's directories in every data root as objects of kind,
// each marked busy with what inUse says of it.
func (d dataDir) objects(env Env, kind, detail string, inUse func(dir string) string) ([]Object, error) {
	dirs, err := d.list(env)
	out := make([]Object, 0, len(dirs))
	for _, dir := range dirs {
		out = append(out, Object{Kind: kind, Name: dir, Detail: detail, Busy: inUse(dir)})
	}
	return out, err
}

// remove removes one of d's directories, after checking its exact form
// again and that inUse says nothing of it now; a directory gone already
// is removed.
func (d dataDir) remove(dir string, inUse func(dir string) string) error {
	if err := d.check(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if busy := inUse(dir); busy != "" {
		return fmt.Errorf("refusing to remove %s: %s", dir, busy)
	}
	return removeTree(dir)
}

// check refuses any path that is not exactly /…/<sub>/<matching name>,
// with <sub> and the entry real directories (not symlinks). It returns
// fs.ErrNotExist (wrapped) when the entry is gone.
func (d dataDir) check(path string) error {
	parent := filepath.Dir(path)
	if !filepath.IsAbs(path) || filepath.Clean(path) != path || !strings.HasSuffix(parent, "/"+d.sub) || !d.match(filepath.Base(path)) {
		return fmt.Errorf("refusing to remove %s: not of the form <data root>/%s/<name minibox gives>", path, d.sub)
	}
	for _, p := range []string{parent, path} {
		if err := checkRealDir(p); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return err
			}
			return fmt.Errorf("refusing to remove %s: %w", path, err)
		}
	}
	return nil
}

// checkRealDir returns an error unless path is a directory itself, not a
// symlink to one: cleanup never follows a link out of the data root.
func checkRealDir(path string) error {
	info, err := os.Lstat(path)
	switch {
	case err != nil:
		return err
	case info.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symlink: minibox never makes one there, so cleanup does not follow it", path)
	case !info.IsDir():
		return fmt.Errorf("%s is not a directory", path)
	}
	return nil
}

// removeTree is rm -rf dir, refused while anything is mounted at or below
// dir in this mount namespace: os.RemoveAll would go into a mounted file
// system and delete its contents (a rootfs a broken stage bound in).
func removeTree(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("refusing to remove %s: cannot read the mount table: %w", dir, err)
	}
	for _, m := range ParseMountinfo(string(data)) {
		if m.Point == dir || strings.HasPrefix(m.Point, dir+"/") {
			return fmt.Errorf("refusing to remove %s: %s is mounted in it (umount -l %s, then run minibox cleanup again)", dir, m.Point, m.Point)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("rm -rf %s: %w", dir, err)
	}
	return nil
}
