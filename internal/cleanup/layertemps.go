package cleanup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// LayerTemps are the half-unpacked layers of stage 04's layer store: a
// layer tar is unpacked into $ROOT/layers/tmp-<digits> (os.MkdirTemp) and
// renamed to $ROOT/layers/<sha256> once whole, so a temporary directory
// that is still there belongs to an unpack that was killed. The stage
// writes no pid there, but it keeps the directory open (every file is made
// relative to a descriptor of it) for the whole unpack: one that a live
// process has open, or that was made less than a minute ago (the moment
// between mkdir and open), is in use. The finished layers, <sha256>, are
// never touched: containers share them.
var LayerTemps = Kind{Name: layerTempKind, Find: findLayerTemps, Remove: removeLayerTemp}

const (
	layerTempKind   = "layer tmp dir"
	layerTempDetail = "an interrupted unpack"
	// unpackStart is how long a fresh temporary directory counts as in use
	// without an open descriptor: the stage makes it, then opens it.
	unpackStart = time.Minute
)

var layerTemps = dataDir{sub: "layers", match: isLayerTempName}

// isLayerTempName reports whether name is one os.MkdirTemp(…, "tmp-")
// makes: "tmp-" and decimal digits.
func isLayerTempName(name string) bool {
	digits, ok := strings.CutPrefix(name, "tmp-")
	if !ok || digits == "" {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func findLayerTemps(env Env) ([]Object, error) {
	dirs, err := layerTemps.list(env)
	out := make([]Object, 0, len(dirs))
	for _, dir := range dirs {
		out = append(out, Object{Kind: layerTempKind, Name: dir, Detail: layerTempDetail, Busy: layerTempInUse(dir)})
	}
	return out, err
}

// layerTempInUse says why the temporary layer directory dir is in use, or "".
func layerTempInUse(dir string) string {
	if pids := processesWithOpen(dir); len(pids) > 0 {
		return fmt.Sprintf("a layer is being unpacked: process %s has it open; let it finish (or kill %s), then run minibox cleanup again",
			describePIDs(pids), strings.Join(pids, " "))
	}
	if age, ok := youngerThan(dir, unpackStart); ok {
		return fmt.Sprintf("made %s ago: an unpack may be starting; run minibox cleanup again in a minute", age)
	}
	return ""
}

// processesWithOpen lists the PIDs of the processes with a file
// descriptor, working directory or root at or below dir (/proc/PID/fd/*,
// cwd, root: what lsof +D reads).
func processesWithOpen(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if holdsPath(filepath.Join("/proc", e.Name()), dir) {
			out = append(out, e.Name())
		}
	}
	return out
}

// holdsPath reports whether the process at procDir (/proc/PID) has dir, or
// anything below it, open or as its working directory or root.
func holdsPath(procDir, dir string) bool {
	links := []string{filepath.Join(procDir, "cwd"), filepath.Join(procDir, "root")}
	fds, _ := os.ReadDir(filepath.Join(procDir, "fd"))
	for _, fd := range fds {
		links = append(links, filepath.Join(procDir, "fd", fd.Name()))
	}
	for _, l := range links {
		target, err := os.Readlink(l)
		if err == nil && (target == dir || strings.HasPrefix(target, dir+"/")) {
			return true
		}
	}
	return false
}

// removeLayerTemp removes one half-unpacked layer, after checking again
// its exact form (<root>/layers/tmp-<digits>, no symlinks), that no
// process has it open and that nothing is mounted in it.
func removeLayerTemp(o Object) error {
	dir := o.Name
	if err := layerTemps.check(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // gone already: removed
		}
		return err
	}
	if pids := processesWithOpen(dir); len(pids) > 0 {
		return fmt.Errorf("refusing to remove %s: process %s has it open", dir, describePIDs(pids))
	}
	return removeTree(dir)
}
