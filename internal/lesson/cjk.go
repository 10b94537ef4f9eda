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
// line) that glamour keeps as they are. Other paragraphs are left alone.

// listItem matches the marker of a list item: "- ", "* ", "1. ".
var listItem = regexp.MustCompile(`^(?:[-*+]|[0-9]+[.)])\s+`)

// wrapCJK rewrites md's CJK paragraphs to lines of at most width columns.
func wrapCJK(md string, width int) string {
	var out, para, raw []string // raw: the paragraph's lines as written
	marker := ""
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
		case trimmed == "" || strings.HasPrefix(trimmed, "#") || strings.HasPrefix(trimmed, "|") ||
			strings.HasPrefix(trimmed, ">") || strings.HasPrefix(line, "    "):
			flush()
			out = append(out, line)
		case listItem.MatchString(trimmed):
			flush()
			marker = listItem.FindString(trimmed)
			para = []string{strings.TrimPrefix(trimmed, marker)}
			raw = []string{line}
		default:
			para = append(para, trimmed)
			raw = append(raw, line)
		}
	}
	flush()
	return strings.Join(out, "\n")
}

// wrapParagraph joins a CJK paragraph's lines and wraps it.
func wrapParagraph(marker string, lines []string, width int) []string {
	text := lines[0]
	for _, l := range lines[1:] {
		last, _ := utf8.DecodeLastRuneInString(text)
		first, _ := utf8.DecodeRuneInString(l)
		if joinsWithoutSpace(last, first) {
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
		} else {
			wrapped[i] = indent + wrapped[i]
		}
		if i < len(wrapped)-1 {
			wrapped[i] += "\\" // a hard line break
		}
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
// CJK character with any closing punctuation that follows it. space says a
// space stood before it.
type token struct {
	text  string
	space bool
}

func tokens(text string) []token {
	var out []token
	space := false
	glue := ""                // an opening emphasis marker, for the next token
	open := map[string]bool{} // which emphasis markers (**, _, …) are open
	add := func(t string) {
		out = append(out, token{glue + t, space})
		glue, space = "", false
	}
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		switch {
		case r == ' ':
			space = true
			i += size
		case r == '`':
			end := strings.IndexByte(text[i+1:], '`')
			if end < 0 {
				end = len(text) - i - 1
			}
			add(text[i : i+end+2])
			i += end + 2
		case r == '*' || r == '_':
			// An emphasis marker sticks to what it marks: an opener to the
			// next token, a closer to the previous one, so that no line
			// ends on "**" or starts with it.
			j := i
			for j < len(text) && text[j] == text[i] {
				j++
			}
			marker := text[i:j]
			if open[marker] && len(out) > 0 && !space {
				out[len(out)-1].text += marker
			} else {
				if glue == "" {
					glue = marker
					if space {
						out = append(out, token{"", true})
						space = false
					}
				} else {
					glue += marker
				}
			}
			open[marker] = !open[marker]
			i = j
		case strings.ContainsRune("（「『“《", r):
			// Opening punctuation never ends a line: it joins what follows.
			if space && glue == "" {
				out = append(out, token{"", true})
				space = false
			}
			glue += string(r)
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
			j := i
			for j < len(text) {
				next, n := utf8.DecodeRuneInString(text[j:])
				if next == ' ' || next == '`' || next == '*' || next == '_' || isCJK(next) {
					break
				}
				j += n
			}
			add(text[i:j])
			i = j
		}
	}
	if glue != "" {
		add("")
	}
	return out
}

// breakLines fills lines of at most width columns with tokens.
func breakLines(toks []token, width int) []string {
	var lines []string
	var cur strings.Builder
	w := 0
	for _, t := range toks {
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
	if w > 0 {
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
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul) ||
		r >= 0x3000 && r <= 0x303f || r >= 0xff00 && r <= 0xffef
}
