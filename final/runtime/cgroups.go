package runtime

// The container's cgroup: minibox/<id> by default (linux.cgroupsPath), one
// directory on cgroup v2, one per controller on v1 (hybrid counts as v1,
// as runc decides), with linux.resources written into it.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// cgroupRoot is where the cgroup file systems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// v1Controllers are the v1 hierarchies a container gets a group in: the
// ones its resources use, so that every process of it can be found (and
// killed) through any of them.
var v1Controllers = []string{"memory", "cpu", "pids", "devices"}

// cgroup is where a container's group lives.
type cgroup struct {
	V2   bool     `json:"v2"`
	Dirs []string `json:"dirs"` // made by us, in order
}

// isCgroup2 reports whether /sys/fs/cgroup is a pure cgroup v2 mount.
func isCgroup2() (bool, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &fs); err != nil {
		return false, fmt.Errorf("statfs %s: %w", cgroupRoot, err)
	}
	return fs.Type == unix.CGROUP2_SUPER_MAGIC, nil
}

// cgroupRelPath is linux.cgroupsPath made relative to each hierarchy's
// root, or minibox/<id>.
func cgroupRelPath(id string, l *specs.Linux) (string, error) {
	if l == nil || l.CgroupsPath == "" {
		return filepath.Join("minibox", id), nil
	}
	p := l.CgroupsPath
	if strings.Contains(p, ":") {
		return "", fmt.Errorf("config.json: linux.cgroupsPath %q: the systemd form slice:prefix:name is not supported (minibox manages cgroupfs directly)", p)
	}
	clean := filepath.Clean("/" + p)
	if clean == "/" {
		return "", fmt.Errorf("config.json: linux.cgroupsPath %q: the root cgroup is the host's", p)
	}
	return strings.TrimPrefix(clean, "/"), nil
}

// plannedCgroup is the group Create makes for container id from spec, its
// leaf directories only (the parents may be shared), or nil if there is
// none to tell. remove ignores a directory that does not exist: Create may
// have been killed before making it.
func plannedCgroup(id string, spec *specs.Spec) *cgroup {
	var l *specs.Linux
	if spec != nil {
		l = spec.Linux
	}
	rel, err := cgroupRelPath(id, l)
	if err != nil {
		return nil
	}
	v2, err := isCgroup2()
	if err != nil {
		return nil
	}
	if v2 {
		return &cgroup{V2: true, Dirs: []string{filepath.Join(cgroupRoot, rel)}}
	}
	g := &cgroup{}
	for _, c := range v1Controllers {
		g.Dirs = append(g.Dirs, filepath.Join(cgroupRoot, c, rel))
	}
	return g
}

// createCgroup makes the group and writes the limits; on failure it
// removes what it made.
func createCgroup(id string, l *specs.Linux) (*cgroup, error) {
	rel, err := cgroupRelPath(id, l)
	if err != nil {
		return nil, err
	}
	v2, err := isCgroup2()
	if err != nil {
		return nil, err
	}
	g := &cgroup{V2: v2}
	var res *specs.LinuxResources
	if l != nil {
		res = l.Resources
	}
	if err := g.create(rel, res); err != nil {
		g.remove(0)
		return nil, err
	}
	return g, nil
}

func (g *cgroup) create(rel string, res *specs.LinuxResources) error {
	if g.V2 {
		dir := filepath.Join(cgroupRoot, rel)
		if err := g.mkdirV2(dir, res); err != nil {
			return err
		}
		if err := writeAll(dir, v2Settings(res)); err != nil {
			return err
		}
		// v2 has no devices.allow: an eBPF program does it (devices_v2.go).
		// It goes with the group when remove rmdirs it.
		var devices []specs.LinuxDeviceCgroup
		if res != nil {
			devices = res.Devices
		}
		return applyDevicesV2(dir, devices)
	}
	settings := v1Settings(res)
	for _, c := range v1Controllers {
		dir := filepath.Join(cgroupRoot, c, rel)
		if err := g.mkdir(dir); err != nil {
			return err
		}
		if err := writeAll(dir, settings[c]); err != nil {
			return err
		}
	}
	return nil
}

// mkdir makes dir and the parents it lacks (recorded for v2's controller
// delegation; on v1 the parents, like minibox/, are shared and stay).
func (g *cgroup) mkdir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("mkdir -p %s: %w (is that cgroup hierarchy mounted?)", filepath.Dir(dir), err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("cgroup %s exists already: another container uses this linux.cgroupsPath", dir)
		}
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	g.Dirs = append(g.Dirs, dir)
	return nil
}

