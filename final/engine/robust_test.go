package engine_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// minibox cgroups are the minibox/<id> groups of the memory controller
// (v1) or the unified tree (v2): one per container with -m.
func miniboxCgroups(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, dir := range []string{"/sys/fs/cgroup/memory/minibox", "/sys/fs/cgroup/minibox"} {
		entries, _ := os.ReadDir(dir)
		for _, d := range entries {
			if d.IsDir() && len(d.Name()) == 12 {
				out = append(out, filepath.Join(dir, d.Name()))
			}
		}
	}
	return out
}

// 50 run --rm with the bridge network and a memory limit leave nothing:
// no mount, cgroup, veth, rule, lease or directory. Each is gone when its
// run returns (the supervisor removes it before it sends the exit status),
// the runtime's state and cgroup too, which the supervisor deletes beside
// the rest of the teardown; but its network (rules, veth, lease), which
// the supervisor releases just after: each next run gets the port and an
// address all the same.
func TestManyRunRmCyclesLeaveNothing(t *testing.T) {
	e := newEnv(t)
	groups := miniboxCgroups(t)
	// ps all along: a record it reads while a --rm container is being
	// removed must not come back as one whose supervisor died.
	stop := make(chan struct{})
	polled := make(chan int)
	go func() {
		n := 0
		defer func() { polled <- n }()
		for {
			select {
			case <-stop:
				return
			default:
				ps := e.command("ps", "-a", "-q") // not e.mb: no require off the test's goroutine
				_ = ps.Run()
				n++
			}
		}
	}()
	const cycles = 50
	start := time.Now()
	for i := 0; i < cycles; i++ {
		out, stderr, code := e.mb("run", "--rm", "--name", "cycle", "-m", "32m", "-p", "18090:80", e.ref, "sh", "-c", "hostname; ip -o -4 addr show eth0 | grep -c 10.89.0")
		require.Equal(t, 0, code, "cycle %d: %s", i, stderr)
		short, count, _ := strings.Cut(out, "\n")
		require.Equal(t, "1\n", count, "cycle %d: the container had its address", i)
		for _, g := range []string{"memory", "pids", "cpu", "unified", ""} {
			require.NoDirExists(t, filepath.Join("/sys/fs/cgroup", g, "minibox", short), "cycle %d: run returned before its cgroup went", i)
		}
		for _, dir := range []string{"engine/containers", "engine/runtime"} {
			entries, _ := os.ReadDir(filepath.Join(e.root, dir))
			require.Empty(t, entries, "cycle %d: run returned before %s was empty", i, dir)
		}
	}
	t.Logf("%d run --rm cycles in %v", cycles, time.Since(start).Round(time.Millisecond))
	close(stop)
	t.Logf("ps -a ran %d times meanwhile", <-polled)
	assert.Empty(t, e.ids())
	assert.Equal(t, groups, miniboxCgroups(t), "cgroups left")
	assert.Eventually(t, func() bool { return len(containerRules(t, "")) == 0 }, 5*time.Second, 20*time.Millisecond, "rules left")
	networkReleased(t, e.root)
}

// 10 run -d at once: 10 containers, each its own name, id and address.
func TestParallelDetachedRuns(t *testing.T) {
	e := newEnv(t)
	const n = 10
	var wg sync.WaitGroup
	errs := make([]string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, stderr, code := minibox(t, e.root, "run", "-d", e.ref, "sleep", "1000")
			if code != 0 {
				errs[i] = stderr
			}
		}(i)
	}
	wg.Wait()
	for i, msg := range errs {
		assert.Empty(t, msg, "run %d", i)
	}
	var list []record
	out := e.ok("ps", "--format", "json")
	require.NoError(t, json.Unmarshal([]byte(out), &list), out)
	require.Len(t, list, n)
	names, ips, ids := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, r := range list {
		assert.Equal(t, "running", r.State.Status)
		names[r.Name], ips[r.Network.IPAddress], ids[r.ID] = true, true, true
	}
	assert.Len(t, names, n, "distinct names")
	assert.Len(t, ips, n, "distinct addresses")
	assert.Len(t, ids, n)
	assert.Len(t, leases(t, e.root), n)
}

// SIGKILL of the CLI of an attached run: the container keeps running
// under its supervisor; ps shows it; rm -f removes it and all it had.
func TestCLIKilledDuringRun(t *testing.T) {
	e := newEnv(t)
	cmd := e.command("run", "--name", "orphan", "-p", "18091:80", e.ref, "sleep", "1000")
	require.NoError(t, cmd.Start())
	r := e.waitStatus("orphan", "running", 10*time.Second)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	time.Sleep(300 * time.Millisecond)
	assert.True(t, alive(r.State.Pid), "the container outlives its CLI")
	assert.True(t, alive(r.State.SupervisorPid))
	assert.Contains(t, e.ok("ps"), "orphan")
	assert.Equal(t, "running", e.inspect("orphan").State.Status)
	assert.Equal(t, "orphan\n", e.ok("rm", "-f", "orphan"))
	assert.False(t, alive(r.State.Pid))
	assert.Eventually(t, func() bool { return !alive(r.State.SupervisorPid) }, 5*time.Second, 20*time.Millisecond)
	// The end of the test checks that nothing of it is left.
}

