package lesson_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/mattn/go-runewidth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/lesson"
	"github.com/minibox-lab/minibox/lessons"
)

var ansiCode = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// The real Chinese lessons render at any common terminal width: no line of
// prose wider than the terminal, no hard-break marker left over.
func TestChineseLessonsFitTheTerminal(t *testing.T) {
	all, err := lesson.Load(lessons.FS, "zh")
	require.NoError(t, err)
	for _, width := range []int{50, 80, 100} {
		for _, style := range []string{"notty", "dark"} {
			render, err := lesson.NewRenderer(style, width)
			require.NoError(t, err)
			for _, l := range all {
				for _, seg := range l.Segments {
					if seg.Demo != nil {
						continue
					}
					out, err := render(seg.Prose)
					require.NoError(t, err)
					where := fmt.Sprintf("%s at %d columns, %s", l.Name, width, style)
					for _, line := range strings.Split(ansiCode.ReplaceAllString(out, ""), "\n") {
						line = strings.TrimRight(line, " ")
						assert.False(t, strings.HasSuffix(line, "\\"), "%s: a hard-break marker shows: %q", where, line)
						if strings.ContainsAny(line, "|│─") || !strings.ContainsFunc(line, func(r rune) bool { return unicode.Is(unicode.Han, r) }) {
							continue // tables, code and words too long to break are glamour's
						}
						assert.LessOrEqual(t, runewidth.StringWidth(line), width, "%s: %q", where, line)
					}
				}
			}
		}
	}
}
