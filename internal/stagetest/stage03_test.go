package stagetest

// Stage 03 adds cgroups: memory, CPU and process limits. The same tests run
// on this cgroup v1/hybrid host and, for the cgroup v2 code path, inside a
// throw-away VM with a v2-only kernel:
//
//	scripts/cgroupv2-vm/run.sh ./internal/stagetest -test.run Stage03 -test.v
//
// The stage finds out at run time where each controller lives, and so do
// the tests (cgTree), to know which files to read back.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/internal/testenv"
)

// All three limits are in the group's files while the container runs, the
// command itself is in the group in every tree it needs (v1 has one tree
// per controller, and missing one would leave that resource unlimited),
// and the groups are gone afterwards.
func TestStage03LimitsAreWrittenAndJoined(t *testing.T) {
	stage := needStage(t, "03")
	c := startCgContainer(t, stage, []string{"--memory", "64m", "--cpus", "0.5", "--pids-limit", "20"}, "exit 0")
	groups := c.groups(t, "memory", "cpu", "pids")
	for _, c := range []string{"memory", "cpu", "pids"} {
		t.Logf("%s: %s (v2: %v)", c, groups[c].dir, groups[c].v2)
	}

	if g := groups["memory"]; g.v2 {
		assert.Equal(t, "67108864", g.read(t, "memory.max"))
	} else {
		assert.Equal(t, "67108864", g.read(t, "memory.limit_in_bytes"))
	}
	if g := groups["cpu"]; g.v2 {
		assert.Equal(t, "50000 100000", g.read(t, "cpu.max"))
	} else {
		assert.Equal(t, "50000", g.read(t, "cpu.cfs_quota_us"))
		assert.Equal(t, "100000", g.read(t, "cpu.cfs_period_us"))
	}
	assert.Equal(t, "20", groups["pids"].read(t, "pids.max"))
	for _, g := range groups {
		assert.NotEmpty(t, g.read(t, "cgroup.procs"), "no process in %s", g.dir)
	}

	res := c.finish(t)
	assert.Equal(t, 0, res.code, res.stderr)
	for _, g := range groups {
		assert.NoDirExists(t, g.dir, "the group must be removed after the exit")
	}
}

// --memory takes docker's formats: a number with an optional unit b, k, m,
// g (any case, optionally followed by b or ib), decimals allowed.
func TestStage03MemoryFormats(t *testing.T) {
	stage := needStage(t, "03")
	for value, bytes := range map[string]string{
		"512k":     "524288",
		"64m":      "67108864",
		"64MB":     "67108864",
		"1.5g":     "1610612736",
		"1GiB":     "1073741824",
		"67108864": "67108864",
	} {
		c := startCgContainer(t, stage, []string{"--memory", value}, "exit 0")
		g := c.groups(t, "memory")["memory"]
		file := "memory.limit_in_bytes"
		if g.v2 {
			file = "memory.max"
		}
		assert.Equal(t, bytes, g.read(t, file), "--memory %s", value)
		res := c.finish(t)
		assert.Equal(t, 0, res.code, res.stderr)
	}
}

// A busybox shell forks `sleep`s until pids.max stops it: the shell is
// process 1 of 20, so the 20th process is the last one. (pids.max counts
// threads too, which is why the test uses busybox sh: a Go program needs
// several threads to live.)
func TestStage03PidsLimitStopsAForkLoop(t *testing.T) {
	stage := needStage(t, "03")
	before := cgGroupDirs()
	// Bounded at 40, so that a missing limit could not become a fork bomb.
	script := `i=1; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); echo "process $i"; done`
	res := run(t, stage, "run", "--pids-limit", "20", rootfsDir, "--", "sh", "-c", script)

	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	assert.Equal(t, "process 20", lines[len(lines)-1], "stdout: %s", res.stdout)
	assert.Contains(t, res.stderr, "can't fork")
	// busybox sh gives up at the first failed fork, with status 2.
	assert.Equal(t, 2, res.code, res.stderr)
	assert.Empty(t, cgNewGroupDirs(before), "groups left behind")
}

