package cleanup

import (
	"path/filepath"
	"strings"

	"github.com/minibox-lab/minibox/internal/flock"
)

// EngineTemps are the engine's containers that were never made whole: a
// create makes $ROOT/engine/containers/.new-<id>, holds an exclusive
// flock(2) on its lock file while it takes the name and writes the record,
// then renames it to <id>. A .new- directory whose lock nobody holds
// belongs to a create that was killed. (Its name, if it got one, is taken
// back by the next create that asks for it.)
var EngineTemps = Kind{Name: engineTempKind, Find: findEngineTemps, Remove: removeEngineTemp}

const engineTempKind = "engine tmp dir"

var engineTemps = dataDir{sub: engineContainers, match: isEngineTempName}

// isEngineTempName reports whether name is ".new-" and a container id.
func isEngineTempName(name string) bool {
	id, ok := strings.CutPrefix(name, ".new-")
	return ok && IsEngineID(id)
}

func findEngineTemps(env Env) ([]Object, error) {
	return engineTemps.objects(env, engineTempKind, "an interrupted create", engineTempInUse)
}

// engineTempInUse says why dir is in use, or "": its create holds the lock.
func engineTempInUse(dir string) string {
	if held, _ := flock.Held(filepath.Join(dir, "lock")); held {
		return "a container is being created (its lock is held); run minibox cleanup again in a moment"
	}
	return ""
}

// removeEngineTemp removes one interrupted create's directory, after
// checking its exact form again and that its create is not running.
func removeEngineTemp(o Object) error { return engineTemps.remove(o.Name, engineTempInUse) }
