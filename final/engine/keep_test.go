package engine_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A detached container's supervisor hands over to a keeper, a fresh copy
// of its binary under the same PID (keep.go): the container's output
// still reaches the log, a line the handover cut in two stays one line,
// stdout and stderr stay apart, and the keeper records how it ended.
func TestDetachedSupervisorHandsOverToKeeper(t *testing.T) {
	e := newEnv(t)
	id := strings.TrimSpace(e.ok("run", "-d", e.ref, "sh", "-c",
		"echo before; printf 'cut '; sleep 1; echo line; echo err >&2; exec sleep 100"))
	supervisor := e.inspect(id).State.SupervisorPid
	require.Positive(t, supervisor)
	require.Eventually(t, func() bool { return isKeeper(supervisor) }, 5*time.Second, 20*time.Millisecond,
		"the supervisor %d of a detached container did not become its keeper", supervisor)
	require.Eventually(t, func() bool { _, stderr, _ := e.mb("logs", id); return stderr == "err\n" }, 10*time.Second, 50*time.Millisecond)
	stdout, stderr, code := e.mb("logs", id)
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "before\ncut line\n", stdout, "what came before, across and after the handover")
	assert.Equal(t, "err\n", stderr)
	// One entry for the cut line: the supervisor handed its half over, it
	// did not write it out as an entry of its own.
	data, err := os.ReadFile(filepath.Join(e.root, "engine", "containers", id, "container.log"))
	require.NoError(t, err)
	var entries []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var entry struct{ Log, Stream string }
		require.NoError(t, json.Unmarshal([]byte(line), &entry), line)
		entries = append(entries, entry.Stream+":"+entry.Log)
	}
	assert.ElementsMatch(t, []string{"stdout:before\n", "stdout:cut line\n", "stderr:err\n"}, entries) // two pipes: no order between them
	assert.Equal(t, supervisor, e.inspect(id).State.SupervisorPid, "the keeper is the same process")

	e.ok("kill", id)
	rec := e.waitStatus(id, "exited", 10*time.Second)
	assert.Equal(t, 137, rec.State.ExitCode, "the keeper records the exit status (SIGKILL)")
	assert.False(t, alive(supervisor), "the keeper ends with its container")
}

// A detached -t container's keeper pumps the pty; a --rm one's keeper
// tells wait the exit status, and removes it.
func TestKeeperOfTtyAndRmContainers(t *testing.T) {
	e := newEnv(t)
	tty := strings.TrimSpace(e.ok("run", "-d", "-t", e.ref, "sh", "-c", "sleep 1; echo after; sleep 100"))
	gone := strings.TrimSpace(e.ok("run", "-d", "--rm", e.ref, "sh", "-c", "sleep 1; exit 3"))
	for _, id := range []string{tty, gone} {
		supervisor := e.inspect(id).State.SupervisorPid
		require.Eventually(t, func() bool { return isKeeper(supervisor) }, 5*time.Second, 20*time.Millisecond, id)
	}
	assert.Equal(t, "3\n", e.ok("wait", gone), "wait attaches to the keeper, which sends the exit status")
	assert.NotContains(t, e.ids(), gone, "the --rm container is removed by its keeper")
	require.Eventually(t, func() bool { out, _, _ := e.mb("logs", tty); return out == "after\r\n" }, 10*time.Second, 50*time.Millisecond)
	e.ok("rm", "-f", tty)
}

// A keeper killed from outside takes its container along (the death
// signal of the thread that forked the init survives the execve), and
// the next commands recover as from a killed supervisor.
func TestKeeperKilled(t *testing.T) {
	e := newEnv(t)
	id := strings.TrimSpace(e.ok("run", "-d", "-m", "32m", "-p", "18095:80", e.ref, "sleep", "1000"))
	r := e.inspect(id)
	require.Eventually(t, func() bool { return isKeeper(r.State.SupervisorPid) }, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, syscall.Kill(r.State.SupervisorPid, syscall.SIGKILL))
	require.Eventually(t, func() bool { return !alive(r.State.Pid) }, 5*time.Second, 20*time.Millisecond,
		"the container outlived its keeper")
	after := e.inspect(id)
	assert.Equal(t, "exited", after.State.Status)
	assert.Equal(t, 137, after.State.ExitCode)
	e.ok("rm", id)
	assert.Empty(t, leftovers(t, e, id), "left after rm")
}

// isKeeper reports whether process pid carries the keeper's handover in
// its environment (what handOver's execve gave it).
func isKeeper(pid int) bool {
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	return bytes.Contains(append([]byte{0}, env...), []byte("\x00MINIBOX_KEEP="))
}
