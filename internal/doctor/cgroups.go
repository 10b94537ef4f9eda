package doctor

import (
	"strings"
)

// CgroupMode describes how cgroups are mounted on a host.
type CgroupMode struct {
	Mode        string            // "v2" (unified), "hybrid", "v1", or "none"
	V2Root      string            // where cgroup2 is mounted, if anywhere
	V1          map[string]string // v1 controller → mount point
	V2Available []string          // controllers listed in the cgroup2 root
}

// ParseCgroupMounts reads /proc/self/mountinfo for cgroup and cgroup2
// mounts (proc(5)): a v1 mount's super options name its controllers.
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
			m.V2Root = f[4]
		case "cgroup":
			for _, opt := range strings.Split(tail[2], ",") {
				switch opt {
				case "memory", "cpu", "pids", "cpuacct", "cpuset", "blkio", "devices", "freezer", "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc":
					m.V1[opt] = f[4]
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

func checkCgroups(h Host) Result {
	mi, err := h.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return Result{Status: Fail, Detail: err.Error()}
	}
	m := ParseCgroupMounts(mi)
	if m.V2Root != "" {
		if c, err := h.ReadFile(m.V2Root + "/cgroup.controllers"); err == nil {
			m.V2Available = strings.Fields(c)
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
	if len(missing) > 0 {
		return Result{Status: Fail, Detail: detail + "; missing: " + strings.Join(missing, ", "),
			Fix: "enable the missing controllers: on cgroup v2 boot with systemd.unified_cgroup_hierarchy=1; for memory on v1 add cgroup_enable=memory to the kernel command line"}
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
