// Command minibox teaches how a container engine works by building one: it
// renders each lesson and runs its demos live, checks the host, builds the
// demo root filesystem, and shows what each stage adds.
package main

import (
	"os"

	"github.com/minibox-lab/minibox/final/runtime"
	"github.com/minibox-lab/minibox/internal/cli"
)

func main() {
	if runtime.IsInit() { // a container's init (final/runtime): nothing else first
		runtime.Init()
	}
	os.Exit(cli.Execute(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
