package lessoncmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/minibox-lab/minibox/internal/cleanup"
	"github.com/minibox-lab/minibox/internal/cli"
	"github.com/minibox-lab/minibox/internal/lesson"
	"github.com/minibox-lab/minibox/internal/rootfs"
	"github.com/minibox-lab/minibox/internal/stages"
	"github.com/minibox-lab/minibox/lessons"
)

type lessonFlags struct {
	lang, style  string
	yes, check   bool
	read         bool
	demo, from   int
	timeoutScale string
	rootfs       string
}

// lessonFiles holds the lessons the lesson command reads; tests swap in
// their own (testdata/lessons).
var lessonFiles fs.FS = lessons.FS

func newLessonCmd() *cobra.Command {
	var f lessonFlags
	cmd := &cobra.Command{
		Use:   cli.LessonUse,
		Short: cli.LessonShort,
		Long: `Render lesson N and run its demos live, in order.

Before a lesson runs, the stage programs (stage01, stage02, …) are built from
your working tree, so an edit to 02-namespaces/main.go shows in the next run.
Each demo's number and command are shown, then its output streamed behind a
│ gutter; expectations are checked after it and marked ✓ or ✗.

In a terminal, minibox pauses before each demo: Enter runs it, s skips it,
q quits. With --yes, or when input or output is not a terminal, it runs
straight through. --check runs every demo and stops with a non-zero exit
status at the first unmet expectation: the test suite uses it to keep every
lesson working.

--read shows the lesson with every demo's commands and what each demo checks,
and runs nothing: it needs no root, no Go and no demo rootfs. In a terminal it
goes through a pager, as git does: $PAGER, else less -R (with LESS=FRX unless
LESS is set); PAGER=cat, or output that is not a terminal, prints directly.

--demo K runs demo K alone and --from K starts at demo K, skipping the prose
before it; both show the demo numbers the full lesson shows. A demo that
builds on files an earlier demo makes says so (after=N in the lesson), and
that demo runs first. A partial run never marks the lesson done.

On a slow machine, --timeout-scale F (or MINIBOX_DEMO_TIMEOUT=F) gives every
demo F times its usual time to finish.

A lesson that finishes with every demo run and every expectation met is
marked done in your progress (see minibox lessons --help).`,
		Example: `  sudo minibox lesson 1
  sudo minibox lesson 2 --lang zh
  minibox lesson 3 --read                 # no root, no Go: read it, demos shown
  minibox lesson 2 --read --lang zh | less -R
  sudo minibox lesson 2 --demo 4          # demo 4 only (and what it builds on)
  sudo minibox lesson 2 --from 6          # demo 6 and every demo after it
  sudo minibox lesson 3 --timeout-scale 2 # a slow classroom machine
  sudo minibox lesson 3 --yes --check`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f.rootfs, _ = cmd.Flags().GetString("rootfs")
			return runLesson(streamsOf(cmd), f, args[0])
		},
	}
	cmd.Flags().StringVar(&f.lang, "lang", "", "lesson language, en or zh (default from $LC_ALL/$LANG: zh* → zh, else en)")
	cmd.Flags().BoolVarP(&f.yes, "yes", "y", false, "run every demo without pausing")
	cmd.Flags().BoolVar(&f.check, "check", false, "run every demo; exit non-zero at the first unmet expectation")
	cmd.Flags().StringVar(&f.style, "style", "", "glamour style: dark, light, notty, ascii, dracula, pink, tokyo-night, auto, or a JSON style file (default $GLAMOUR_STYLE, else auto)")
	cmd.Flags().BoolVar(&f.read, "read", false, "show the demos and their checks, run nothing (no root)")
	cmd.Flags().IntVar(&f.demo, "demo", 0, "run only demo `K` (and the earlier demos it builds on)")
	cmd.Flags().IntVar(&f.from, "from", 0, "start at demo `K`: run it and every demo after it")
	cmd.Flags().StringVar(&f.timeoutScale, "timeout-scale", "", "multiply demo timeouts by `F` ($MINIBOX_DEMO_TIMEOUT)")
	return cmd
}

