package lesson

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Action is what the student chose before a demo.
type Action int

const (
	Run Action = iota
	Skip
	Quit
)

// ErrQuit is returned when the student quits a lesson.
var ErrQuit = errors.New("lesson quit")

// Runner runs a lesson: prose through Render, demos live.
type Runner struct {
	Out    io.Writer                                    // everything the student sees
	Render func(md string) (string, error)              // Markdown → terminal text
	Prompt func(context.Context, *Demo) (Action, error) // nil: run every demo without asking
	Check  bool                                         // stop at the first unmet expectation
	Env    []string                                     // the demos' environment
	Dir    string                                       // the demos' working directory
	Color  bool                                         // colour the gutter and marks
}

// Report says how a lesson run went.
type Report struct {
	Ran, Skipped int
	Failures     []string // one line each, "lessons/en/01-chroot.md:42: …"
}

// Finished reports whether every demo ran and met its expectations.
func (r Report) Finished() bool { return r.Skipped == 0 && len(r.Failures) == 0 }

// Run renders and runs l. It returns ErrQuit if the student quit, and an
// error naming the first failure in check mode.
func (r *Runner) Run(ctx context.Context, l *Lesson) (Report, error) {
	var rep Report
	file := fmt.Sprintf("lessons/%s/%s.md", l.Lang, l.Name)
	for _, seg := range l.Segments {
		if err := ctx.Err(); err != nil {
			return rep, err // interrupted (Ctrl-C, SIGTERM, a closed pipe)
		}
		if seg.Demo == nil {
			text, err := r.Render(seg.Prose)
			if err != nil {
				return rep, fmt.Errorf("render %s: %w", file, err)
			}
			fmt.Fprint(r.Out, text)
			continue
		}
		d := seg.Demo
		r.showScript(d)
		if r.Prompt != nil {
			switch act, err := r.Prompt(ctx, d); {
			case err != nil:
				return rep, err
			case act == Quit:
				return rep, ErrQuit
			case act == Skip:
				rep.Skipped++
				fmt.Fprintln(r.Out, r.paint(dim, "  (skipped)"))
				continue
			}
		}
		rep.Ran++
		failures := r.runDemo(ctx, d)
		if err := ctx.Err(); err != nil {
			return rep, err // interrupted (Ctrl-C): the demo's group is gone
		}
		for _, f := range failures {
			rep.Failures = append(rep.Failures, fmt.Sprintf("%s:%s", file, f))
			if r.Check {
				return rep, fmt.Errorf("%s:%s", file, f)
			}
		}
		fmt.Fprintln(r.Out)
	}
	return rep, nil
}

// showScript prints the demo's commands, shell-prompt style.
func (r *Runner) showScript(d *Demo) {
	for i, line := range strings.Split(strings.TrimRight(d.Script, "\n"), "\n") {
		mark := "  $ "
		if i > 0 {
			mark = "  > "
		}
		fmt.Fprintln(r.Out, r.paint(bold, mark+line))
	}
}

