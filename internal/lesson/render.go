package lesson

import (
	"strings"

	"github.com/charmbracelet/glamour"
	"github.com/muesli/termenv"
)

// margin is the left margin of glamour's standard styles.
const margin = 2

// StyleName picks the glamour style once, before any demo runs: the --style
// flag, else $GLAMOUR_STYLE, else "auto" (dark or light from the terminal's
// background). Output that is not a terminal always gets the plain "notty"
// style, so logs and pipes hold no escape codes.
func StyleName(flag string, getenv func(string) string, tty bool) string {
	style := flag
	if style == "" {
		style = getenv("GLAMOUR_STYLE")
	}
	if !tty {
		return "notty"
	}
	if style == "" {
		return "auto"
	}
	return style
}

// NewRenderer returns a Markdown renderer for style (a glamour standard
// style name or a JSON style file) for a terminal width columns wide.
// "auto" queries the terminal's background now, once.
func NewRenderer(style string, width int) (func(string) (string, error), error) {
	if width <= 0 {
		width = 80
	}
	// "auto" asks the terminal for its background colour: ask once, here,
	// for both renderers below.
	if style == "auto" {
		style = "light"
		if termenv.HasDarkBackground() {
			style = "dark"
		}
	}
	options := []glamour.TermRendererOption{
		glamour.WithStylePath(style),
		// glamour indents the text by a 2-column margin on top of the wrap
		// width: leave room for it on both sides. Two columns more: its
		// word wrapper breaks after a run of hyphens and lets a line
		// holding a flag (`--memory`) run two columns past the limit
		// (lessons/render_test.go finds those lines at 80 columns).
		glamour.WithWordWrap(width - 2*margin - 2),
		// Colours as the terminal announces them ($TERM, $COLORTERM,
		// $NO_COLOR), not always 24-bit.
		glamour.WithColorProfile(termenv.EnvColorProfile()),
	}
	plain, err := glamour.NewTermRenderer(options...)
	if err != nil {
		return nil, err
	}
	// Prose with Chinese is wrapped by wrapCJK (cjk.go), and glamour must
	// keep those line breaks rather than re-flow them at spaces.
	keeping, err := glamour.NewTermRenderer(append(options, glamour.WithPreservedNewLines())...)
	if err != nil {
		return nil, err
	}
	// glamour's paragraphs are narrower than its wrap width by the
	// document's margins again; styles pad code spans by a column on each
	// side. Chinese is wrapped to fit inside that.
	cjkWidth := width - 4*margin - 4
	return func(md string) (string, error) {
		if strings.ContainsFunc(md, isCJK) {
			return keeping.Render(wrapCJK(md, cjkWidth))
		}
		return plain.Render(md)
	}, nil
}