// A memory hog under --memory 32m is killed by the kernel's OOM killer, and
// the stage says so on stderr besides the exit status (137 = 128+SIGKILL).
// The hog starts only once the test has seen the limit in place.
func TestStage03MemoryHogIsOOMKilledAndReported(t *testing.T) {
	stage := needStage(t, "03")
	c := startCgContainer(t, stage, []string{"--memory", "32m"}, "exec dd if=/dev/zero of=/dev/null bs=64M count=1")
	g := c.groups(t, "memory")["memory"]
	file := "memory.limit_in_bytes"
	if g.v2 {
		file = "memory.max"
	}
	require.Equal(t, "33554432", g.read(t, file), "the limit must be in place before the hog runs")

	res := c.finish(t)
	assert.Equal(t, 137, res.code, res.stderr)
	assert.Contains(t, res.stderr, "out of memory")
	assert.Contains(t, res.stderr, "oom_kill 1")
	assert.NoDirExists(t, g.dir)

	// Within the limit: no kill, and no message.
	res = run(t, stage, "run", "--memory", "32m", rootfsDir, "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=8M", "count=1")
	assert.Equal(t, 0, res.code, res.stderr)
	assert.NotContains(t, res.stderr, "out of memory")
}

// --cpus 0.25 writes a quota of 25 ms per 100 ms period, and a busy loop
// then gets about a quarter of a CPU: its CPU time over its wall time,
// measured inside by busybox time, stays well below 1 (a loose bound: the
// machines are noisy, and the VM's clock is emulated).
func TestStage03CPUQuotaThrottlesABusyLoop(t *testing.T) {
	stage := needStage(t, "03")
	c := startCgContainer(t, stage, []string{"--cpus", "0.25"},
		`time -f "%e %U %S" timeout 2 sh -c 'while :; do :; done'; exit 0`)
	g := c.groups(t, "cpu")["cpu"]
	if g.v2 {
		assert.Equal(t, "25000 100000", g.read(t, "cpu.max"))
	} else {
		assert.Equal(t, "25000", g.read(t, "cpu.cfs_quota_us"))
		assert.Equal(t, "100000", g.read(t, "cpu.cfs_period_us"))
	}

	res := c.finish(t)
	require.Equal(t, 0, res.code, res.stderr)
	// The last line of busybox time's report: "2.00 0.49 0.01".
	lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
	var wall, user, sys float64
	_, err := fmt.Sscanf(lines[len(lines)-1], "%g %g %g", &wall, &user, &sys)
	require.NoError(t, err, "stderr: %s", res.stderr)
	require.Greater(t, wall, 1.0, "the loop ran for 2 s")
	share := (user + sys) / wall
	t.Logf("busy loop under --cpus 0.25: wall %.2f s, CPU %.2f s: %.0f%% of one CPU", wall, user+sys, 100*share)
	assert.Greater(t, user+sys, 0.0, "the loop did not run")
	assert.Less(t, share, 0.6, "the loop got more than a quarter of a CPU, by far")
	assert.NoDirExists(t, g.dir)
}

// With --userns, root inside is host uid 100000, which may not write to
// the host's cgroup files; the child joins all the same, because the parent
// opened them for it. The limits hold: the hog is OOM-killed.
func TestStage03LimitsApplyWithUserNamespace(t *testing.T) {
	stage := needStage(t, "03")
	cgAllowContainerRoot(t)
	c := startCgContainer(t, stage, []string{"--userns", "--memory", "32m", "--pids-limit", "20"},
		"exec dd if=/dev/zero of=/dev/null bs=64M count=1")
	groups := c.groups(t, "memory", "pids")
	file := "memory.limit_in_bytes"
	if groups["memory"].v2 {
		file = "memory.max"
	}
	require.Equal(t, "33554432", groups["memory"].read(t, file), "the limit must be in place before the hog runs")
	assert.Equal(t, "20", groups["pids"].read(t, "pids.max"))

	res := c.finish(t)
	assert.Equal(t, 137, res.code, res.stderr)
	assert.Contains(t, res.stderr, "out of memory")
	for _, g := range groups {
		assert.NoDirExists(t, g.dir)
	}
}

