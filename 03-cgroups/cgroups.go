// cgroups.go — what stage 03 adds: control groups (cgroups(7)), the
// kernel's resource limits. Namespaces decide what a process can see; a
// cgroup decides how much it may use. Lesson 3 explains it.
//
// The kernel shows cgroups as a file system: a directory is a group, the
// files in it are the group's settings and counters, and a process joins a
// group by writing its PID into the group's cgroup.procs. Two versions exist,
// and one machine may mix them:
//
//   - cgroup v2: a single tree, usually mounted at /sys/fs/cgroup; one
//     directory holds memory.max, cpu.max and pids.max together.
//   - cgroup v1: one tree per controller (/sys/fs/cgroup/memory,
//     /sys/fs/cgroup/cpu, /sys/fs/cgroup/pids, ...), so one container is one
//     directory in each tree.
//   - hybrid: the v1 trees, plus a v2 tree (often /sys/fs/cgroup/unified)
//     that holds no or few controllers.
//
// So the stage asks the kernel, per controller, where it lives: on the v2
// tree if the v2 tree lists it, else on the v1 tree mounted for it.
//
// In the order things happen:
//
//  1. parse the limit flags (docker's names and formats)        parse*
//  2. find the cgroup trees in /proc/self/mountinfo             findHierarchies
//  3. create minibox/<id> in each tree, write the limits        createCgroup
//  4. start the child; it joins the group right before exec     passTo, joinCgroup
//  5. after the exit: report an OOM kill, remove the groups     reportOOM, remove
package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// --- 1. The limit flags --------------------------------------------------------

// limits are the resource limits asked for on the command line. Zero means
// the flag was not given: no limit, and no group for that controller.
type limits struct {
	memory    int64  // bytes (--memory 64m)
	memoryArg string // the value as typed, for messages
	cpuQuota  int64  // µs of CPU time per cpuPeriod (--cpus 0.5 → 50000)
	pids      int64  // processes and threads (--pids-limit 20)
}

// cpuPeriod is the length of a CPU accounting period in µs: the kernel's
// default, and what docker uses. --cpus N allows N×cpuPeriod µs per period.
const cpuPeriod = 100000

// addFlags registers docker's flag names for the limits on fs.
func (l *limits) addFlags(fs *flag.FlagSet) {
	fs.Func("memory", "", func(s string) (err error) {
		l.memory, err = parseMemory(s)
		l.memoryArg = s
		return err
	})
	fs.Func("cpus", "", func(s string) (err error) {
		l.cpuQuota, err = parseCPUs(s)
		return err
	})
	fs.Func("pids-limit", "", func(s string) (err error) {
		l.pids, err = parsePids(s)
		return err
	})
}

// memorySize is docker's format (go-units RAMInBytes): a number, then an
// optional binary unit, case-insensitive: 512k, 64m, 64MB, 1.5g, 1GiB, 100b.
var memorySize = regexp.MustCompile(`(?i)^([0-9]+(?:\.[0-9]+)?) ?(b|[kmg](?:i?b)?)?$`)

// parseMemory turns "64m" into 67108864.
func parseMemory(s string) (int64, error) {
	m := memorySize.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size: use a number with an optional unit b, k, m or g (64m, 1g)", s)
	}
	n, _ := strconv.ParseFloat(m[1], 64)
	if unit := strings.ToLower(m[2]); unit != "" {
		n *= map[byte]float64{'b': 1, 'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30}[unit[0]]
	}
	switch {
	case n >= math.MaxInt64/2:
		return 0, fmt.Errorf("%s is too large", s)
	case n < 1:
		return 0, fmt.Errorf("%s: the limit must be above 0 (leave out --memory for no limit)", s)
	}
	return int64(n), nil
}

