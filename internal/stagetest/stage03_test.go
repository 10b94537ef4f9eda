package stagetest

// Stage 03 adds cgroups: memory, CPU and process limits. The same tests run
// on this cgroup v1/hybrid host and, for the cgroup v2 code path, inside a
// throw-away VM with a v2-only kernel:
//
//	scripts/cgroupv2-vm/run.sh ./internal/stagetest -test.run Stage03 -test.v
//
// Each test runs on stage 03 and every later stage (forEachStage), as a
// subtest named after the stage; `-test.run /stage03` runs the inherited
// properties of every stage on stage 03 (and, whole, the few tests that
// have no subtests).
//
// The stage finds out at run time where each controller lives, and so do
// the tests (cgTree), to know which files to read back.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/internal/cleanup"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// All three limits are in the group's files while the container runs, the
// command itself is in the group in every tree it needs (v1 has one tree
// per controller, and missing one would leave that resource unlimited),
// and the groups are gone afterwards.
func TestStage03LimitsAreWrittenAndJoined(t *testing.T) {
	forEachStage(t, "03", func(t *testing.T, stage string) {
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
	})
}

// --memory takes docker's formats: a number with an optional unit b, k, m,
// g (any case, optionally followed by b or ib), decimals allowed.
func TestStage03MemoryFormats(t *testing.T) {
	forEachStage(t, "03", func(t *testing.T, stage string) {
		for value, bytes := range map[string]string{
			"40960k":   "41943040", // enough for the shell to run: the limit holds swap too
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
	})
}

// A busybox shell forks `sleep`s until pids.max stops it: the shell is
// process 1 of 20, so the 20th process is the last one. (pids.max counts
// threads too, which is why the test uses busybox sh: a Go program needs
// several threads to live.)
func TestStage03PidsLimitStopsAForkLoop(t *testing.T) {
	forEachStage(t, "03", func(t *testing.T, stage string) {
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
	})
}

// A memory hog under --memory 32m is killed by the kernel's OOM killer, and
// the stage says so on stderr besides the exit status (137 = 128+SIGKILL).
// The hog starts only once the test has seen the limit in place.
func TestStage03MemoryHogIsOOMKilledAndReported(t *testing.T) {
	forEachStage(t, "03", func(t *testing.T, stage string) {
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
	})
}

// --cpus 0.25 writes a quota of 25 ms per 100 ms period, and a busy loop
// then gets about a quarter of a CPU: its CPU time over its wall time,
// measured inside by busybox time, stays well below 1 (a loose bound: the
// machines are noisy, and the VM's clock is emulated).
func TestStage03CPUQuotaThrottlesABusyLoop(t *testing.T) {
	forEachStage(t, "03", func(t *testing.T, stage string) {
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
	})
}

// With --userns, root inside is host uid 100000, which may not write to
// the host's cgroup files; the child joins all the same, because the parent
// opened them for it. The limits hold: the hog is OOM-killed.
func TestStage03LimitsApplyWithUserNamespace(t *testing.T) {
	forEachStage(t, "03", func(t *testing.T, stage string) {
		allowContainerRoot(t)
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
	})
}

// A bad value is an error before anything is made: no group, and the
// command does not run.
func TestStage03BadLimitsAreClearErrors(t *testing.T) {
	forEachStage(t, "03", func(t *testing.T, stage string) {
		before, parents := cgGroupDirs(), cgParentDirs()
		for _, bad := range [][2]string{
			{"memory", "10XB"}, {"memory", "0"}, {"memory", "-5m"},
			{"cpus", "half"}, {"cpus", "0"}, {"cpus", "1000"},
			{"pids-limit", "0"}, {"pids-limit", "ten"},
		} {
			res := run(t, stage, "run", "--"+bad[0], bad[1], rootfsDir, "--", "echo", "the command ran")
			assert.Equal(t, 2, res.code, "--%s %s: %s", bad[0], bad[1], res.stderr)
			// The first line is the error, naming the flag and the value; the
			// usage, which names every flag, follows it.
			first, rest, _ := strings.Cut(res.stderr, "\n")
			assert.Contains(t, first, fmt.Sprintf("invalid value %q for flag -%s: ", bad[1], bad[0]))
			assert.True(t, strings.HasPrefix(rest, "usage:"), "the usage follows the error: %s", res.stderr)
			assert.NotContains(t, res.stdout, "the command ran", "--%s %s", bad[0], bad[1])
		}
		assert.Empty(t, cgNewGroupDirs(before), "a bad value created a group")
		assert.Equal(t, parents, cgParentDirs(), "a bad value created a minibox/ parent")
	})
}

// When the command cannot start, the groups are removed all the same.
func TestStage03RemovesGroupsWhenTheCommandFails(t *testing.T) {
	forEachStage(t, "03", func(t *testing.T, stage string) {
		before := cgGroupDirs()
		res := run(t, stage, "run", "--memory", "32m", "--cpus", "0.5", "--pids-limit", "20", rootfsDir, "--", "no-such-command")
		assert.Equal(t, 127, res.code, res.stderr)
		assert.Empty(t, cgNewGroupDirs(before), "groups left behind")
	})
}

// A group outlives the process that made it, so the stage must not die
// before removing it: SIGTERM or Ctrl-C (SIGINT) to the stage kills the
// container (137 = 128+SIGKILL), and its groups are removed all the same,
// even while more of the same signal keep coming.
func TestStage03SignalEndsContainerAndRemovesGroups(t *testing.T) {
	forEachStage(t, "03", func(t *testing.T, stage string) {
		for _, sig := range []unix.Signal{unix.SIGTERM, unix.SIGINT} {
			c := startCgContainer(t, stage, []string{"--memory", "32m", "--pids-limit", "20"}, "exec sleep 60")
			groups := c.groups(t, "memory", "pids")
			c.release(t, "go")
			require.NoError(t, c.cmd.Process.Signal(sig))
			// More, as fast as they go, until the stage has ended: some arrive
			// while it removes the groups, and must not cut that short.
			stop := time.After(30 * time.Second)
		more:
			for {
				select {
				case <-c.ended:
					break more
				case <-stop:
					break more
				default:
					_ = c.cmd.Process.Signal(sig) // an error once the stage has ended
				}
			}
			res := c.wait(t)
			assert.Equal(t, 137, res.code, "%v: %s", sig, res.stderr)
			for _, g := range groups {
				assert.NoDirExists(t, g.dir, "%v: the group must be removed", sig)
			}
		}
	})
}

// The same when PID 1 has changed its credentials (su), and under nohup
// (assertSignalEndsContainer, stage02_test.go): no group is left either.
func TestStage03SignalEndsContainerAfterSu(t *testing.T) {
	forEachStage(t, "03", func(t *testing.T, stage string) {
		before := cgGroupDirs()
		assertSignalEndsContainer(t, stage, "--pids-limit", "20")
		assert.Empty(t, cgNewGroupDirs(before), "groups left behind")
	})
}

// Without a limit there is nothing to limit: no group at all, not even the
// minibox/ parent, and the command stays in the stage's own groups.
func TestStage03NoLimitsNoCgroup(t *testing.T) {
	forEachStage(t, "03", func(t *testing.T, stage string) {
		before, parents := cgGroupDirs(), cgParentDirs()
		c := startContainer(t, stage, "run", rootfsDir, "--", "sh", "-c", "cat /proc/self/cgroup; echo ready; exec sleep 60")
		c.waitFor(t, "ready")
		assert.Equal(t, before, cgGroupDirs(), "a run without limits made a cgroup")
		assert.Equal(t, parents, cgParentDirs(), "a run without limits made a minibox/ parent")
		c.kill(t)
		res := c.wait(t)
		assert.NotEmpty(t, res.stdout)
		assert.NotContains(t, res.stdout, "minibox", "the command is in a minibox group")
	})
}

// Without --hostname, the hostname inside is the container's id, which
// also names its group minibox/<id>: `hostname` tells which group is its
// own. With --hostname, the group keeps a random id.
func TestStage03HostnameIsTheCgroupID(t *testing.T) {
	forEachStage(t, "03", func(t *testing.T, stage string) {
		res := run(t, stage, "run", "--pids-limit", "20", rootfsDir, "--", "sh", "-c", "hostname; cat /proc/self/cgroup")
		require.Equal(t, 0, res.code, res.stderr)
		hostname, cgroups, _ := strings.Cut(res.stdout, "\n")
		require.Regexp(t, `^[0-9a-f]{12}$`, hostname)
		assert.Regexp(t, `(?m):/minibox/`+hostname+`$`, cgroups)

		res = run(t, stage, "run", "--pids-limit", "20", "--hostname", "box", rootfsDir, "--", "sh", "-c", "hostname; cat /proc/self/cgroup")
		require.Equal(t, 0, res.code, res.stderr)
		hostname, cgroups, _ = strings.Cut(res.stdout, "\n")
		assert.Equal(t, "box", hostname)
		assert.Regexp(t, `(?m):/minibox/[0-9a-f]{12}$`, cgroups)
	})
}

// On cgroup v2 a child group can use a controller only if the root group
// enables it for its children. systemd hosts do; where the root does not,
// the stage says how to enable it and makes nothing: the root group is the
// host's, and minibox never writes into a group it did not create.
// Only in the throw-away cgroup v2 VM, since the test changes the root group.
func TestStage03ControllerMissingInTheV2RootIsAClearError(t *testing.T) {
	// The Makefile runs it only there (test-go leaves it out): on a real
	// host it would change the host's root group.
	testenv.Require(t, os.Getenv("MINIBOX_IN_V2VM") == "1", "only in the cgroup v2 VM: it changes the root cgroup")
	forEachStage(t, "03", func(t *testing.T, stage string) {
		root, v2 := cgTree(t, "cpu")
		require.True(t, v2, "the VM's cpu controller is on cgroup v2")
		control := filepath.Join(root, "cgroup.subtree_control")
		enabled := func() []string {
			b, err := os.ReadFile(control)
			require.NoError(t, err)
			return strings.Fields(string(b))
		}
		require.Contains(t, enabled(), "cpu", "the VM's /init enables cpu in the root")
		require.NoError(t, os.WriteFile(control, []byte("-cpu"), 0)) // echo -cpu > cgroup.subtree_control
		t.Cleanup(func() {
			// echo +cpu > cgroup.subtree_control: as the VM's /init left it.
			assert.NoError(t, os.WriteFile(control, []byte("+cpu"), 0), "restore cpu in %s", control)
		})
		require.NotContains(t, enabled(), "cpu")

		before := cgGroupDirs()
		res := run(t, stage, "run", "--memory", "32m", "--cpus", "0.5", rootfsDir, "--", "echo", "the command ran")
		assert.Equal(t, 1, res.code, res.stderr)
		assert.Contains(t, res.stderr, "echo +cpu > "+control, "the error names the fix")
		assert.NotContains(t, enabled(), "cpu", "the stage changed the root group")
		assert.Equal(t, before, cgGroupDirs(), "the stage made a group")
		assert.NotContains(t, res.stdout, "the command ran")
	})
}

// With -v the cgroup steps are narrated in their order: before the clone
// the parent makes the groups, writes the limits and opens each group's
// cgroup.procs (fds 3, 4, …); the child joins them (`echo 0 >&3`) as its
// very last steps before the exec, after pivot_root, so that nothing the
// stage itself does is charged to the container; after the exit the parent
// removes the groups.
func TestStage03Narrates(t *testing.T) {
	forEachStage(t, "03", func(t *testing.T, stage string) {
		res := run(t, stage, "run", "-v", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "20",
			rootfsDir, "--", "echo", "narrated")
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, "narrated\n", res.stdout)
		steps := narration(res.stderr)
		all := strings.Join(steps, "\n")
		clone := unshareStep(t, steps, false)
		pivot, exec := indexOf(steps, "+ pivot_root . ."), indexOf(steps, "+ exec echo narrated") // -1 if missing
		require.True(t, clone < pivot && pivot < exec, "clone, pivot_root, exec: in this order:\n%s", all)

		// Before the clone: the limits, and a handle on each group.
		group := `(/sys/fs/cgroup/\S*minibox/[0-9a-f]{12})`
		parent := strings.Join(steps[:clone], "\n")
		assert.Regexp(t, `(?m)^\+ echo 67108864 > `+group+`/(memory\.max|memory\.limit_in_bytes)$`, parent)
		assert.Regexp(t, `(?m)^\+ echo ("50000 100000" > `+group+`/cpu\.max|50000 > `+group+`/cpu\.cfs_quota_us)$`, parent)
		assert.Regexp(t, `(?m)^\+ echo 20 > `+group+`/pids\.max$`, parent)
		handles := map[string]string{} // fd → group
		for _, m := range regexp.MustCompile(`(?m)^\+ exec (\d+)> `+group+`/cgroup\.procs$`).FindAllStringSubmatch(parent, -1) {
			handles[m[1]] = m[2]
			assert.Regexp(t, `(?m)^\+ mkdir (-p )?`+regexp.QuoteMeta(m[2])+`$`, parent, "the group is made before it is opened")
		}
		require.NotEmpty(t, handles, "no `+ exec N> GROUP/cgroup.procs` before the clone:\n%s", all)

		// The joins, one per handle, are the steps right before the exec,
		// so after pivot_root.
		var joins []string
		for fd := range handles {
			joins = append(joins, "+ echo 0 >&"+fd)
		}
		assert.ElementsMatch(t, joins, steps[max(exec-len(handles), 0):exec], "the steps right before the exec:\n%s", all)
		assert.Less(t, pivot, exec-len(handles), "pivot_root comes before the joins:\n%s", all)

		// After the exit: each group removed, and nothing else.
		var removals []string
		for _, g := range handles {
			removals = append(removals, "+ rmdir "+g)
		}
		assert.ElementsMatch(t, removals, withoutContainerRemoval(stage, steps[exec+1:]), "the steps after the exec:\n%s", all)
	})
}

