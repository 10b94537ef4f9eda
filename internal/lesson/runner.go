package lesson

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/mattn/go-runewidth"
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

	// Read shows every demo with what it checks and runs nothing: a
	// lesson to read without root, Go or a rootfs.
	Read bool
	// Only runs demo Only alone; From starts at demo From, without the
	// prose before it. Either way the earlier demos they name with
	// after=N run first. Demos count from 1; 0 means the whole lesson.
	Only, From int
	// TimeoutScale multiplies every demo's timeout (slow machines); 0
	// means 1.
	TimeoutScale float64
	// Width is the terminal's width in columns, for wrapping the demos'
	// commands; 0 means 80.
	Width int
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
	demos := l.Demos()
	if err := CheckSelection(len(demos), r.Only, r.From); err != nil {
		return rep, fmt.Errorf("lesson %d: %w", l.Number, err)
	}
	if err := r.prose(Banner(l), file); err != nil {
		return rep, err
	}
	chosen := r.chosen(demos)
	for _, d := range prerequisites(demos, chosen) {
		note := "run first: a demo you chose builds on it"
		if err := r.step(ctx, &rep, file, d, len(demos), note, false); err != nil {
			return rep, err
		}
	}
	// The whole lesson shows every piece of prose; --from shows the prose
	// after its first demo; --demo none.
	showProse := r.Only == 0 && r.From == 0
	for _, seg := range l.Segments {
		if err := ctx.Err(); err != nil {
			return rep, err // interrupted (Ctrl-C, SIGTERM, a closed pipe)
		}
		switch {
		case seg.Demo == nil && showProse:
			if err := r.prose(seg.Prose, file); err != nil {
				return rep, err
			}
		case seg.Demo != nil && chosen[seg.Demo.Number]:
			showProse = r.Only == 0
			if err := r.step(ctx, &rep, file, seg.Demo, len(demos), "", true); err != nil {
				return rep, err
			}
		}
	}
	return rep, nil
}

// CheckSelection says whether --demo only / --from from (0: not given)
// name demos that exist in a lesson of count demos.
func CheckSelection(count, only, from int) error {
	for _, sel := range []struct {
		flag string
		k    int
	}{{"--demo", only}, {"--from", from}} {
		if sel.k != 0 && (sel.k < 1 || sel.k > count) {
			return fmt.Errorf("%s %d: there is no demo %d; this lesson has %d demos (1 to %d)", sel.flag, sel.k, sel.k, count, count)
		}
	}
	if only != 0 && from != 0 {
		return errors.New("--demo and --from cannot be combined: --demo K runs demo K alone, --from K runs K and every demo after it")
	}
	return nil
}

// chosen is the set of demo numbers the run shows: one, a tail, or all.
func (r *Runner) chosen(demos []*Demo) map[int]bool {
	set := map[int]bool{}
	for _, d := range demos {
		if r.Only == 0 && d.Number >= r.From || d.Number == r.Only {
			set[d.Number] = true
		}
	}
	return set
}

// prerequisites lists, in order, the demos that chosen ones name with
// after=N (directly or through another), that are not chosen themselves.
func prerequisites(demos []*Demo, chosen map[int]bool) []*Demo {
	needed := map[int]bool{}
	var visit func(n int)
	visit = func(n int) {
		for _, a := range demos[n-1].After {
			if !needed[a] {
				needed[a] = true
				visit(a)
			}
		}
	}
	for n := range chosen {
		visit(n)
	}
	var out []*Demo
	for _, d := range demos {
		if needed[d.Number] && !chosen[d.Number] {
			out = append(out, d)
		}
	}
	return out
}

func (r *Runner) prose(md, file string) error {
	text, err := r.Render(md)
	if err != nil {
		return fmt.Errorf("render %s: %w", file, err)
	}
	fmt.Fprint(r.Out, text)
	return nil
}

// step shows one demo and, unless reading, asks (when ask is set and
// there is a prompt), runs it and records how it went.
func (r *Runner) step(ctx context.Context, rep *Report, file string, d *Demo, total int, note string, ask bool) error {
	r.showScript(d, total, note)
	if r.Read {
		r.showChecks(d)
		fmt.Fprintln(r.Out)
		return nil
	}
	if ask && r.Prompt != nil {
		switch act, err := r.Prompt(ctx, d); {
		case err != nil:
			return err
		case act == Quit:
			return ErrQuit
		case act == Skip:
			rep.Skipped++
			fmt.Fprintln(r.Out, r.paint(dim, "  (skipped)"))
			return nil
		}
	}
	rep.Ran++
	failures := r.runDemo(ctx, d)
	if err := ctx.Err(); err != nil {
		return err // interrupted (Ctrl-C): the demo's group is gone
	}
	for _, f := range failures {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%s:%s", file, f))
		if r.Check {
			return fmt.Errorf("%s:%s", file, f)
		}
	}
	fmt.Fprintln(r.Out)
	return nil
}

