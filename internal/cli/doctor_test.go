package cli

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/minibox-lab/minibox/internal/doctor"
)

// The help lists every check doctor runs, by the name its output line
// shows, in the order it runs them: a check added without its line here
// fails this test.
func TestDoctorHelpListsEveryCheck(t *testing.T) {
	out, _, code := minibox(t, "doctor", "--help")
	assert.Equal(t, 0, code)
	last := -1
	for _, c := range doctor.Checks() {
		i := strings.Index(out, "\n  "+c.Name+"  ")
		if !assert.GreaterOrEqual(t, i, 0, "doctor --help does not list the %q check", c.Name) {
			continue
		}
		assert.Greater(t, i, last, "doctor --help lists %q out of order", c.Name)
		last = i
	}
}