// runDemo runs one demo, streaming its output, and returns its failures
// ("LINE: what went wrong").
func (r *Runner) runDemo(ctx context.Context, d *Demo) []string {
	ctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()

	gutter := &gutterWriter{out: r.Out, prefix: r.paint(dim, "  │ ")}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", d.Script)
	cmd.Env, cmd.Dir = r.Env, r.Dir
	cmd.Stdout, cmd.Stderr = gutter, gutter // one pipe: order is kept
	// Own process group, so a timeout or Ctrl-C reaches everything the demo
	// started. SIGTERM first: a demo's `trap … EXIT` gets to unmount and
	// remove what it made. Whatever still runs is killed below.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	// How long a cancelled demo has to clean up, and how long a background
	// process still holding the output pipe may keep us waiting.
	cmd.WaitDelay = GracePeriod

	err := cmd.Run()
	if cmd.Process != nil {
		// Whatever the demo left running in its group goes with it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	gutter.finish()

	if errors.Is(ctx.Err(), context.Canceled) {
		fmt.Fprintln(r.Out, r.paint(dim, "  (interrupted)"))
		return nil // the lesson is over; its expectations do not matter now
	}
	var failures []string
	code := 0
	var exit *exec.ExitError
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		fmt.Fprintln(r.Out, r.paint(red, fmt.Sprintf("  ✗ timed out after %s", d.Timeout)))
		return []string{fmt.Sprintf("%d: demo did not finish within %s (add timeout=… to the demo line if it needs longer)", d.Line, d.Timeout)}
	case errors.As(err, &exit):
		code = exitStatus(exit)
	case err != nil && !errors.Is(err, exec.ErrWaitDelay):
		fmt.Fprintln(r.Out, r.paint(red, "  ✗ "+err.Error()))
		return []string{fmt.Sprintf("%d: cannot run demo: %v", d.Line, err)}
	}
	if !d.AnyExit && code != d.Exit {
		msg := fmt.Sprintf("%d: demo exited with status %d, expected %d", d.Line, code, d.Exit)
		fmt.Fprintln(r.Out, r.paint(red, "  ✗ exit status "+fmt.Sprint(code)))
		failures = append(failures, msg)
	}
	output := gutter.text()
	for _, rule := range d.Expect {
		if rule.Matches(output) {
			fmt.Fprintln(r.Out, r.paint(green, "  ✓ "+rule.Raw))
			continue
		}
		fmt.Fprintln(r.Out, r.paint(red, "  ✗ "+rule.Raw))
		what := "no output line matches"
		if rule.Negate {
			what = "an output line matches"
		}
		failures = append(failures, fmt.Sprintf("%d: expectation %q not met: %s", rule.Line, rule.Raw, what))
	}
	return failures
}

// exitStatus is the shell's view of how a process ended: its exit code, or
// 128+N when signal N killed it.
func exitStatus(exit *exec.ExitError) int {
	if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return exit.ExitCode()
}

const (
	bold  = "1"
	dim   = "2"
	red   = "31"
	green = "32"
)

func (r *Runner) paint(code, s string) string {
	if !r.Color {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// gutterWriter streams output with a prefix at the start of each line, and
// keeps a copy for the expectations. os/exec calls Write from one goroutine
// (stdout and stderr share one pipe); text() is read after the demo ends.
type gutterWriter struct {
	out      io.Writer
	prefix   string
	midLine  bool
	captured strings.Builder
}

// Write works byte by byte, so that a UTF-8 character split across two
// reads is passed through intact.
func (g *gutterWriter) Write(p []byte) (int, error) {
	g.captured.Write(p)
	var b []byte
	for _, c := range p {
		if !g.midLine {
			b = append(b, g.prefix...)
			g.midLine = true
		}
		b = append(b, c)
		if c == '\n' {
			g.midLine = false
		}
	}
	if _, err := g.out.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
}

// finish ends a last line that had no newline.
func (g *gutterWriter) finish() {
	if g.midLine {
		io.WriteString(g.out, "\n")
		g.midLine = false
	}
}

func (g *gutterWriter) text() string {
	return g.captured.String()
}

// DemoEnv builds the environment demos run with: the caller's, with the
// stage binaries first on PATH and the lesson's variables set.
func DemoEnv(base []string, binDir, rootfsDir, workDir string, number int) []string {
	env := []string{}
	path := os.Getenv("PATH")
	for _, kv := range base {
		switch {
		case strings.HasPrefix(kv, "PATH="):
			path = strings.TrimPrefix(kv, "PATH=")
		case strings.HasPrefix(kv, "ROOTFS="), strings.HasPrefix(kv, "WORK="), strings.HasPrefix(kv, "MINIBOX_LESSON="):
		default:
			env = append(env, kv)
		}
	}
	return append(env,
		"PATH="+binDir+":"+path,
		"ROOTFS="+rootfsDir,
		"WORK="+workDir,
		fmt.Sprintf("MINIBOX_LESSON=%d", number),
	)
}