// mkdirV2 enables the controllers the resources need in every group from
// below the root down to dir's parent: v2 gives a group a controller only
// if its parent lists it in cgroup.subtree_control. The root group is the
// host's and is never written.
func (g *cgroup) mkdirV2(dir string, res *specs.LinuxResources) error {
	want := []string{"memory", "cpu", "pids"}
	enabled, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("read %s/cgroup.subtree_control: %w", cgroupRoot, err)
	}
	var ctrl []string
	for _, c := range want {
		if strings.Contains(" "+strings.TrimSpace(string(enabled))+" ", " "+c+" ") {
			ctrl = append(ctrl, "+"+c)
		} else if res != nil && needsV2(res, c) {
			return fmt.Errorf("config.json: linux.resources needs the %s controller, which the cgroup v2 root group does not delegate (echo +%s > %s/cgroup.subtree_control)", c, c, cgroupRoot)
		}
	}
	rel, _ := filepath.Rel(cgroupRoot, dir)
	parts := strings.Split(rel, "/")
	cur := cgroupRoot
	for _, p := range parts[:len(parts)-1] {
		cur = filepath.Join(cur, p)
		if err := os.Mkdir(cur, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("mkdir %s: %w", cur, err)
		}
		if len(ctrl) > 0 {
			if err := writeFile(cur, "cgroup.subtree_control", strings.Join(ctrl, " ")); err != nil {
				return err
			}
		}
	}
	return g.mkdir(dir)
}

func needsV2(res *specs.LinuxResources, c string) bool {
	switch c {
	case "memory":
		return res.Memory != nil && res.Memory.Limit != nil
	case "cpu":
		return res.CPU != nil && (res.CPU.Quota != nil || res.CPU.Shares != nil)
	case "pids":
		return res.Pids != nil && res.Pids.Limit != nil && *res.Pids.Limit > 0
	}
	return false
}

type setting struct{ file, value string }

// ifSupported are the files a setting skips when the kernel has none:
// swap limits without swap accounting (swapaccount=0, or no
// CONFIG_MEMCG_SWAP), where docker warns and goes on.
var ifSupported = map[string]bool{"memory.memsw.limit_in_bytes": true, "memory.swap.max": true}

// v1Settings are the resources as v1 files, per controller.
func v1Settings(res *specs.LinuxResources) map[string][]setting {
	// The device rules apply without linux.resources too: the default
	// devices, and no others (the host's disks stay out of reach).
	s := map[string][]setting{}
	if res == nil {
		s["devices"] = deviceRules(nil)
		return s
	}
	if m := res.Memory; m != nil {
		if m.Limit != nil && *m.Limit > 0 {
			s["memory"] = append(s["memory"], setting{"memory.limit_in_bytes", strconv.FormatInt(*m.Limit, 10)})
		}
		if m.Swap != nil && *m.Swap > 0 {
			s["memory"] = append(s["memory"], setting{"memory.memsw.limit_in_bytes", strconv.FormatInt(*m.Swap, 10)})
		}
	}
	if c := res.CPU; c != nil {
		if c.Shares != nil && *c.Shares > 0 {
			s["cpu"] = append(s["cpu"], setting{"cpu.shares", strconv.FormatUint(*c.Shares, 10)})
		}
		if c.Period != nil && *c.Period > 0 {
			s["cpu"] = append(s["cpu"], setting{"cpu.cfs_period_us", strconv.FormatUint(*c.Period, 10)})
		}
		if c.Quota != nil && *c.Quota != 0 {
			s["cpu"] = append(s["cpu"], setting{"cpu.cfs_quota_us", strconv.FormatInt(*c.Quota, 10)})
		}
	}
	if p := res.Pids; p != nil && p.Limit != nil && *p.Limit > 0 {
		s["pids"] = append(s["pids"], setting{"pids.max", strconv.FormatInt(*p.Limit, 10)})
	}
	s["devices"] = deviceRules(res.Devices)
	return s
}

// defaultAllowedDevices are runc's: mknod of anything (the node alone is
// harmless), and use of the default devices and pseudo-terminals.
var defaultAllowedDevices = []string{
	"c *:* m", "b *:* m",
	"c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
	"c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm",
}

// deviceRules are v1's devices.allow/deny writes: everything denied first
// (a root with CAP_MKNOD, in docker's default set, could otherwise open the
// host's disks), then linux.resources.devices in order, then the defaults.
func deviceRules(rules []specs.LinuxDeviceCgroup) []setting {
	out := []setting{{"devices.deny", "a"}}
	for _, r := range rules {
		kind := r.Type
		if kind == "" {
			kind = "a"
		}
		num := func(p *int64) string {
			if p == nil || *p < 0 {
				return "*"
			}
			return strconv.FormatInt(*p, 10)
		}
		rule := fmt.Sprintf("%s %s:%s %s", kind, num(r.Major), num(r.Minor), r.Access)
		if kind == "a" {
			rule = "a"
		}
		file := "devices.deny"
		if r.Allow {
			file = "devices.allow"
		}
		out = append(out, setting{file, rule})
	}
	for _, d := range defaultAllowedDevices {
		out = append(out, setting{"devices.allow", d})
	}
	return out
}

