package main

// Control groups (cgroups(7)), what stage 03 adds: namespaces decide what
// a process can see; a cgroup decides how much it may use. A directory is a
// group, its files are its limits and counters, and a process joins by
// writing its PID into cgroup.procs. cgroup v2 is one tree at
// /sys/fs/cgroup; cgroup v1 has one tree per controller (…/memory, …/cpu,
// …/pids), so a group is a directory in each. Like runc and youki, the
// stage decides once: /sys/fs/cgroup is a cgroup2 file system → v2;
// anything else (v1, or "hybrid": v1 trees plus a v2 tree holding none of
// these controllers) → v1. Lesson 3 explains it.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const cgroupRoot = "/sys/fs/cgroup"

// A setting is one value for one file of one controller; an optional
// file may be missing (the swap limits exist only with swap accounting).
type setting struct {
	controller, file, value string
	optional                bool
}

// settings turns the limits into cgroup files, v2's or v1's.
func (l limits) settings(v2 bool) []setting {
	var s []setting
	if l.memory > 0 {
		n := strconv.FormatInt(l.memory, 10)
		// No swap on top of the limit (docker: --memory-swap = --memory):
		// a process over the limit is OOM-killed, not pushed to swap. v1
		// limits memory+swap together, which must stay ≥ memory: it comes second.
		if v2 {
			s = append(s, setting{"memory", "memory.max", n, false}, setting{"memory", "memory.swap.max", "0", true})
		} else {
			s = append(s, setting{"memory", "memory.limit_in_bytes", n, false}, setting{"memory", "memory.memsw.limit_in_bytes", n, true})
		}
	}
	if l.cpuQuota > 0 {
		q, p := strconv.FormatInt(l.cpuQuota, 10), strconv.Itoa(cpuPeriod)
		if v2 {
			s = append(s, setting{"cpu", "cpu.max", q + " " + p, false})
		} else {
			s = append(s, setting{"cpu", "cpu.cfs_period_us", p, false}, setting{"cpu", "cpu.cfs_quota_us", q, false})
		}
	}
	if l.pids > 0 {
		s = append(s, setting{"pids", "pids.max", strconv.FormatInt(l.pids, 10), false})
	}
	return s
}

// A cgroup is one container's group, minibox/<id>: one directory on v2,
// one in each controller's tree on v1.
type cgroup struct {
	id    string
	v2    bool       // /sys/fs/cgroup is cgroup2
	oom   bool       // a memory limit: the OOM killer may strike
	dirs  []string   // the directories made, in order
	procs []*os.File // their cgroup.procs, open for the child
}

// createCgroup makes the group, writes the limits and opens its
// cgroup.procs; nil if no limit was asked for. On an error it removes what
// it made.
func createCgroup(id string, l limits) (*cgroup, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &fs); err != nil { // stat -fc %T /sys/fs/cgroup
		return nil, fmt.Errorf("statfs %s: %w", cgroupRoot, err)
	}
	g := &cgroup{id: id, v2: fs.Type == unix.CGROUP2_SUPER_MAGIC, oom: l.memory > 0}
	settings := l.settings(g.v2)
	if len(settings) == 0 {
		return nil, nil
	}
	if err := g.create(settings); err != nil {
		g.remove()
		return nil, err
	}
	return g, nil
}

func (g *cgroup) create(settings []setting) error {
	for _, s := range settings {
		dir := filepath.Join(cgroupRoot, s.controller, "minibox", g.id) // v1: a tree per controller
		if g.v2 {
			dir = filepath.Join(cgroupRoot, "minibox", g.id)
		}
		if !slices.Contains(g.dirs, dir) {
			if err := g.mkdir(dir, settings); err != nil {
				return err
			}
		}
		if _, err := os.Stat(filepath.Join(dir, s.file)); s.optional && err != nil {
			continue
		}
		if err := write(dir, s.file, s.value); err != nil {
			return err
		}
	}
	// The parent opens cgroup.procs, not the child: the kernel checks the
	// right to move a process against whoever opened the file, here root
	// in the host's namespaces. Container root (--userns: host uid 100000)
	// could not open it, nor see /sys/fs/cgroup after pivot_root.
	for i, dir := range g.dirs {
		f, err := os.OpenFile(filepath.Join(dir, "cgroup.procs"), os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("open %s/cgroup.procs: %w", dir, err)
		}
		narrate("exec %d> %s/cgroup.procs", 3+i, dir) // the child's fd (passTo)
		g.procs = append(g.procs, f)
	}
	return nil
}

// mkdir makes the group's directory below the shared minibox/ parent.
func (g *cgroup) mkdir(dir string, settings []setting) error {
	parent := filepath.Dir(dir)
	enable := makeParent
	if g.v2 {
		enable = func(parent string) error { return enableControllers(parent, settings) }
	}
	if err := enable(parent); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	narrate("mkdir %s", dir)
	g.dirs = append(g.dirs, dir)
	return nil
}

// makeParent makes minibox/ if it is not there yet. Plain mkdir, not
// mkdir -p: where a v1 controller's tree is not mounted, it fails instead
// of leaving a stray directory on /sys/fs/cgroup's tmpfs.
func makeParent(parent string) error {
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("mkdir %s: %w (is that cgroup tree mounted? minibox doctor)", parent, err)
	}
	narrate("mkdir -p %s", parent)
	return nil
}

