package lesson

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func newTestRunner(t *testing.T, out *bytes.Buffer) *Runner {
	t.Helper()
	render, err := NewRenderer("notty", 60)
	require.NoError(t, err)
	return &Runner{Out: out, Render: render, Env: os.Environ(), Dir: t.TempDir()}
}

// The plain (no terminal) rendering of a whole lesson is stable: prose,
// commands, gutter, marks.
func TestRunSampleGolden(t *testing.T) {
	var out bytes.Buffer
	rep, err := newTestRunner(t, &out).Run(context.Background(), parseSample(t))
	require.NoError(t, err)
	assert.Equal(t, 2, rep.Ran)
	assert.True(t, rep.Finished(), "failures: %v", rep.Failures)
	assert.NotContains(t, out.String(), "\x1b[", "no escape codes without a terminal")

	// glamour pads lines to the wrap width, differently across versions:
	// compare without trailing blanks.
	got := trimTrailing(out.String())
	golden := "testdata/sample.golden"
	if *update {
		require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "run go test ./internal/lesson -update to create it")
	assert.Equal(t, string(want), got)
}

func trimTrailing(s string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], " ")
	}
	return strings.Join(lines, "\n")
}

func lessonFrom(t *testing.T, body string) *Lesson {
	t.Helper()
	l, err := Parse("07-test.md", "en", []byte("---\ntitle: T\n---\n"+body))
	require.NoError(t, err)
	return l
}

func TestRunReportsUnmetExpectationsAndGoesOn(t *testing.T) {
	var out bytes.Buffer
	l := lessonFrom(t, "```demo\necho apple\n```\n```expect\nbanana\n!apple\n```\n```demo\necho second\n```\n")
	rep, err := newTestRunner(t, &out).Run(context.Background(), l)
	require.NoError(t, err)
	assert.Equal(t, 2, rep.Ran, "without --check the lesson goes on")
	require.Len(t, rep.Failures, 2)
	assert.Equal(t, `lessons/en/07-test.md:8: expectation "banana" not met: no output line matches`, rep.Failures[0])
	assert.Equal(t, `lessons/en/07-test.md:9: expectation "!apple" not met: an output line matches`, rep.Failures[1])
	assert.Contains(t, out.String(), "✗ banana")
	assert.Contains(t, out.String(), "│ second")
}

func TestCheckModeStopsAtFirstFailure(t *testing.T) {
	var out bytes.Buffer
	r := newTestRunner(t, &out)
	r.Check = true
	l := lessonFrom(t, "```demo\nexit 4\n```\n```demo\necho never\n```\n")
	_, err := r.Run(context.Background(), l)
	require.Error(t, err)
	assert.Equal(t, "lessons/en/07-test.md:4: demo exited with status 4, expected 0", err.Error())
	assert.NotContains(t, out.String(), "│ never")
}

func TestExitOption(t *testing.T) {
	var out bytes.Buffer
	l := lessonFrom(t, "```demo exit=4\nexit 4\n```\n```demo exit=any\nexit 9\n```\n```demo exit=1\ntrue\n```\n")
	rep, err := newTestRunner(t, &out).Run(context.Background(), l)
	require.NoError(t, err)
	require.Len(t, rep.Failures, 1)
	assert.Contains(t, rep.Failures[0], ":10: demo exited with status 0, expected 1")
}

// A hung demo is killed with everything it started, and the failure names
// the demo's line.
func TestTimeoutKillsTheWholeDemo(t *testing.T) {
	var out bytes.Buffer
	pidFile := t.TempDir() + "/pid"
	l := lessonFrom(t, "```demo timeout=300ms\nsleep 60 & echo $! > "+pidFile+"; wait\n```\n")
	start := time.Now()
	rep, err := newTestRunner(t, &out).Run(context.Background(), l)
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 10*time.Second)
	require.Len(t, rep.Failures, 1)
	assert.Contains(t, rep.Failures[0], "07-test.md:4: demo did not finish within 300ms")
	assert.Contains(t, out.String(), "✗ timed out after 300ms", "said at once, not only in the summary")
	assertGone(t, pidFile)
}

// A demo that leaves a background process holding its output open does not
// hang the lesson, and the process does not outlive the demo.
func TestBackgroundProcessDoesNotHang(t *testing.T) {
	var out bytes.Buffer
	pidFile := t.TempDir() + "/pid"
	l := lessonFrom(t, "```demo\nsleep 60 & echo $! > "+pidFile+"\necho done\n```\n```expect\ndone\n```\n")
	start := time.Now()
	rep, err := newTestRunner(t, &out).Run(context.Background(), l)
	require.NoError(t, err)
	assert.True(t, rep.Finished(), "failures: %v", rep.Failures)
	assert.Less(t, time.Since(start), 10*time.Second)
	assertGone(t, pidFile)
}

