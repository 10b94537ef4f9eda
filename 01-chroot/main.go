// Stage 01 — chroot: a new root directory, and why it is not isolation.
//
// This is the first stage: a program that runs a command with a different
// root directory. The parent re-executes itself (/proc/self/exe) as a child;
// the child calls chroot(2) on ROOTFS, changes into "/", and replaces itself
// with the command. Every later stage keeps this shape and adds one
// mechanism. Lesson 1 (`minibox lesson 1`) explains it; `escape` shows that a
// root user can walk out of a chroot.
//
//	go build -o stage01 ./01-chroot && sudo ./stage01 run -v ROOTFS -- CMD [ARGS...]
//	sudo ./stage01 run ROOTFS -- /stage01 escape HOST-FILE   (with a copy inside ROOTFS)
//
// The files, one idea each: main.go (the two processes, in the order things
// happen), command.go (exec the command), escape.go (the way out),
// narrate.go (-v, errors, exit status).
package main

import (
	"flag"
	"io"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"
)

// stage is this program's name in messages: copying a stage forward
// changes this line.
const stage = "stage01"

const usage = `usage:
  ` + stage + ` run [-v] ROOTFS -- CMD [ARGS...]   run CMD with ROOTFS as its root directory
      -v                                narrate each kernel step on stderr
  ` + stage + ` escape HOST-FILE              (inside a chroot) break out and read HOST-FILE`

func main() {
	if len(os.Args) < 2 {
		fail(2, usage)
	}
	switch os.Args[1] {
	case "run":
		os.Exit(run(os.Args[2:]))
	case "child":
		child(os.Args[2:])
	case "escape":
		os.Exit(escape(os.Args[2:]))
	default:
		fail(2, "unknown command %q\n%s", os.Args[1], usage)
	}
}

// run is the parent: it checks the arguments, starts the child and returns
// the command's exit status.
func run(args []string) int {
	flags := flag.NewFlagSet("run", flag.ContinueOnError)
	flags.SetOutput(io.Discard) // errors are reported below, with the usage
	verbose := flags.Bool("v", false, "")
	if err := flags.Parse(args); err != nil {
		fail(2, "%v\n%s", err, usage)
	}
	args = flags.Args()
	if len(args) < 3 || args[1] != "--" {
		fail(2, usage)
	}
	rootfs, command := args[0], args[2:]
	if info, err := os.Stat(rootfs); err != nil || !info.IsDir() {
		fail(1, "rootfs %s: not a directory (build one with `minibox rootfs`)", rootfs)
	}
	if *verbose {
		os.Setenv(traceEnv, "1") // for the child too
	}

	// Re-execute this very program as "child". Later stages add namespace
	// flags here; this stage needs nothing but a second process.
	cmd := exec.Command("/proc/self/exe", append([]string{"child", rootfs}, command...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return exitStatus(err)
	}
	return 0
}

// child runs in the new process: it changes its root directory and becomes
// the command.
func child(args []string) {
	if len(args) < 2 {
		fail(2, usage) // only run itself calls child, with both
	}
	rootfs, command := args[0], args[1:]

	// From now on "/" means ROOTFS for this process (chroot(2)).
	must(unix.Chroot(rootfs), "chroot %s", rootfs)
	// chroot does not move the current directory: without this, the
	// process would still stand in the host's tree, and `ls ..` list it.
	must(unix.Chdir("/"), "cd /")
	execCommand(rootfs, command) // command.go
}