// --- Helpers ---------------------------------------------------------------------

// startCgContainer runs `stage run FLAGS ROOTFS -- sh -c SCRIPT` in the
// background (startContainer), where SCRIPT makes a FIFO /tmp/NAME.go,
// writes /proc/self/cgroup to /tmp/NAME.cgroup, waits until the test writes
// "go" into the FIFO, and then runs body. So the test can read the group's
// files while the container runs and before the interesting part starts.
// The test reaches both files through /proc/PID/root (container.file):
// from stage 04 on, what the container writes lands in its own upper
// layer, not in ROOTFS, and a FIFO is one pipe only as the container's
// file system shows it.
func startCgContainer(t *testing.T, stage string, flags []string, body string) *container {
	t.Helper()
	name := fmt.Sprintf("stage03-%d", time.Now().UnixNano())
	t.Cleanup(func() { // after startContainer's clean-up has ended the container
		// Up to stage 03 the files are the rootfs's own.
		os.Remove(filepath.Join(rootfsDir, "tmp", name+".go"))
		os.Remove(filepath.Join(rootfsDir, "tmp", name+".cgroup"))
	})

	// The FIFO first: once the test sees the cgroup file, the FIFO is there.
	script := fmt.Sprintf(`mkfifo /tmp/%[1]s.go && cat /proc/self/cgroup >/tmp/%[1]s.cgroup || exit 98
read go </tmp/%[1]s.go; [ "$go" = go ] || exit 99; %[2]s`, name, body)
	c := startContainer(t, stage, append(append([]string{"run"}, flags...), rootfsDir, "--", "sh", "-c", script)...)
	c.name = name
	return c
}

