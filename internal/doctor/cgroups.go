package doctor

import (
	"fmt"
	"strings"

	"github.com/minibox-lab/minibox/internal/cleanup"
)

// CgroupMode describes how cgroups are mounted on a host.
type CgroupMode struct {
	Mode        string            // "v2" (unified), "hybrid", "v1", or "none"
	V2Root      string            // where cgroup2 is mounted, if anywhere
	V1          map[string]string // v1 controller → mount point
	V2Available []string          // controllers listed in the cgroup2 root's cgroup.controllers
	V2Enabled   []string          // controllers in the cgroup2 root's cgroup.subtree_control
}

// ParseCgroupMounts reads /proc/self/mountinfo for cgroup and cgroup2
// mounts (proc(5)): a v1 mount's super options name its controllers. When
// a hierarchy is mounted twice, the first mount counts. Its Mode is what
// the mounts show; Decide then applies stage 03's rule.
func ParseCgroupMounts(mountinfo string) CgroupMode {
	m := CgroupMode{V1: map[string]string{}}
	for _, mnt := range cleanup.ParseMountinfo(mountinfo) {
		switch mnt.FSType {
		case "cgroup2":
			if m.V2Root == "" {
				m.V2Root = mnt.Point
			}
		case "cgroup":
			for _, opt := range mnt.SuperOptions {
				if v1Controllers[opt] && m.V1[opt] == "" {
					m.V1[opt] = mnt.Point
				}
			}
		}
	}
	switch {
	case m.V2Root != "" && len(m.V1) == 0:
		m.Mode = "v2"
	case m.V2Root != "" || len(m.V1) > 0:
		if len(m.V1) > 0 && m.V2Root != "" {
			m.Mode = "hybrid"
		} else {
			m.Mode = "v1"
		}
	default:
		m.Mode = "none"
	}
	return m
}

// v1Controllers are the controllers a v1 cgroup mount's super options can
// name (the others are rw, name=systemd, …).
var v1Controllers = map[string]bool{
	"memory": true, "cpu": true, "pids": true, "cpuacct": true, "cpuset": true, "blkio": true, "devices": true,
	"freezer": true, "hugetlb": true, "net_cls": true, "net_prio": true, "perf_event": true, "rdma": true, "misc": true,
}

// CgroupRoot is where stage 03 looks for cgroups.
const CgroupRoot = cleanup.CgroupRoot

// Decide applies stage 03's rule (as runc and youki decide), given what
// cleanup.IsCgroup2 says of CgroupRoot: when /sys/fs/cgroup is itself a
// cgroup2 file system (statfs), the host is v2 and every controller comes
// from that one tree; otherwise it is v1, hybrid included, with one tree
// per controller, and a cgroup2 tree elsewhere (/sys/fs/cgroup/unified) is
// not used. cleanup.CgroupTrees finds the trees by the same rule.
func (m CgroupMode) Decide(rootIsCgroup2 bool) CgroupMode {
	if rootIsCgroup2 {
		m.Mode, m.V2Root, m.V1 = "v2", CgroupRoot, map[string]string{}
		return m
	}
	m.V2Available, m.V2Enabled = nil, nil
	switch {
	case len(m.V1) == 0:
		m.Mode = "none"
	case m.V2Root != "":
		m.Mode = "hybrid"
	default:
		m.Mode = "v1"
	}
	return m
}

