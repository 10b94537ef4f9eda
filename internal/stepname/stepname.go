// Package stepname names the scratch directory of a `minibox build` step
// while it is being made, before its lock is taken: new-<pid>-<digits>,
// the builder's PID in the name, so that one left by a build killed in
// that moment is known at once (its PID is gone) instead of after a
// minute. final/build makes the names, internal/cleanup reads them.
package stepname

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Prefix is os.MkdirTemp's pattern for a step directory made by pid.
func Prefix(pid int) string { return fmt.Sprintf("new-%d-", pid) }

// Parse splits new-<pid>-<digits> (ok false for any other name).
func Parse(name string) (pid int, digits string, ok bool) {
	rest, found := strings.CutPrefix(name, "new-")
	if !found {
		return 0, "", false
	}
	pidText, digits, found := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(pidText)
	if !found || err != nil || pid <= 0 || digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, "", false
	}
	return pid, digits, true
}

// Abandoned reports whether name is a new- directory whose builder has
// exited (kill(2) with signal 0: no such process).
func Abandoned(name string) bool {
	pid, _, ok := Parse(name)
	return ok && unix.Kill(pid, 0) == unix.ESRCH
}