// parseCPUs turns "0.5" into a quota of 50000 µs per 100000 µs period.
func parseCPUs(s string) (int64, error) {
	cpus, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(cpus) || math.IsInf(cpus, 0) {
		return 0, fmt.Errorf("%q is not a number of CPUs: use a decimal such as 0.5 or 2", s)
	}
	// The kernel refuses a quota below 1 ms (1000 µs), so 0.01 is the
	// smallest share; more CPUs than the machine has limits nothing.
	if n := runtime.NumCPU(); cpus < 0.01 || cpus > float64(n) {
		return 0, fmt.Errorf("%s: the range is 0.01 to %d, as there are %d CPUs", s, n, n)
	}
	return int64(math.Round(cpus * cpuPeriod)), nil
}

// parsePids accepts a positive whole number.
func parsePids(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%q is not a positive whole number (leave out --pids-limit for no limit)", s)
	}
	return n, nil
}

// controllers lists the controllers the limits need, in a fixed order.
func (l limits) controllers() []string {
	var c []string
	if l.memory > 0 {
		c = append(c, "memory")
	}
	if l.cpuQuota > 0 {
		c = append(c, "cpu")
	}
	if l.pids > 0 {
		c = append(c, "pids")
	}
	return c
}

// --- 2. Where the cgroup trees are -----------------------------------------------

// A hierarchy is one mounted cgroup tree.
type hierarchy struct {
	mount string // e.g. /sys/fs/cgroup (v2) or /sys/fs/cgroup/memory (v1)
	v2    bool
}

// findHierarchies returns, for each controller minibox uses, the tree that
// has it. Nothing is hard-coded: /proc/self/mountinfo says where each tree is.
func findHierarchies() (map[string]hierarchy, error) {
	// cat /proc/self/mountinfo — one mount per line, for example
	//   35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
	//   41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
	// field 5 is the mount point; after " - " come the file system type, the
	// source and the super options, which name a v1 tree's controllers
	// (cpu and cpuacct often share one tree: "rw,cpu,cpuacct").
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	found := map[string]hierarchy{}
	v2root := ""
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, _ := strings.Cut(line, " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(tail) < 3 {
			continue
		}
		switch mount := fields[4]; tail[0] {
		case "cgroup2":
			if v2root == "" {
				v2root = mount
			}
		case "cgroup":
			for _, c := range strings.Split(tail[2], ",") {
				if _, seen := found[c]; !seen && isOurs(c) {
					found[c] = hierarchy{mount: mount}
				}
			}
		}
	}
	if v2root != "" {
		// cat /sys/fs/cgroup/cgroup.controllers — the controllers on the v2
		// tree. The kernel lists only those that no v1 tree has taken.
		ctrls, err := os.ReadFile(filepath.Join(v2root, "cgroup.controllers"))
		if err != nil {
			return nil, err
		}
		for _, c := range strings.Fields(string(ctrls)) {
			if isOurs(c) {
				found[c] = hierarchy{mount: v2root, v2: true}
			}
		}
	}
	return found, nil
}

func isOurs(controller string) bool {
	return controller == "memory" || controller == "cpu" || controller == "pids"
}

// --- 3. Create the groups and write the limits -----------------------------------

// A cgroup is one container's group: one directory on cgroup v2, one per
// tree on v1 (e.g. memory/minibox/<id>, cpu/minibox/<id>, pids/minibox/<id>).
type cgroup struct {
	id     string
	limits limits
	tree   map[string]hierarchy // controller → the tree that has it
	dirs   []string             // the directories made, in order
	procs  []*os.File           // their cgroup.procs, open for the child
}

// dir is the group's directory in the tree of controller c.
func (g *cgroup) dir(c string) string {
	return filepath.Join(g.tree[c].mount, "minibox", g.id)
}

