package lesson

import (
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Parse reads a lesson file. name is its file name ("01-chroot.md"), used
// for the lesson number and in error messages as name:line.
func Parse(name, lang string, src []byte) (*Lesson, error) {
	base := strings.TrimSuffix(path.Base(name), ".md")
	num, err := strconv.Atoi(strings.SplitN(base, "-", 2)[0])
	if err != nil {
		return nil, fmt.Errorf("%s: file name must start with the lesson number, like 01-chroot.md", name)
	}
	p := &parser{name: name, lines: strings.Split(string(src), "\n")}
	l := &Lesson{Number: num, Name: base, Lang: lang}
	if err := p.frontMatter(l); err != nil {
		return nil, err
	}
	if err := p.body(l); err != nil {
		return nil, err
	}
	if l.Title == "" {
		return nil, fmt.Errorf("%s:1: front matter needs a title", name)
	}
	return l, nil
}

type parser struct {
	name  string
	lines []string
	i     int // index of the next line to read
}

func (p *parser) errorf(line int, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s", p.name, line, fmt.Sprintf(format, args...))
}

// frontMatter reads the "---" block of "key: value" lines at the top.
func (p *parser) frontMatter(l *Lesson) error {
	if len(p.lines) == 0 || strings.TrimSpace(p.lines[0]) != "---" {
		return p.errorf(1, "a lesson starts with front matter (---, title: …, stage: …, ---)")
	}
	for p.i = 1; p.i < len(p.lines); p.i++ {
		line := strings.TrimSpace(p.lines[p.i])
		if line == "---" {
			p.i++
			return nil
		}
		if line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return p.errorf(p.i+1, "front matter line %q is not \"key: value\"", line)
		}
		value = strings.TrimSpace(value)
		switch strings.TrimSpace(key) {
		case "title":
			l.Title = value
		case "stage":
			l.Stage = value
		case "needs":
			l.Needs = strings.Fields(value)
			for _, n := range l.Needs {
				if n != "root" && n != "rootfs" {
					return p.errorf(p.i+1, "unknown need %q (known: root, rootfs)", n)
				}
			}
		default:
			return p.errorf(p.i+1, "unknown front matter key %q (known: title, stage, needs)", key)
		}
	}
	return p.errorf(1, "front matter is not closed with ---")
}

// body splits the rest into prose and demos. Fences follow CommonMark: a
// run of at least three ` or ~, closed by a run of the same character at
// least as long, so prose may show a demo block inside a ```` fence.
func (p *parser) body(l *Lesson) error {
	var prose []string
	var last *Demo // the most recent demo, while only blank lines follow it
	flush := func() {
		if text := strings.TrimSpace(strings.Join(prose, "\n")); text != "" {
			l.Segments = append(l.Segments, Segment{Prose: text + "\n"})
		}
		prose = nil
	}
	for ; p.i < len(p.lines); p.i++ {
		line := p.lines[p.i]
		fence, info := openingFence(line)
		word := strings.Fields(info + " ")
		switch {
		case fence != "" && len(word) > 0 && word[0] == "demo":
			flush()
			d, err := p.demo(fence, word[1:], len(l.Demos())+1)
			if err != nil {
				return err
			}
			l.Segments = append(l.Segments, Segment{Demo: d})
			last = d
		case fence != "" && len(word) > 0 && word[0] == "expect":
			if last == nil {
				return p.errorf(p.i+1, "expect block with no demo block right before it")
			}
			if err := p.expect(fence, word[1:], last); err != nil {
				return err
			}
		case fence != "":
			prose = append(prose, p.skipFence(fence)...)
			last = nil
		default:
			prose = append(prose, line)
			if strings.TrimSpace(line) != "" {
				last = nil
			}
		}
	}
	flush()
	return nil
}

