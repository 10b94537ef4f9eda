package engine_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// -m: a container that needs more is killed by the kernel's OOM killer,
// and inspect and ps say so: OOMKilled, Exited (137).
func TestMemoryLimitOOM(t *testing.T) {
	e := newEnv(t)
	// dd's 64 MiB buffer, filled from /dev/zero, cannot fit in 16 MiB
	// (and this machine has no swap to spill into).
	_, _, code := e.mb("run", "--name", "hog", "-m", "16m", "--network", "none", e.ref, "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
	assert.Equal(t, 137, code)
	r := e.inspect("hog")
	assert.True(t, r.State.OOMKilled, "inspect: OOMKilled")
	assert.Equal(t, 137, r.State.ExitCode)
	assert.Equal(t, int64(16<<20), r.Config.Memory)
	assert.Regexp(t, `(?m)^`+r.ID[:12]+`\s.*\sExited \(137\) .* ago\s+hog$`, e.ok("ps", "-a"))

	// The same without the limit is no OOM kill.
	_, _, code = e.mb("run", "--name", "fits", "--network", "none", e.ref, "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
	assert.Equal(t, 0, code)
	assert.False(t, e.inspect("fits").State.OOMKilled)
}

// --pids-limit, --cpus and -m are the container's cgroup's limits, read in
// the cgroup files of its PID 1; --pids-limit holds inside.
func TestLimitsInCgroup(t *testing.T) {
	e := newEnv(t)
	e.ok("run", "-d", "--name", "limited", "--pids-limit", "12", "--cpus", "0.5", "-m", "48m", "--network", "none", e.ref, "sleep", "1000")
	pid := e.inspect("limited").State.Pid
	files := map[string]string{ // cgroup v1
		"pids/pids.max":                "12",
		"cpu/cpu.cfs_quota_us":         "50000",
		"cpu/cpu.cfs_period_us":        "100000",
		"memory/memory.limit_in_bytes": fmt.Sprint(48 << 20),
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil { // v2
		files = map[string]string{"pids/pids.max": "12", "cpu/cpu.max": "50000 100000", "memory/memory.max": fmt.Sprint(48 << 20)}
	}
	// docker's swap for -m: as much again (memory + swap = 2 × -m), where
	// the kernel accounts swap.
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err == nil {
		files["memory/memory.memsw.limit_in_bytes"] = fmt.Sprint(96 << 20)
	} else if _, err := os.Stat(filepath.Join(cgroupOf(t, pid, "memory"), "memory.swap.max")); err == nil {
		files["memory/memory.swap.max"] = fmt.Sprint(48 << 20)
	}
	for file, want := range files {
		controller, name, _ := strings.Cut(file, "/")
		dir := cgroupOf(t, pid, controller)
		assert.True(t, strings.HasSuffix(dir, "/minibox/"+e.inspect("limited").ID[:12]), "the engine's layout, minibox/<short id>: %s", dir)
		data, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.Equal(t, want, strings.TrimSpace(string(data)), file)
	}
	// The shell itself runs (exec works), but not all of its 20 sleeps:
	// busybox sh says "can't fork" (EAGAIN from the pids controller).
	out, stderr, _ := e.mb("exec", "limited", "sh", "-c", "echo started; for i in $(seq 20); do sleep 1 </dev/null >/dev/null 2>&1 & done")
	assert.Equal(t, "started\n", out, "exec ran the shell in the container: %s", stderr)
	assert.Contains(t, stderr, "can't fork", "12 processes at most: the 20 sleeps cannot all start")
}

// cgroupOf is the directory of pid's cgroup of controller (cgroup v1, the
// hierarchy mounted at /sys/fs/cgroup/<controller>; v2: the unified one).
func cgroupOf(t *testing.T, pid int, controller string) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" { // v2
			if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
				return filepath.Join("/sys/fs/cgroup", parts[2])
			}
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == controller {
				return filepath.Join("/sys/fs/cgroup", controller, parts[2])
			}
		}
	}
	t.Fatalf("process %d has no %s cgroup: %s", pid, controller, data)
	return ""
}
