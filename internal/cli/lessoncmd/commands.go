// Package lessoncmd holds the commands that render lessons (minibox lesson,
// minibox lessons), run by minibox-lessons (cmd/minibox-lessons): they link
// the lesson renderer, which minibox itself must not (see
// internal/cli/lessons.go).
package lessoncmd

import (
	"io"

	"github.com/spf13/cobra"
)

// Commands are the lesson commands, for cli.ExecuteLessons.
func Commands() []*cobra.Command {
	return []*cobra.Command{newLessonCmd(), newLessonsCmd()}
}

// streams are the command's standard files, as cli.ExecuteLessons set
// them on the root (tests pass buffers).
type streams struct {
	in       io.Reader
	out, err io.Writer
}

func streamsOf(cmd *cobra.Command) *streams {
	return &streams{in: cmd.InOrStdin(), out: cmd.OutOrStdout(), err: cmd.ErrOrStderr()}
}
