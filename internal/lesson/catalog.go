package lesson

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Langs are the languages every lesson exists in.
var Langs = []string{"en", "zh"}

// LangFromEnv picks the lesson language from $LC_ALL, then $LANG (the
// usual precedence): zh* gives Chinese, anything else English.
func LangFromEnv(getenv func(string) string) string {
	for _, v := range []string{"LC_ALL", "LANG"} {
		if val := getenv(v); val != "" {
			if strings.HasPrefix(strings.ToLower(val), "zh") {
				return "zh"
			}
			return "en"
		}
	}
	return "en"
}

// Load parses every lesson of one language from fsys (lang/NN-name.md),
// sorted by number.
func Load(fsys fs.FS, lang string) ([]*Lesson, error) {
	if lang != "en" && lang != "zh" {
		return nil, fmt.Errorf("unknown language %q (known: en, zh)", lang)
	}
	files, err := fs.Glob(fsys, lang+"/*.md")
	if err != nil {
		return nil, err
	}
	var lessons []*Lesson
	for _, f := range files {
		src, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		l, err := Parse("lessons/"+f, lang, src)
		if err != nil {
			return nil, err
		}
		lessons = append(lessons, l)
	}
	sort.Slice(lessons, func(i, j int) bool { return lessons[i].Number < lessons[j].Number })
	return lessons, nil
}

// Find returns lesson n of lang.
func Find(fsys fs.FS, lang string, n int) (*Lesson, error) {
	all, err := Load(fsys, lang)
	if err != nil {
		return nil, err
	}
	var have []string
	for _, l := range all {
		if l.Number == n {
			return l, nil
		}
		have = append(have, path.Base(l.Name))
	}
	return nil, fmt.Errorf("no lesson %d in %s (there are: %s)", n, lang, strings.Join(have, ", "))
}