func assertGone(t *testing.T, pidFile string) {
	t.Helper()
	pid, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		// kill -0 fails once the process is gone (a zombie of sh's still
		// counts as gone: sh was killed too, so init reaps it).
		if exec.Command("kill", "-0", strings.TrimSpace(string(pid))).Run() != nil {
			return
		}
		stat, _ := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/stat")
		if strings.Contains(string(stat), ") Z ") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("process %s started by the demo is still running", pid)
}

func TestPromptSkipAndQuit(t *testing.T) {
	l := lessonFrom(t, "```demo\necho one\n```\n```demo\necho two\n```\n```demo\necho three\n```\n")
	var out bytes.Buffer
	r := newTestRunner(t, &out)
	answers := []Action{Skip, Run, Quit}
	r.Prompt = func(context.Context, *Demo) (Action, error) {
		a := answers[0]
		answers = answers[1:]
		return a, nil
	}
	rep, err := r.Run(context.Background(), l)
	assert.ErrorIs(t, err, ErrQuit)
	assert.Equal(t, 1, rep.Ran)
	assert.Equal(t, 1, rep.Skipped)
	assert.False(t, rep.Finished())
	assert.NotContains(t, out.String(), "│ one")
	assert.Contains(t, out.String(), "│ two")
	assert.NotContains(t, out.String(), "│ three")
}

func TestDemoEnv(t *testing.T) {
	env := DemoEnv([]string{"HOME=/root", "PATH=/usr/bin", "ROOTFS=/old"}, "/tmp/bin", "/rootfs", "/work", 3)
	assert.Contains(t, env, "HOME=/root")
	assert.Contains(t, env, "PATH=/tmp/bin:/usr/bin")
	assert.Contains(t, env, "ROOTFS=/rootfs")
	assert.NotContains(t, env, "ROOTFS=/old")
	assert.Contains(t, env, "WORK=/work")
	assert.Contains(t, env, "MINIBOX_LESSON=3")
}

func TestGutterWriterPrefixesEveryLine(t *testing.T) {
	var out bytes.Buffer
	g := &gutterWriter{out: &out, prefix: "| "}
	g.Write([]byte("a\nb"))
	g.Write([]byte("c\n\nd"))
	g.finish()
	assert.Equal(t, "| a\n| bc\n| \n| d\n", out.String())
	assert.Equal(t, "a\nbc\n\nd", g.text())
}

func TestInterruptStopsTheLesson(t *testing.T) {
	var out bytes.Buffer
	l := lessonFrom(t, "```demo\nsleep 60\n```\n```demo\necho never\n```\n")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err := newTestRunner(t, &out).Run(ctx, l)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 10*time.Second)
	assert.NotContains(t, out.String(), "│ never")
	assert.Contains(t, out.String(), "(interrupted)")
	assert.NotContains(t, out.String(), "✗", "an interrupted demo is not a failed one")
}

// A demo that is stopped (timeout or Ctrl-C) gets SIGTERM first, so its
// `trap … EXIT` can clean up.
func TestStoppedDemoCanCleanUp(t *testing.T) {
	var out bytes.Buffer
	marker := t.TempDir() + "/cleaned"
	l := lessonFrom(t, "```demo timeout=300ms\ntrap 'touch "+marker+"' EXIT\ntrap 'exit 1' TERM\nsleep 60\n```\n")
	rep, err := newTestRunner(t, &out).Run(context.Background(), l)
	require.NoError(t, err)
	require.Len(t, rep.Failures, 1)
	assert.FileExists(t, marker, "the demo's EXIT trap ran")
}

func TestKilledDemoReportsShellStyleStatus(t *testing.T) {
	var out bytes.Buffer
	l := lessonFrom(t, "```demo\nkill -9 $$\n```\n")
	rep, err := newTestRunner(t, &out).Run(context.Background(), l)
	require.NoError(t, err)
	require.Len(t, rep.Failures, 1)
	assert.Contains(t, rep.Failures[0], "demo exited with status 137, expected 0")
}

func TestGutterKeepsSplitUTF8(t *testing.T) {
	var out bytes.Buffer
	g := &gutterWriter{out: &out, prefix: "| "}
	zhong := []byte("中\n")
	g.Write(zhong[:1])
	g.Write(zhong[1:])
	assert.Equal(t, "| 中\n", out.String())
}