// createCgroup makes the group minibox/<id> for the limits and writes
// them; nil if no limit was asked for. On an error it removes what it made.
func createCgroup(id string, l limits) (*cgroup, error) {
	want := l.controllers()
	if len(want) == 0 {
		return nil, nil
	}
	trees, err := findHierarchies()
	if err != nil {
		return nil, fmt.Errorf("find cgroup mounts: %w", err)
	}
	g := &cgroup{id: id, limits: l, tree: map[string]hierarchy{}}
	for _, c := range want {
		h, ok := trees[c]
		if !ok {
			return nil, fmt.Errorf("no cgroup tree has the %s controller: is it enabled in this kernel? (minibox doctor)", c)
		}
		g.tree[c] = h
	}
	err = g.makeDirs(want)
	if err == nil {
		err = g.writeLimits()
	}
	if err == nil {
		err = g.openProcs()
	}
	if err != nil {
		g.remove()
		return nil, err
	}
	return g, nil
}

// makeDirs creates minibox/<id> in each tree the controllers need (once per
// tree: on v2 one directory serves all of them).
func (g *cgroup) makeDirs(controllers []string) error {
	for _, c := range controllers {
		dir := g.dir(c)
		if slices.Contains(g.dirs, dir) {
			continue
		}
		var err error
		if g.tree[c].v2 {
			err = makeV2Group(g.tree[c].mount, dir, g.v2Controllers())
		} else {
			err = makeV1Group(dir)
		}
		if err != nil {
			return err
		}
		g.dirs = append(g.dirs, dir)
	}
	return nil
}

// v2Controllers are the controllers this group uses from the v2 tree.
func (g *cgroup) v2Controllers() []string {
	var v2 []string
	for _, c := range g.limits.controllers() {
		if g.tree[c].v2 {
			v2 = append(v2, c)
		}
	}
	return v2
}

// makeV1Group: on v1 a group is just a directory.
func makeV1Group(dir string) error {
	// mkdir -p /sys/fs/cgroup/memory/minibox/<id>
	return retryIfParentGone(func() error { return os.MkdirAll(dir, 0o755) })
}

// makeV2Group creates root/minibox/<id> with the controllers enabled.
// On v2 a child group gets a controller only if every ancestor lists it in
// cgroup.subtree_control; and a group that enables controllers for its
// children may hold no processes itself — so minibox/ only ever holds groups.
func makeV2Group(root, dir string, controllers []string) error {
	// The root group belongs to the host, and minibox writes only into
	// groups it created. systemd-based machines enable memory, cpu and
	// pids there already; where one is missing (e.g. a bare VM), no group
	// below could limit it: say how to enable it, and make nothing.
	if missing := notEnabled(root, controllers); len(missing) > 0 {
		control := filepath.Join(root, "cgroup.subtree_control")
		return fmt.Errorf("the cgroup v2 root group does not enable %s for the groups below it, "+
			"and minibox never changes the host's root group; enable it as root with: echo %s > %s",
			strings.Join(missing, ", "), plus(missing), control)
	}
	parent := filepath.Dir(dir)
	return retryIfParentGone(func() error {
		// mkdir /sys/fs/cgroup/minibox
		if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		// echo "+memory +cpu +pids" > /sys/fs/cgroup/minibox/cgroup.subtree_control
		if err := writeFile(parent, "cgroup.subtree_control", plus(controllers)); err != nil {
			return err
		}
		// mkdir /sys/fs/cgroup/minibox/<id>
		return os.Mkdir(dir, 0o755)
	})
}

// retryIfParentGone runs make again if the minibox/ parent vanished under
// it: another container's clean-up removes minibox/ when it looks empty.
func retryIfParentGone(make func() error) error {
	err := make()
	for i := 0; i < 5 && errors.Is(err, os.ErrNotExist); i++ {
		err = make()
	}
	return err
}

// notEnabled returns the controllers not in dir's cgroup.subtree_control.
func notEnabled(dir string, controllers []string) []string {
	// cat /sys/fs/cgroup/cgroup.subtree_control — e.g. "cpu memory pids"
	data, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	on := strings.Fields(string(data))
	var missing []string
	for _, c := range controllers {
		if !slices.Contains(on, c) {
			missing = append(missing, c)
		}
	}
	return missing
}

// plus turns [memory cpu] into "+memory +cpu".
func plus(controllers []string) string {
	return "+" + strings.Join(controllers, " +")
}

