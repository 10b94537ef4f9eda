package lesson

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mattn/go-runewidth"
)

// glamour wraps paragraphs only at spaces, and turns every line break of
// the source into a space. Chinese has no spaces: a paragraph would get
// stray spaces where the source broke its lines, and would not wrap at all
// once joined. So before rendering, each paragraph that contains CJK text
// is joined and wrapped here, at the render width, between any two CJK
// characters or at spaces, with Markdown hard breaks ("\" at the end of a
// line); the renderer then keeps those line breaks. Other paragraphs, and
// everything that is not a paragraph, are left exactly as written.

var (
	// listItem matches the marker of a list item: "- ", "* ", "1. ".
	listItem = regexp.MustCompile(`^(?:[-*+]|[0-9]+[.)])\s+`)
	// setext matches the underline that makes the paragraph above a heading.
	setext = regexp.MustCompile(`^(=+|-+)\s*$`)
	// blockStart matches what would make a wrapped line start a new block
	// (a quote, a list, a heading, a table row) instead of continuing.
	blockStart = regexp.MustCompile(`^(?:[>|=]|[-+*](?:\s|$)|#{1,6}(?:\s|$)|[0-9]+[.)](?:\s|$))`)
)

// forcedBreak stands for a hard line break of the source inside a joined
// paragraph.
const forcedBreak = "\x00"

// wrapCJK rewrites md's CJK paragraphs to lines of at most width columns.
func wrapCJK(md string, width int) string {
	var out []string
	var para []string // the paragraph's text lines, trimmed
	var raw []string  // the same lines as written
	marker := ""      // indentation and list marker of the paragraph's first line
	inFence := ""
	flush := func() {
		if len(para) > 0 && strings.ContainsFunc(strings.Join(para, ""), isCJK) {
			out = append(out, wrapParagraph(marker, para, width)...)
		} else {
			out = append(out, raw...)
		}
		para, raw, marker = nil, nil, ""
	}
	for _, line := range strings.Split(md, "\n") {
		trimmed := strings.TrimSpace(line)
		if fence, _ := openingFence(line); fence != "" && (inFence == "" || isClosing(line, inFence)) {
			flush()
			if inFence == "" {
				inFence = fence
			} else {
				inFence = ""
			}
			out = append(out, line)
			continue
		}
		switch {
		case inFence != "":
			out = append(out, line)
		case len(para) > 0 && setext.MatchString(trimmed):
			// The paragraph is a heading's text: leave it as written.
			out = append(append(out, raw...), line)
			para, raw, marker = nil, nil, ""
		case trimmed == "" || strings.HasPrefix(trimmed, "#") || strings.HasPrefix(trimmed, "|") ||
			strings.HasPrefix(trimmed, ">") || strings.HasPrefix(trimmed, "<") ||
			len(para) == 0 && strings.HasPrefix(line, "    "): // indented code
			flush()
			out = append(out, line)
		case listItem.MatchString(trimmed):
			flush()
			indent := line[:len(line)-len(strings.TrimLeft(line, " "))]
			marker = indent + listItem.FindString(trimmed)
			para, raw = []string{hardBreak(line, strings.TrimPrefix(trimmed, listItem.FindString(trimmed)))}, []string{line}
		default:
			para, raw = append(para, hardBreak(line, trimmed)), append(raw, line)
		}
	}
	flush()
	return strings.Join(out, "\n")
}

// hardBreak marks a line that ends in a Markdown hard break (two spaces or
// a backslash) so that the break survives the joining.
func hardBreak(line, text string) string {
	switch {
	case strings.HasSuffix(line, "  "):
		return text + forcedBreak
	case strings.HasSuffix(text, "\\") && !strings.HasSuffix(text, "\\\\"):
		return strings.TrimSuffix(text, "\\") + forcedBreak
	}
	return text
}

// wrapParagraph joins a CJK paragraph's lines and wraps it.
func wrapParagraph(marker string, lines []string, width int) []string {
	text := lines[0]
	for _, l := range lines[1:] {
		last, _ := utf8.DecodeLastRuneInString(text)
		first, _ := utf8.DecodeRuneInString(l)
		if strings.HasSuffix(text, forcedBreak) || joinsWithoutSpace(last, first) {
			text += l // a soft break inside Chinese is no space
		} else {
			text += " " + l
		}
	}
	wrapped := breakLines(tokens(text), width-runewidth.StringWidth(marker))
	indent := strings.Repeat(" ", len(marker))
	for i := range wrapped {
		if i == 0 {
			wrapped[i] = marker + wrapped[i]
			continue
		}
		// A line that would read as the start of a list, quote or
		// heading gets its first character escaped.
		if m := blockStart.FindString(wrapped[i]); m != "" {
			j := strings.IndexAny(m, ".)")
			if j < 0 {
				j = 0
			}
			wrapped[i] = wrapped[i][:j] + "\\" + wrapped[i][j:]
		}
		wrapped[i] = indent + wrapped[i]
	}
	for i := 0; i < len(wrapped)-1; i++ {
		wrapped[i] += "\\" // a hard line break
	}
	return wrapped
}

