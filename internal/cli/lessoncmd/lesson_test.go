package lessoncmd

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/cli"
	"github.com/minibox-lab/minibox/internal/lesson"
	"github.com/minibox-lab/minibox/internal/stages"
	"github.com/minibox-lab/minibox/internal/testenv"
	"github.com/minibox-lab/minibox/lessons"
)

// minibox runs the lesson commands in-process, as minibox-lessons runs
// them, and returns stdout, stderr, exit status.
func minibox(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.ExecuteLessons(args, strings.NewReader(""), &out, &errOut, Commands()...)
	return out.String(), errOut.String(), code
}

func TestLessonArgumentErrors(t *testing.T) {
	_, stderr, code := minibox(t, "lesson", "one")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, `expected a lesson number, got "one"`)

	_, stderr, code = minibox(t, "lesson", "99", "--lang", "en")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "no lesson 99 in en (there are: 01-chroot")

	_, stderr, code = minibox(t, "lesson", "1", "--lang", "fr")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, `unknown language "fr"`)

	_, stderr, code = minibox(t, "lesson")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "accepts 1 arg")
}

func TestLessonsListsTitlesAndProgress(t *testing.T) {
	state := filepath.Join(t.TempDir(), "progress.json")
	t.Setenv("MINIBOX_STATE", state)
	out, _, code := minibox(t, "lessons", "--lang", "en")
	require.Equal(t, 0, code)
	lines := strings.Split(out, "\n")
	assert.Regexp(t, `^#\s+TITLE\s+STAGE\s+DONE`, lines[0])
	assert.Regexp(t, `^1\s+chroot.*01-chroot\s*$`, lines[1], "not done yet")

	require.NoError(t, os.WriteFile(state, []byte(`{"finished":{"1":"2026-01-01T00:00:00Z"}}`), 0o644))
	out, _, _ = minibox(t, "lessons", "--lang", "en")
	assert.Regexp(t, `(?m)^1\s+chroot.*01-chroot\s+✓$`, out)

	out, _, code = minibox(t, "lessons", "--help")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "MINIBOX_STATE", "--help says where progress is kept")
}

// useTestLessons makes the lesson command read testdata/lessons
// instead of the real lessons, and gives it a source tree whose stages
// build in a moment.
func useTestLessons(t *testing.T) (state string) {
	t.Helper()
	old := lessonFiles
	lessonFiles = os.DirFS("testdata/lessons")
	t.Cleanup(func() { lessonFiles = old })

	src := t.TempDir()
	for rel, content := range map[string]string{
		"go.mod":            "module github.com/minibox-lab/minibox\n\ngo 1.22\n",
		"01-first/main.go":  "package main\n\nfunc main() {}\n",
		"02-second/main.go": "package main\n\nfunc main() {}\n",
	} {
		p := filepath.Join(src, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	t.Setenv("MINIBOX_SRC", src)
	state = filepath.Join(t.TempDir(), "progress.json")
	t.Setenv("MINIBOX_STATE", state)
	t.Setenv("MINIBOX_DEMO_TIMEOUT", "")
	return state
}

// --check exits non-zero when an expectation is unmet, naming file:line;
// the same command on a lesson whose expectations hold exits 0.
func TestLessonCheckFailsOnUnmetExpectation(t *testing.T) {
	useTestLessons(t)
	out, stderr, code := minibox(t, "lesson", "1", "--lang", "en", "--yes", "--check")
	assert.Equal(t, 1, code, "an unmet expectation fails the check:\n%s", out)
	assert.Contains(t, stderr, `lessons/en/01-unmet.md:23: expectation "banana" not met: no output line matches`)
	assert.Contains(t, out, "✓ apple", "the first demo ran and passed")
	assert.Contains(t, out, "✗ banana")
	assert.NotContains(t, out, "Lesson 1 done")

	out, stderr, code = minibox(t, "lesson", "2", "--lang", "en", "--yes", "--check")
	assert.Equal(t, 0, code, "a lesson whose expectations hold passes: %s\n%s", stderr, out)
	assert.Contains(t, out, "Lesson 2 done: 2 demo(s), every expectation met.")

	// Without --check the lesson goes on to the end, and still fails.
	_, stderr, code = minibox(t, "lesson", "1", "--lang", "en", "--yes")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "lesson 1: 1 failure(s):\n  lessons/en/01-unmet.md:23: expectation")
}

// --demo and --from run part of a lesson and never mark it done; the whole
// lesson does.
func TestPartialRunsDoNotMarkTheLessonDone(t *testing.T) {
	state := useTestLessons(t)
	out, stderr, code := minibox(t, "lesson", "2", "--lang", "en", "--yes", "--demo", "2")
	require.Equal(t, 0, code, "%s\n%s", stderr, out)
	assert.Contains(t, out, "[demo 1 of 2] run first", "demo 2 builds on demo 1 (after=1)")
	assert.Contains(t, out, "│ pear")
	assert.Contains(t, out, "Lesson 2: 2 demo(s) run, every expectation met; a partial run (--demo, --from) does not mark the lesson done.")
	assert.NoFileExists(t, state)

	_, _, code = minibox(t, "lesson", "2", "--lang", "en", "--yes", "--from", "2")
	require.Equal(t, 0, code)
	assert.NoFileExists(t, state)

	// A control: the whole lesson marks it done.
	_, _, code = minibox(t, "lesson", "2", "--lang", "en", "--yes")
	require.Equal(t, 0, code)
	data, err := os.ReadFile(state)
	require.NoError(t, err)
	assert.Contains(t, string(data), `"2"`)

	// A partial run of a failing lesson still fails.
	_, stderr, code = minibox(t, "lesson", "1", "--lang", "en", "--yes", "--from", "2")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "01-unmet.md:23")
}