// writeLimits writes each limit into its controller's file.
func (g *cgroup) writeLimits() error {
	l := g.limits
	var err error
	set := func(c, file, value string) {
		if err == nil {
			err = writeFile(g.dir(c), file, value)
		}
	}
	if l.memory > 0 {
		n := strconv.FormatInt(l.memory, 10)
		d := g.dir("memory")
		if g.tree["memory"].v2 {
			set("memory", "memory.max", n) // echo 67108864 > memory.max
			// No swap on top of the limit (docker: --memory-swap equal to
			// --memory), so a process over the limit is OOM-killed rather
			// than pushed out to swap. The file exists only with swap support.
			if exists(d, "memory.swap.max") {
				set("memory", "memory.swap.max", "0") // echo 0 > memory.swap.max
			}
		} else {
			set("memory", "memory.limit_in_bytes", n) // echo 67108864 > memory.limit_in_bytes
			// v1 limits memory+swap together; same value = no swap. It must
			// come second: the kernel keeps memsw ≥ the memory limit.
			if exists(d, "memory.memsw.limit_in_bytes") {
				set("memory", "memory.memsw.limit_in_bytes", n) // echo 67108864 > memory.memsw.limit_in_bytes
			}
		}
	}
	if l.cpuQuota > 0 {
		q, p := strconv.FormatInt(l.cpuQuota, 10), strconv.Itoa(cpuPeriod)
		if g.tree["cpu"].v2 {
			set("cpu", "cpu.max", q+" "+p) // echo "50000 100000" > cpu.max
		} else {
			set("cpu", "cpu.cfs_period_us", p) // echo 100000 > cpu.cfs_period_us
			set("cpu", "cpu.cfs_quota_us", q)  // echo 50000 > cpu.cfs_quota_us
		}
	}
	if l.pids > 0 {
		set("pids", "pids.max", strconv.FormatInt(l.pids, 10)) // echo 20 > pids.max (v1 and v2 alike)
	}
	return err
}

// --- 4. The child joins ---------------------------------------------------------

// cgroupFDsEnv tells the child which of its file descriptors are open
// cgroup.procs files (e.g. "3 4 5").
const cgroupFDsEnv = "MINIBOX_CGROUP_FDS"

// openProcs opens each group's cgroup.procs for the child to write into
// (see passTo). The parent opens them, not the child: the kernel checks
// the right to move a process against whoever opened the file, here root
// in the host's namespaces — with --userns, container root (host uid
// 100000) could not open them itself. And the child then needs no
// /sys/fs/cgroup after it has changed its root.
func (g *cgroup) openProcs() error {
	for _, dir := range g.dirs {
		// exec 3> /sys/fs/cgroup/.../minibox/<id>/cgroup.procs
		f, err := os.OpenFile(filepath.Join(dir, "cgroup.procs"), os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		g.procs = append(g.procs, f)
	}
	return nil
}

// passTo hands the open cgroup.procs files to the child cmd, before it is
// started: they become its file descriptors 3, 4, ... and
// $MINIBOX_CGROUP_FDS names them. g may be nil (no limits).
func (g *cgroup) passTo(cmd *exec.Cmd) {
	if g == nil {
		return
	}
	var fds []string
	for _, f := range g.procs {
		cmd.ExtraFiles = append(cmd.ExtraFiles, f)
		fds = append(fds, strconv.Itoa(2+len(cmd.ExtraFiles)))
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, cgroupFDsEnv+"="+strings.Join(fds, " "))
}

// joinCgroup is the child's last step before it execs the command: it
// writes "0" into each cgroup.procs the parent passed. "0" means "the
// process writing this", so it works in a new PID namespace (where our PID
// is 1) and before /proc is mounted. From here on the command, and all it
// starts, is counted and limited: there is no moment when it runs
// unlimited.
//
// Why last and not first: pids.max counts threads, and this Go program has
// several; joining early under a small --pids-limit, the Go runtime would
// fail to start a thread and crash. After exec only the command is left.
func joinCgroup() error {
	fds := strings.Fields(os.Getenv(cgroupFDsEnv))
	os.Unsetenv(cgroupFDsEnv) // not for the command's environment
	for _, s := range fds {
		fd, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%s: bad file descriptor %q", cgroupFDsEnv, s)
		}
		// echo 0 > cgroup.procs — on v1 and v2, this moves every thread
		// of the process (v1's "tasks" file would move only one).
		if _, err := unix.Write(fd, []byte("0")); err != nil {
			return fmt.Errorf("join cgroup: write 0 to cgroup.procs: %w", err)
		}
		unix.Close(fd)
	}
	return nil
}

