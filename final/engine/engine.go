// Package engine is minibox's container engine, the docker of minibox:
// it owns images (final/image), container records, networks
// (final/network), volumes and logs, and turns `minibox run …` into an OCI
// bundle that the runtime (final/runtime) makes into a container. Each
// running container has a supervisor of its own, a process of the small
// binary beside minibox (`minibox-shim supervise ID`; minibox itself if
// there is no shim of its build), which is the container's parent: it
// keeps its output (the log and attached clients), records how it ended
// and cleans up after it, so a container outlives the command that
// started it. docs/architecture.md draws the picture.
package engine

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/image"
	"github.com/minibox-lab/minibox/final/runtime"
)

// Engine is one data root's engine.
type Engine struct {
	Root    string // the data root: --root, $MINIBOX_ROOT, /var/lib/minibox
	Images  *image.Store
	Runtime *runtime.Runtime
	Self    string // the supervisors' binary if not the default (supervisorBinary)
}

// supervisorBinary is what runs `supervise ID`: Self if set, else the
// small minibox-shim next to this binary when it is the same build
// (runtime.Shim), because each container pays its start-up and its
// memory; else this binary. Only a command that starts a supervisor asks
// (finding out reads the shim's build information: ~0.5 ms).
func (e *Engine) supervisorBinary() (string, error) {
	if e.Self != "" {
		return e.Self, nil
	}
	if shim, err := runtime.Shim(); err == nil {
		return shim, nil
	}
	return os.Executable()
}

// New opens the engine of a data root.
func New(root string) (*Engine, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	images, err := image.Open(abs)
	if err != nil {
		return nil, err
	}
	for _, dir := range []string{"engine/containers", "engine/names", "engine/runtime", "volumes"} {
		if err := os.MkdirAll(filepath.Join(abs, dir), 0o700); err != nil {
			return nil, err
		}
	}
	// A container dies with its supervisor (Supervise locks its thread).
	rt := &runtime.Runtime{Root: filepath.Join(abs, "engine", "runtime"), DeathSignal: unix.SIGKILL}
	return &Engine{Root: abs, Images: images, Runtime: rt}, nil
}
