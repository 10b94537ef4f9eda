// Command demoscripts writes every lesson's demo blocks, both languages, as
// shell scripts for make lint to run shellcheck on:
//
//	go run ./scripts/demoscripts OUTDIR
//
// OUTDIR/en/01-chroot.md-57.sh is the demo whose fence opens on line 57 of
// lessons/en/01-chroot.md. The script's lines keep the lesson's numbering
// (blank lines stand in for the rest of the lesson), so shellcheck's line
// numbers point straight into the lesson file.
package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/minibox-lab/minibox/internal/lesson"
	"github.com/minibox-lab/minibox/lessons"
)

// languages are the lesson languages, each a folder of lessons/.
var languages = []string{"en", "zh"}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run ./scripts/demoscripts OUTDIR")
		os.Exit(2)
	}
	n, err := writeAll(lessons.FS, os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "demoscripts:", err)
		os.Exit(1)
	}
	fmt.Printf("%d demo scripts in %s\n", n, os.Args[1])
}

// writeAll writes every demo of every language in fsys (laid out as
// lessons.FS) and returns how many.
func writeAll(fsys fs.FS, outDir string) (int, error) {
	n := 0
	for _, lang := range languages {
		all, err := lesson.Load(fsys, lang)
		if err != nil {
			return n, fmt.Errorf("load the %s lessons: %w", lang, err)
		}
		if len(all) == 0 {
			return n, fmt.Errorf("no %s lessons found", lang)
		}
		dir := filepath.Join(outDir, lang)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return n, err
		}
		for _, l := range all {
			for _, d := range l.Demos() {
				path := filepath.Join(dir, scriptName(l, d))
				if err := os.WriteFile(path, []byte(script(l, d)), 0o644); err != nil {
					return n, err
				}
				n++
			}
		}
	}
	return n, nil
}

// scriptName names a demo after its lesson file and the fence's line.
func scriptName(l *lesson.Lesson, d *lesson.Demo) string {
	return fmt.Sprintf("%s.md-%d.sh", l.Name, d.Line)
}

// script is the demo's text on the lines it has in the lesson: the first
// line tells shellcheck which shell runs it (the runner uses /bin/sh -c,
// dash on Debian and Ubuntu), blank lines fill up to the fence, and the
// demo starts on the line after it.
func script(l *lesson.Lesson, d *lesson.Demo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# shellcheck shell=sh\n")
	b.WriteString(strings.Repeat("\n", d.Line-1))
	b.WriteString(d.Script)
	b.WriteString("\n")
	return b.String()
}
