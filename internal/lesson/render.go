package lesson

import (
	"github.com/charmbracelet/glamour"
)

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
// style name or a JSON style file), wrapping at width columns. "auto"
// queries the terminal's background now, once.
func NewRenderer(style string, width int) (func(string) (string, error), error) {
	if width <= 0 {
		width = 80
	}
	r, err := glamour.NewTermRenderer(
		glamour.WithStylePath(style),
		glamour.WithWordWrap(width),
	)
	if err != nil {
		return nil, err
	}
	return r.Render, nil
}
