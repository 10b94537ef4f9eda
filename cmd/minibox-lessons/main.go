// Command minibox-lessons runs minibox's lesson commands (minibox lesson,
// minibox lessons): minibox replaces itself with it for those (execve),
// so users see one CLI. It is a binary of its own because rendering a
// lesson needs glamour, chroma, goldmark and bluemonday, whose package
// inits cost ~30 ms at every start of the binary that links them; every
// `minibox run` and every container would pay it. It lies next to
// minibox (make build puts both in bin/) and must be of the same build
// (final/runtime.Companion checks).
package main

import (
	"os"

	"github.com/minibox-lab/minibox/internal/cli"
	"github.com/minibox-lab/minibox/internal/cli/lessoncmd"
)

func main() {
	os.Exit(cli.ExecuteLessons(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, lessoncmd.Commands()...))
}