// enableControllers lets the groups below minibox/ use the controllers: on
// v2 a group gets a controller only if its parent lists it in
// cgroup.subtree_control, and so on up to the root. The root group is the
// host's, and minibox never writes it: it only says what it lacks.
func enableControllers(parent string, settings []setting) error {
	var controllers []string
	for _, s := range settings {
		if !slices.Contains(controllers, s.controller) {
			controllers = append(controllers, s.controller)
		}
	}
	root := filepath.Join(cgroupRoot, "cgroup.subtree_control")
	enabled, err := os.ReadFile(root) // e.g. "cpu memory pids"
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", root, err)
	}
	for _, c := range controllers {
		if !slices.Contains(strings.Fields(string(enabled)), c) {
			return fmt.Errorf("the cgroup v2 root group does not enable %s for the groups below it, and minibox never changes the host's root group; enable it as root with: echo +%s > %s", c, c, root)
		}
	}
	if err := makeParent(parent); err != nil {
		return err
	}
	return write(parent, "cgroup.subtree_control", "+"+strings.Join(controllers, " +"))
}

// cgroupFDsEnv tells the child which of its file descriptors are open
// cgroup.procs files ("3 4 5").
const cgroupFDsEnv = "MINIBOX_CGROUP_FDS"

// passTo hands the open cgroup.procs files to the child cmd, before it
// starts: they become its file descriptors 3, 4, … g may be nil (no limits).
func (g *cgroup) passTo(cmd *exec.Cmd) {
	if g == nil {
		return
	}
	var fds []string
	for i, f := range g.procs {
		cmd.ExtraFiles = append(cmd.ExtraFiles, f)
		fds = append(fds, strconv.Itoa(3+i))
	}
	cmd.Env = append(cmd.Env, cgroupFDsEnv+"="+strings.Join(fds, " "))
}

// joinCgroup is the child's last step before exec: it writes "0", "the
// process writing this", into each cgroup.procs the parent passed. That
// works in a new PID namespace and without /sys/fs/cgroup in sight. From
// here on the command, and all it starts, is limited: it never runs
// unlimited. Why last and not first: pids.max counts threads, and this Go
// program has several; joined early under a small --pids-limit, the Go
// runtime could fail to start a thread and crash.
func joinCgroup() {
	for _, s := range strings.Fields(os.Getenv(cgroupFDsEnv)) {
		fd, err := strconv.Atoi(s)
		if err == nil {
			_, err = unix.Write(fd, []byte("0"))
		}
		if err != nil {
			fail(1, "join the cgroup: echo 0 >&%s (cgroup.procs): %v", s, err)
		}
		narrate("echo 0 >&%d", fd)
		unix.Close(fd)
	}
}

// reportOOM tells the user if the kernel's OOM killer killed a process of
// the container: the exit status alone (137, SIGKILL) does not say why.
func (g *cgroup) reportOOM() {
	if g == nil || !g.oom {
		return
	}
	file := filepath.Join(g.dirs[0], "memory.oom_control") // v1 (Linux ≥ 4.13); memory comes first
	if g.v2 {
		file = filepath.Join(g.dirs[0], "memory.events")
	}
	data, err := os.ReadFile(file) // "oom_kill 1" among other counters
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: warning: cannot tell whether the OOM killer struck: %v\n", stage, err)
	} else if m := regexp.MustCompile(`(?m)^oom_kill ([1-9][0-9]*)$`).FindSubmatch(data); m != nil {
		fmt.Fprintf(os.Stderr, "%s: out of memory: the kernel's OOM killer killed %s process(es) in this container (%s: %s)\n",
			stage, m[1], filepath.Base(file), m[0])
	}
}

// remove deletes the group's directories with rmdir (a group's files
// cannot be deleted), retrying a moment (EBUSY) while the kernel finishes
// with the processes that just exited. The shared minibox/ parent stays, as
// docker leaves its own: removing it would race with a container starting
// beside us. Only this parent knows the group: that is why, on Ctrl-C or
// SIGTERM, it kills the container and stays to clean up.
func (g *cgroup) remove() {
	if g == nil {
		return
	}
	for _, f := range g.procs {
		f.Close()
	}
	for _, dir := range g.dirs {
		err := unix.Rmdir(dir)
		for i := 0; i < 100 && errors.Is(err, unix.EBUSY); i++ {
			time.Sleep(20 * time.Millisecond)
			err = unix.Rmdir(dir)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: warning: cannot remove cgroup %s: %v\n", stage, dir, err)
			continue
		}
		narrate("rmdir %s", dir)
	}
}

// write sets one cgroup file, naming it in an error: the kernel's EINVAL
// alone does not say which value it refused.
func write(dir, file, value string) error {
	path := filepath.Join(dir, file)
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		return fmt.Errorf("echo %q > %s: %w", value, path, err)
	}
	if strings.Contains(value, " ") {
		value = strconv.Quote(value)
	}
	narrate("echo %s > %s", value, path)
	return nil
}