// A bad value is an error before anything is made: no group, and the
// command does not run.
func TestStage03BadInputIsAClearError(t *testing.T) {
	assertBadInputIsAClearError(t, needStage(t, "03"))
}

func TestStage03BadLimitsAreClearErrors(t *testing.T) {
	stage := needStage(t, "03")
	before := cgGroupDirs()
	marker := filepath.Join(rootfsDir, "tmp", "stage03-ran")
	for _, bad := range [][2]string{
		{"memory", "10XB"}, {"memory", "0"}, {"memory", "-5m"},
		{"cpus", "half"}, {"cpus", "0"}, {"cpus", "1000"},
		{"pids-limit", "0"}, {"pids-limit", "ten"},
	} {
		res := run(t, stage, "run", "--"+bad[0], bad[1], rootfsDir, "--", "touch", "/tmp/stage03-ran")
		assert.Equal(t, 2, res.code, "--%s %s: %s", bad[0], bad[1], res.stderr)
		assert.Contains(t, res.stderr, bad[0], "the error names the flag")
		assert.Contains(t, res.stderr, bad[1], "the error names the value")
		assert.NoFileExists(t, marker, "--%s %s: the command ran", bad[0], bad[1])
		os.Remove(marker)
	}
	assert.Empty(t, cgNewGroupDirs(before), "a bad value created a group")
}

// When the command cannot start, the groups are removed all the same.
func TestStage03RemovesGroupsWhenTheCommandFails(t *testing.T) {
	stage := needStage(t, "03")
	before := cgGroupDirs()
	res := run(t, stage, "run", "--memory", "32m", "--cpus", "0.5", "--pids-limit", "20", rootfsDir, "--", "no-such-command")
	assert.Equal(t, 127, res.code, res.stderr)
	assert.Empty(t, cgNewGroupDirs(before), "groups left behind")
}

// A group outlives the process that made it, so the stage must not die
// before removing it: SIGTERM or Ctrl-C (SIGINT) to the stage kills the
// container (137 = 128+SIGKILL), and its groups are removed all the same.
func TestStage03SignalEndsContainerAndRemovesGroups(t *testing.T) {
	stage := needStage(t, "03")
	for _, sig := range []unix.Signal{unix.SIGTERM, unix.SIGINT} {
		c := startCgContainer(t, stage, []string{"--memory", "32m", "--pids-limit", "20"}, "exec sleep 60")
		groups := c.groups(t, "memory", "pids")
		c.release(t, "go")
		require.NoError(t, c.cmd.Process.Signal(sig))
		res := c.wait(t)
		assert.Equal(t, 137, res.code, "%v: %s", sig, res.stderr)
		for _, g := range groups {
			assert.NoDirExists(t, g.dir, "%v: the group must be removed", sig)
		}
	}
}

// On cgroup v2 a child group can use a controller only if the root group
// enables it for its children. systemd hosts do; on a bare machine the
// stage adds it — the one write it makes to a group it did not create.
// Only in the throw-away cgroup v2 VM, since it changes the root group.
func TestStage03EnablesAMissingControllerInTheV2Root(t *testing.T) {
	if os.Getenv("MINIBOX_IN_V2VM") != "1" {
		t.Skip("only in the cgroup v2 VM (scripts/cgroupv2-vm/run.sh): it changes the root cgroup")
	}
	stage := needStage(t, "03")
	root, v2 := cgTree(t, "cpu")
	require.True(t, v2, "the VM's cpu controller is on cgroup v2")
	control := filepath.Join(root, "cgroup.subtree_control")
	enabled := func() []string {
		b, err := os.ReadFile(control)
		require.NoError(t, err)
		return strings.Fields(string(b))
	}
	require.NoError(t, os.WriteFile(control, []byte("-cpu"), 0)) // echo -cpu > cgroup.subtree_control
	t.Cleanup(func() { _ = os.WriteFile(control, []byte("+cpu"), 0) })
	require.NotContains(t, enabled(), "cpu")

	c := startCgContainer(t, stage, []string{"--cpus", "0.5"}, "exit 0")
	g := c.groups(t, "cpu")["cpu"]
	assert.Equal(t, "50000 100000", g.read(t, "cpu.max"))
	assert.Contains(t, enabled(), "cpu", "the stage enables cpu in the root")
	res := c.finish(t)
	assert.Equal(t, 0, res.code, res.stderr)
	assert.NoDirExists(t, g.dir)
}

