package main

// The stage's own small Dockerfile reader. Docker's full parser is in
// moby/buildkit (final/ uses it); this one reads what lesson 6 needs: one
// instruction per logical line, `\` continuing a line, `#` comments, the
// `# escape=` directive, and the exec (JSON) and shell forms.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// An instruction is one logical line of a Dockerfile.
type instruction struct {
	line   int      // where it starts, for errors
	cmd    string   // FROM, COPY…, upper-case
	args   []string // the arguments, still unexpanded (see expand); ENV and LABEL: name, value, name, value…
	json   bool     // the exec form, ["a","b"]: no shell
	text   string   // as written, continuations joined: for history and the cache key
	escape byte     // `\`, or the directive's escape character: for expand
}

// supported is what this stage builds; the others are docker's and named as such.
const supported, notInStage = " FROM COPY ADD RUN CMD ENTRYPOINT ENV WORKDIR LABEL EXPOSE USER ",
	" ARG ONBUILD STOPSIGNAL HEALTHCHECK SHELL VOLUME MAINTAINER "

// directive is a parser directive, such as # escape=` (only at the very top).
var directive = regexp.MustCompile(`^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`)

// parseDockerfile reads Dockerfile r; errors name it (name:line: …).
func parseDockerfile(name string, r io.Reader) ([]instruction, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var list []instruction
	escape, top := byte('\\'), true
	text, start, n := "", 0, 0
	flush := func() error { // one logical line is complete
		in, err := parseInstruction(name, start, text, escape)
		list, text = append(list, in), ""
		return err
	}
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), " \t\r")
		if m := directive.FindStringSubmatch(line); top && m != nil {
			if strings.EqualFold(m[1], "escape") {
				if m[2] != "\\" && m[2] != "`" {
					return nil, fmt.Errorf("%s:%d: escape=%s: the escape character is \\ or `", name, n, m[2])
				}
				escape = m[2][0]
			}
			continue
		}
		top = false // directives come before anything else, even a blank line
		trimmed := strings.TrimLeft(line, " \t")
		if trimmed == "" || trimmed[0] == '#' {
			continue // a blank line or a comment, even inside a continued line
		}
		if text == "" {
			start, line = n, trimmed
		}
		if text += line; strings.HasSuffix(line, string(escape)) {
			text = text[:len(text)-1] // continued on the next line
		} else if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if text != "" { // the last line ended with the escape character
		if err := flush(); err != nil {
			return nil, err
		}
	}
	return list, checkStages(name, list)
}

// checkStages wants exactly one FROM, first: a second is a multi-stage build.
func checkStages(name string, list []instruction) error {
	if len(list) == 0 {
		return fmt.Errorf("%s: no instructions: a Dockerfile starts with FROM", name)
	}
	if list[0].cmd != "FROM" {
		return fmt.Errorf("%s:%d: the first instruction must be FROM, not %s", name, list[0].line, list[0].cmd)
	}
	for _, in := range list[1:] {
		if in.cmd == "FROM" {
			return fmt.Errorf("%s:%d: a second FROM (a multi-stage build) is not in %s: final/ has multi-stage", name, in.line, stage)
		}
	}
	return nil
}

// parseInstruction splits one logical line into its keyword and arguments.
func parseInstruction(name string, line int, text string, escape byte) (instruction, error) {
	word, rest := text, ""
	if i := strings.IndexAny(text, " \t"); i >= 0 {
		word, rest = text[:i], strings.TrimSpace(text[i:])
	}
	in := instruction{line: line, cmd: strings.ToUpper(word), text: strings.ToUpper(word) + " " + rest, escape: escape}
	bad := func(format string, args ...any) (instruction, error) {
		return in, fmt.Errorf("%s:%d: %s", name, line, fmt.Sprintf(format, args...))
	}
	switch {
	case strings.Contains(notInStage, " "+in.cmd+" "):
		return bad("%s is not in %s, which builds%s", in.cmd, stage, strings.TrimRight(supported, " "))
	case !strings.Contains(supported, " "+in.cmd+" "):
		return bad("unknown instruction %q", word)
	case strings.HasPrefix(rest, "--"): // COPY --chown=…, RUN --mount=…
		return bad("%s %s: flags are not in %s", in.cmd, strings.Fields(rest)[0], stage)
	}
	switch in.cmd {
	case "FROM":
		in.args = strings.Fields(rest)
		if len(in.args) == 3 && strings.EqualFold(in.args[1], "AS") {
			return bad("FROM %s AS %s: a named stage (a multi-stage build) is not in %s: final/ has multi-stage", in.args[0], in.args[2], stage)
		}
		if len(in.args) != 1 {
			return bad("FROM needs one image (or scratch)")
		}
	case "RUN", "CMD", "ENTRYPOINT": // the exec form, or one string for /bin/sh -c
		in.args, in.json = execForm(rest)
		if !in.json {
			in.args = []string{rest}
		}
		if rest == "" || (in.cmd == "RUN" && len(in.args) == 0) {
			return bad("%s needs a command", in.cmd)
		}
	case "COPY", "ADD": // SRC... DEST, the last one is where they go
		if in.args, in.json = execForm(rest); !in.json {
			in.args = strings.Fields(rest)
		}
		if len(in.args) < 2 {
			return bad("%s needs a source and a destination", in.cmd)
		}
	case "ENV", "LABEL":
		if in.args = nameValues(rest, escape); len(in.args) == 0 {
			return bad("%s needs NAME=VALUE pairs (or NAME VALUE, one pair), not %q", in.cmd, rest)
		}
	case "EXPOSE":
		if in.args = strings.Fields(rest); len(in.args) == 0 {
			return bad("EXPOSE needs a port (80, 80/tcp, 53/udp)")
		}
	case "WORKDIR", "USER": // the rest of the line is one path, or user[:group]
		if in.args = []string{rest}; rest == "" {
			return bad("%s needs an argument", in.cmd)
		}
	}
	return in, nil
}