func TestDemoNumberOutOfRange(t *testing.T) {
	n := len(findLesson(t, "en", 1).Demos())
	out, stderr, code := minibox(t, "lesson", "1", "--lang", "en", "--demo", "99")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, fmt.Sprintf("lesson 1: --demo 99: there is no demo 99; this lesson has %d demos (1 to %d)", n, n))
	assert.NotContains(t, out, "building stage", "refused before building anything")

	_, stderr, code = minibox(t, "lesson", "1", "--lang", "en", "--from", "0", "--demo", "0", "--read")
	assert.Equal(t, 0, code, "0 means not given: %s", stderr)

	_, stderr, code = minibox(t, "lesson", "1", "--lang", "en", "--read", "--from", fmt.Sprint(n+1))
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, fmt.Sprintf("--from %d: there is no demo %d; this lesson has %d demos", n+1, n+1, n))

	_, stderr, code = minibox(t, "lesson", "1", "--lang", "en", "--read", "--check")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "--read runs nothing and --check runs every demo: choose one")
}

func TestTimeoutScale(t *testing.T) {
	useTestLessons(t)
	// Bad values are refused before anything is built or run.
	for _, c := range []struct{ flag, env, want string }{
		{"0", "", `--timeout-scale="0": expected a factor that multiplies every demo's timeout`},
		{"-2", "", `--timeout-scale="-2": expected a factor`},
		{"", "fast", `MINIBOX_DEMO_TIMEOUT="fast": expected a factor that multiplies every demo's timeout, a number above 0 and at most 100, like 2 or 2.5`},
		{"", "NaN", `MINIBOX_DEMO_TIMEOUT="NaN"`},
		{"", "1e9", `MINIBOX_DEMO_TIMEOUT="1e9"`},
	} {
		t.Setenv("MINIBOX_DEMO_TIMEOUT", c.env)
		args := []string{"lesson", "3", "--lang", "en", "--yes"}
		if c.flag != "" {
			args = append(args, "--timeout-scale", c.flag)
		}
		out, stderr, code := minibox(t, args...)
		assert.Equal(t, 1, code)
		assert.Contains(t, stderr, c.want)
		assert.NotContains(t, out, "building stage", "refused before the build")
	}

	// Lesson 3's demo needs 0.6s and allows 200ms: it fails unscaled,
	// passes with MINIBOX_DEMO_TIMEOUT=5, and the flag wins over it.
	t.Setenv("MINIBOX_DEMO_TIMEOUT", "")
	_, stderr, code := minibox(t, "lesson", "3", "--lang", "en", "--yes", "--check")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "03-slow.md:6: demo did not finish within 200ms")

	t.Setenv("MINIBOX_DEMO_TIMEOUT", "5")
	out, stderr, code := minibox(t, "lesson", "3", "--lang", "en", "--yes", "--check")
	assert.Equal(t, 0, code, "%s\n%s", stderr, out)

	_, stderr, code = minibox(t, "lesson", "3", "--lang", "en", "--yes", "--check", "--timeout-scale", "1")
	assert.Equal(t, 1, code, "--timeout-scale 1 overrides MINIBOX_DEMO_TIMEOUT=5")
	assert.Contains(t, stderr, "within 200ms")
}

