package lesson

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mattn/go-runewidth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of reading a lesson (--read), choosing demos (--demo, --from,
// after=N), ordered expectations, scaled timeouts, the banner and the
// wrapping of long commands.

func TestParseDemoNumbersAndAfter(t *testing.T) {
	l := lessonFrom(t, "```demo\necho a\n```\n```demo\necho b\n```\n```demo after=2,1\necho c\n```\n")
	demos := l.Demos()
	require.Len(t, demos, 3)
	for i, d := range demos {
		assert.Equal(t, i+1, d.Number)
	}
	assert.Empty(t, demos[0].After)
	assert.Equal(t, []int{1, 2}, demos[2].After, "sorted, in run order")
}

func TestParseAfterAndExpectOptionErrors(t *testing.T) {
	front := "---\ntitle: T\n---\n"
	cases := []struct{ src, want string }{
		{"```demo after=1\necho\n```\n", `01-x.md:4: demo option "after=1": expected after=N or after=N,M with numbers of earlier demos (1 to 0; this is demo 1)`},
		{"```demo\necho\n```\n```demo after=2\necho\n```\n", `01-x.md:7: demo option "after=2"`},
		{"```demo\necho\n```\n```demo after=0\necho\n```\n", `demo option "after=0"`},
		{"```demo\necho\n```\n```demo after=one\necho\n```\n", `demo option "after=one"`},
		{"```demo\necho\n```\n```expect sorted\nx\n```\n", `01-x.md:7: unknown expect option "sorted" (known: ordered)`},
	}
	for _, c := range cases {
		_, err := Parse("01-x.md", "en", []byte(front+c.src))
		if assert.Error(t, err, c.src) {
			assert.Contains(t, err.Error(), c.want)
		}
	}
}

func TestParseOrderedExpectBlock(t *testing.T) {
	l := lessonFrom(t, "```demo\necho\n```\n```expect\nplain\n```\n```expect ordered\nfirst\n!never\nsecond\n```\n")
	rules := l.Demos()[0].Expect
	require.Len(t, rules, 4)
	assert.False(t, rules[0].Ordered)
	assert.Equal(t, 1, rules[0].Block)
	for _, r := range rules[1:] {
		assert.True(t, r.Ordered, r.Raw)
		assert.Equal(t, 2, r.Block, r.Raw)
	}
}

func rulesFrom(t *testing.T, blocks string) []Rule {
	t.Helper()
	return lessonFrom(t, "```demo\necho\n```\n"+blocks).Demos()[0].Expect
}

func verdicts(vs []Verdict) []bool {
	var out []bool
	for _, v := range vs {
		out = append(out, v.Met)
	}
	return out
}

func TestOrderedExpectations(t *testing.T) {
	narration := "+ exec 3> /sys/fs/cgroup/minibox/x/cgroup.procs\n+ echo 0 >&3\n+ exec /bin/sh\nhello\n"
	ordered := rulesFrom(t, "```expect ordered\n+ echo 0 >&3\n+ exec /bin/sh\nhello\n```\n")
	assert.Equal(t, []bool{true, true, true}, verdicts(Check(ordered, narration)))

	// The same lines, the join after the exec: the second rule fails, and
	// says the order is what is wrong.
	swapped := "+ exec /bin/sh\n+ echo 0 >&3\nhello\n"
	vs := Check(ordered, swapped)
	assert.Equal(t, []bool{true, false, true}, verdicts(vs), "hello still comes after the join")
	assert.Contains(t, vs[1].Why, `no output line after the one that met "+ echo 0 >&3" matches (the order is wrong)`)

	// Without "ordered", the same rules pass on the swapped output.
	unordered := rulesFrom(t, "```expect\n+ echo 0 >&3\n+ exec /bin/sh\n```\n")
	assert.Equal(t, []bool{true, true}, verdicts(Check(unordered, swapped)))

	// A rule met by no line at all says so, not "the order is wrong".
	vs = Check(ordered, "+ echo 0 >&3\n")
	assert.Equal(t, "no output line matches", vs[1].Why)

	// A line meets one rule only: two rules for the same text need two lines.
	twice := rulesFrom(t, "```expect ordered\nping\nping\n```\n")
	assert.Equal(t, []bool{true, false}, verdicts(Check(twice, "ping\n")))
	assert.Equal(t, []bool{true, true}, verdicts(Check(twice, "ping\npong\nping\n")))
}

func TestOrderedBlockNegationsApplyToEveryLine(t *testing.T) {
	rules := rulesFrom(t, "```expect ordered\nstart\n!boom\nend\n```\n")
	assert.Equal(t, []bool{true, true, true}, verdicts(Check(rules, "start\nend\n")))
	// "boom" before "start" is still a failure: negations ignore the order.
	vs := Check(rules, "boom\nstart\nend\n")
	assert.Equal(t, []bool{true, false, true}, verdicts(vs))
	assert.Equal(t, "an output line matches", vs[1].Why)
}

func TestOrderedBlocksAreIndependent(t *testing.T) {
	rules := rulesFrom(t, "```expect ordered\nb\nc\n```\n```expect ordered\na\nb\n```\n")
	// Each block starts from the first line again.
	assert.Equal(t, []bool{true, true, true, true}, verdicts(Check(rules, "a\nb\nc\n")))
}

func TestRunnerFailsOnWrongOrder(t *testing.T) {
	var out bytes.Buffer
	l := lessonFrom(t, "```demo\necho second; echo first\n```\n```expect ordered\nfirst\nsecond\n```\n")
	rep, err := newTestRunner(t, &out).Run(context.Background(), l)
	require.NoError(t, err)
	require.Len(t, rep.Failures, 1)
	assert.Equal(t, `lessons/en/07-test.md:9: expectation "second" not met: no output line after the one that met "first" matches (the order is wrong)`, rep.Failures[0])
	assert.Contains(t, out.String(), "✓ first")
	assert.Contains(t, out.String(), "✗ second")
}

func TestBannerInBothLanguages(t *testing.T) {
	assert.Equal(t, "# Lesson 3: cgroups — limits\n", Banner(&Lesson{Number: 3, Lang: "en", Title: "cgroups — limits"}))
	assert.Equal(t, "# 第 3 课：cgroup — 限制\n", Banner(&Lesson{Number: 3, Lang: "zh", Title: "cgroup — 限制"}))

	var out bytes.Buffer
	l := lessonFrom(t, "Prose first.\n\n```demo\necho hi\n```\n")
	_, err := newTestRunner(t, &out).Run(context.Background(), l)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(strings.TrimSpace(out.String()), "# Lesson 7: T"), out.String())
}