// joinsWithoutSpace reports whether a soft line break between a and b
// stands for nothing (Chinese) rather than a space.
func joinsWithoutSpace(a, b rune) bool {
	quote := func(r rune) bool { return strings.ContainsRune("“”‘’", r) }
	return isCJK(a) && isCJK(b) || isCJKPunct(a) || isCJKPunct(b) || quote(a) && isCJK(b) || isCJK(a) && quote(b)
}

// A token is a piece that is never split: a word, a `code span`, or one
// CJK character with the punctuation that must stay with it. space says a
// space stood before it.
type token struct {
	text  string
	space bool
}

func tokens(text string) []token {
	var out []token
	space := false
	glue := ""                // what must open the next token: "**", "（"
	open := map[string]bool{} // which emphasis markers are open
	add := func(t string) {
		out = append(out, token{glue + t, space})
		glue, space = "", false
	}
	startGlue := func(s string) {
		if space && glue == "" {
			out = append(out, token{"", true}) // keep the space before it
			space = false
		}
		glue += s
	}
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		switch {
		case r == ' ':
			space = true
			i += size
		case text[i:i+size] == forcedBreak:
			out = append(out, token{forcedBreak, false})
			glue, space = "", false
			i += size
		case r == '`':
			n := runLength(text, i, '`')
			if end := strings.Index(text[i+n:], strings.Repeat("`", n)); end >= 0 {
				add(text[i : i+n+end+n]) // a code span is never split
				i += n + end + n
			} else {
				add(text[i : i+n]) // no closing run: plain backticks
				i += n
			}
		case (r == '*' || r == '_') && isEmphasis(text, i):
			// An emphasis marker sticks to what it marks: an opener to the
			// next token, a closer to the previous one, so that no line
			// ends on "**" or starts with it.
			n := runLength(text, i, text[i])
			marker := text[i : i+n]
			if open[marker] && len(out) > 0 && !space {
				out[len(out)-1].text += marker
			} else {
				startGlue(marker)
			}
			open[marker] = !open[marker]
			i += n
		case strings.ContainsRune("（「『“《", r):
			// Opening punctuation never ends a line: it joins what follows.
			startGlue(string(r))
			i += size
		case isCJK(r):
			j := i + size
			for j < len(text) {
				next, n := utf8.DecodeRuneInString(text[j:])
				if !strings.ContainsRune("，。、；：？！）」』”’》", next) {
					break
				}
				j += n
			}
			add(text[i:j])
			i = j
		default:
			add(text[i:wordEnd(text, i)])
			i = wordEnd(text, i)
		}
	}
	if glue != "" {
		add("")
	}
	return out
}

// wordEnd returns where the word starting at i ends: at a space, a
// backtick, an emphasis marker or a CJK character. A backslash keeps the
// character it escapes.
func wordEnd(text string, i int) int {
	j := i
	for j < len(text) {
		r, n := utf8.DecodeRuneInString(text[j:])
		if j > i && (r == ' ' || r == '`' || text[j:j+n] == forcedBreak || isCJK(r) ||
			strings.ContainsRune("（「『“《", r) || (r == '*' || r == '_') && isEmphasis(text, j)) {
			break
		}
		if r == '\\' && j+1 < len(text) {
			_, m := utf8.DecodeRuneInString(text[j+1:])
			n += m
		}
		j += n
	}
	return j
}

// isEmphasis reports whether the * or _ run at i can be an emphasis
// marker: "_" between two letters (ip_forward) cannot (CommonMark).
func isEmphasis(text string, i int) bool {
	if text[i] == '*' {
		return true
	}
	n := runLength(text, i, '_')
	before, _ := utf8.DecodeLastRuneInString(text[:i])
	after, _ := utf8.DecodeRuneInString(text[i+n:])
	alnum := func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }
	return !(i > 0 && alnum(before) && i+n < len(text) && alnum(after))
}

func runLength(text string, i int, c byte) int {
	n := 0
	for i+n < len(text) && text[i+n] == c {
		n++
	}
	return n
}

// breakLines fills lines of at most width columns with tokens.
func breakLines(toks []token, width int) []string {
	var lines []string
	var cur strings.Builder
	w := 0
	for _, t := range toks {
		if t.text == forcedBreak {
			lines = append(lines, cur.String())
			cur.Reset()
			w = 0
			continue
		}
		tw := runewidth.StringWidth(t.text)
		sep := ""
		if t.space && w > 0 {
			sep = " "
		}
		if w > 0 && w+len(sep)+tw > width {
			lines = append(lines, cur.String())
			cur.Reset()
			w, sep = 0, ""
		}
		cur.WriteString(sep + t.text)
		w += len(sep) + tw
	}
	if w > 0 || cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}

// isCJKPunct reports whether r is full-width (CJK) punctuation.
func isCJKPunct(r rune) bool {
	return r >= 0x3000 && r <= 0x303f || r >= 0xff00 && r <= 0xffef
}

// isCJK reports whether r is a Chinese, Japanese or Korean character or
// full-width punctuation: text in which a line may break anywhere.
func isCJK(r rune) bool {
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul) || isCJKPunct(r)
}