// openingFence returns the fence characters and the info string when line
// opens a fenced code block.
func openingFence(line string) (fence, info string) {
	trimmed := strings.TrimLeft(line, " ")
	if len(line)-len(trimmed) > 3 || len(trimmed) < 3 {
		return "", ""
	}
	c := trimmed[0]
	if c != '`' && c != '~' {
		return "", ""
	}
	n := 0
	for n < len(trimmed) && trimmed[n] == c {
		n++
	}
	if n < 3 {
		return "", ""
	}
	return trimmed[:n], strings.TrimSpace(trimmed[n:])
}

func isClosing(line, fence string) bool {
	trimmed := strings.TrimSpace(line)
	return strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == ""
}

// block returns the lines inside the fence that opens at p.i and leaves
// p.i on the closing fence.
func (p *parser) block(fence string) ([]string, error) {
	start := p.i
	for p.i++; p.i < len(p.lines); p.i++ {
		if isClosing(p.lines[p.i], fence) {
			return p.lines[start+1 : p.i], nil
		}
	}
	return nil, p.errorf(start+1, "code block opened here is never closed with %s", fence)
}

// skipFence returns an ordinary code block, fences included, as prose.
func (p *parser) skipFence(fence string) []string {
	start := p.i
	if _, err := p.block(fence); err != nil {
		p.i = len(p.lines) - 1
	}
	return p.lines[start : p.i+1]
}

func (p *parser) demo(fence string, options []string, number int) (*Demo, error) {
	d := &Demo{Number: number, Line: p.i + 1, Timeout: DefaultTimeout}
	for _, opt := range options {
		key, value, _ := strings.Cut(opt, "=")
		switch key {
		case "after":
			after, err := parseAfter(value, number)
			if err != nil {
				return nil, p.errorf(d.Line, "demo option %q: %v", opt, err)
			}
			d.After = after
		case "timeout":
			t, err := time.ParseDuration(value)
			if err != nil || t <= 0 {
				return nil, p.errorf(d.Line, "demo option %q: expected a duration like timeout=90s", opt)
			}
			d.Timeout = t
		case "exit":
			if value == "any" {
				d.AnyExit = true
				continue
			}
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 || n > 255 {
				return nil, p.errorf(d.Line, "demo option %q: expected exit=N (0-255) or exit=any", opt)
			}
			d.Exit = n
		default:
			return nil, p.errorf(d.Line, "unknown demo option %q (known: timeout=DURATION, exit=N|any, after=N[,M…])", opt)
		}
	}
	body, err := p.block(fence)
	if err != nil {
		return nil, err
	}
	d.Script = strings.Join(body, "\n")
	if strings.TrimSpace(d.Script) == "" {
		return nil, p.errorf(d.Line, "empty demo block")
	}
	return d, nil
}

// parseAfter reads after=N[,M…]: earlier demos this one builds on.
func parseAfter(value string, number int) ([]int, error) {
	var after []int
	for _, field := range strings.Split(value, ",") {
		n, err := strconv.Atoi(field)
		if err != nil || n < 1 || n >= number {
			return nil, fmt.Errorf("expected after=N or after=N,M with numbers of earlier demos (1 to %d; this is demo %d)", number-1, number)
		}
		after = append(after, n)
	}
	sort.Ints(after)
	return after, nil
}

func (p *parser) expect(fence string, options []string, d *Demo) error {
	start := p.i
	ordered := false
	for _, opt := range options {
		if opt != "ordered" {
			return p.errorf(start+1, "unknown expect option %q (known: ordered)", opt)
		}
		ordered = true
	}
	block := 1
	if n := len(d.Expect); n > 0 {
		block = d.Expect[n-1].Block + 1
	}
	body, err := p.block(fence)
	if err != nil {
		return err
	}
	for k, raw := range body {
		raw = strings.TrimRight(raw, " \t")
		if strings.TrimSpace(raw) == "" {
			continue
		}
		r, err := parseRule(start+2+k, raw)
		if err != nil {
			return p.errorf(start+2+k, "%v", err)
		}
		r.Block, r.Ordered = block, ordered
		d.Expect = append(d.Expect, r)
	}
	return nil
}