// file is the host path of the container's file /tmp/NAME.suffix, through
// /proc/PID/root of its PID 1, or "" while it has none. (Before the
// container's pivot_root that path is the host's /tmp, where no such
// file is.)
func (c *container) file(suffix string) string {
	pid := childOf(c.cmd.Process.Pid)
	if pid == 0 {
		return ""
	}
	return fmt.Sprintf("/proc/%d/root/tmp/%s.%s", pid, c.name, suffix)
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
func (c *container) groups(t *testing.T, controllers ...string) map[string]cgGroup {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var data []byte
		if path := c.file("cgroup"); path != "" {
			data, _ = os.ReadFile(path)
		}
		if found, ok := cgParseProcCgroup(t, string(data), controllers); ok {
			for ctrl, g := range found {
				require.Contains(t, g.dir, "/minibox/", "the command's %s cgroup", ctrl)
				require.DirExists(t, g.dir)
			}
			return found
		}
		select {
		case <-c.ended:
			t.Fatalf("the container ended early (status %d)\nstdout: %s\nstderr: %s", c.res.code, c.res.stdout, c.res.stderr)
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
	for _, m := range cleanup.ParseMountinfo(string(data)) {
		switch m.FSType {
		case "cgroup2":
			ctrls, _ := os.ReadFile(filepath.Join(m.Point, "cgroup.controllers"))
			for _, c := range strings.Fields(string(ctrls)) {
				if c == controller {
					return m.Point, true
				}
			}
		case "cgroup":
			for _, c := range m.SuperOptions {
				if c == controller && v1 == "" {
					v1 = m.Point
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
func (c *container) release(t *testing.T, word string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Non-blocking: ENXIO until the script has opened its end, ENOENT
		// until it has made it (or the container has its root).
		var err error = unix.ENOENT
		if path := c.file("go"); path != "" {
			var f *os.File
			if f, err = os.OpenFile(path, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
				_, err = f.WriteString(word + "\n")
				f.Close()
				require.NoError(t, err)
				return
			}
		}
		if !errors.Is(err, unix.ENXIO) && !errors.Is(err, unix.ENOENT) {
			t.Fatalf("open FIFO: %v", err)
		}
		select {
		case <-c.ended:
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
func (c *container) finish(t *testing.T) result {
	t.Helper()
	c.release(t, "go")
	return c.wait(t)
}

// cgGroupDirs lists the containers' groups, minibox/ID, in every tree.
// (Not the shared minibox/ parents: the stage leaves them in place, as
// docker leaves its own.)
func cgGroupDirs() []string {
	return cgDirs("/sys/fs/cgroup/minibox/*", "/sys/fs/cgroup/*/minibox/*")
}

// cgParentDirs lists the shared minibox/ parents, in every tree.
func cgParentDirs() []string {
	return cgDirs("/sys/fs/cgroup/minibox", "/sys/fs/cgroup/*/minibox")
}

func cgDirs(patterns ...string) []string {
	var dirs []string
	for _, pattern := range patterns {
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
	return newDirs(before, cgGroupDirs())
}

// newDirs returns the directories of now that are not in before (sorted).
func newDirs(before, now []string) []string {
	var extra []string
	for _, d := range now {
		if i := sort.SearchStrings(before, d); i == len(before) || before[i] != d {
			extra = append(extra, d)
		}
	}
	return extra
}
