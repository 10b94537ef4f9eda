// Package stagediff shows what one stage adds over another: a unified diff
// of the two folders and a one-line summary.
package stagediff

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
)

// FileDiff is the change to one file between two stage folders.
type FileDiff struct {
	Path           string // relative to the stage folder
	Added, Removed int    // lines
	New, Gone      bool   // file only in the newer / older stage
	Unified        string // the unified diff text
}

// Summary totals a diff.
type Summary struct {
	Files, NewFiles, GoneFiles int
	Added, Removed             int
}

// Diff compares every regular file under oldDir and newDir. Labels name the
// two sides in the diff headers ("01-chroot", "02-namespaces"). An empty
// oldDir is nothing: every file of newDir is new, under "--- /dev/null"
// as in git (the first stage, shown whole).
func Diff(oldDir, newDir, oldLabel, newLabel string) ([]FileDiff, error) {
	oldFiles, err := files(oldDir)
	if err != nil {
		return nil, err
	}
	newFiles, err := files(newDir)
	if err != nil {
		return nil, err
	}
	paths := map[string]bool{}
	for p := range oldFiles {
		paths[p] = true
	}
	for p := range newFiles {
		paths[p] = true
	}
	var sorted []string
	for p := range paths {
		sorted = append(sorted, p)
	}
	sort.Strings(sorted)

	var out []FileDiff
	for _, p := range sorted {
		a, inOld := oldFiles[p]
		b, inNew := newFiles[p]
		if inOld && inNew && a == b {
			continue
		}
		from := oldLabel + "/" + p
		if oldDir == "" {
			from = "/dev/null"
		}
		text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
			A: splitLines(a), B: splitLines(b),
			FromFile: from, ToFile: newLabel + "/" + p,
			Context: 3,
		})
		if err != nil {
			return nil, fmt.Errorf("diff %s: %w", p, err)
		}
		fd := FileDiff{Path: p, New: !inOld, Gone: !inNew, Unified: text}
		inHunk := false
		for _, line := range strings.Split(text, "\n") {
			switch {
			case strings.HasPrefix(line, "@@"):
				inHunk = true
			case !inHunk:
				// The "---" and "+++" file headers. (A removed line
				// "-- x", printed "--- x", comes after the first @@.)
			case strings.HasPrefix(line, "+"):
				fd.Added++
			case strings.HasPrefix(line, "-"):
				fd.Removed++
			}
		}
		out = append(out, fd)
	}
	return out, nil
}

// splitLines splits s into lines that each end in "\n". (difflib.SplitLines
// adds an empty line to every text that ends in "\n", which shows up as a
// blank context line at the end of a file.)
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.SplitAfter(s, "\n")
	if last := len(lines) - 1; lines[last] == "" {
		lines = lines[:last]
	} else {
		lines[last] += "\n"
	}
	return lines
}

// files reads every regular file under dir, keyed by relative path.
func files(dir string) (map[string]string, error) {
	out := map[string]string{}
	if dir == "" {
		return out, nil // no folder: the side before the first stage
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out[rel] = string(data)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read stage folder: %w", err)
	}
	return out, nil
}

// Summarize totals diffs.
func Summarize(diffs []FileDiff) Summary {
	var s Summary
	for _, d := range diffs {
		s.Files++
		s.Added += d.Added
		s.Removed += d.Removed
		if d.New {
			s.NewFiles++
		}
		if d.Gone {
			s.GoneFiles++
		}
	}
	return s
}

func (s Summary) String() string {
	extra := ""
	if s.NewFiles > 0 || s.GoneFiles > 0 {
		extra = fmt.Sprintf(" (%d new, %d removed)", s.NewFiles, s.GoneFiles)
	}
	return fmt.Sprintf("%d file(s) changed%s, %d line(s) added, %d removed", s.Files, extra, s.Added, s.Removed)
}

// Print writes the diffs, coloured when color is set, then the summary.
func Print(w io.Writer, diffs []FileDiff, color bool) {
	for _, d := range diffs {
		inHunk := false // before the first @@: the two file headers
		for _, line := range strings.SplitAfter(d.Unified, "\n") {
			if line == "" {
				continue
			}
			inHunk = inHunk || strings.HasPrefix(line, "@@")
			io.WriteString(w, paint(line, !inHunk, color))
		}
	}
	fmt.Fprintln(w, Summarize(diffs))
}

func paint(line string, header, color bool) string {
	if !color {
		return line
	}
	code := ""
	switch {
	case header:
		code = "1"
	case strings.HasPrefix(line, "@@"):
		code = "36"
	case strings.HasPrefix(line, "+"):
		code = "32"
	case strings.HasPrefix(line, "-"):
		code = "31"
	default:
		return line
	}
	return "\x1b[" + code + "m" + strings.TrimSuffix(line, "\n") + "\x1b[0m\n"
}
