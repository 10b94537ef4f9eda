// Package lesson reads lesson files (Markdown with demo and expect blocks,
// see docs/lesson-format.md) and runs them: prose rendered, demos run live,
// expectations checked.
package lesson

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Lesson is one parsed lesson file.
type Lesson struct {
	Number   int       // from the file name: 01-chroot.md → 1
	Name     string    // file name without .md: "01-chroot"
	Lang     string    // "en" or "zh"
	Title    string    // front matter "title"
	Stage    string    // front matter "stage": the stage folder it teaches
	Needs    []string  // front matter "needs": "root", "rootfs"
	Segments []Segment // prose and demos, in file order
}

// Segment is either prose (Markdown to render) or a demo to run.
type Segment struct {
	Prose string // Markdown, when Demo is nil
	Demo  *Demo
}

// Demo is a shell block that the runner executes, with what its output
// must show.
type Demo struct {
	Line    int           // line of the opening fence in the lesson file
	Script  string        // run with /bin/sh -c
	Timeout time.Duration // default DefaultTimeout
	Exit    int           // expected exit status, unless AnyExit
	AnyExit bool
	Expect  []Rule
}

// DefaultTimeout is how long a demo may run unless it says otherwise.
const DefaultTimeout = 60 * time.Second

// GracePeriod is how long a timed-out or interrupted demo has between
// SIGTERM and SIGKILL to clean up.
const GracePeriod = 2 * time.Second

// Rule is one line of an expect block.
type Rule struct {
	Line   int    // line in the lesson file
	Raw    string // as written
	Negate bool   // "!…": no output line may match
	Text   string // substring to find, when Re is nil
	Re     *regexp.Regexp
}

// Requires reports whether the lesson declares need n.
func (l *Lesson) Requires(n string) bool {
	for _, x := range l.Needs {
		if x == n {
			return true
		}
	}
	return false
}

// Demos returns the lesson's demos in order.
func (l *Lesson) Demos() []*Demo {
	var out []*Demo
	for _, s := range l.Segments {
		if s.Demo != nil {
			out = append(out, s.Demo)
		}
	}
	return out
}

// Matches reports whether the rule holds for output, line by line.
func (r Rule) Matches(output string) bool {
	found := false
	for _, line := range strings.Split(output, "\n") {
		if r.Re != nil && r.Re.MatchString(line) || r.Re == nil && strings.Contains(line, r.Text) {
			found = true
			break
		}
	}
	return found != r.Negate
}

// parseRule reads one expect line: "text", "/regexp/", or either behind "!".
func parseRule(line int, raw string) (Rule, error) {
	r := Rule{Line: line, Raw: raw}
	body := raw
	if strings.HasPrefix(body, "!") {
		r.Negate, body = true, body[1:]
	}
	if len(body) >= 2 && strings.HasPrefix(body, "/") && strings.HasSuffix(body, "/") {
		re, err := regexp.Compile(body[1 : len(body)-1])
		if err != nil {
			return r, fmt.Errorf("bad regular expression %s: %w", body, err)
		}
		r.Re = re
		return r, nil
	}
	if body == "" {
		return r, fmt.Errorf("empty rule %q", raw)
	}
	r.Text = body
	return r, nil
}