// execForm reads `["a", "b"]`; anything else, even a broken JSON array,
// is the shell form, as docker has it.
func execForm(rest string) ([]string, bool) {
	var args []string
	if !strings.HasPrefix(rest, "[") || json.Unmarshal([]byte(rest), &args) != nil {
		return nil, false
	}
	return args, true
}

// nameValues reads `K=V K2="v 2"`, or the old form `K the rest is V`,
// into name, value, name, value…; the quotes stay for expand. nil: neither.
func nameValues(rest string, escape byte) []string {
	words, pairs := splitWords(rest, escape), []string{}
	if len(words) > 0 && !strings.Contains(words[0], "=") { // ENV K V: the value is the rest
		if value := strings.TrimSpace(strings.TrimPrefix(rest, words[0])); value != "" {
			return []string{words[0], value}
		}
	}
	for _, w := range words {
		if k, v, ok := strings.Cut(w, "="); ok && k != "" {
			pairs = append(pairs, k, v)
		} else {
			return nil
		}
	}
	return pairs
}

// splitWords splits at blanks outside quotes, keeping quotes and escapes.
func splitWords(s string, escape byte) []string {
	var words []string
	var word strings.Builder
	quote, inWord := byte(0), false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == escape && quote != '\'' && i+1 < len(s):
			word.WriteByte(c)
			i++
			c = s[i]
		case quote == 0 && (c == ' ' || c == '\t'):
			if inWord {
				words, inWord = append(words, word.String()), false
				word.Reset()
			}
			continue
		case c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
		}
		word.WriteByte(c)
		inWord = true
	}
	if inWord {
		words = append(words, word.String())
	}
	return words
}

// expand does to an argument what docker's shell lexer does: $VAR, ${VAR},
// ${VAR:-default} and ${VAR:+alternative} from env; '…' as is, "…"
// expanded; the quotes removed; the escape character quoting the next one.
func expand(word string, escape byte, env []string) string {
	var out strings.Builder
	quote := byte(0)
	for i := 0; i < len(word); i++ {
		c := word[i]
		switch {
		case c == escape && quote != '\'' && i+1 < len(word):
			if next := word[i+1]; quote == 0 || next == '"' || next == '$' || next == escape {
				c, i = next, i+1 // inside "…" only these three are escaped
			}
		case c == quote:
			quote = 0
			continue
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
			continue
		case c == '$' && quote != '\'':
			if value, n := variable(word[i+1:], env); n > 0 {
				out.WriteString(value)
				i += n
				continue
			}
		}
		out.WriteByte(c)
	}
	return out.String()
}

// variable reads the name after a $ and returns its value and the length
// it took; 0 if there is no name (a lone $ stays).
func variable(s string, env []string) (string, int) {
	if strings.HasPrefix(s, "{") {
		end := strings.IndexByte(s, '}')
		if end < 0 {
			return "", 0
		}
		name, op, word := s[1:end], "", ""
		if i := strings.IndexByte(name, ':'); i > 0 && i+1 < len(name) {
			name, op, word = name[:i], name[i+1:i+2], name[i+2:]
		}
		value := lookupEnv(env, name)
		if (op == "-" && value == "") || (op == "+" && value != "") {
			value = word
		}
		return value, end + 1
	}
	n := 0
	for n < len(s) && (s[n] == '_' || 'a' <= s[n]|32 && s[n]|32 <= 'z' || n > 0 && '0' <= s[n] && s[n] <= '9') {
		n++ // a name: letters, digits and _, not starting with a digit
	}
	return lookupEnv(env, s[:n]), n
}
