// Command minibox-shim is the small half of minibox: the mode that runs
// once per container, `supervise --root DIR ID` (the container's
// supervisor, final/engine), and `runtime init` (the container's init,
// final/runtime) where minibox-init, smaller still, is missing or of
// another build. minibox starts it; nobody runs it by hand.
//
// Why a second binary: every container executes the supervisor, and a Go
// program pays the package initialisation of everything it links at each
// start, and keeps that heap for its whole life. minibox links cobra and
// every command (and the lesson renderer, ~26 ms of inits, until it moved
// to minibox-lessons); this binary links only the engine and the runtime.
// minibox uses it when it lies next to minibox and is the same build
// (runtime.Shim), and runs its own identical modes otherwise. It must
// never import internal/cli or the lessons: TestShimLinksNoLessonRenderer
// checks.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	goruntime "runtime"

	"github.com/minibox-lab/minibox/final/engine"
	"github.com/minibox-lab/minibox/final/runtime"
)

// A container's init must exec the container's command from its main
// thread, the one holding the death signal its supervisor asked for
// (PR_SET_PDEATHSIG is per thread): cmd/minibox does the same.
func init() {
	if runtime.IsInit() {
		goruntime.LockOSThread()
	}
}

func main() {
	if runtime.IsInit() {
		runtime.Init() // never returns
	}
	if engine.IsKeeper() { // a detached container's supervisor, replaced by its keeper (final/engine/keep.go)
		os.Exit(engine.Keep())
	}
	os.Exit(run(os.Args[1:], os.Stderr))
}

const usage = "usage: minibox-shim supervise --root DIR ID | runtime init\n" +
	"(minibox starts it for each container; it is not a command of its own)"

func run(args []string, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "supervise" {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	root, id, err := superviseArgs(args[1:])
	if err != nil {
		fmt.Fprintf(stderr, "minibox-shim supervise: %v\n%s\n", err, usage)
		return 2
	}
	// fd 3 is the pipe on which engine.Start waits for our build, then
	// "ok" or "error: …".
	ready := os.NewFile(3, "ready")
	engine.TellBuild(ready)
	if err := supervise(root, id, ready); err != nil {
		fmt.Fprintf(stderr, "minibox supervise: %v\n", err)
		return 1
	}
	return 0
}

// superviseArgs parses what engine.Prestart passes: --root DIR and the id,
// in any order (the same as the cobra command of minibox).
func superviseArgs(args []string) (root, id string, err error) {
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--root" && i+1 < len(args):
			root = args[i+1]
			i++
		case len(a) > len("--root=") && a[:len("--root=")] == "--root=":
			root = a[len("--root="):]
		case id == "" && a != "" && a[0] != '-':
			id = a
		default:
			return "", "", fmt.Errorf("unexpected argument %q", a)
		}
	}
	switch {
	case root == "":
		return "", "", errors.New("--root DIR is required (the data root)")
	case id == "":
		return "", "", errors.New("the container ID is required")
	}
	return root, id, nil
}

func supervise(root, id string, ready *os.File) error {
	if os.Geteuid() != 0 {
		err := errors.New("a supervisor needs root")
		fmt.Fprintf(ready, "error: %v\n", err)
		return err
	}
	e, err := engine.New(root)
	if err != nil {
		fmt.Fprintf(ready, "error: %v\n", err)
		return err
	}
	return e.Supervise(id, ready)
}