// --- Helpers ---------------------------------------------------------------------

// cgContainer is a stage run whose command first records its own cgroups and
// then waits for the test to let it go on, so that the test can read the
// group's files while it runs and before the interesting part starts.
type cgContainer struct {
	name           string // prefix of its files in the rootfs's /tmp
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan error
	res            *result
}

// startCgContainer runs `stage run FLAGS ROOTFS -- sh -c SCRIPT`, where SCRIPT
// writes /proc/self/cgroup to /tmp/NAME.cgroup, waits until the test writes
// "go" into the FIFO /tmp/NAME.go, and then runs body.
func startCgContainer(t *testing.T, stage string, flags []string, body string) *cgContainer {
	t.Helper()
	c := &cgContainer{name: fmt.Sprintf("stage03-%d", time.Now().UnixNano()), done: make(chan error, 1)}
	fifo := c.file("go")
	// Readable by others: with --userns, root inside is not the host's root.
	require.NoError(t, unix.Mkfifo(fifo, 0o644))
	t.Cleanup(func() {
		if c.res == nil { // the test stopped early: end the container cleanly
			c.release(t, "stop")
			c.wait(t)
		}
		os.Remove(fifo)
		os.Remove(c.file("cgroup"))
	})

	script := fmt.Sprintf(`cat /proc/self/cgroup >/tmp/%[1]s.cgroup; read go </tmp/%[1]s.go; [ "$go" = go ] || exit 99; %[2]s`, c.name, body)
	args := append(append([]string{"run"}, flags...), rootfsDir, "--", "sh", "-c", script)
	c.cmd = exec.Command(stage, args...)
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	require.NoError(t, c.cmd.Start())
	go func() { c.done <- c.cmd.Wait() }()
	return c
}

// cgAllowContainerRoot lets host uid 100000, root inside --userns, reach
// the test rootfs: the directories above it get o+x until the test ends.
func cgAllowContainerRoot(t *testing.T) {
	t.Helper()
	info, err := os.Stat("/")
	require.NoError(t, err)
	testenv.Require(t, info.Mode().Perm()&0o001 != 0, "--userns needs / searchable by others")
	for dir := filepath.Dir(rootfsDir); dir != "/" && dir != "."; dir = filepath.Dir(dir) {
		info, err := os.Stat(dir)
		require.NoError(t, err)
		if mode, d := info.Mode().Perm(), dir; mode&0o001 == 0 {
			require.NoError(t, os.Chmod(d, mode|0o001))
			t.Cleanup(func() { _ = os.Chmod(d, mode) })
		}
	}
}

// file is the host path of the container's file /tmp/NAME.suffix.
func (c *cgContainer) file(suffix string) string {
	return filepath.Join(rootfsDir, "tmp", c.name+"."+suffix)
}

// A cgGroup is one of the container's cgroup directories on the host.
type cgGroup struct {
	dir string
	v2  bool
}

func (g cgGroup) read(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(g.dir, file))
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

// groups waits until the command inside has recorded its cgroups and
// returns, for each controller, the group the command is in. Each must be
// under minibox/.
func (c *cgContainer) groups(t *testing.T, controllers ...string) map[string]cgGroup {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, _ := os.ReadFile(c.file("cgroup"))
		if found, ok := cgParseProcCgroup(t, string(data), controllers); ok {
			for ctrl, g := range found {
				require.Contains(t, g.dir, "/minibox/", "the command's %s cgroup", ctrl)
				require.DirExists(t, g.dir)
			}
			return found
		}
		select {
		case err := <-c.done:
			c.done <- err
			t.Fatalf("the container ended early (%v)\nstdout: %s\nstderr: %s", err, &c.stdout, &c.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container did not record its cgroups in 30 s\n/tmp/%s.cgroup: %q", c.name, data)
		}
	}
}