// Usable returns, for each of memory, cpu and pids, which version provides
// it ("v2", "v1" or "" when neither): on a v2 host the ones the root's
// cgroup.controllers lists, elsewhere the ones a v1 tree mounts.
func (m CgroupMode) Usable() map[string]string {
	out := map[string]string{}
	for _, c := range []string{"memory", "cpu", "pids"} {
		switch {
		case m.Mode == "v2" && contains(m.V2Available, c):
			out[c] = "v2"
		case m.Mode != "v2" && m.V1[c] != "":
			out[c] = "v1"
		default:
			out[c] = ""
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// NotEnabled returns the controllers that Usable gives to v2 but that the
// cgroup2 root's cgroup.subtree_control does not enable, in the order
// memory, cpu, pids. A group below the root gets a controller only when
// the root enables it, and stage 03 never changes the host's root group:
// it stops and prints the command that enables them. Doctor decides the
// same way. Only a v2 host has any.
func (m CgroupMode) NotEnabled() []string {
	usable := m.Usable()
	var out []string
	for _, c := range []string{"memory", "cpu", "pids"} {
		if usable[c] == "v2" && !contains(m.V2Enabled, c) {
			out = append(out, c)
		}
	}
	return out
}

// EnableCommand is the command that enables controllers in the cgroup2
// root, as stage 03 prints it: echo +memory +pids > /sys/fs/cgroup/cgroup.subtree_control
func (m CgroupMode) EnableCommand(controllers []string) string {
	return "echo +" + strings.Join(controllers, " +") + " > " + m.V2Root + "/cgroup.subtree_control"
}

func checkCgroups(h Host) Result {
	m, err := hostCgroups(h)
	if err != nil {
		return Result{Status: Fail, Detail: err.Error()}
	}
	usable := m.Usable()
	var parts, missing []string
	for _, c := range []string{"memory", "cpu", "pids"} {
		if usable[c] == "" {
			missing = append(missing, c)
			continue
		}
		parts = append(parts, c+" ("+usable[c]+")")
	}
	detail := describeMode(m)
	if len(parts) > 0 {
		detail += "; " + strings.Join(parts, ", ")
	}
	var fixes []string
	if len(missing) > 0 {
		detail += "; missing: " + strings.Join(missing, ", ")
		// Not offered by any hierarchy: the kernel was booted (or built)
		// without them. Nothing to enable at run time.
		noun := " controller"
		if len(missing) > 1 {
			noun += "s"
		}
		if m.Mode == "none" {
			fixes = append(fixes, "mount the cgroup filesystem: mount -t cgroup2 none "+CgroupRoot+"  (systemd hosts do it at boot)")
		} else {
			fixes = append(fixes, "the kernel offers no "+strings.Join(missing, ", ")+noun+": remove cgroup_disable=… from the kernel command line, or add cgroup_enable=memory (Raspberry Pi: cgroup_enable=memory cgroup_memory=1), and reboot")
		}
	}
	if off := m.NotEnabled(); len(off) > 0 {
		detail += "; not enabled in " + m.V2Root + "/cgroup.subtree_control: " + strings.Join(off, ", ") + " (lesson 3 stops)"
		fixes = append(fixes, m.EnableCommand(off)+"  (as root; minibox never changes the host's root group itself)")
	}
	if len(fixes) > 0 {
		return Result{Status: Fail, Detail: detail, Fix: strings.Join(fixes, "\n")}
	}
	return Result{Status: OK, Detail: detail}
}

// hostCgroups reads the host's cgroup mode as stage 03 decides it, with
// the v2 root's controllers.
func hostCgroups(h Host) (CgroupMode, error) {
	mi, err := h.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return CgroupMode{}, err
	}
	m := ParseCgroupMounts(mi).Decide(h.IsCgroup2(CgroupRoot))
	if m.Mode == "v2" {
		// Stage 03 stops when it cannot read this file.
		c, err := h.ReadFile(m.V2Root + "/cgroup.controllers")
		if err != nil {
			return m, fmt.Errorf("%s; %w", describeMode(m), err)
		}
		m.V2Available = strings.Fields(c)
		// Unreadable counts as empty, as in stage 03.
		if c, err := h.ReadFile(m.V2Root + "/cgroup.subtree_control"); err == nil {
			m.V2Enabled = strings.Fields(c)
		}
	}
	return m, nil
}

func describeMode(m CgroupMode) string {
	switch m.Mode {
	case "v2":
		return "cgroup v2 (unified) at " + m.V2Root
	case "hybrid":
		return "hybrid: v1 controllers under " + parentDir(m.V1) + ", cgroup2 at " + m.V2Root
	case "v1":
		return "cgroup v1 under " + parentDir(m.V1)
	}
	if m.V2Root != "" {
		return CgroupRoot + " is not cgroup2 and holds no v1 controller trees (cgroup2 at " + m.V2Root + " is not where minibox looks)"
	}
	return "no cgroup filesystem mounted"
}

func parentDir(v1 map[string]string) string {
	for _, p := range v1 {
		if i := strings.LastIndex(p, "/"); i > 0 {
			return p[:i]
		}
	}
	return "?"
}
