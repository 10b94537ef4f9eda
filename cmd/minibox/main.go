// Command minibox teaches how a container engine works by building one: it
// renders each lesson and runs its demos live, checks the host, builds the
// demo root filesystem, and shows what each stage adds.
package main

import (
	"os"
	goruntime "runtime"

	"github.com/minibox-lab/minibox/final/engine"
	_ "github.com/minibox-lab/minibox/final/engine/early/onrun" // run: its supervisor starts first (package early)
	"github.com/minibox-lab/minibox/final/runtime"
	"github.com/minibox-lab/minibox/internal/cli"
)

// A container's init (final/runtime) must exec the container's command
// from its main thread, the one that holds the death signal its
// supervisor asked for (prctl(2) PR_SET_PDEATHSIG is per thread): locked
// here, in init, main and runtime.Init stay on it.
func init() {
	if runtime.IsInit() {
		goruntime.LockOSThread()
	}
}

func main() {
	if runtime.IsInit() { // a container's init (final/runtime): nothing else first
		runtime.Init()
	}
	if engine.IsKeeper() { // a detached container's supervisor, replaced by its keeper
		os.Exit(engine.Keep())
	}
	os.Exit(cli.Execute(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