func runLesson(s *streams, f lessonFlags, arg string) (err error) {
	n, err := strconv.Atoi(arg)
	if err != nil {
		return fmt.Errorf("lesson: expected a lesson number, got %q (minibox lessons lists them)", arg)
	}
	if f.read && f.check {
		return errors.New("--read runs nothing and --check runs every demo: choose one")
	}
	lang := f.lang
	if lang == "" {
		lang = lesson.LangFromEnv(os.Getenv)
	}
	l, err := lesson.Find(lessonFiles, lang, n)
	if err != nil {
		return fmt.Errorf("--lang %s: %w", lang, err)
	}
	// Wrong demo numbers and bad timeouts are reported before any slow work.
	if err := lesson.CheckSelection(len(l.Demos()), f.demo, f.from); err != nil {
		return fmt.Errorf("lesson %d: %w", n, err)
	}
	scale := 1.0
	if !f.read {
		if scale, err = timeoutScale(f.timeoutScale, os.Getenv); err != nil {
			return err
		}
	}
	// The renderer first: a bad --style is reported before any slow work.
	render, width, err := newRender(s, f)
	if err != nil {
		return err
	}
	if f.read {
		return readLesson(s, l, f, render, width)
	}

	// Ctrl-C, SIGTERM, a closed terminal or a closed pipe (minibox lesson 1
	// | head) all end the lesson the same way, at any point: the running
	// demo or build gets SIGTERM and cleans up, then so does minibox.
	ctx, caught, stop := signalContext()
	defer stop()
	defer func() {
		if sig := caught(); sig != 0 {
			err = cli.Exit(128+int(sig), fmt.Errorf("lesson %s stopped by %s", arg, unix.SignalName(sig)))
		}
	}()

	rootfsDir := rootfs.Dir(f.rootfs)
	if err := prepareNeeds(s.out, l, rootfsDir); err != nil {
		return cli.Exit(1, err)
	}

	tmp, err := os.MkdirTemp("", "minibox-lesson-")
	if err != nil {
		return fmt.Errorf("create the lesson's temporary directory: %w", err)
	}
	defer removeTemp(s.err, tmp)
	binDir, workDir := filepath.Join(tmp, "bin"), filepath.Join(tmp, "work")
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", workDir, err)
	}
	if err := buildLessonStages(ctx, s.out, n, binDir); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return cli.Exit(1, err)
	}

	runner := &lesson.Runner{
		Out:          s.out,
		Render:       render,
		Check:        f.check,
		Env:          lesson.DemoEnv(os.Environ(), binDir, rootfsDir, workDir, l.Number),
		Dir:          workDir,
		Color:        cli.IsTerminal(s.out),
		Only:         f.demo,
		From:         f.from,
		TimeoutScale: scale,
		Width:        width,
	}
	if in, ok := s.in.(*os.File); ok && !f.yes && !f.check && cli.IsTerminal(s.out) && cli.IsTerminal(in) {
		runner.Prompt = keyPrompt(in, s.out)
	}
	rep, err := runner.Run(ctx, l)
	return finishLesson(s.out, l, rep, f, err)
}

// readLesson shows the lesson with its demos and runs nothing, through a
// pager when the output is a terminal.
func readLesson(s *streams, l *lesson.Lesson, f lessonFlags, render func(string) (string, error), width int) error {
	out, wait := startPager(s.out, s.err, os.Getenv)
	defer wait()
	runner := &lesson.Runner{
		Out:    out,
		Render: render,
		Color:  cli.IsTerminal(s.out),
		Read:   true,
		Only:   f.demo,
		From:   f.from,
		Width:  width,
	}
	if _, err := runner.Run(context.Background(), l); err != nil {
		return cli.Exit(1, err)
	}
	return nil
}

