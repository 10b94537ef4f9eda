package cleanup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// RuntimeStates are the state directories of minibox's OCI runtime
// (final/runtime), one per container: state.json (the container's init,
// its start time, its cgroup) and, until the container is started,
// exec.fifo. The runtime removes one when the container is deleted
// (`minibox runtime delete`, or the engine's supervisor when its container
// ends), so one whose init is gone belongs to a container nobody deleted:
// the engine's supervisor was killed ($ROOT/engine/runtime/<64 hex>), or
// a `minibox runtime create`/`run` was interrupted (/run/minibox/runtime/<id>,
// the CLI's default --root). Only those two places are looked in: a
// runtime root given with --root elsewhere may be anything. A state whose
// init is alive is a running container's: busy. So is one a process has
// open (the runtime at work, an init not yet started), one whose cgroup
// still holds processes (a container without a PID namespace outlives
// its init: the state is how `minibox runtime kill --all` finds them),
// one whose engine supervisor runs, and one being made (no state.json, or
// still "creating", for a minute).
var RuntimeStates = Kind{Name: runtimeStateKind, Find: findRuntimeStates, Remove: removeRuntimeState}

const (
	runtimeStateKind = "runtime state"
	// DefaultRuntimeRoot is `minibox runtime`'s default --root, as
	// final/runtime.DefaultRoot (a tmpfs: gone at reboot).
	DefaultRuntimeRoot = "/run/minibox/runtime"
	// runtimeCreating is how long a state directory without a live init
	// counts as one the runtime is still making.
	runtimeCreating = time.Minute
)

// runtimeIDRule is the runtime's (runc's) rule for container IDs.
var runtimeIDRule = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

func isRuntimeID(name string) bool { return len(name) <= 128 && runtimeIDRule.MatchString(name) }

// runtimePlace is a directory of state directories and the names the
// runtime gives them there.
type runtimePlace struct {
	dir    string
	match  func(string) bool
	engine string // the data root, for the engine's place; "" for the CLI's
}

// runtimePlaces are the engine's runtime roots, one per data root, and
// the CLI's.
func runtimePlaces(dataRoots, runtimeRoots []string) []runtimePlace {
	var out []runtimePlace
	for _, root := range dataRoots {
		if root != "" {
			out = append(out, runtimePlace{dir: filepath.Join(root, engineRuntime), match: IsEngineID, engine: root},
				runtimePlace{dir: filepath.Join(root, buildRuntime), match: isRuntimeID}) // build's RUN containers
		}
	}
	for _, dir := range runtimeRoots {
		if dir != "" {
			out = append(out, runtimePlace{dir: filepath.Clean(dir), match: isRuntimeID})
		}
	}
	return out
}

func findRuntimeStates(env Env) ([]Object, error) {
	var out []Object
	var errs []error
	for _, p := range runtimePlaces(env.DataRoots, env.RuntimeRoots) {
		if err := checkRealDir(p.dir); err != nil {
			if !errors.Is(err, fs.ErrNotExist) { // not there: nothing ran here
				errs = append(errs, err)
			}
			continue
		}
		entries, err := os.ReadDir(p.dir) // types from lstat: links are not dirs
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			if !e.IsDir() || !p.match(e.Name()) {
				continue
			}
			dir := filepath.Join(p.dir, e.Name())
			busy, release := runtimeStateInUse(p, dir)
			if release != nil {
				release()
			}
			out = append(out, Object{Kind: runtimeStateKind, Name: dir, Detail: runtimeStateDetail(dir), Busy: busy,
				dataRoots: env.DataRoots, runtimeRoots: env.RuntimeRoots})
		}
	}
	return out, errors.Join(errs...)
}

// runtimeStateDetail says what the state is: "init 1234 gone", or
// "no state.json".
func runtimeStateDetail(dir string) string {
	st, ok, err := readRuntimeState(dir)
	switch {
	case err != nil:
		return "unreadable state.json"
	case !ok:
		return "no state.json"
	case st.Pid <= 0:
		return st.Status + ", no init"
	}
	return "init " + strconv.Itoa(st.Pid)
}

// runtimeStateInUse says why the state directory dir is in use, or "".
// On "", release (never nil then) lets go of the engine container's
// supervisor lock, which the caller holds meanwhile.
func runtimeStateInUse(p runtimePlace, dir string) (busy string, release func()) {
	release = func() {}
	if p.engine != "" {
		r, why := engineSupervisor(p.engine, filepath.Base(dir))
		if why != "" {
			return why, nil
		}
		release = r
	}
	if why := runtimeStateBusy(dir); why != "" {
		release()
		return why, nil
	}
	return "", release
}

// runtimeStateBusy is runtimeStateInUse's part for any runtime root.
func runtimeStateBusy(dir string) string {
	if why := runtimeInitAlive(dir); why != "" {
		return why
	}
	st, ok, err := readRuntimeState(dir)
	if err != nil {
		return fmt.Sprintf("cannot tell whether its container runs: %v", err)
	}
	if ok && st.Cgroup != nil {
		for _, g := range st.Cgroup.Dirs {
			if !filepath.IsAbs(g) {
				continue
			}
			if pids := processesBelow(g); len(pids) > 0 {
				return fmt.Sprintf("its container's cgroup %s holds processes %s; stop them (kill %s), then run minibox cleanup again",
					g, describePIDs(pids), strings.Join(pids, " "))
			}
		}
	}
	if pids := processesWithOpen(dir); len(pids) > 0 {
		return fmt.Sprintf("in use: process %s has it open (the runtime at work?); let it finish (or kill %s), then run minibox cleanup again",
			describePIDs(pids), strings.Join(pids, " "))
	}
	if !ok || st.Status == "creating" {
		if age, young := youngerThan(dir, runtimeCreating); young {
			return fmt.Sprintf("made %s ago, its init not started yet: the runtime may be creating it; run minibox cleanup again in a minute", age)
		}
	}
	return ""
}

// removeRuntimeState removes one state directory (rm -rf), after checking
// again its exact place and name, no symlinks, and that it is in use by
// nothing (for the engine's, under the supervisor lock, held until it is
// gone). Its cgroup is the cgroup kind's: minibox/<id> groups are removed
// there; a group elsewhere (a bundle's own linux.cgroupsPath) is not
// minibox's to remove.
func removeRuntimeState(o Object) error {
	dir := o.Name
	p, ok := runtimePlaceOf(dir, runtimePlaces(o.roots(), o.runtimeRootsOrDefault()))
	if !ok {
		return fmt.Errorf("refusing to remove %s: not a runtime state directory (<data root>/%s/<64 hex>, %s/<id>)", dir, engineRuntime, DefaultRuntimeRoot)
	}
	for _, path := range []string{p.dir, dir} {
		if err := checkRealDir(path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // gone already: removed
			}
			return fmt.Errorf("refusing to remove %s: %w", dir, err)
		}
	}
	busy, release := runtimeStateInUse(p, dir)
	if busy != "" {
		return fmt.Errorf("refusing to remove %s: %s", dir, busy)
	}
	defer release()
	return removeTree(dir)
}

// runtimePlaceOf finds the place dir is directly in, if dir is named as
// the runtime names state directories there.
func runtimePlaceOf(dir string, places []runtimePlace) (runtimePlace, bool) {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return runtimePlace{}, false
	}
	for _, p := range places {
		if filepath.Dir(dir) == p.dir && p.match(filepath.Base(dir)) {
			return p, true
		}
	}
	return runtimePlace{}, false
}
