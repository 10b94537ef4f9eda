// Package onrun starts `minibox run`'s supervisor from its init (package
// early, Begin), about a millisecond into the process: cmd/minibox, and
// only it, imports it for that. It imports only os and early, so that Go
// initialises it right after them (see package early).
package onrun

import (
	"os"

	"github.com/minibox-lab/minibox/final/engine/early"
)

func init() { early.Begin(os.Args) }
