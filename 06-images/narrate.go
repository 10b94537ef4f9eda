package main

// How a stage talks: it narrates each kernel step (-v), reports errors, and
// turns the command's end into an exit status.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// traceEnv turns the narration on. -v sets it, so the child inherits it.
const traceEnv = "MINIBOX_TRACE"

// narrate prints one kernel step as its shell equivalent, "+ chroot ROOTFS",
// on stderr, when -v or MINIBOX_TRACE=1 asks for it. Parent and child share
// stderr, so the lines come in the order the steps happen.
func narrate(format string, args ...any) {
	if os.Getenv(traceEnv) == "1" {
		fmt.Fprintf(os.Stderr, "+ "+format+"\n", args...)
	}
}

// must ends the stage if a step failed, naming the step by its shell
// equivalent; otherwise it narrates the step, which has just happened.
func must(err error, format string, args ...any) {
	if err != nil {
		fail(1, "%s: %v", fmt.Sprintf(format, args...), err)
	}
	narrate(format, args...)
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, stage+": "+format+"\n", args...)
	os.Exit(code)
}

// exitStatus turns the child's end into a shell-style exit status:
// its exit code, or 128+N when signal N killed it.
func exitStatus(err error) int {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", stage, err)
		return 1
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return exit.ExitCode()
}