// cgParseProcCgroup reads /proc/PID/cgroup ("4:memory:/minibox/ID" on v1,
// "0::/minibox/ID" on v2) into host directories, if it has every
// controller asked for.
func cgParseProcCgroup(t *testing.T, data string, controllers []string) (map[string]cgGroup, bool) {
	paths := map[string]string{} // controller, or "" for v2 → path
	for _, line := range strings.Split(data, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			paths[""] = parts[2]
		}
		for _, ctrl := range strings.Split(parts[1], ",") {
			paths[ctrl] = parts[2]
		}
	}
	found := map[string]cgGroup{}
	for _, ctrl := range controllers {
		mount, v2 := cgTree(t, ctrl)
		key := ctrl
		if v2 {
			key = ""
		}
		path, ok := paths[key]
		if !ok {
			return nil, false
		}
		found[ctrl] = cgGroup{dir: filepath.Join(mount, path), v2: v2}
	}
	return found, true
}

// cgTree says where controller is mounted and whether that is cgroup
// v2: on the v2 tree if its cgroup.controllers lists it, else on the v1
// tree whose mount options name it (from /proc/self/mountinfo).
func cgTree(t *testing.T, controller string) (mount string, v2 bool) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	v1 := ""
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, _ := strings.Cut(line, " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(tail) < 3 {
			continue
		}
		switch tail[0] {
		case "cgroup2":
			ctrls, _ := os.ReadFile(filepath.Join(fields[4], "cgroup.controllers"))
			for _, c := range strings.Fields(string(ctrls)) {
				if c == controller {
					return fields[4], true
				}
			}
		case "cgroup":
			for _, c := range strings.Split(tail[2], ",") {
				if c == controller && v1 == "" {
					v1 = fields[4]
				}
			}
		}
	}
	require.NotEmpty(t, v1, "no cgroup tree has the %s controller", controller)
	return v1, false
}

// release writes word into the container's FIFO, which its script reads:
// "go" to go on, anything else to exit. It gives up if the container has
// ended or does not open the FIFO within 30 s.
func (c *cgContainer) release(t *testing.T, word string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Non-blocking: ENXIO until the script has opened its end.
		f, err := os.OpenFile(c.file("go"), os.O_WRONLY|unix.O_NONBLOCK, 0)
		if err == nil {
			_, err = f.WriteString(word + "\n")
			f.Close()
			require.NoError(t, err)
			return
		}
		if !errors.Is(err, unix.ENXIO) {
			t.Fatalf("open FIFO: %v", err)
		}
		select {
		case err := <-c.done:
			c.done <- err
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Errorf("the container never opened its FIFO")
			return
		}
	}
}

// finish lets the container go on and waits for it.
func (c *cgContainer) finish(t *testing.T) result {
	t.Helper()
	c.release(t, "go")
	return c.wait(t)
}

// wait waits (at most a minute) for the stage to exit.
func (c *cgContainer) wait(t *testing.T) result {
	t.Helper()
	var err error
	select {
	case err = <-c.done:
	case <-time.After(time.Minute):
		_ = c.cmd.Process.Kill()
		err = <-c.done
		t.Errorf("the container did not exit within a minute")
	}
	res := result{stdout: c.stdout.String(), stderr: c.stderr.String()}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		res.code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("wait: %v", err)
	}
	c.res = &res
	return res
}

// cgGroupDirs lists the groups under every minibox/ parent, in every tree.
func cgGroupDirs() []string {
	var dirs []string
	for _, pattern := range []string{"/sys/fs/cgroup/minibox/*", "/sys/fs/cgroup/*/minibox/*"} {
		matches, _ := filepath.Glob(pattern)
		for _, m := range matches {
			if info, err := os.Stat(m); err == nil && info.IsDir() {
				dirs = append(dirs, m)
			}
		}
	}
	sort.Strings(dirs)
	return dirs
}

// cgNewGroupDirs returns the groups that exist now but not in before.
func cgNewGroupDirs(before []string) []string {
	var extra []string
	for _, d := range cgGroupDirs() {
		if i := sort.SearchStrings(before, d); i == len(before) || before[i] != d {
			extra = append(extra, d)
		}
	}
	return extra
}