// --- 5. After the exit ----------------------------------------------------------

// reportOOM tells the user if the kernel's OOM killer killed a process of
// the container: the exit status alone (137, SIGKILL) does not say why.
func (g *cgroup) reportOOM() {
	if g == nil || g.limits.memory == 0 {
		return
	}
	kills, file := g.oomKills()
	if kills > 0 {
		fmt.Fprintf(os.Stderr, "stage03: out of memory: the kernel's OOM killer killed %d process(es) in this container (--memory %s; %s)\n",
			kills, g.limits.memoryArg, file)
	}
}

// oomKills returns how many processes the OOM killer killed in the group,
// and the file and line that say so. (The counter exists since Linux 4.13;
// on v1, memory.failcnt only counts how often usage hit the limit.)
func (g *cgroup) oomKills() (int, string) {
	file := "memory.oom_control" // v1: "oom_kill_disable 0", "under_oom 0", "oom_kill 1"
	if g.tree["memory"].v2 {
		file = "memory.events" // v2: "low 0", "high 0", "max 12", "oom 1", "oom_kill 1"
	}
	// cat memory.events (v2) / memory.oom_control (v1)
	data, _ := os.ReadFile(filepath.Join(g.dir("memory"), file))
	for _, line := range strings.Split(string(data), "\n") {
		if n, ok := strings.CutPrefix(line, "oom_kill "); ok {
			kills, _ := strconv.Atoi(n)
			return kills, file + ": " + line
		}
	}
	return 0, ""
}

// remove deletes the groups, and the minibox/ parent once no other
// container uses it. Groups are removed with rmdir (their files cannot be
// deleted), and only once no process is left in them. A group outlives the
// process that made it, and only this parent knows it: that is why, on
// Ctrl-C or SIGTERM, the parent kills the container and stays to clean up
// (killOnSignal in main.go) instead of dying at once.
func (g *cgroup) remove() {
	if g == nil {
		return
	}
	for _, f := range g.procs {
		f.Close()
	}
	for i := len(g.dirs) - 1; i >= 0; i-- {
		if err := rmdirGroup(g.dirs[i]); err != nil {
			fmt.Fprintf(os.Stderr, "stage03: warning: cannot remove cgroup %s: %v\n", g.dirs[i], err)
		}
		// rmdir /sys/fs/cgroup/.../minibox — fails (EBUSY) while another
		// container has a group there: then that container removes it.
		_ = unix.Rmdir(filepath.Dir(g.dirs[i]))
	}
}

// rmdirGroup removes a group, retrying for a moment (EBUSY) while the
// kernel finishes with the processes that just exited. None can outlive
// the container: when PID 1 of a PID namespace exits, the kernel kills
// the rest of the namespace.
func rmdirGroup(dir string) error {
	var err error
	for i := 0; i < 100; i++ {
		// rmdir /sys/fs/cgroup/.../minibox/<id>
		if err = unix.Rmdir(dir); err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// --- Small helpers ----------------------------------------------------------------

// writeFile writes value into a cgroup file, naming the file in an error
// (the kernel's EINVAL alone does not say which value it refused).
func writeFile(dir, file, value string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
		return fmt.Errorf("echo %q > %s: %w", value, filepath.Join(dir, file), err)
	}
	return nil
}

func exists(dir, file string) bool {
	_, err := os.Stat(filepath.Join(dir, file))
	return err == nil
}
