// Package doctor checks that a host can run every lesson, and says for
// each failed check exactly how to fix it.
package doctor

import (
	"fmt"
	"io"
	"strings"
)

// Status is a check's verdict.
type Status int

const (
	OK   Status = iota
	Warn        // worth knowing; the lessons still run
	Fail        // a lesson needs this
)

func (s Status) String() string { return [...]string{"ok", "warn", "FAIL"}[s] }

// Result is the outcome of one check.
type Result struct {
	Name   string
	Status Status
	Detail string // what was found
	Fix    string // what to do, when Status is not OK
}

// Check is one named probe of the host.
type Check struct {
	Name string
	Run  func(h Host) Result
}

// Run runs checks against h.
func Run(h Host, checks []Check) []Result {
	out := make([]Result, 0, len(checks))
	for _, c := range checks {
		r := c.Run(h)
		r.Name = c.Name
		out = append(out, r)
	}
	return out
}

// Healthy reports whether no check failed.
func Healthy(results []Result) bool {
	for _, r := range results {
		if r.Status == Fail {
			return false
		}
	}
	return true
}

// Print writes one line per check, and the fix under each that is not OK.
func Print(w io.Writer, results []Result, color bool) {
	marks := map[Status]string{OK: "✓", Warn: "!", Fail: "✗"}
	colors := map[Status]string{OK: "32", Warn: "33", Fail: "31"}
	width := 0
	for _, r := range results {
		width = max(width, len(r.Name))
	}
	for _, r := range results {
		mark := marks[r.Status]
		if color {
			mark = "\x1b[" + colors[r.Status] + "m" + mark + "\x1b[0m"
		}
		fmt.Fprintf(w, "%s %-*s  %s\n", mark, width, r.Name, r.Detail)
		if r.Status != OK && r.Fix != "" {
			for _, line := range strings.Split(r.Fix, "\n") {
				fmt.Fprintf(w, "  %*s  fix: %s\n", width, "", line)
			}
		}
	}
	fails, warns := 0, 0
	for _, r := range results {
		switch r.Status {
		case Fail:
			fails++
		case Warn:
			warns++
		}
	}
	switch {
	case fails > 0:
		fmt.Fprintf(w, "\n%d check(s) failed: fix them, then run `minibox doctor` again.\n", fails)
	case warns > 0:
		fmt.Fprintf(w, "\nReady for the lessons (%d warning(s) above are worth reading).\n", warns)
	default:
		fmt.Fprintln(w, "\nReady for the lessons.")
	}
}
