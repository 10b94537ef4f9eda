// Command minibox-keeper is what a detached container's supervisor becomes
// once the container runs (final/engine/keeper): it copies the container's
// output into its log, serves its attach socket and waits for it, then
// hands the end back to the supervisor's binary. The supervisor executes
// it in its own place (execve, the same PID); nobody runs it by hand.
//
// Why a binary of its own: a keeper lives as long as its container, and a
// Go program keeps for its whole life the heap its package inits made.
// This one links only package keeper (no engine, image store or network):
// ~0.4 MiB less per running container than minibox-shim keeping
// (docs/benchmarks.md). The supervisor uses it when it lies next to the
// supervisor's binary and is the same build (final/runtime.Companion), and
// keeps in its own binary otherwise.
package main

import (
	"fmt"
	"os"

	"github.com/minibox-lab/minibox/final/engine/keeper"
)

func main() {
	if !keeper.IsKeeper() {
		fmt.Fprintln(os.Stderr, "usage: minibox-keeper supervise … (a container's supervisor executes it in its own place, with "+keeper.KeepEnv+" in its environment)\n(it keeps a detached container; it is not a command of its own)")
		os.Exit(2)
	}
	os.Exit(keeper.Main())
}
