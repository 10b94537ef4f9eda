package engine_test

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A descriptor the caller of `minibox run -d` leaves open (here a pipe's
// write end, fd 5 of the CLI) is not kept by the container's supervisor:
// once the CLI has exited, the pipe's reader sees its end (a shell waiting
// for the output of `run -d` in $(...) would otherwise wait for the
// container), and the container has no more than its stdio.
func TestSupervisorKeepsNoDescriptorOfTheCaller(t *testing.T) {
	e := newEnv(t)
	rd, wr, err := os.Pipe()
	require.NoError(t, err)
	defer rd.Close()
	null, err := os.Open(os.DevNull)
	require.NoError(t, err)
	defer null.Close()
	cmd := e.command("run", "-d", e.ref, "sh", "-c", "ls /proc/self/fd; exec sleep 100")
	cmd.ExtraFiles = []*os.File{null, null, wr} // the pipe as fd 5: above the supervisor's own fd 3
	out, err := cmd.Output()
	wr.Close()
	require.NoError(t, err)
	id := strings.TrimSpace(string(out))
	ended := make(chan error, 1)
	go func() { _, err := io.ReadAll(rd); ended <- err }()
	select {
	case err := <-ended:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Errorf("the pipe the CLI inherited is still held open: by the supervisor of %s", id)
	}
	require.Eventually(t, func() bool { out, _, _ := e.mb("logs", id); return strings.TrimSpace(out) != "" }, 5*time.Second, 20*time.Millisecond)
	logs := e.ok("logs", id)
	assert.Equal(t, []string{"0", "1", "2", "3"}, strings.Fields(logs), "the container's descriptors")
	e.ok("rm", "-f", id)
}
