package cleanup

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/minibox-lab/minibox/internal/flock"
	"github.com/minibox-lab/minibox/internal/stepname"
)

// BuildSteps are the scratch directories of `minibox build`
// (final/build): each step makes $ROOT/build/tmp/new-<pid>-<digits>
// (internal/stepname), takes an exclusive flock(2) on its lock file,
// renames it step-<digits> and mounts an overlay on its rootfs, holding the
// lock while it works there. A step-* whose lock nobody holds belongs to a
// build that was killed (a new-* too, once its builder has exited or it is
// a minute old), and the next build removes it too. Its
// mount is the mount kind's (madeByMinibox knows build/tmp), the directory
// this kind's. Its RUN containers' states, in $ROOT/build/runtime,
// are the runtime state kind's.
var BuildSteps = Kind{Name: buildStepKind, Find: findBuildSteps, Remove: removeBuildStep}

const (
	buildStepKind = "build step dir"
	buildTmp      = "build/tmp"
	buildRuntime  = "build/runtime"
)

var buildSteps = dataDir{sub: buildTmp, match: isBuildStepName}

// isBuildStepName reports whether name is a step directory: made as
// new-<pid>-<digits> (os.MkdirTemp; new-<digits> before), renamed
// step-<digits> once locked.
func isBuildStepName(name string) bool {
	if _, _, ok := stepname.Parse(name); ok {
		return true
	}
	digits, ok := strings.CutPrefix(name, "step-")
	if !ok {
		digits, ok = strings.CutPrefix(name, "new-")
	}
	return ok && digits != "" && strings.Trim(digits, "0123456789") == ""
}

func findBuildSteps(env Env) ([]Object, error) {
	return buildSteps.objects(env, buildStepKind, "an interrupted build", buildStepInUse)
}

// buildStepInUse says why the step directory dir is in use, or "": its
// build holds its lock, or it has no lock yet, its builder may be alive
// and it is less than a minute old (the moment between mkdir and lock).
func buildStepInUse(dir string) string {
	if held, _ := flock.Held(filepath.Join(dir, "lock")); held {
		return "a build is running in it (its lock is held); let it finish, then run minibox cleanup again"
	}
	if name := filepath.Base(dir); strings.HasPrefix(name, "new-") && !stepname.Abandoned(name) { // between mkdir and rename
		if age, ok := youngerThan(dir, unpackStart); ok {
			return fmt.Sprintf("made %s ago: a build may be starting; run minibox cleanup again in a minute", age)
		}
	}
	return ""
}

// buildMountInUse says why a mount below a build step directory is in
// use, or "" (also for a mount elsewhere).
func buildMountInUse(point string) string {
	i := strings.Index(point, "/"+buildTmp+"/")
	if i < 0 {
		return ""
	}
	rest := point[i+len(buildTmp)+2:]
	step, _, _ := strings.Cut(rest, "/")
	if !isBuildStepName(step) {
		return ""
	}
	return buildStepInUse(point[:i+len(buildTmp)+2] + step)
}

// removeBuildStep removes one killed build's step directory, after
// checking its exact form again and that no build holds it; a directory
// with something still mounted in it is refused (removeTree).
func removeBuildStep(o Object) error { return buildSteps.remove(o.Name, buildStepInUse) }
