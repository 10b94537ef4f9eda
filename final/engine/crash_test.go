package engine_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minibox-lab/minibox/final/engine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A supervisor killed while it starts the container (its mount, address,
// veth and rules made, the record still saying created): the container
// starts again, and rm leaves nothing of either start.
func TestSupervisorKilledWhileStarting(t *testing.T) {
	e := newEnv(t)
	id := strings.TrimSpace(e.ok("create", "--name", "halfway", "-p", "18094:80", e.ref, "sleep", "1000"))
	// The supervisor as Start runs it, held before the runtime by the
	// word "attach": it has said "listening", so everything but the
	// container itself is made.
	cmd := superviseUntilListening(t, e, id)
	require.NotEmpty(t, leftovers(t, e, id), "the supervisor made its mount and network")
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()

	assert.Equal(t, "created", e.inspect("halfway").State.Status)
	e.ok("start", "halfway") // the leftovers do not stand in its way
	after := e.inspect("halfway")
	assert.Equal(t, "running", after.State.Status)
	assert.NotEmpty(t, after.Network.IPAddress)
	e.ok("rm", "-f", "halfway")
	assert.Empty(t, leftovers(t, e, id), "left after start and rm")

	// Killed the same way, then removed without a start: rm undoes it.
	id = strings.TrimSpace(e.ok("create", "--name", "halfway", "-p", "18094:80", e.ref, "sleep", "1000"))
	cmd = superviseUntilListening(t, e, id)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	e.ok("rm", "halfway")
	assert.Empty(t, leftovers(t, e, id), "left after rm")
}

// superviseUntilListening starts container id's supervisor as
// engine.Prestart does and tells it "attach", and returns once it has
// said "listening" (it waits for a client then).
func superviseUntilListening(t *testing.T, e *env, id string) *exec.Cmd {
	t.Helper()
	ready, readyEnd, err := os.Pipe()
	require.NoError(t, err)
	t.Cleanup(func() { ready.Close() })
	goAheadEnd, goAhead, err := os.Pipe()
	require.NoError(t, err)
	t.Cleanup(func() { goAhead.Close() })
	cmd := exec.Command(bin, "supervise", "--root", e.root, id)
	cmd.ExtraFiles = []*os.File{readyEnd, goAheadEnd}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	require.NoError(t, cmd.Start())
	readyEnd.Close()
	goAheadEnd.Close()
	_, err = goAhead.WriteString("attach\n")
	require.NoError(t, err)
	lines := bufio.NewReader(ready)
	line, err := lines.ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "build "), "its first line tells its build: %q", line)
	line, err = lines.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "listening\n", line)
	return cmd
}

// A create killed between taking a name and writing the record leaves
// the name file (pointing at an id that never got its directory) and its
// .new- directory: the name is free again for the next create, and
// minibox cleanup removes the directory, as it does the .rm- directory of
// a removal that was killed.
func TestCreateKilledHalfway(t *testing.T) {
	e := newEnv(t)
	ghost := strings.Repeat("ab", 32)
	names := filepath.Join(e.root, "engine", "names")
	require.NoError(t, os.MkdirAll(names, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(names, "taken"), []byte(ghost), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(names, "empty"), nil, 0o600)) // killed before the write
	half := filepath.Join(e.root, "engine", "containers", ".new-"+strings.Repeat("cd", 32))
	require.NoError(t, os.MkdirAll(half, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(half, "lock"), nil, 0o600))
	// And a removal killed halfway: renamed .rm-<id>, some of it deleted.
	removing := filepath.Join(e.root, "engine", "containers", ".rm-"+strings.Repeat("ef", 32))
	require.NoError(t, os.MkdirAll(filepath.Join(removing, "diff", "etc"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(removing, "supervisor.lock"), nil, 0o600))

	for _, name := range []string{"taken", "empty"} {
		id := strings.TrimSpace(e.ok("create", "--name", name, e.ref, "true"))
		owner, err := os.ReadFile(filepath.Join(names, name))
		require.NoError(t, err)
		assert.Equal(t, id, string(owner), "the stale name %s is the new container's", name)
	}
	// A live container's name is never taken back.
	_, stderr, code := e.mb("create", "--name", "taken", e.ref, "true")
	assert.Equal(t, 125, code)
	assert.Contains(t, stderr, `the name "taken" is already in use`)

	out, stderr, code := e.mb("cleanup", "--root", e.root)
	require.Equal(t, 0, code, "%s%s", out, stderr)
	assert.Contains(t, out, "engine tmp dir")
	assert.NoDirExists(t, half)
	assert.NoDirExists(t, removing)
	assert.Len(t, e.ids(), 2, "cleanup removed only the interrupted create and removal")
}

// The supervisor's exclusive lock waits out the shared lock other
// commands take for an instant to ask whether a container is supervised
// (minibox cleanup, for every container): start succeeds while cleanup
// runs in a loop.
func TestStartWhileCleanupPolls(t *testing.T) {
	e := newEnv(t)
	e.ok("create", "--name", "busy", "--network", "none", e.ref, "sleep", "1000")
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done }) // also when the test fails
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				_ = exec.Command(bin, "cleanup", "--root", e.root).Run()
			}
		}
	}()
	for i := 0; i < 5; i++ {
		e.ok("start", "busy")
		e.ok("stop", "-t", "0", "busy")
	}
}

// A supervisor that fails before it has read its word (run starts it
// before the record exists): Start reports the supervisor's reason, not
// the broken pipe its word met.
func TestSupervisorFailingBeforeItsWordSaysWhy(t *testing.T) {
	e := newEnv(t)
	id := strings.TrimSpace(e.ok("create", "--network", "none", e.ref, "true"))
	failing := filepath.Join(t.TempDir(), "supervisor")
	require.NoError(t, os.WriteFile(failing, []byte("#!/bin/sh\necho 'error: no data root here' >&3\nexit 1\n"), 0o755))
	eng, err := engine.New(e.root)
	require.NoError(t, err)
	eng.Self = failing
	sup, err := eng.Prestart(id)
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond) // it has ended by now: the word meets a closed pipe
	err = sup.Start(nil)
	require.Error(t, err)
	assert.Equal(t, "no data root here", err.Error())
}
