package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/minibox-lab/minibox/internal/lesson"
	"github.com/minibox-lab/minibox/internal/rootfs"
	"github.com/minibox-lab/minibox/internal/stages"
	"github.com/minibox-lab/minibox/lessons"
)

type lessonFlags struct {
	lang, style string
	yes, check  bool
	rootfs      string
}

func newLessonCmd(s *streams) *cobra.Command {
	var f lessonFlags
	cmd := &cobra.Command{
		Use:   "lesson N",
		Short: "Read lesson N and run its demos live",
		Long: `Render lesson N and run its demos live, in order.

Before a lesson runs, the stage programs (stage01, stage02, …) are built from
your working tree, so an edit to 02-namespaces/main.go shows in the next run.
Each demo's command is shown, then its output streamed behind a │ gutter;
expectations are checked after it and marked ✓ or ✗.

In a terminal, minibox pauses before each demo: Enter runs it, s skips it,
q quits. With --yes, or when input or output is not a terminal, it runs
straight through. --check runs every demo and stops with a non-zero exit
status at the first unmet expectation: the test suite uses it to keep every
lesson working.

A lesson that finishes with every demo run and every expectation met is
marked done in your progress (see minibox lessons --help).`,
		Example: `  sudo minibox lesson 1
  sudo minibox lesson 2 --lang zh
  sudo minibox lesson 3 --yes --check`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f.rootfs, _ = cmd.Flags().GetString("rootfs")
			return runLesson(s, f, args[0])
		},
	}
	cmd.Flags().StringVar(&f.lang, "lang", "", "lesson language, en or zh (default from $LC_ALL/$LANG: zh* → zh, else en)")
	cmd.Flags().BoolVarP(&f.yes, "yes", "y", false, "run every demo without pausing")
	cmd.Flags().BoolVar(&f.check, "check", false, "run every demo; exit non-zero at the first unmet expectation")
	cmd.Flags().StringVar(&f.style, "style", "", "glamour style: dark, light, notty, ascii, dracula, pink, tokyo-night, auto, or a JSON style file (default $GLAMOUR_STYLE, else auto)")
	return cmd
}

func runLesson(s *streams, f lessonFlags, arg string) error {
	n, err := strconv.Atoi(arg)
	if err != nil {
		return fmt.Errorf("lesson: expected a lesson number, got %q (minibox lessons lists them)", arg)
	}
	lang := f.lang
	if lang == "" {
		lang = lesson.LangFromEnv(os.Getenv)
	}
	l, err := lesson.Find(lessons.FS, lang, n)
	if err != nil {
		return err
	}
	rootfsDir := rootfs.Dir(f.rootfs)
	if err := prepareNeeds(s.out, l, rootfsDir); err != nil {
		return &exitError{code: 1, err: err}
	}

	tmp, err := os.MkdirTemp("", "minibox-lesson-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	binDir, workDir := filepath.Join(tmp, "bin"), filepath.Join(tmp, "work")
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return err
	}
	if err := buildLessonStages(s.out, n, binDir); err != nil {
		return &exitError{code: 1, err: err}
	}

	// Ctrl-C, a closed terminal or a closed pipe (minibox lesson 1 | head)
	// end the lesson the same way: the running demo gets SIGTERM and its
	// clean-up runs, then minibox removes its own temporary files.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	defer stop()
	runner, err := newRunner(s, f, l, binDir, rootfsDir, workDir)
	if err != nil {
		return err
	}
	rep, err := runner.Run(ctx, l)
	return finishLesson(s.out, l, rep, err)
}

// prepareNeeds checks the lesson's prerequisites, all at once, before
// anything runs, and builds the demo rootfs if that is all that is missing.
func prepareNeeds(out io.Writer, l *lesson.Lesson, rootfsDir string) error {
	var missing []string
	if l.Requires("root") && os.Geteuid() != 0 {
		missing = append(missing, fmt.Sprintf("root: the demos create namespaces, mounts and cgroups. Fix: sudo minibox lesson %d", l.Number))
	}
	busybox, bbErr := rootfs.FindStaticBusybox()
	if l.Requires("rootfs") && !rootfs.IsBuilt(rootfsDir) && bbErr != nil {
		missing = append(missing, fmt.Sprintf("static busybox, to build the demo rootfs: %v", bbErr))
	}
	if len(missing) > 0 {
		return fmt.Errorf("lesson %d cannot run yet:\n  - %s\n(minibox doctor checks everything the lessons need)", l.Number, strings.Join(missing, "\n  - "))
	}
	if l.Requires("rootfs") && !rootfs.IsBuilt(rootfsDir) {
		fmt.Fprintf(out, "building the demo rootfs in %s (first run only)\n", rootfsDir)
		if err := rootfs.Build(rootfsDir, busybox); err != nil {
			return fmt.Errorf("build the demo rootfs: %w", err)
		}
	}
	return nil
}

