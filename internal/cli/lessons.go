package cli

// The lesson commands live in a companion binary, minibox-lessons
// (cmd/minibox-lessons, internal/cli/lessoncmd), installed next to
// minibox. Rendering a lesson needs glamour, and with it chroma, goldmark
// and bluemonday, whose package inits alone cost ~30 ms at every start of
// the binary that links them: every `minibox run`, `minibox ps` and
// container would pay it. minibox keeps a small stand-in for each lesson
// command, listed in its help as before, that replaces itself with
// minibox-lessons (execve(2)): the terminal, signals, exit status and
// standard files are then minibox-lessons' own, as if minibox ran the
// command itself.

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/minibox-lab/minibox/final/runtime"
)

// LessonsBinary is the companion binary that runs the lesson commands.
const LessonsBinary = "minibox-lessons"

// The lesson commands' usage lines and summaries, shared by minibox's
// stand-ins (its --help lists them) and minibox-lessons' commands.
const (
	LessonUse, LessonShort   = "lesson N", "Read lesson N and run its demos live"
	LessonsUse, LessonsShort = "lessons", "List the lessons and which ones you have finished"
)

// lessonStubs are minibox's stand-ins for the lesson commands. args are
// minibox's arguments, handed to minibox-lessons unchanged: its command
// line is minibox's (same root, same --rootfs), so it parses them the same.
func lessonStubs(args []string) []*cobra.Command {
	return []*cobra.Command{
		lessonStub(LessonUse, LessonShort, args),
		lessonStub(LessonsUse, LessonsShort, args),
	}
}

func lessonStub(use, short string, args []string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		// Every flag, --help included, is minibox-lessons' to parse.
		DisableFlagParsing: true,
		RunE:               func(*cobra.Command, []string) error { return execLessons(args) },
	}
	// `minibox help lesson` shows minibox-lessons' help of the command.
	cmd.SetHelpFunc(func(c *cobra.Command, _ []string) {
		if err := execLessons([]string{c.Name(), "--help"}); err != nil {
			fmt.Fprintln(c.ErrOrStderr(), "minibox:", err)
		}
	})
	return cmd
}

// execLessons replaces this process with minibox-lessons, run with args.
// It returns only if that fails. argv[0] stays minibox's: the lessons'
// messages name the command the user typed (sudo bin/minibox lesson 2).
func execLessons(args []string) error {
	path, err := runtime.Companion(LessonsBinary)
	if errors.Is(err, runtime.ErrNoCompanion) {
		return fmt.Errorf("the lessons are run by %s, and there is none next to minibox (%v): "+
			"build both with make build (bin/minibox and bin/%s), or install %s in the same directory as minibox",
			LessonsBinary, err, LessonsBinary, LessonsBinary)
	}
	if err != nil {
		return fmt.Errorf("the lessons are run by %s: %w", LessonsBinary, err)
	}
	argv := append([]string{os.Args[0]}, args...)
	if err := syscall.Exec(path, argv, os.Environ()); err != nil {
		return fmt.Errorf("run %s: %w", path, err)
	}
	return nil
}
