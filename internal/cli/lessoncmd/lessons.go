package lessoncmd

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/minibox-lab/minibox/internal/cli"
	"github.com/minibox-lab/minibox/internal/lesson"
	"github.com/minibox-lab/minibox/lessons"
)

func newLessonsCmd() *cobra.Command {
	var lang string
	cmd := &cobra.Command{
		Use:   cli.LessonsUse,
		Short: cli.LessonsShort,
		Long: `List the lessons: number, title, the stage folder each one teaches, and
whether you have finished it (every demo run, every expectation met).

` + lesson.ProgressPathHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if lang == "" {
				lang = lesson.LangFromEnv(os.Getenv)
			}
			all, err := lesson.Load(lessons.FS, lang)
			if err != nil {
				return err
			}
			progress, err := lesson.LoadProgress(lesson.ProgressPath(os.Getenv))
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "#\tTITLE\tSTAGE\tDONE")
			for _, l := range all {
				done := ""
				if progress.IsFinished(l.Number) {
					done = "✓"
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", l.Number, l.Title, l.Stage, done)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&lang, "lang", "", "language of the titles, en or zh (default from $LC_ALL/$LANG)")
	return cmd
}