// A lesson whose demos leave marker files, for the selection tests: demo 2
// builds on demo 1's file, demo 4 on demo 3's.
const markerLesson = `Intro prose.

` + "```demo" + `
echo one; touch one
` + "```" + `

Prose before two.

` + "```demo after=1" + `
test -e one && echo two saw one; touch two
` + "```" + `

` + "```expect" + `
two saw one
` + "```" + `

Prose before three.

` + "```demo" + `
echo three; touch three
` + "```" + `

Prose before four.

` + "```demo after=3" + `
test -e three && echo four saw three; touch four
` + "```" + `

` + "```expect" + `
four saw three
` + "```" + `
`

func ranMarkers(t *testing.T, dir string) []string {
	t.Helper()
	var ran []string
	for _, m := range []string{"one", "two", "three", "four"} {
		if _, err := os.Stat(filepath.Join(dir, m)); err == nil {
			ran = append(ran, m)
		}
	}
	return ran
}

func TestOnlyRunsOneDemoAndWhatItBuildsOn(t *testing.T) {
	var out bytes.Buffer
	r := newTestRunner(t, &out)
	r.Only = 4
	rep, err := r.Run(context.Background(), lessonFrom(t, markerLesson))
	require.NoError(t, err)
	assert.True(t, rep.Finished(), "failures: %v", rep.Failures)
	assert.Equal(t, 2, rep.Ran)
	assert.Equal(t, []string{"three", "four"}, ranMarkers(t, r.Dir), "demo 3 first (after=3), then demo 4")
	assert.Contains(t, out.String(), "# Lesson 7: T", "the banner is shown")
	assert.Contains(t, out.String(), "[demo 3 of 4] run first: a demo you chose builds on it")
	assert.Contains(t, out.String(), "[demo 4 of 4, builds on demo 3]")
	assert.NotContains(t, out.String(), "Prose", "no prose with --demo")
	assert.Less(t, strings.Index(out.String(), "│ three"), strings.Index(out.String(), "│ four saw three"))
}

