// Command minibox-init is a container's init: the process the runtime
// forks into the container's new namespaces, which makes the container
// (mounts, pivot_root, capabilities: final/runtime's Init) and then
// executes the container's program in its own place. minibox's runtime
// starts it as `minibox-init runtime init`; nobody runs it by hand.
//
// Why a binary of its own: it starts once per container, on the way of
// every `minibox run`, and a Go program runs the package initialisation of
// everything it links before main. minibox-shim links the engine, and with
// it the image store and the registry client (HTTP, compression, digests):
// ~2 ms of inits at each start. This one links only final/runtime: ~0.5 ms
// (GODEBUG=inittrace=1; docs/benchmarks.md). The runtime uses it when it lies
// next to the running binary and is the same build (runtime.InitPath), and
// otherwise runs the init from minibox-shim or from itself.
package main

import (
	"fmt"
	"os"
	goruntime "runtime"

	"github.com/minibox-lab/minibox/final/runtime"
)

// The init must execute the container's program from its main thread,
// the one holding the death signal its supervisor asked for
// (PR_SET_PDEATHSIG is per thread): locked before main runs.
func init() {
	goruntime.LockOSThread()
}

func main() {
	if !runtime.IsInit() {
		fmt.Fprintln(os.Stderr, "usage: minibox-init runtime init\n(minibox's runtime starts it as each container's init; it is not a command of its own)")
		os.Exit(2)
	}
	runtime.Init() // never returns
}