// showScript prints the demo's number (what --demo and --from take) and
// its commands, shell-prompt style, wrapped to the terminal's width.
func (r *Runner) showScript(d *Demo, total int, note string) {
	head := fmt.Sprintf("  [demo %d of %d", d.Number, total)
	if len(d.After) > 0 {
		head += fmt.Sprintf(", builds on demo %s", joinInts(d.After))
	}
	head += "]"
	if note != "" {
		head += " " + note
	}
	r.printWrapped("", head, dim)
	for i, line := range strings.Split(strings.TrimRight(d.Script, "\n"), "\n") {
		mark := "  $ "
		if i > 0 {
			mark = "  > "
		}
		r.printWrapped(mark, line, bold)
	}
}

// showChecks lists, in words, what a run would check after the demo.
func (r *Runner) showChecks(d *Demo) {
	switch {
	case d.AnyExit:
		r.printWrapped("  expect: ", "any exit status", dim)
	default:
		r.printWrapped("  expect: ", fmt.Sprintf("exit status %d", d.Exit), dim)
	}
	first := map[int]bool{} // ordered blocks whose first positive rule is shown
	for _, rule := range d.Expect {
		isFirst := !first[rule.Block]
		if rule.Ordered && !rule.Negate {
			first[rule.Block] = true
		}
		r.printWrapped("  expect: ", rule.Describe(isFirst), dim)
	}
}

// continuation starts a display line that continues the one above it: a
// command too long for the terminal.
const continuation = "  ↪ "

// printWrapped prints mark+text in style, wrapped to r.Width columns: the
// rest of a long line goes on lines that start with the continuation mark.
func (r *Runner) printWrapped(mark, text, style string) {
	width := r.Width
	if width <= 0 {
		width = 80
	}
	pieces := wrapLine(text, width-runewidth.StringWidth(mark), width-runewidth.StringWidth(continuation))
	for i, piece := range pieces {
		prefix := mark
		if i > 0 {
			prefix = continuation
		}
		fmt.Fprintln(r.Out, r.paint(style, prefix+piece))
	}
}

// wrapLine splits s into pieces no wider than first columns (the first
// piece) and rest columns (the others), breaking after a space where it
// can and inside a word only when a word alone is too wide. The line's
// own indentation is never a break point.
func wrapLine(s string, first, rest int) []string {
	var out []string
	width := first
	for runewidth.StringWidth(s) > width && width > 0 {
		cut, lastSpace, used := 0, -1, 0
		indent := len(s) - len(strings.TrimLeft(s, " "))
		for i, c := range s {
			w := runewidth.RuneWidth(c)
			if used+w > width {
				break
			}
			used += w
			cut = i + utf8.RuneLen(c)
			if c == ' ' && i >= indent {
				lastSpace = i
			}
		}
		if lastSpace > indent {
			cut = lastSpace + 1
		}
		if cut == 0 { // a character wider than the line: let it overflow
			break
		}
		out = append(out, strings.TrimRight(s[:cut], " "))
		s = strings.TrimLeft(s[cut:], " ")
		width = rest
	}
	return append(out, s)
}

func joinInts(ns []int) string {
	var s []string
	for _, n := range ns {
		s = append(s, strconv.Itoa(n))
	}
	return strings.Join(s, ", ")
}

// timeout is how long demo d may run: its own timeout, scaled.
func (r *Runner) timeout(d *Demo) time.Duration {
	if r.TimeoutScale > 0 {
		return time.Duration(float64(d.Timeout) * r.TimeoutScale)
	}
	return d.Timeout
}

// runDemo runs one demo, streaming its output, and returns its failures
// ("LINE: what went wrong").
func (r *Runner) runDemo(ctx context.Context, d *Demo) []string {
	timeout := r.timeout(d)
	ctx, cancel := context.WithTimeout(ctx, timeout)
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
		fmt.Fprintln(r.Out, r.paint(red, fmt.Sprintf("  ✗ timed out after %s", timeout)))
		return []string{fmt.Sprintf("%d: demo did not finish within %s%s (add timeout=… to the demo line if it needs longer; MINIBOX_DEMO_TIMEOUT=2 doubles every demo's time on a slow machine)", d.Line, timeout, r.scaledFrom(d))}
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
	for _, v := range Check(d.Expect, gutter.text()) {
		if v.Met {
			fmt.Fprintln(r.Out, r.paint(green, "  ✓ "+v.Rule.Raw))
			continue
		}
		fmt.Fprintln(r.Out, r.paint(red, "  ✗ "+v.Rule.Raw))
		failures = append(failures, fmt.Sprintf("%d: expectation %q not met: %s", v.Rule.Line, v.Rule.Raw, v.Why))
	}
	return failures
}

// scaledFrom says, when the timeout was scaled, what it was scaled from.
func (r *Runner) scaledFrom(d *Demo) string {
	if r.TimeoutScale <= 0 || r.TimeoutScale == 1 {
		return ""
	}
	return fmt.Sprintf(" (the demo's %s × %g)", d.Timeout, r.TimeoutScale)
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