// timeoutScale reads the factor that multiplies every demo's timeout:
// the --timeout-scale flag, else $MINIBOX_DEMO_TIMEOUT, else 1.
func timeoutScale(flag string, getenv func(string) string) (float64, error) {
	value, source := flag, "--timeout-scale"
	if value == "" {
		value, source = getenv("MINIBOX_DEMO_TIMEOUT"), "MINIBOX_DEMO_TIMEOUT"
	}
	if value == "" {
		return 1, nil
	}
	f, err := strconv.ParseFloat(value, 64)
	// The upper bound keeps a typo (200 for 2.00) from hiding a hung demo
	// for hours, and the duration arithmetic far from overflowing.
	if err != nil || math.IsNaN(f) || f <= 0 || f > 100 {
		return 0, fmt.Errorf("%s=%q: expected a factor that multiplies every demo's timeout, a number above 0 and at most 100, like 2 or 2.5", source, value)
	}
	return f, nil
}

// signalContext returns a context cancelled by the first of SIGINT,
// SIGTERM, SIGHUP or SIGPIPE, and a function that says which one came.
func signalContext() (context.Context, func() syscall.Signal, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	var caught atomic.Int32
	go func() {
		select {
		case sig := <-sigs:
			caught.Store(int32(sig.(syscall.Signal)))
			cancel()
		case <-ctx.Done():
		}
	}()
	stop := func() {
		signal.Stop(sigs)
		cancel()
	}
	return ctx, func() syscall.Signal { return syscall.Signal(caught.Load()) }, stop
}