func TestFromStartsThereAndRunsTheRest(t *testing.T) {
	var out bytes.Buffer
	r := newTestRunner(t, &out)
	r.From = 2
	rep, err := r.Run(context.Background(), lessonFrom(t, markerLesson))
	require.NoError(t, err)
	assert.True(t, rep.Finished(), "failures: %v", rep.Failures)
	assert.Equal(t, 4, rep.Ran, "demo 1 (which demo 2 builds on), then 2, 3, 4")
	assert.Equal(t, []string{"one", "two", "three", "four"}, ranMarkers(t, r.Dir))
	assert.NotContains(t, out.String(), "Intro prose")
	assert.NotContains(t, out.String(), "Prose before two", "the prose before demo K is not shown")
	assert.Contains(t, out.String(), "Prose before three", "the prose after it is")
	assert.Contains(t, out.String(), "# Lesson 7: T")

	// Without after=1, demo 2 would fail: a control for the test above.
	out.Reset()
	r = newTestRunner(t, &out)
	r.Only = 2
	rep, err = r.Run(context.Background(), lessonFrom(t, strings.Replace(markerLesson, "```demo after=1", "```demo", 1)))
	require.NoError(t, err)
	assert.Len(t, rep.Failures, 1)
}

func TestSelectionOutOfRange(t *testing.T) {
	for _, sel := range []struct {
		only, from int
		want       string
	}{
		{5, 0, "--demo 5: there is no demo 5; this lesson has 4 demos (1 to 4)"},
		{0, 9, "--from 9: there is no demo 9; this lesson has 4 demos (1 to 4)"},
		{-1, 0, "--demo -1: there is no demo -1"},
		{1, 2, "--demo and --from cannot be combined"},
	} {
		var out bytes.Buffer
		r := newTestRunner(t, &out)
		r.Only, r.From = sel.only, sel.from
		_, err := r.Run(context.Background(), lessonFrom(t, markerLesson))
		if assert.Error(t, err) {
			assert.Contains(t, err.Error(), "lesson 7: "+sel.want)
		}
		assert.Empty(t, ranMarkers(t, r.Dir))
	}
}

// --read shows every demo with what it checks and runs none of them.
func TestReadRunsNothingAndShowsChecks(t *testing.T) {
	var out bytes.Buffer
	r := newTestRunner(t, &out)
	r.Read = true
	rep, err := r.Run(context.Background(), parseSample(t))
	require.NoError(t, err)
	assert.Equal(t, 0, rep.Ran)
	assert.NotContains(t, out.String(), "│", "no demo output")

	got := trimTrailing(out.String())
	golden := "testdata/sample-read.golden"
	if *update {
		require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "run go test ./internal/lesson -update to create it")
	assert.Equal(t, string(want), got)

	out.Reset()
	r = newTestRunner(t, &out)
	r.Read = true
	_, err = r.Run(context.Background(), lessonFrom(t, markerLesson+"```demo exit=any\necho five\n```\n```expect ordered\nfirst\n!/^x+$/\nsecond\n```\n"))
	require.NoError(t, err)
	assert.Empty(t, ranMarkers(t, r.Dir), "nothing ran")
	for _, want := range []string{
		"$ echo one; touch one",
		"[demo 2 of 5, builds on demo 1]",
		"expect: exit status 0",
		`expect: a line contains "two saw one"`,
		"expect: any exit status",
		`expect: a line contains "first"`,
		"expect: no line matches /^x+$/",
		`expect: below it, a line contains "second"`,
		"Prose before three",
	} {
		assert.Contains(t, out.String(), want)
	}
}

