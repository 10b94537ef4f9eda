package lessons_test

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/mattn/go-runewidth"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/lesson"
	"github.com/minibox-lab/minibox/lessons"
)

// projector is the width an instructor's projector (and many a laptop
// terminal) gives: every lesson must fit it.
const projector = 80

var ansiCode = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// Every lesson, in both languages, as minibox shows it at 80 columns —
// banner, prose, tables, demo commands and what they check (minibox lesson
// N --read), in the plain style used when output is not a terminal and in
// "dark" — has no table cell cut short (glamour ends a cut cell with "…")
// and no line wider than 80 columns.
func TestLessonsFit80Columns(t *testing.T) {
	for _, lang := range lesson.Langs {
		all, err := lesson.Load(lessons.FS, lang)
		require.NoError(t, err)
		for _, l := range all {
			src, err := lessons.FS.ReadFile(lang + "/" + l.Name + ".md")
			require.NoError(t, err)
			for _, style := range []string{"notty", "dark"} {
				shown := readAt80(t, l, style)
				for _, p := range fitProblems(string(src), shown) {
					t.Errorf("lessons/%s/%s.md%s (style %s): %s", lang, l.Name, p.where, style, p.what)
				}
			}
		}
	}
}

// readAt80 is what minibox lesson N --read shows on an 80-column terminal.
func readAt80(t *testing.T, l *lesson.Lesson, style string) string {
	t.Helper()
	render, err := lesson.NewRenderer(style, projector)
	require.NoError(t, err)
	var out bytes.Buffer
	r := &lesson.Runner{Out: &out, Render: render, Read: true, Width: projector, Color: style != "notty"}
	_, err = r.Run(context.Background(), l)
	require.NoError(t, err)
	return ansiCode.ReplaceAllString(out.String(), "")
}

type problem struct{ where, what string }

// width counts columns as a terminal outside East Asian locales does: CJK
// characters two, box-drawing lines one.
var width = &runewidth.Condition{EastAsianWidth: false}

// fitProblems lists the cut table cells and the too-wide lines in shown,
// the rendered form of the lesson file src.
func fitProblems(src, shown string) []problem {
	var out []problem
	flat := squash(src)
	heading := "" // the section a too-wide line is in, to find it by
	for _, line := range strings.Split(shown, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			heading = strings.TrimSpace(line)
		}
		if w := width.StringWidth(line); w > projector {
			out = append(out, problem{"", fmt.Sprintf("a line is %d columns wide, in section %q: %q", w, heading, strings.TrimRight(line, " "))})
		}
		if !strings.Contains(line, "│") {
			continue // only table cells are cut; an ellipsis in prose is the author's
		}
		for _, cell := range strings.Split(line, "│") {
			cell = strings.TrimSpace(cell)
			before, _, cut := strings.Cut(cell, "…")
			if !cut {
				continue
			}
			// The text just before the ellipsis, as the author wrote it,
			// means an ellipsis the author wrote.
			if tail := lastRunes(squash(before), 12); strings.Contains(flat, tail+"…") {
				continue
			}
			out = append(out, problem{sourceLine(src, before), fmt.Sprintf("table cell cut at %d columns: %q", projector, cell)})
		}
	}
	return out
}

// squash removes Markdown's inline marks and every space, so that rendered
// text can be found in its source (glamour pads code spans with spaces and
// re-flows lines).
func squash(s string) string {
	s = strings.NewReplacer("`", "", "*", "", "\\|", "|").Replace(s)
	return strings.Join(strings.Fields(s), "")
}

func lastRunes(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		r = r[len(r)-n:]
	}
	return string(r)
}

// sourceLine returns ":N", the line of the table row in src that holds a
// cell beginning with text and longer, or "" if none is found.
func sourceLine(src, text string) string {
	text = squash(text)
	for i, line := range strings.Split(src, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "|") {
			continue
		}
		for _, cell := range strings.Split(strings.ReplaceAll(line, "\\|", "\x00"), "|") {
			// Longer than text: the cell that was cut, not one that
			// happens to begin the same way.
			if full := squash(strings.ReplaceAll(cell, "\x00", "|")); strings.HasPrefix(full, text) && full != text {
				return fmt.Sprintf(":%d", i+1)
			}
		}
	}
	return ""
}
