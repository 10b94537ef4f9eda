package engine_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/testenv"
)

// A detached container's supervisor hands over to a keeper, minibox-keeper
// under the same PID (keep.go): the container's output
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
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", supervisor))
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(filepath.Dir(bin), "minibox-keeper"), exe, "the keeper is minibox-keeper, next to minibox")

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
// the next commands recover as from a killed supervisor: a --rm
// container is removed then.
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

	// A --rm container goes as its keeper would have removed it.
	id = strings.TrimSpace(e.ok("run", "-d", "--rm", e.ref, "sleep", "1000"))
	r = e.inspect(id)
	require.Eventually(t, func() bool { return isKeeper(r.State.SupervisorPid) }, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, syscall.Kill(r.State.SupervisorPid, syscall.SIGKILL))
	require.Eventually(t, func() bool { return !alive(r.State.Pid) }, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, "137\n", e.ok("wait", id), "wait: how it ended")
	assert.NotContains(t, e.ok("ps", "-a", "-q"), id[:12], "the --rm container is removed")
	assert.Empty(t, leftovers(t, e, id), "left after ps")
	_, stderr, code := e.mb("inspect", id)
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "no such container")
}

// A minibox-keeper missing, or of another build, is not used: the
// supervisor's own binary keeps (with more memory), and finishes as well.
func TestKeeperMissingOrOfAnotherBuild(t *testing.T) {
	e := newEnv(t)
	for _, keeper := range []string{"missing", "another build"} {
		t.Run(keeper, func(t *testing.T) {
			dir := t.TempDir()
			for _, name := range []string{"minibox", "minibox-shim", "minibox-init"} {
				copyFile(t, filepath.Join(filepath.Dir(bin), name), filepath.Join(dir, name))
			}
			if keeper == "another build" {
				build := exec.Command("go", "build", "-ldflags=-X github.com/minibox-lab/minibox/final/runtime.SourceID=other",
					"-o", dir+"/", "github.com/minibox-lab/minibox/cmd/minibox-keeper")
				build.Env = append(os.Environ(), testenv.StaticBuild) // only SourceID differs
				out, err := build.CombinedOutput()
				require.NoError(t, err, "%s", out)
			}
			id, supervisor := runKept(t, e, dir, "sleep 1; echo late; exit 7")
			exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", supervisor))
			require.NoError(t, err)
			assert.Equal(t, filepath.Join(dir, "minibox-shim"), exe, "the supervisor's own binary keeps")
			assert.Equal(t, "7\n", e.ok("wait", id), "its keeper's finish tells wait the status")
			assert.Equal(t, "late\n", e.ok("logs", id))
			assert.Equal(t, "exited", e.inspect(id).State.Status)
			e.ok("rm", id)
		})
	}
}

// A keeper's finish that refuses (the supervisor's binary was overwritten
// in place by another build while the container ran) leaves the record
// saying running with no supervisor; the next command recovers it, with
// the status the keeper saw (keeper.Ended), not a killed supervisor's 137.
func TestKeeperWhoseFinishRefusesKeepsTheStatus(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	for _, name := range []string{"minibox", "minibox-shim", "minibox-init", "minibox-keeper"} {
		copyFile(t, filepath.Join(filepath.Dir(bin), name), filepath.Join(dir, name))
	}
	id, _ := runKept(t, e, dir, "sleep 3; exit 7") // time to overwrite the binary first
	// The same file (inode) the keeper holds open to finish with, now
	// another build: minibox's, which would finish too, were it the same.
	copyFile(t, filepath.Join(dir, "minibox"), filepath.Join(dir, "minibox-shim"))
	rec := e.waitStatus(id, "exited", 10*time.Second)
	assert.Equal(t, 7, rec.State.ExitCode, "the container's own status, from its keeper")
	assert.Contains(t, rec.State.Error, "did not finish it")
	_, err := os.Stat(filepath.Join(e.root, "engine", "containers", id, "ended.json"))
	assert.ErrorIs(t, err, os.ErrNotExist, "the status, once recorded, stays behind for a later run")
	e.ok("rm", id)
	assert.Empty(t, leftovers(t, e, id), "left after rm")
}

// runKept runs script detached with the minibox in dir, and returns once
// its supervisor has become its keeper.
func runKept(t *testing.T, e *env, dir, script string) (id string, supervisor int) {
	run := exec.Command(filepath.Join(dir, "minibox"), "run", "-d", e.ref, "sh", "-c", script)
	run.Env = append(os.Environ(), "MINIBOX_ROOT="+e.root)
	out, err := run.Output()
	require.NoError(t, err)
	id = strings.TrimSpace(string(out))
	supervisor = e.inspect(id).State.SupervisorPid
	require.Eventually(t, func() bool { return isKeeper(supervisor) }, 5*time.Second, 20*time.Millisecond)
	return id, supervisor
}

func copyFile(t *testing.T, from, to string) {
	data, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, data, 0o755))
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

// A supervisor holds its container's mount namespace open while the
// container runs (its end then runs after the exit frame, not in the
// init's exit, before wait4 returns: supervise.go holdMountNamespace); a
// keeper does not (the descriptor is closed on execve).
func TestSupervisorHoldsTheMountNamespace(t *testing.T) {
	e := newEnv(t)
	attached := e.command("run", "--name", "attached", "--network", "none", e.ref, "sleep", "3")
	require.NoError(t, attached.Start())
	defer func() { _ = attached.Wait() }()
	require.Eventually(t, func() bool {
		_, _, code := e.mb("inspect", "attached")
		return code == 0 && e.inspect("attached").State.Pid > 0
	}, 10*time.Second, 20*time.Millisecond)
	r := e.inspect("attached")
	assert.True(t, holds(t, r.State.SupervisorPid, r.State.Pid), "the supervisor does not hold the container's mount namespace")

	id := strings.TrimSpace(e.ok("run", "-d", "--network", "none", e.ref, "sleep", "100"))
	d := e.inspect(id)
	require.Eventually(t, func() bool { return isKeeper(d.State.SupervisorPid) }, 5*time.Second, 20*time.Millisecond)
	assert.False(t, holds(t, d.State.SupervisorPid, d.State.Pid), "the keeper holds the container's mount namespace")
	e.ok("rm", "-f", id)
	require.NoError(t, attached.Wait())
}

// holds reports whether process holder has a descriptor of process pid's
// mount namespace.
func holds(t *testing.T, holder, pid int) bool {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	require.NoError(t, err)
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", holder))
	require.NoError(t, err)
	for _, fd := range fds {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", holder, fd.Name())); target == ns {
			return true
		}
	}
	return false
}

// When `run` returns, its container is finished: the supervisor lets go
// of supervisor.lock before the exit frame, so the next command finds the
// container exited, not still supervised (its mount namespace ends after).
func TestRunReturnsWithTheContainerFinished(t *testing.T) {
	e := newEnv(t)
	containers := filepath.Join(e.root, "engine", "containers")
	for i := range 5 {
		before, err := os.ReadDir(containers)
		if !os.IsNotExist(err) {
			require.NoError(t, err)
		}
		e.ok("run", "--name", fmt.Sprintf("finished%d", i), "--network", "none", e.ref, "true")
		after, err := os.ReadDir(containers)
		require.NoError(t, err)
		require.Len(t, after, len(before)+1)
		for _, d := range after {
			lock, err := os.Open(filepath.Join(containers, d.Name(), "supervisor.lock"))
			require.NoError(t, err)
			err = syscall.Flock(int(lock.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
			lock.Close()
			require.NoError(t, err, "run has returned, and %.12s's supervisor still holds its lock", d.Name())
		}
	}
}
