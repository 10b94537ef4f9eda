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

// isTerminal reports whether w (or r) is a terminal.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// Execute runs the CLI with args and returns the process exit status.
func Execute(args []string, in io.Reader, out, errOut io.Writer) int {
	s := &streams{in: in, out: out, err: errOut}
	root := newRoot(s)
	root.SetArgs(args)
	root.SetIn(in)
	root.SetOut(out)
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

func newRoot(s *streams) *cobra.Command {
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
	root.AddCommand(
		newLessonsCmd(s),
		newLessonCmd(s),
		newDiffCmd(s),
		newDoctorCmd(s),
		newRootfsCmd(s),
		newCleanupCmd(s),
		// The engine (final/): docker's commands.
		newRunCmd(s), newCreateCmd(s), newStartCmd(s), newExecCmd(s),
		newPsCmd(s), newLogsCmd(s), newStopCmd(s), newKillCmd(s), newRmCmd(s), newInspectCmd(s), newWaitCmd(s),
		newPullCmd(s), newImagesCmd(s), newRmiCmd(s),
		newPushCmd(s), newLoginCmd(s), newLogoutCmd(s), newSaveCmd(s), newLoadCmd(s), newTagCmd(s), newHistoryCmd(s), newImageCmd(s),
		newBuildCmd(s), newCommitCmd(s),
		newVolumeCmd(s), newNetworkCmd(s),
		newRuntimeCmd(s), newSuperviseCmd(),
	)
	return root
}