// buildLessonStages builds stage01 … stageN from the working tree and puts
// minibox itself next to them, so demos can call both by name.
func buildLessonStages(out io.Writer, n int, binDir string) error {
	cwd, _ := os.Getwd()
	src, err := stages.FindSource(cwd)
	if err != nil {
		return err
	}
	all, err := stages.List(src)
	if err != nil {
		return err
	}
	var upTo []stages.Stage
	for _, st := range all {
		if st.Number <= n {
			upTo = append(upTo, st)
		}
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	if err := stages.Build(src, binDir, upTo, out); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	return os.Symlink(self, filepath.Join(binDir, "minibox"))
}

func newRunner(s *streams, f lessonFlags, l *lesson.Lesson, binDir, rootfsDir, workDir string) (*lesson.Runner, error) {
	tty := isTerminal(s.out)
	width := 80
	if file, ok := s.out.(*os.File); ok && tty {
		if w, _, err := term.GetSize(int(file.Fd())); err == nil && w > 20 {
			width = min(w, 100)
		}
	}
	// The style is chosen here, once: "auto" asks the terminal for its
	// background colour, which must not happen while a demo owns it.
	render, err := lesson.NewRenderer(lesson.StyleName(f.style, os.Getenv, tty), width)
	if err != nil {
		return nil, fmt.Errorf("--style %q: %w", f.style, err)
	}
	r := &lesson.Runner{
		Out:    s.out,
		Render: render,
		Check:  f.check,
		Env:    lesson.DemoEnv(os.Environ(), binDir, rootfsDir, workDir, l.Number),
		Dir:    workDir,
		Color:  tty,
	}
	if in, ok := s.in.(*os.File); ok && !f.yes && !f.check && tty && isTerminal(in) {
		r.Prompt = keyPrompt(in, s.out)
	}
	return r, nil
}

// keyPrompt asks before each demo and reads a single key: Enter runs, s
// skips, q (or Ctrl-C) quits.
func keyPrompt(in *os.File, out io.Writer) func(*lesson.Demo) (lesson.Action, error) {
	return func(*lesson.Demo) (lesson.Action, error) {
		fmt.Fprint(out, "\x1b[2m  ▶ Enter: run · s: skip · q: quit\x1b[0m")
		defer fmt.Fprint(out, "\r\x1b[K")
		old, err := term.MakeRaw(int(in.Fd()))
		if err != nil {
			return lesson.Run, fmt.Errorf("read key: %w", err)
		}
		defer term.Restore(int(in.Fd()), old)
		key := make([]byte, 1)
		for {
			if _, err := in.Read(key); err != nil {
				return lesson.Quit, nil
			}
			switch key[0] {
			case '\r', '\n':
				return lesson.Run, nil
			case 's', 'S':
				return lesson.Skip, nil
			case 'q', 'Q', 3, 4: // 3 is Ctrl-C, 4 Ctrl-D in raw mode
				return lesson.Quit, nil
			}
		}
	}
}

func finishLesson(out io.Writer, l *lesson.Lesson, rep lesson.Report, err error) error {
	switch {
	case errors.Is(err, lesson.ErrQuit):
		fmt.Fprintf(out, "\nLesson %d left before the end; minibox lesson %d starts it again.\n", l.Number, l.Number)
		return nil
	case errors.Is(err, context.Canceled):
		return &exitError{code: 130, err: fmt.Errorf("lesson %d interrupted", l.Number)}
	case err != nil:
		return &exitError{code: 1, err: err}
	}
	if len(rep.Failures) > 0 {
		return &exitError{code: 1, err: fmt.Errorf("lesson %d: %d expectation(s) not met:\n  %s",
			l.Number, len(rep.Failures), strings.Join(rep.Failures, "\n  "))}
	}
	if rep.Skipped > 0 {
		fmt.Fprintf(out, "Lesson %d: %d demo(s) run, %d skipped; run them all to mark the lesson done.\n", l.Number, rep.Ran, rep.Skipped)
		return nil
	}
	progress, err := lesson.LoadProgress(lesson.ProgressPath(os.Getenv))
	if err == nil {
		err = progress.MarkFinished(l.Number, os.Getenv)
	}
	if err != nil {
		fmt.Fprintf(out, "(could not save progress: %v)\n", err)
	}
	fmt.Fprintf(out, "Lesson %d done: %d demo(s), every expectation met.\n", l.Number, rep.Ran)
	return nil
}
