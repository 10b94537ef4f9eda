package cleanup

import (
	"path/filepath"
	"strings"

	"github.com/minibox-lab/minibox/internal/flock"
)

// EngineTemps are the engine's containers that were never made whole, or
// never removed whole: a create makes $ROOT/engine/containers/.new-<id>,
// holds an exclusive flock(2) on its lock file while it takes the name and
// writes the record, then renames it to <id>; a removal renames <id> to
// .rm-<id>, then deletes it. A .new- directory whose lock nobody holds
// belongs to a create that was killed (its name, if it got one, is taken
// back by the next create that asks for it); a .rm- directory whose
// supervisor.lock nobody holds, to a removal that was.
var EngineTemps = Kind{Name: engineTempKind, Find: findEngineTemps, Remove: removeEngineTemp}

const engineTempKind = "engine tmp dir"

var engineTemps = dataDir{sub: engineContainers, match: isEngineTempName}

// isEngineTempName reports whether name is ".new-" or ".rm-" and a
// container id.
func isEngineTempName(name string) bool {
	for _, prefix := range []string{".new-", ".rm-"} {
		if id, ok := strings.CutPrefix(name, prefix); ok && IsEngineID(id) {
			return true
		}
	}
	return false
}

func findEngineTemps(env Env) ([]Object, error) {
	return engineTemps.objects(env, engineTempKind, "an interrupted create or removal", engineTempInUse)
}

// engineTempInUse says why dir is in use, or "": its create holds the
// lock, or its supervisor, removing it, supervisor.lock.
func engineTempInUse(dir string) string {
	if held, _ := flock.Held(filepath.Join(dir, "lock")); held {
		return "a container is being created (its lock is held); run minibox cleanup again in a moment"
	}
	if held, _ := flock.Held(filepath.Join(dir, "supervisor.lock")); held {
		return "a container is being removed (its supervisor.lock is held); run minibox cleanup again in a moment"
	}
	return ""
}

// removeEngineTemp removes one interrupted create's directory, after
// checking its exact form again and that its create is not running.
func removeEngineTemp(o Object) error { return engineTemps.remove(o.Name, engineTempInUse) }
