// Package lazyregexp is a regular expression compiled on its first use,
// not at start-up. minibox-shim runs twice for every container (its
// supervisor and its init), and Go runs every linked package's
// initialisation at each start: a package-level regexp.MustCompile there
// costs time and a heap it keeps for the container's life, for
// expressions that run never uses (the Go tree has the same helper,
// internal/lazyregexp, for the go command).
package lazyregexp

import (
	"regexp"
	"sync"
)

// Regexp is an expression compiled by the first MatchString.
type Regexp struct {
	expr string
	once sync.Once
	re   *regexp.Regexp
}

// New returns expr, to be compiled on first use; like regexp.MustCompile,
// a bad expression is a programming error.
func New(expr string) *Regexp {
	return &Regexp{expr: expr}
}

// MatchString reports whether s matches.
func (r *Regexp) MatchString(s string) bool {
	r.once.Do(func() { r.re = regexp.MustCompile(r.expr) })
	return r.re.MatchString(s)
}