// removeTemp removes the lesson's temporary directory. A mount that a
// stopped demo left inside it is detached first (umount -l): os.RemoveAll
// would otherwise walk into the mounted tree and delete what it holds.
func removeTemp(errOut io.Writer, dir string) {
	for _, m := range mountsUnder(dir) {
		fmt.Fprintf(errOut, "minibox: a demo left %s mounted; detaching it\n", m)
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
	_ = os.RemoveAll(dir)
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range cleanup.ParseMountinfo(string(data)) {
		if m.Point == dir || strings.HasPrefix(m.Point, dir+"/") {
			out = append([]string{m.Point}, out...)
		}
	}
	return out
}

// prepareNeeds checks the lesson's prerequisites, all at once, before
// anything runs, and builds the demo rootfs if that is all that is missing.
func prepareNeeds(out io.Writer, l *lesson.Lesson, rootfsDir string) error {
	var missing []string
	if l.Requires("root") && os.Geteuid() != 0 {
		missing = append(missing, fmt.Sprintf("root: the demos create namespaces, mounts and cgroups. Fix: sudo %s lesson %d", os.Args[0], l.Number))
	}
	if _, err := stages.GoTool(); err != nil {
		missing = append(missing, err.Error())
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
// minibox next to them, so demos can call both by name: the minibox that
// lies next to this minibox-lessons, the one that started it (of the same
// build: it checked), not minibox-lessons, which runs no container.
func buildLessonStages(ctx context.Context, out io.Writer, n int, binDir string) error {
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
		return fmt.Errorf("create %s: %w", binDir, err)
	}
	if err := stages.Build(ctx, src, binDir, upTo, out); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the minibox binary to put on the demos' PATH: %w", err)
	}
	engine := filepath.Join(filepath.Dir(self), "minibox")
	if err := os.Symlink(engine, filepath.Join(binDir, "minibox")); err != nil {
		return fmt.Errorf("put minibox on the demos' PATH: %w", err)
	}
	return nil
}

// newRender chooses the glamour style once, here, before any demo runs:
// "auto" asks the terminal for its background colour, which must not
// happen while a demo owns the terminal. It also returns the width it
// renders for.
func newRender(s *streams, f lessonFlags) (func(string) (string, error), int, error) {
	requested, source := f.style, "--style"
	if requested == "" {
		requested, source = os.Getenv("GLAMOUR_STYLE"), "$GLAMOUR_STYLE"
	}
	tty := cli.IsTerminal(s.out)
	width := 80
	if file, ok := s.out.(*os.File); ok && tty {
		if w, _, err := term.GetSize(int(file.Fd())); err == nil && w > 20 {
			width = min(w, 100)
		}
	}
	// A bad style is an error even when output is not a terminal and the
	// plain style will be used anyway.
	if requested != "" && requested != "auto" {
		if _, err := lesson.NewRenderer(requested, width); err != nil {
			return nil, 0, fmt.Errorf("%s %q: not a glamour style (dark, light, notty, ascii, dracula, pink, tokyo-night, auto) nor a readable style file: %w", source, requested, err)
		}
	}
	render, err := lesson.NewRenderer(lesson.StyleName(f.style, os.Getenv, tty), width)
	return render, width, err
}

// keyPrompt asks before each demo and reads a single key: Enter runs, s
// skips, q (or Ctrl-C) quits. A signal while it waits ends the lesson too.
func keyPrompt(in *os.File, out io.Writer) func(context.Context, *lesson.Demo) (lesson.Action, error) {
	return func(ctx context.Context, _ *lesson.Demo) (lesson.Action, error) {
		fmt.Fprint(out, "\x1b[2m  ▶ Enter: run · s: skip · q: quit\x1b[0m")
		defer fmt.Fprint(out, "\r\x1b[K")
		fd := int(in.Fd())
		old, err := term.MakeRaw(fd)
		if err != nil {
			return lesson.Run, fmt.Errorf("read a key from the terminal: %w", err)
		}
		defer term.Restore(fd, old)
		// Forget keys pressed while the previous demo ran (tcflush(3)), or
		// an early Enter would run this demo without a pause.
		_ = unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH)
		for {
			key, err := readKey(ctx, in)
			if err != nil {
				return lesson.Quit, err
			}
			switch key {
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

// readKey reads one byte, or returns ctx's error if a signal comes first.
func readKey(ctx context.Context, in *os.File) (byte, error) {
	fds := []unix.PollFd{{Fd: int32(in.Fd()), Events: unix.POLLIN}}
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		// poll(2) with a short timeout, so a signal is noticed promptly.
		n, err := unix.Poll(fds, 100)
		if err != nil && err != unix.EINTR {
			return 0, fmt.Errorf("wait for a key: %w", err)
		}
		if n > 0 {
			key := make([]byte, 1)
			if _, err := in.Read(key); err != nil {
				return 'q', nil // the terminal went away: quit
			}
			return key[0], nil
		}
	}
}

func finishLesson(out io.Writer, l *lesson.Lesson, rep lesson.Report, f lessonFlags, err error) error {
	switch {
	case errors.Is(err, lesson.ErrQuit):
		fmt.Fprintf(out, "\nLesson %d left before the end; minibox lesson %d starts it again.\n", l.Number, l.Number)
		return nil
	case err != nil:
		return cli.Exit(1, err)
	}
	if len(rep.Failures) > 0 {
		return cli.Exit(1, fmt.Errorf("lesson %d: %d failure(s):\n  %s",
			l.Number, len(rep.Failures), strings.Join(rep.Failures, "\n  ")))
	}
	if rep.Skipped > 0 {
		fmt.Fprintf(out, "Lesson %d: %d demo(s) run, %d skipped; run them all to mark the lesson done.\n", l.Number, rep.Ran, rep.Skipped)
		return nil
	}
	if f.demo != 0 || f.from != 0 {
		fmt.Fprintf(out, "Lesson %d: %d demo(s) run, every expectation met; a partial run (--demo, --from) does not mark the lesson done.\n", l.Number, rep.Ran)
		return nil
	}
	fmt.Fprintf(out, "Lesson %d done: %d demo(s), every expectation met.\n", l.Number, rep.Ran)
	if f.check {
		return nil // a check (make tour, the tests) is not the student's progress
	}
	progress, err := lesson.LoadProgress(lesson.ProgressPath(os.Getenv))
	if err == nil {
		err = progress.MarkFinished(l.Number, os.Getenv)
	}
	if err != nil {
		fmt.Fprintf(out, "(could not save progress: %v)\n", err)
	}
	return nil
}
