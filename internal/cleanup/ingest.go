package cleanup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ImageTemps are the temporary files of stage 06's image store,
// $ROOT/images. The store never writes a file in place: a blob goes to
// ingest/tmp-<digits> (os.CreateTemp) and is renamed to
// blobs/sha256/<hex> once whole and checked; index.json, oci-layout and
// a build cache entry cache/<hex> are written to .tmp-<name><digits> next
// to them and renamed over them. So a temporary file that is still there
// belongs to a pull, build, commit or load that was killed. A blob being
// written is open in its writer; a small file is closed just before its
// rename: one that a live process has open, or that was written less
// than a minute ago, is in use. The blobs, index.json, oci-layout and the
// cache entries themselves are never touched.
var ImageTemps = Kind{Name: imageTempKind, Find: findImageTemps, Remove: removeImageTemp}

const (
	imageTempKind = "image tmp file"
	// writeFinish is how long a fresh temporary file counts as in use
	// without an open descriptor: the store closes a small file, then
	// renames it.
	writeFinish = time.Minute
)

// An imageTempPlace is one directory of the image store where temporary
// files are written.
type imageTempPlace struct {
	sub    string                 // the directory, relative to the data root
	match  func(name string) bool // the names os.CreateTemp gives there
	detail string                 // what the file was on its way to becoming
}

var imageTempPlaces = []imageTempPlace{
	{sub: "images/ingest", match: isLayerTempName, detail: "an interrupted blob write"},
	{sub: "images", match: isLayoutTempName, detail: "an interrupted index.json or oci-layout write"},
	{sub: "images/cache", match: isCacheTempName, detail: "an interrupted build cache write"},
}

// layoutFiles are the files of the OCI layout that the store rewrites
// whole (image-spec, image-layout.md).
var layoutFiles = []string{"index.json", "oci-layout"}

// isLayoutTempName reports whether name is one that
// os.CreateTemp(dir, ".tmp-index.json") or ".tmp-oci-layout" makes.
func isLayoutTempName(name string) bool {
	for _, file := range layoutFiles {
		if random, ok := strings.CutPrefix(name, ".tmp-"+file); ok && isDecimal(random) {
			return true
		}
	}
	return false
}

// cacheKeyLen is the length of a build cache entry's name: the hex of a
// sha256.
const cacheKeyLen = 64

// isCacheTempName reports whether name is one that
// os.CreateTemp(dir, ".tmp-<64 hex>") makes for a cache entry.
func isCacheTempName(name string) bool {
	rest, ok := strings.CutPrefix(name, ".tmp-")
	if !ok || len(rest) <= cacheKeyLen {
		return false
	}
	return isLowerHex(rest[:cacheKeyLen]) && isDecimal(rest[cacheKeyLen:])
}

// isDecimal reports whether s is what os.CreateTemp puts after its
// pattern: a random number in decimal digits.
func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isLowerHex(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func findImageTemps(env Env) ([]Object, error) {
	var out []Object
	var errs []error
	for _, root := range env.DataRoots {
		if root == "" {
			continue
		}
		for _, place := range imageTempPlaces {
			files, err := place.list(root)
			if err != nil {
				errs = append(errs, err)
			}
			for _, f := range files {
				out = append(out, Object{Kind: imageTempKind, Name: f, Detail: place.detail, Busy: imageTempInUse(f)})
			}
		}
	}
	return out, errors.Join(errs...)
}

// list returns the temporary files of this place in the data root root,
// sorted by name. Symlinks are never followed: a symlinked directory on
// the way is an error, a symlinked entry is not minibox's.
func (p imageTempPlace) list(root string) ([]string, error) {
	dir := filepath.Join(root, p.sub)
	if err := checkRealDirs(root, p.sub); err != nil {
		if errors.Is(err, fs.ErrNotExist) { // no image store here: nothing ran
			return nil, nil
		}
		return nil, err
	}
	entries, err := os.ReadDir(dir) // sorted; types from lstat
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() && p.match(e.Name()) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out, nil
}

// checkRealDirs checks that every directory of sub, from root down
// (images, then images/ingest), is a real directory, not a symlink:
// Lstat of images/ingest alone would follow a symlinked images.
func checkRealDirs(root, sub string) error {
	dir := root
	for _, part := range strings.Split(sub, "/") {
		dir = filepath.Join(dir, part)
		if err := checkRealDir(dir); err != nil {
			return err
		}
	}
	return nil
}

// imageTempInUse says why the temporary file path is in use, or "".
func imageTempInUse(path string) string {
	if pids := processesWithOpen(path); len(pids) > 0 {
		return fmt.Sprintf("an image is being written: process %s has it open; let it finish (or kill %s), then run minibox cleanup again",
			describePIDs(pids), strings.Join(pids, " "))
	}
	if age, ok := youngerThan(path, writeFinish); ok {
		return fmt.Sprintf("written %s ago: a write may be finishing; run minibox cleanup again in a minute", age)
	}
	return ""
}

// removeImageTemp removes one temporary file of the image store, after
// checking again its exact form (<root>/images/ingest/tmp-<digits>,
// <root>/images/.tmp-index.json<digits>, …: a regular file, no symlink on
// the way) and that no process has it open.
func removeImageTemp(o Object) error {
	path := o.Name
	place, ok := imageTempPlaceOf(path)
	if !ok {
		return fmt.Errorf("refusing to remove %s: not a temporary file of the image store (<data root>/images/ingest/tmp-<digits>, <data root>/images/.tmp-index.json<digits>, …)", path)
	}
	root := strings.TrimSuffix(filepath.Dir(path), "/"+place.sub)
	if root == "" {
		root = "/" // the data root is / itself
	}
	err := checkRealDirs(root, place.sub)
	if err == nil {
		err = checkRegularFile(path)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // gone already: removed
	case err != nil:
		return fmt.Errorf("refusing to remove %s: %w", path, err)
	}
	if pids := processesWithOpen(path); len(pids) > 0 {
		return fmt.Errorf("refusing to remove %s: process %s has it open", path, describePIDs(pids))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rm %s: %w", path, err)
	}
	return nil
}

// imageTempPlaceOf returns the place path is a temporary file of, if it
// is exactly <root>/<sub>/<name the store gives there>.
func imageTempPlaceOf(path string) (imageTempPlace, bool) {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return imageTempPlace{}, false
	}
	dir, name := filepath.Split(path)
	for _, place := range imageTempPlaces {
		if strings.HasSuffix(dir, "/"+place.sub+"/") && place.match(name) {
			return place, true
		}
	}
	return imageTempPlace{}, false
}

// checkRegularFile returns an error unless path is a regular file itself,
// not a symlink to one.
func checkRegularFile(path string) error {
	info, err := os.Lstat(path)
	switch {
	case err != nil:
		return err
	case info.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symlink: minibox never makes one there, so cleanup does not follow it", path)
	case !info.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", path)
	}
	return nil
}