func findLesson(t *testing.T, lang string, n int) *lesson.Lesson {
	t.Helper()
	l, err := lesson.Find(lessons.FS, lang, n)
	require.NoError(t, err)
	return l
}

// shownScripts rebuilds the demo scripts from what the runner showed:
// "$ " starts one, "> " adds a line, "↪ " continues a wrapped line.
// Whitespace is normalised, as wrapping breaks at spaces.
func shownScripts(out string) []string {
	var scripts []string
	inScript := false // the last line was part of a script
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimRight(line, " ")
		switch {
		case strings.HasPrefix(line, "  $ "):
			scripts = append(scripts, strings.TrimPrefix(line, "  $ "))
			inScript = true
		case (line == "  >" || strings.HasPrefix(line, "  > ")) && inScript:
			scripts[len(scripts)-1] += "\n" + strings.TrimPrefix(line, "  >")
		case strings.HasPrefix(line, "  ↪ ") && inScript:
			scripts[len(scripts)-1] += " " + strings.TrimPrefix(line, "  ↪ ")
		default:
			inScript = false
		}
	}
	for i := range scripts {
		scripts[i] = normalise(scripts[i])
	}
	return scripts
}

func normalise(s string) string { return strings.Join(strings.Fields(s), " ") }

// buildMinibox builds the minibox command into a directory every user can
// read and search.
func buildMinibox(t *testing.T) (bin, dir string) {
	t.Helper()
	dir = t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	goTool, err := stages.GoTool()
	require.NoError(t, err)
	bin, err = testenv.BuildMinibox(goTool, dir) // and minibox-shim next to it
	require.NoError(t, err)
	return bin, dir
}

// A reader without root and without Go reads a lesson: the banner and
// every demo's commands are shown, nothing runs, no pager (not a terminal).
func TestReadAsUserWithoutGo(t *testing.T) {
	sed, err := exec.LookPath("sed")
	require.NoError(t, err)
	bin, dir := buildMinibox(t)
	noGo := filepath.Join(dir, "empty-path")
	require.NoError(t, os.Mkdir(noGo, 0o755))
	for _, lang := range lesson.Langs {
		all, err := lesson.Load(lessons.FS, lang)
		require.NoError(t, err)
		for _, l := range all {
			readAsUserWithoutGo(t, bin, dir, noGo, sed, l)
		}
	}
}

// readAsUserWithoutGo runs minibox lesson N --read as uid 65534 (when the
// test runs as root; else as the current, unprivileged user).
func readAsUserWithoutGo(t *testing.T, bin, dir, noGo, sed string, l *lesson.Lesson) {
	t.Helper()
	cmd := exec.Command(bin, "lesson", fmt.Sprint(l.Number), "--read", "--lang", l.Lang)
	cmd.Dir = dir
	// No Go on PATH, no GOROOT, no rootfs, and a pager that would mark the
	// output if it were (wrongly) used on a pipe.
	cmd.Env = []string{"PATH=" + noGo, "HOME=" + dir, "PAGER=" + sed + " s/^/PAGED:/", "MINIBOX_ROOTFS=" + filepath.Join(dir, "no-rootfs")}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	where := fmt.Sprintf("minibox lesson %d --read --lang %s as uid 65534", l.Number, l.Lang)
	require.NoError(t, cmd.Run(), "%s: %s", where, stderr.String())
	out := stdout.String()
	assert.Empty(t, stderr.String(), where)
	assert.Contains(t, out, strings.TrimPrefix(strings.TrimSpace(lesson.Banner(l)), "# "), "%s: the banner", where)
	var want []string
	for _, d := range l.Demos() {
		want = append(want, normalise(d.Script))
	}
	assert.Equal(t, want, shownScripts(out), "%s: every demo's commands, in order", where)
	assert.Contains(t, out, "expect: ", "%s: what each demo checks", where)
	assert.NotRegexp(t, `(?m)^  │ `, out, "%s: no demo ran (no output gutter)", where)
	assert.NotContains(t, out, "PAGED:", "%s: no pager when output is not a terminal", where)
	assert.NotContains(t, out, "building stage", "%s: no stage was built", where)
}