// v2Settings are the resources as v2 files.
func v2Settings(res *specs.LinuxResources) []setting {
	var s []setting
	if res == nil {
		return s
	}
	if m := res.Memory; m != nil {
		if m.Limit != nil && *m.Limit > 0 {
			s = append(s, setting{"memory.max", strconv.FormatInt(*m.Limit, 10)})
			// v1's memsw is memory+swap; v2's swap.max is swap alone.
			if m.Swap != nil && *m.Swap >= *m.Limit {
				s = append(s, setting{"memory.swap.max", strconv.FormatInt(*m.Swap-*m.Limit, 10)})
			}
		}
	}
	if c := res.CPU; c != nil {
		if c.Shares != nil && *c.Shares > 0 {
			// runc's conversion of v1 shares (2..262144) to v2 weight (1..10000).
			w := 1 + ((*c.Shares-2)*9999)/262142
			s = append(s, setting{"cpu.weight", strconv.FormatUint(w, 10)})
		}
		if c.Quota != nil && *c.Quota > 0 {
			period := uint64(100000)
			if c.Period != nil && *c.Period > 0 {
				period = *c.Period
			}
			s = append(s, setting{"cpu.max", fmt.Sprintf("%d %d", *c.Quota, period)})
		}
	}
	if p := res.Pids; p != nil && p.Limit != nil && *p.Limit > 0 {
		s = append(s, setting{"pids.max", strconv.FormatInt(*p.Limit, 10)})
	}
	return s
}

func writeAll(dir string, settings []setting) error {
	for _, s := range settings {
		if _, err := os.Stat(filepath.Join(dir, s.file)); err != nil && ifSupported[s.file] {
			continue
		}
		if err := writeFile(dir, s.file, s.value); err != nil {
			return err
		}
	}
	return nil
}

// writeFile sets one cgroup file, naming file and value in the error: the
// kernel's EINVAL alone does not say which one it refused.
func writeFile(dir, file, value string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
		return fmt.Errorf("cgroup: echo %q > %s: %w", value, filepath.Join(dir, file), err)
	}
	return nil
}

// joinAtFork arranges for the init to be in the group from its start
// without its parent writing its PID to cgroup.procs: that write takes a
// lock over every thread group of the host (cgroup_threadgroup_rwsem) and
// waits an RCU grace period for it, 5-25 ms measured here, the largest
// single cost of a container's start. On v2 the init is forked straight
// into the group (clone(2) CLONE_INTO_CGROUP, SysProcAttr.CgroupFD). On v1
// it gets the groups' tasks files, forInit, and moves itself (see
// joinOwnCgroups). Call done once the init is forked.
func (g *cgroup) joinAtFork(attr *syscall.SysProcAttr) (forInit []*os.File, done func(), err error) {
	var files []*os.File
	done = func() { closeAll(files) }
	for _, d := range g.Dirs {
		path, flag := filepath.Join(d, "tasks"), os.O_WRONLY
		if g.V2 {
			path, flag = d, os.O_RDONLY|unix.O_DIRECTORY
		}
		f, err := os.OpenFile(path, flag|unix.O_CLOEXEC, 0)
		if err != nil {
			done()
			return nil, nil, fmt.Errorf("cgroup: open %s: %w", path, err)
		}
		files = append(files, f)
	}
	if g.V2 {
		if len(files) > 0 {
			attr.UseCgroupFD, attr.CgroupFD = true, int(files[0].Fd())
		}
		return nil, done, nil
	}
	return files, done, nil
}

// joinOwnCgroups is the v1 init's side of joinAtFork: writing 0 to a
// tasks file moves the calling thread, and moving itself is the one move
// the kernel does without the lock over all thread groups (the shell's
// `echo 0 > tasks`). The init's other threads stay behind and end at
// execve, so the container's process is all in the group from its first
// instruction. The files were opened by the parent (root): the kernel
// checks the opener's credentials, which a user namespace's root lacks.
func joinOwnCgroups(fds []int) error {
	for _, fd := range fds {
		_, err := unix.Write(fd, []byte("0"))
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("cgroup: echo 0 > tasks: %w", err)
		}
	}
	return nil
}

// add moves process pid into every directory of the group (the parent's
// way, with the wait joinAtFork avoids).
func (g *cgroup) add(pid int) error {
	for _, d := range g.Dirs {
		if err := writeFile(d, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// pids lists the processes in the group.
func (g *cgroup) pids() ([]int, error) {
	if len(g.Dirs) == 0 {
		return nil, nil
	}
	data, err := os.ReadFile(filepath.Join(g.Dirs[0], "cgroup.procs"))
	if err != nil {
		return nil, fmt.Errorf("read %s/cgroup.procs: %w", g.Dirs[0], err)
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// remove deletes the group's directories (rmdir: a group's files cannot be
// deleted), retrying while the kernel finishes with exiting processes
// (EBUSY), for up to wait. A directory already gone is fine.
func (g *cgroup) remove(wait time.Duration) error {
	var errs []error
	for i := len(g.Dirs) - 1; i >= 0; i-- {
		dir := g.Dirs[i]
		deadline := time.Now().Add(wait)
		err := unix.Rmdir(dir)
		for errors.Is(err, unix.EBUSY) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			err = unix.Rmdir(dir)
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("rmdir %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}
