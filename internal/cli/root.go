// Package cli is the minibox command line: one cobra command per file.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// exitError carries an exit status through cobra without printing twice.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

// streams are the command's standard files; tests pass buffers.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

// Exit returns an error that makes the command exit with code, printing
// err (if not nil) once, as "minibox: err".
func Exit(code int, err error) error { return &exitError{code: code, err: err} }

// IsTerminal reports whether f, a writer or a reader, is a terminal.
func IsTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// isTerminal is IsTerminal, for this package's commands.
func isTerminal(f any) bool { return IsTerminal(f) }

// Execute runs the CLI with args and returns the process exit status.
// The lesson commands are run by minibox-lessons (see lessons.go).
func Execute(args []string, in io.Reader, out, errOut io.Writer) int {
	s := &streams{in: in, out: out, err: errOut}
	return execute(newRoot(s, args), args, s)
}

// ExecuteLessons runs the CLI of minibox-lessons: minibox's root (its help,
// its --rootfs) with lessonCmds, the commands that render lessons, alone.
func ExecuteLessons(args []string, in io.Reader, out, errOut io.Writer, lessonCmds ...*cobra.Command) int {
	s := &streams{in: in, out: out, err: errOut}
	root := newBareRoot()
	root.AddCommand(lessonCmds...)
	return execute(root, args, s)
}

func execute(root *cobra.Command, args []string, s *streams) int {
	errOut := s.err
	root.SetArgs(args)
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(errOut)
	err := root.Execute()
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ee.err != nil {
			fmt.Fprintln(errOut, "minibox:", ee.err)
		}
		return ee.code
	default:
		fmt.Fprintln(errOut, "minibox:", err)
		return 1
	}
}

// newRoot is minibox's command line. args are the arguments it runs
// with: the lesson commands hand them to minibox-lessons as they are.
// Making every command, with its flags, takes 0.2-0.5 ms in a fresh
// process, on the way of every `minibox run`: when args start with a
// command's name, that command alone is made (what it does, its help
// and its errors are the same).
func newRoot(s *streams, args []string) *cobra.Command {
	root := newBareRoot()
	root.AddCommand(lessonStubs(args)...)
	for _, c := range commands {
		if len(args) > 0 && args[0] == c.name {
			root.AddCommand(c.make(s))
			return root
		}
	}
	for _, c := range commands {
		root.AddCommand(c.make(s))
	}
	return root
}

// commands are minibox's commands (but the lessons'), by name, in the
// order of its help.
var commands = []struct {
	name string
	make func(*streams) *cobra.Command
}{
	{"diff", newDiffCmd},
	{"doctor", newDoctorCmd},
	{"rootfs", newRootfsCmd},
	{"cleanup", newCleanupCmd},
	// The engine (final/): docker's commands.
	{"run", newRunCmd}, {"create", newCreateCmd}, {"start", newStartCmd}, {"exec", newExecCmd},
	{"ps", newPsCmd}, {"logs", newLogsCmd}, {"stop", newStopCmd}, {"kill", newKillCmd}, {"rm", newRmCmd},
	{"inspect", newInspectCmd}, {"wait", newWaitCmd},
	{"pull", newPullCmd}, {"images", newImagesCmd}, {"rmi", newRmiCmd},
	{"push", newPushCmd}, {"login", newLoginCmd}, {"logout", newLogoutCmd}, {"save", newSaveCmd}, {"load", newLoadCmd},
	{"tag", newTagCmd}, {"history", newHistoryCmd}, {"image", newImageCmd},
	{"build", newBuildCmd}, {"commit", newCommitCmd},
	{"volume", newVolumeCmd}, {"network", newNetworkCmd},
	{"runtime", newRuntimeCmd}, {"supervise", func(*streams) *cobra.Command { return newSuperviseCmd() }},
}

// newBareRoot is the root command that minibox and minibox-lessons share:
// its help, and the flags every command takes.
func newBareRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "minibox",
		Short: "Learn how containers work by building one",
		Long: `minibox teaches how a container engine works by building one, one kernel
mechanism at a time: chroot, namespaces, cgroups, layered filesystems,
virtual networks, images.

Start here:
  sudo minibox doctor     check that this machine can run every lesson
  sudo minibox rootfs     build the demo root filesystem (busybox)
  minibox lessons         the lesson list and your progress
  sudo minibox lesson 1   read lesson 1 and run its demos live
  minibox diff 2          what stage 02 adds over stage 01`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("rootfs", "", "demo root filesystem `DIR` (default $MINIBOX_ROOTFS, else /var/lib/minibox/rootfs)")
	return root
}
