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
	Number  int           // 1 for the lesson's first demo, 2 for the next, …
	Line    int           // line of the opening fence in the lesson file
	Script  string        // run with /bin/sh -c
	Timeout time.Duration // default DefaultTimeout
	Exit    int           // expected exit status, unless AnyExit
	AnyExit bool
	After   []int // demos (by number, ascending) that must run before this one: option after=N
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
	// Block counts the demo's expect blocks from 1. In a block opened as
	// "expect ordered", each positive rule must be met by a line after
	// the line that met the block's previous positive rule.
	Block   int
	Ordered bool
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

// Matches reports whether the rule holds for output, line by line, on its
// own: the order of an "expect ordered" block is checked by Check.
func (r Rule) Matches(output string) bool {
	return (r.firstMatch(strings.Split(output, "\n"), 0) >= 0) != r.Negate
}

// matchesLine reports whether one output line has the rule's text or
// matches its regular expression (whatever Negate says).
func (r Rule) matchesLine(line string) bool {
	if r.Re != nil {
		return r.Re.MatchString(line)
	}
	return strings.Contains(line, r.Text)
}

// firstMatch returns the index of the first of lines[from:] that the rule's
// pattern matches, or -1.
func (r Rule) firstMatch(lines []string, from int) int {
	for i := from; i < len(lines); i++ {
		if r.matchesLine(lines[i]) {
			return i
		}
	}
	return -1
}

// Verdict is how one rule fared against a demo's output.
type Verdict struct {
	Rule Rule
	Met  bool
	Why  string // when not met: what the output showed instead
}

// Check judges every rule against output. Rules are independent, except
// the positive rules of an "expect ordered" block: each must be met by a
// line after the line that met the previous one in its block (the earliest
// such line, which leaves the most room for the rules after it).
func Check(rules []Rule, output string) []Verdict {
	lines := strings.Split(output, "\n")
	type progress struct {
		next int    // the first line the block's next rule may match
		prev string // the rule that matched last, for the message
	}
	blocks := map[int]*progress{}
	var out []Verdict
	for _, r := range rules {
		v := Verdict{Rule: r}
		switch {
		case r.Ordered && !r.Negate:
			p := blocks[r.Block]
			if p == nil {
				p = &progress{}
				blocks[r.Block] = p
			}
			if i := r.firstMatch(lines, p.next); i >= 0 {
				v.Met, p.next, p.prev = true, i+1, r.Raw
				break
			}
			v.Why = "no output line matches"
			if p.prev != "" && r.firstMatch(lines, 0) >= 0 {
				v.Why = fmt.Sprintf("no output line after the one that met %q matches (the order is wrong)", p.prev)
			}
		default:
			v.Met = r.Matches(output)
			if !v.Met {
				v.Why = "no output line matches"
				if r.Negate {
					v.Why = "an output line matches"
				}
			}
		}
		out = append(out, v)
	}
	return out
}

// Describe says in words what the rule checks, for a reader who does not
// know the expect syntax (minibox lesson N --read). first is false for an
// ordered rule that follows another in its block.
func (r Rule) Describe(first bool) string {
	what := fmt.Sprintf("contains %q", r.Text)
	if r.Re != nil {
		what = "matches /" + r.Re.String() + "/"
	}
	switch {
	case r.Negate:
		return "no line " + what
	case r.Ordered && !first:
		return "below it, a line " + what
	default:
		return "a line " + what
	}
}

// Banner is the Markdown heading a lesson starts with: its number and its
// title, in the lesson's language.
func Banner(l *Lesson) string {
	if l.Lang == "zh" {
		return fmt.Sprintf("# 第 %d 课：%s\n", l.Number, l.Title)
	}
	return fmt.Sprintf("# Lesson %d: %s\n", l.Number, l.Title)
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