// readOnTerminal runs minibox lesson 1 --read in-process with its output on
// a terminal and returns what the terminal showed.
func readOnTerminal(t *testing.T, args ...string) string {
	t.Helper()
	master, slave := testenv.OpenPTY(t, 80)
	var screen bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(&screen, master) // ends with EIO once the slave is closed
	}()
	var errOut bytes.Buffer
	code := cli.ExecuteLessons(append([]string{"lesson", "1", "--read", "--lang", "en"}, args...), strings.NewReader(""), slave, &errOut, Commands()...)
	require.Equal(t, 0, code, errOut.String())
	slave.Close()
	wg.Wait()
	return ansiCode.ReplaceAllString(strings.ReplaceAll(screen.String(), "\r\n", "\n"), "")
}

var ansiCode = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// In a terminal, --read goes through $PAGER, else less -R with git's LESS;
// a pager that is not installed means printing directly.
func TestReadPagesOnATerminal(t *testing.T) {
	t.Setenv("GLAMOUR_STYLE", "notty") // "auto" would ask the terminal, and nobody answers here
	title := "Lesson 1: " + findLesson(t, "en", 1).Title

	t.Setenv("PAGER", "sed s/^/PAGED:/")
	screen := readOnTerminal(t)
	assert.Contains(t, screen, title)
	assert.Contains(t, screen, "PAGED:  $ ", "the output went through $PAGER")

	t.Setenv("PAGER", "/nonexistent/pager")
	screen = readOnTerminal(t)
	assert.Contains(t, screen, title, "a missing pager: printed directly")
	assert.Contains(t, screen, "\n  $ ")

	t.Setenv("PAGER", "cat")
	screen = readOnTerminal(t, "--demo", "2")
	assert.Contains(t, screen, "[demo 2 of ")
	assert.NotContains(t, screen, "[demo 1 of ")

	// No $PAGER: less -R, found on PATH, with LESS=FRX unless LESS is set.
	bin := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bin, "less"), []byte("#!/bin/sh\necho \"less $* LESS=$LESS\"\nwhile IFS= read -r line; do echo \"LESS:$line\"; done\n"), 0o755))
	t.Setenv("PATH", bin)
	require.NoError(t, os.Unsetenv("PAGER"))
	t.Setenv("LESS", "")
	screen = readOnTerminal(t)
	assert.Contains(t, screen, "less -R LESS=FRX")
	assert.Contains(t, screen, "LESS:  $ ")
	t.Setenv("LESS", "-S")
	screen = readOnTerminal(t)
	assert.Contains(t, screen, "less -R LESS=-S", "the reader's LESS is kept")

	// And without less installed, printed directly.
	t.Setenv("PATH", t.TempDir())
	screen = readOnTerminal(t)
	assert.Contains(t, screen, title)
	assert.NotContains(t, screen, "LESS:")
}

func TestPagerCommand(t *testing.T) {
	env := func(value string, set bool) func(string) (string, bool) {
		return func(string) (string, bool) { return value, set }
	}
	assert.Equal(t, "less -R", pagerCommand(env("", false)))
	assert.Equal(t, "most", pagerCommand(env("most", true)))
	assert.Equal(t, "", pagerCommand(env("", true)), "an empty PAGER means none, as in git")
	assert.Equal(t, "", pagerCommand(env("cat", true)))
}

func TestReadShowsTheBannerInChinese(t *testing.T) {
	out, stderr, code := minibox(t, "lesson", "2", "--read", "--lang", "zh", "--from", "3")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "第 2 课："+findLesson(t, "zh", 2).Title)
	assert.Contains(t, out, "[demo 3 of ")
	assert.NotContains(t, out, "[demo 2 of ")
}
