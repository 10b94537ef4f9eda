package lesson

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func parseSample(t *testing.T) *Lesson {
	t.Helper()
	src, err := os.ReadFile("testdata/sample.md")
	require.NoError(t, err)
	l, err := Parse("01-sample.md", "en", src)
	require.NoError(t, err)
	return l
}

func TestParseSample(t *testing.T) {
	l := parseSample(t)
	assert.Equal(t, 1, l.Number)
	assert.Equal(t, "01-sample", l.Name)
	assert.Equal(t, "A sample lesson", l.Title)
	assert.Equal(t, "01-chroot", l.Stage)
	assert.True(t, l.Requires("root"))
	assert.True(t, l.Requires("rootfs"))
	assert.False(t, l.Requires("network"))

	demos := l.Demos()
	require.Len(t, demos, 2, "the demo inside a ```` prose block is not a demo")
	first := demos[0]
	assert.Equal(t, 11, first.Line)
	assert.Equal(t, "echo \"hello from the demo\"\necho \"to stderr\" >&2", first.Script)
	assert.Equal(t, DefaultTimeout, first.Timeout)
	assert.Equal(t, 0, first.Exit)
	require.Len(t, first.Expect, 3)
	assert.Equal(t, "hello from", first.Expect[0].Text)
	assert.Equal(t, 17, first.Expect[0].Line)
	assert.NotNil(t, first.Expect[1].Re)
	assert.True(t, first.Expect[2].Negate)

	second := demos[1]
	assert.Equal(t, 3, second.Exit)
	assert.Equal(t, 5*time.Second, second.Timeout)
	assert.Empty(t, second.Expect)

	// Prose around the demos is kept, in order, including the fenced example.
	require.Len(t, l.Segments, 5)
	assert.Contains(t, l.Segments[0].Prose, "Some **prose**")
	assert.Contains(t, l.Segments[2].Prose, "echo not run")
	assert.Contains(t, l.Segments[4].Prose, "The end.")
}

func TestParseErrorsNameFileAndLine(t *testing.T) {
	front := "---\ntitle: T\n---\n"
	cases := []struct {
		name, src, want string
	}{
		{"no number", front, "file name must start with the lesson number"},
		{"01-x.md", "# no front matter\n", "01-x.md:1: a lesson starts with front matter"},
		{"01-x.md", "---\ntitle: T\n", "front matter is not closed"},
		{"01-x.md", "---\ncolour: red\n---\n", `01-x.md:2: unknown front matter key "colour"`},
		{"01-x.md", "---\ntitle: T\nneeds: root gpu\n---\n", `01-x.md:3: unknown need "gpu"`},
		{"01-x.md", "---\nstage: 01\n---\n", "front matter needs a title"},
		{"01-x.md", front + "\n```demo\necho hi\n", "01-x.md:5: code block opened here is never closed"},
		{"01-x.md", front + "```demo timeout=soon\necho\n```\n", `01-x.md:4: demo option "timeout=soon"`},
		{"01-x.md", front + "```demo exit=300\necho\n```\n", `01-x.md:4: demo option "exit=300"`},
		{"01-x.md", front + "```demo fast\necho\n```\n", `01-x.md:4: unknown demo option "fast"`},
		{"01-x.md", front + "```demo\n\n```\n", "01-x.md:4: empty demo block"},
		{"01-x.md", front + "```expect\nhi\n```\n", "01-x.md:4: expect block with no demo block right before it"},
		{"01-x.md", front + "```demo\necho\n```\nprose\n```expect\nhi\n```\n", "01-x.md:8: expect block with no demo"},
		{"01-x.md", front + "```demo\necho\n```\n```expect\n/([a-/\n```\n", "01-x.md:8: bad regular expression"},
	}
	for _, c := range cases {
		_, err := Parse(c.name, "en", []byte(c.src))
		if assert.Error(t, err, c.src) {
			assert.Contains(t, err.Error(), c.want)
		}
	}
}

func TestRules(t *testing.T) {
	out := "first line\nsecond: 42\npath /x\n"
	cases := []struct {
		rule string
		want bool
	}{
		{"first", true},
		{"second: 42", true},
		{"third", false},
		{"/^second: [0-9]+$/", true},
		{"/^[0-9]+$/", false},
		{"!third", true},
		{"!first", false},
		{"!/^sec/", false},
		{"!/^sec$/", true},
		{"/", true}, // a lone slash is text, not a regexp
	}
	for _, c := range cases {
		r, err := parseRule(1, c.rule)
		require.NoError(t, err, c.rule)
		assert.Equal(t, c.want, r.Matches(out), c.rule)
	}
	_, err := parseRule(1, "!")
	assert.Error(t, err, "a bare ! has nothing to match")
}

func TestLangFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	assert.Equal(t, "en", LangFromEnv(env(nil)))
	assert.Equal(t, "zh", LangFromEnv(env(map[string]string{"LANG": "zh_CN.UTF-8"})))
	assert.Equal(t, "en", LangFromEnv(env(map[string]string{"LANG": "de_DE.UTF-8"})))
	// LC_ALL wins over LANG.
	assert.Equal(t, "en", LangFromEnv(env(map[string]string{"LC_ALL": "C.UTF-8", "LANG": "zh_TW.UTF-8"})))
	assert.Equal(t, "zh", LangFromEnv(env(map[string]string{"LC_ALL": "zh_TW.UTF-8", "LANG": "en_US.UTF-8"})))
}

func TestStyleName(t *testing.T) {
	env := func(style string) func(string) string {
		return func(k string) string {
			if k == "GLAMOUR_STYLE" {
				return style
			}
			return ""
		}
	}
	assert.Equal(t, "notty", StyleName("dark", env(""), false), "no terminal: always plain")
	assert.Equal(t, "auto", StyleName("", env(""), true))
	assert.Equal(t, "light", StyleName("", env("light"), true))
	assert.Equal(t, "dracula", StyleName("dracula", env("light"), true), "the flag wins")
}
