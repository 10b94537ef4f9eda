package stepname

import (
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	pid, digits, ok := Parse(Prefix(42) + "123")
	assert.Equal(t, []any{42, "123", true}, []any{pid, digits, ok})
	for _, bad := range []string{"new-123", "step-1", "new-x-1", "new-1-", "new-1-2a", "new--1"} {
		_, _, ok := Parse(bad)
		assert.False(t, ok, bad)
	}
}

func TestAbandoned(t *testing.T) {
	assert.False(t, Abandoned(Prefix(os.Getpid())+"1"), "our own directory")
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	assert.True(t, Abandoned(Prefix(cmd.Process.Pid)+"1"), "a builder that has exited (and been reaped)")
	assert.False(t, Abandoned("new-1"), "not a step name")
}