// SIGKILL of a supervisor: its container dies with it, ps says Exited
// (137), rm removes the record, and `minibox cleanup` removes whatever the
// supervisor could not undo (the test reports what that was).
func TestSupervisorKilled(t *testing.T) {
	e := newEnv(t)
	id := strings.TrimSpace(e.ok("run", "-d", "--name", "victim", "-m", "32m", "-p", "18092:80", e.ref, "sleep", "1000"))
	r := e.inspect("victim")
	t.Cleanup(func() { // the container itself, should the test fail before it is gone
		if alive(r.State.Pid) {
			_ = syscall.Kill(r.State.Pid, syscall.SIGKILL)
		}
	})
	require.NoError(t, syscall.Kill(r.State.SupervisorPid, syscall.SIGKILL))
	require.Eventually(t, func() bool { return !alive(r.State.SupervisorPid) }, 5*time.Second, 20*time.Millisecond)
	// The container dies with its supervisor (Runtime.DeathSignal); the
	// next command that looks (here ps) records it and undoes the rest.
	require.Eventually(t, func() bool { return !alive(r.State.Pid) }, 5*time.Second, 20*time.Millisecond,
		"the container outlived its supervisor")
	psOut := e.ok("ps", "-a")
	assert.Regexp(t, `(?m)^`+id[:12]+`\s.*\sExited \(137\) .* ago\s+(\S+\s+)?victim$`, psOut)
	assert.False(t, alive(r.State.Pid), "ps said Exited: the container's PID 1 is gone")
	after := e.inspect("victim")
	assert.Equal(t, "exited", after.State.Status)
	assert.Equal(t, 137, after.State.ExitCode)
	assert.Contains(t, after.State.Error, "supervisor")

	left := leftovers(t, e, id)
	t.Logf("left after the supervisor's SIGKILL: %v", left)
	assert.Equal(t, "victim\n", e.ok("rm", "victim"))
	left = leftovers(t, e, id)
	t.Logf("left after rm: %v", left)
	out, stderr, code := e.mb("cleanup", "--root", e.root)
	t.Logf("minibox cleanup (%d):\n%s%s", code, out, stderr)
	assert.Equal(t, 0, code)
	assert.Empty(t, leftovers(t, e, id), "left after rm and cleanup")

	// minibox cleanup first, before any command noticed: the container
	// is gone with its supervisor, and cleanup removes what they left;
	// ps then says Exited.
	// (-u: a change of credentials clears the death signal; the runtime's
	// init sets it again.)
	id = strings.TrimSpace(e.ok("run", "-d", "--name", "victim2", "-u", "1000", "-p", "18093:80", e.ref, "sleep", "1000"))
	r = e.inspect("victim2")
	t.Cleanup(func() {
		if alive(r.State.Pid) {
			_ = syscall.Kill(r.State.Pid, syscall.SIGKILL)
		}
	})
	require.NoError(t, syscall.Kill(r.State.SupervisorPid, syscall.SIGKILL))
	require.Eventually(t, func() bool { return !alive(r.State.SupervisorPid) }, 5*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return !alive(r.State.Pid) }, 5*time.Second, 20*time.Millisecond,
		"the container outlived its supervisor")
	out, stderr, code = e.mb("cleanup", "--root", e.root)
	t.Logf("minibox cleanup after a supervisor's SIGKILL (%d):\n%s%s", code, out, stderr)
	assert.Equal(t, 0, code)
	assert.Contains(t, e.ok("ps", "-a"), "Exited (137)")
	e.ok("rm", "victim2")
	assert.Empty(t, leftovers(t, e, id), "left after cleanup and rm")
}

// leftovers lists what of container id is still there.
func leftovers(t *testing.T, e *env, id string) []string {
	t.Helper()
	var out []string
	short := id[:12]
	mountinfo, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mountinfo), id) {
		out = append(out, "mount")
	}
	for _, g := range []string{"memory", "pids", "cpu", "freezer", "devices", "blkio", "cpuset", "cpuacct", "systemd", "unified", ""} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", g, "minibox", short)); err == nil {
			out = append(out, "cgroup "+g)
		}
	}
	if rules := containerRules(t, short); len(rules) > 0 {
		out = append(out, fmt.Sprintf("%d rules", len(rules)))
	}
	for _, v := range veths(t) {
		if strings.HasPrefix(id, strings.TrimPrefix(v, "mbx")) {
			out = append(out, "veth "+v)
		}
	}
	for _, l := range leases(t, e.root) {
		if strings.Contains(l, short) {
			out = append(out, "lease "+l)
		}
	}
	for _, dir := range []string{"engine/containers/" + id, "engine/runtime/" + id, "engine/names/victim"} {
		if _, err := os.Lstat(filepath.Join(e.root, dir)); err == nil {
			out = append(out, dir)
		}
	}
	return out
}
