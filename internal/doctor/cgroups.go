package doctor

import (
	"strings"
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
// a hierarchy is mounted twice, the first mount counts, as in stage 03.
func ParseCgroupMounts(mountinfo string) CgroupMode {
	m := CgroupMode{V1: map[string]string{}}
	for _, line := range strings.Split(mountinfo, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(tail) < 3 {
			continue
		}
		switch tail[0] {
		case "cgroup2":
			if m.V2Root == "" {
				m.V2Root = f[4]
			}
		case "cgroup":
			for _, opt := range strings.Split(tail[2], ",") {
				switch opt {
				case "memory", "cpu", "pids", "cpuacct", "cpuset", "blkio", "devices", "freezer", "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc":
					if m.V1[opt] == "" {
						m.V1[opt] = f[4]
					}
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

// Usable returns, for each of memory, cpu and pids, which version provides
// it ("v2", "v1" or "" when neither). A controller counts as v2 only when
// the cgroup2 root lists it: on a hybrid host v1 keeps the ones it mounts.
func (m CgroupMode) Usable() map[string]string {
	out := map[string]string{}
	for _, c := range []string{"memory", "cpu", "pids"} {
		switch {
		case contains(m.V2Available, c):
			out[c] = "v2"
		case m.V1[c] != "":
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
// it stops and prints the command that enables them (notEnabled in
// 03-cgroups/cgroups.go). Doctor decides the same way.
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
	mi, err := h.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return Result{Status: Fail, Detail: err.Error()}
	}
	m := ParseCgroupMounts(mi)
	if m.V2Root != "" {
		// Stage 03 stops when it cannot read this file.
		c, err := h.ReadFile(m.V2Root + "/cgroup.controllers")
		if err != nil {
			return Result{Status: Fail, Detail: describeMode(m) + "; " + err.Error()}
		}
		m.V2Available = strings.Fields(c)
		// Unreadable counts as empty, as in stage 03.
		if c, err := h.ReadFile(m.V2Root + "/cgroup.subtree_control"); err == nil {
			m.V2Enabled = strings.Fields(c)
		}
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
			fixes = append(fixes, "mount the cgroup filesystem: mount -t cgroup2 none /sys/fs/cgroup  (systemd hosts do it at boot)")
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

func describeMode(m CgroupMode) string {
	switch m.Mode {
	case "v2":
		return "cgroup v2 (unified) at " + m.V2Root
	case "hybrid":
		return "hybrid: v1 controllers under " + parentDir(m.V1) + ", cgroup2 at " + m.V2Root
	case "v1":
		return "cgroup v1 under " + parentDir(m.V1)
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