func TestTimeoutScale(t *testing.T) {
	l := lessonFrom(t, "```demo timeout=200ms\nsleep 0.6; echo finished\n```\n```expect\nfinished\n```\n")
	var out bytes.Buffer
	r := newTestRunner(t, &out)
	rep, err := r.Run(context.Background(), l)
	require.NoError(t, err)
	require.Len(t, rep.Failures, 1, "a control: unscaled, the demo times out")

	out.Reset()
	r = newTestRunner(t, &out)
	r.TimeoutScale = 10
	rep, err = r.Run(context.Background(), l)
	require.NoError(t, err)
	assert.True(t, rep.Finished(), "200ms × 10 is enough: %v", rep.Failures)

	out.Reset()
	r = newTestRunner(t, &out)
	r.TimeoutScale = 0.5
	l = lessonFrom(t, "```demo timeout=1s\nsleep 5\n```\n")
	start := time.Now()
	rep, err = r.Run(context.Background(), l)
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 4*time.Second)
	require.Len(t, rep.Failures, 1)
	assert.Contains(t, rep.Failures[0], "demo did not finish within 500ms (the demo's 1s × 0.5)")
	assert.Contains(t, out.String(), "✗ timed out after 500ms")
}

func TestWrapLine(t *testing.T) {
	assert.Equal(t, []string{"short"}, wrapLine("short", 10, 10))
	assert.Equal(t, []string{"aaa bbb", "ccc ddd", "eee"}, wrapLine("aaa bbb ccc ddd eee", 8, 8))
	assert.Equal(t, []string{"abcdefgh", "ijk"}, wrapLine("abcdefghijk", 8, 8), "a word too long is cut")
	assert.Equal(t, []string{"    if x", "then y"}, wrapLine("    if x then y", 9, 9), "indentation is not a break point")
	assert.Equal(t, []string{"中文中", "文"}, wrapLine("中文中文", 6, 6), "wide characters count two columns")
	assert.Equal(t, []string{"aaa", "bbb ccc"}, wrapLine("aaa bbb ccc", 4, 8), "later pieces have their own width")
}

// A long demo command wraps at the terminal's width with a continuation
// mark, and keeps every character.
func TestLongCommandsWrapAt80Columns(t *testing.T) {
	long := `stage03 run --memory 64m --cpus 0.5 --pids-limit 20 "$ROOTFS" -- sh -c 'cat /proc/self/cgroup; echo "pids.max: $(cat /sys/fs/cgroup/pids.max)"'`
	l := lessonFrom(t, "```demo\n"+long+"\necho short\n```\n")
	for _, read := range []bool{false, true} {
		var out bytes.Buffer
		r := newTestRunner(t, &out)
		r.Read, r.Width = read, 80
		r.Env = []string{"PATH=/nonexistent"} // the command itself need not work
		r.Run(context.Background(), l)
		var shown []string
		for _, line := range strings.Split(out.String(), "\n") {
			assert.LessOrEqual(t, runewidth.StringWidth(line), 80, "%q", line)
			for _, mark := range []string{"  $ ", continuation} {
				if strings.HasPrefix(line, mark) {
					shown = append(shown, strings.TrimPrefix(line, mark))
				}
			}
		}
		require.Greater(t, len(shown), 1, "the command is wrapped:\n%s", out.String())
		assert.Equal(t, long, strings.Join(shown, " "), "nothing lost")
		assert.Contains(t, out.String(), "\n  > echo short\n", "the next line of the script is not a continuation")
	}
}
