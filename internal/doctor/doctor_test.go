package doctor_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/internal/cleanup"
	"github.com/minibox-lab/minibox/internal/doctor"
	"github.com/minibox-lab/minibox/internal/rootfs"
	"github.com/minibox-lab/minibox/internal/stages"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// fakeHost is a Host whose every answer the test chooses.
type fakeHost struct {
	euid      int
	release   string
	files     map[string]string // ReadFile; a missing path is ENOENT
	exists    map[string]bool
	paths     map[string]string // LookPath: command → path
	nsErr     map[uintptr]error // TryNamespace failures
	rootFS    string
	busybox   string
	busyErr   error
	rootfsDir string
	rootfsOK  bool
	goVersion string
	cgroup2   *bool                  // IsCgroup2's answer; nil: what mountinfo says
	modes     map[string]fs.FileMode // Mode; a missing path is ENOENT
	leftovers []cleanup.Object
	leftErr   error
	fsopenErr error  // TryFsopen's answer
	dataRoot  string // DataRootFS's answer
	dataFS    string
	dataErr   error
	outputs   map[string]string // Output: "cmd args…" → what it wrote
	outErrs   map[string]error  // Output: "cmd args…" → its failure

	fsopened []string // the types TryFsopen was asked for

	tried []uintptr // namespaces TryNamespace was asked for, in order
}

func (h *fakeHost) Euid() int             { return h.euid }
func (h *fakeHost) KernelRelease() string { return h.release }
func (h *fakeHost) ReadFile(p string) (string, error) {
	if s, ok := h.files[p]; ok {
		return s, nil
	}
	return "", &os.PathError{Op: "open", Path: p, Err: syscall.ENOENT}
}
func (h *fakeHost) Exists(p string) bool { return h.exists[p] }
func (h *fakeHost) LookPath(cmd string) (string, error) {
	if p, ok := h.paths[cmd]; ok {
		return p, nil
	}
	return "", errors.New("exec: " + cmd + ": executable file not found in $PATH")
}
func (h *fakeHost) TryNamespace(flag uintptr) error {
	h.tried = append(h.tried, flag)
	return h.nsErr[flag]
}
func (h *fakeHost) RootFstype() string { return h.rootFS }
func (h *fakeHost) GoVersion(string) (string, error) {
	if h.goVersion == "" {
		return "", errors.New("exit status 2")
	}
	return h.goVersion, nil
}
func (h *fakeHost) StaticBusybox() (string, error) {
	return h.busybox, h.busyErr
}
func (h *fakeHost) RootfsBuilt() (string, bool) { return h.rootfsDir, h.rootfsOK }

// IsCgroup2 answers as statfs would on a host with this mountinfo: path is
// cgroup2 when a cgroup2 file system is mounted there.
func (h *fakeHost) IsCgroup2(path string) bool {
	if h.cgroup2 != nil {
		return *h.cgroup2
	}
	for _, m := range cleanup.ParseMountinfo(h.files["/proc/self/mountinfo"]) {
		if m.Point == path {
			return m.FSType == "cgroup2"
		}
	}
	return false
}
func (h *fakeHost) Mode(p string) (fs.FileMode, error) {
	if m, ok := h.modes[p]; ok {
		return m, nil
	}
	return 0, &os.PathError{Op: "stat", Path: p, Err: syscall.ENOENT}
}
func (h *fakeHost) Leftovers() ([]cleanup.Object, error) { return h.leftovers, h.leftErr }
func (h *fakeHost) TryFsopen(fstype string) error {
	h.fsopened = append(h.fsopened, fstype)
	return h.fsopenErr
}
func (h *fakeHost) DataRootFS() (string, string, error) { return h.dataRoot, h.dataFS, h.dataErr }

func (h *fakeHost) Output(cmd string, args ...string) (string, error) {
	line := strings.Join(append([]string{cmd}, args...), " ")
	out, ok := h.outputs[line]
	if err := h.outErrs[line]; err != nil || !ok {
		if err == nil {
			err = errors.New("exec: " + cmd + ": no such command")
		}
		return out, err
	}
	return out, nil
}

var _ doctor.Host = (*fakeHost)(nil)

func testdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return string(b)
}

// healthyHost is a student's laptop with everything the lessons need: root,
// Debian 12's kernel, pure cgroup v2, overlay, the tools, a built rootfs.
func healthyHost(t *testing.T) *fakeHost {
	return &fakeHost{
		euid:    0,
		release: "6.1.0-18-cloud-amd64",
		files: map[string]string{
			"/proc/self/mountinfo":              testdata(t, "mountinfo-v2.txt"),
			"/sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
			// What systemd enables in the root for the groups below it.
			"/sys/fs/cgroup/cgroup.subtree_control": "cpu io memory pids\n",
			"/proc/filesystems":                     testdata(t, "filesystems-with-overlay.txt"),
			"/proc/sys/net/ipv4/ip_forward":         "1\n",
		},
		exists: map[string]bool{},
		paths: map[string]string{
			"iptables": "/usr/sbin/iptables",
			"ip":       "/usr/sbin/ip",
			"go":       "/usr/local/go/bin/go",
			// Lesson 6's local registry and the tools that fill it.
			"docker-registry": "/usr/bin/docker-registry",
			"skopeo":          "/usr/bin/skopeo",
			"umoci":           "/usr/bin/umoci",
			"curl":            "/usr/bin/curl",
			"runc":            "/usr/sbin/runc",
			"podman":          "/usr/bin/podman",
		},
		outputs: map[string]string{
			"/usr/sbin/iptables --version": "iptables v1.8.9 (nf_tables)\n",
			"/usr/sbin/iptables -t nat -S": "-P PREROUTING ACCEPT\n-P INPUT ACCEPT\n-P OUTPUT ACCEPT\n-P POSTROUTING ACCEPT\n",
		},
		rootFS:    "other",
		busybox:   "/bin/busybox",
		rootfsDir: "/var/lib/minibox/rootfs",
		rootfsOK:  true,
		goVersion: "go1.22.5",
		dataRoot:  "/var/lib/minibox",
		dataFS:    "ext4",
		modes: map[string]fs.FileMode{
			"/": fs.ModeDir | 0o755, "/var": fs.ModeDir | 0o755, "/var/lib": fs.ModeDir | 0o755,
			"/var/lib/minibox": fs.ModeDir | 0o755, "/var/lib/minibox/rootfs": fs.ModeDir | 0o755,
		},
	}
}

// check runs the one check called name against h.
func check(t *testing.T, h doctor.Host, name string) doctor.Result {
	t.Helper()
	for _, c := range doctor.Checks() {
		if c.Name == name {
			r := doctor.Run(h, []doctor.Check{c})
			require.Len(t, r, 1)
			assert.Equal(t, name, r[0].Name, "Run names the result after its check")
			return r[0]
		}
	}
	t.Fatalf("no check named %q", name)
	return doctor.Result{}
}

func TestChecksOrder(t *testing.T) {
	var names []string
	for _, c := range doctor.Checks() {
		names = append(names, c.Name)
	}
	assert.Equal(t, []string{"root", "kernel", "namespaces", "cgroups", "cgroup join", "overlayfs", "mount API", "data root", "mount propagation",
		"ip forwarding", "iptables", "iproute2", "image tools", "engine tools", "go toolchain", "static busybox", "demo rootfs", "rootfs access",
		"container", "leftovers"}, names)
	for _, n := range names {
		// Lesson 3 greps doctor's output for " cgroups ": one line only.
		assert.False(t, n != "cgroups" && strings.Contains(" "+n+" ", " cgroups "), n)
	}
}

func TestHealthyHostPassesEveryCheck(t *testing.T) {
	results := doctor.Run(healthyHost(t), doctor.Checks())
	require.Len(t, results, len(doctor.Checks()))
	for i, r := range results {
		assert.Equal(t, doctor.Checks()[i].Name, r.Name)
		assert.Equal(t, doctor.OK, r.Status, "%s: %s", r.Name, r.Detail)
		assert.NotEmpty(t, r.Detail, r.Name)
	}
	assert.True(t, doctor.Healthy(results))
}

func TestRoot(t *testing.T) {
	h := healthyHost(t)
	r := check(t, h, "root")
	assert.Equal(t, doctor.OK, r.Status)
	assert.Equal(t, "running as root", r.Detail)

	h.euid = 1000
	r = check(t, h, "root")
	assert.Equal(t, doctor.Fail, r.Status)
	assert.Contains(t, r.Detail, "uid 1000")
	assert.Contains(t, r.Fix, "sudo minibox doctor")
}

func TestKernel(t *testing.T) {
	for _, tc := range []struct {
		release string
		want    doctor.Status
	}{
		{"6.1.0-18-cloud-amd64", doctor.OK}, // Debian 12
		{"6.18.44-fc-v669", doctor.OK},      // minor with two digits
		{"5.15.90.1-microsoft-standard-WSL2", doctor.OK},
		{"5.0.0-23-generic", doctor.OK},         // newer major, lower minor
		{"4.18.0-553.el8_10.x86_64", doctor.OK}, // exactly MinKernel (RHEL 8)
		{"4.17.19", doctor.Fail},
		{"4.9.0-8-amd64", doctor.Fail},          // Debian 9
		{"3.10.0-1160.el7.x86_64", doctor.Fail}, // CentOS 7: higher minor, older major
		{"", doctor.Warn},
		{"garbage", doctor.Warn},
		{"six.one", doctor.Warn},
	} {
		t.Run(tc.release, func(t *testing.T) {
			h := healthyHost(t)
			h.release = tc.release
			r := check(t, h, "kernel")
			assert.Equal(t, tc.want, r.Status, r.Detail)
			switch tc.want {
			case doctor.OK:
				assert.Equal(t, "Linux "+tc.release, r.Detail)
				assert.Empty(t, r.Fix)
			case doctor.Fail:
				assert.Equal(t, "Linux "+tc.release+" is older than 4.18", r.Detail)
				assert.Contains(t, r.Fix, "use a newer distribution")
			case doctor.Warn:
				assert.Contains(t, r.Detail, "cannot read the kernel version from \""+tc.release+"\"")
			}
		})
	}
}

func TestNamespaces(t *testing.T) {
	all := []uintptr{syscall.CLONE_NEWNS, syscall.CLONE_NEWUTS, syscall.CLONE_NEWIPC,
		syscall.CLONE_NEWPID, syscall.CLONE_NEWNET, syscall.CLONE_NEWUSER}

	t.Run("all six", func(t *testing.T) {
		h := healthyHost(t)
		r := check(t, h, "namespaces")
		assert.Equal(t, doctor.OK, r.Status)
		assert.Equal(t, "all six can be created: mnt uts ipc pid net user", r.Detail)
		assert.Equal(t, all, h.tried, "each of the six is tried, in order")
	})

	t.Run("not root", func(t *testing.T) {
		h := healthyHost(t)
		h.euid = 1000
		r := check(t, h, "namespaces")
		assert.Equal(t, doctor.Warn, r.Status)
		assert.Contains(t, r.Detail, "not checked")
		assert.Equal(t, "run as root to check", r.Fix)
		assert.Empty(t, h.tried, "nothing is tried without root")
	})

	t.Run("user namespaces disabled", func(t *testing.T) {
		h := healthyHost(t)
		h.nsErr = map[uintptr]error{syscall.CLONE_NEWUSER: syscall.ENOSPC}
		r := check(t, h, "namespaces")
		assert.Equal(t, doctor.Fail, r.Status)
		assert.Equal(t, "cannot create: user (no space left on device)", r.Detail)
		assert.Contains(t, r.Fix, "sysctl -w user.max_user_namespaces=15000")
		assert.Contains(t, r.Fix, "kernel.apparmor_restrict_unprivileged_userns=0")
		assert.Equal(t, all, h.tried, "a failure does not stop the other checks")
	})

	t.Run("kernel without net and user namespaces", func(t *testing.T) {
		h := healthyHost(t)
		h.nsErr = map[uintptr]error{syscall.CLONE_NEWNET: syscall.EINVAL, syscall.CLONE_NEWUSER: syscall.EINVAL}
		r := check(t, h, "namespaces")
		assert.Equal(t, doctor.Fail, r.Status)
		assert.Equal(t, "cannot create: net (invalid argument), user (invalid argument)", r.Detail)
		fixes := strings.Split(r.Fix, "\n")
		require.Len(t, fixes, 2, "one fix line per failed namespace")
		assert.Equal(t, "the kernel lacks CONFIG_NET_NS: use a distribution kernel", fixes[0])
		assert.Contains(t, fixes[1], "user.max_user_namespaces")
	})
}

func TestParseCgroupMounts(t *testing.T) {
	t.Run("pure v2", func(t *testing.T) {
		m := doctor.ParseCgroupMounts(testdata(t, "mountinfo-v2.txt"))
		assert.Equal(t, "v2", m.Mode)
		assert.Equal(t, "/sys/fs/cgroup", m.V2Root)
		assert.Empty(t, m.V1)
		// The cgroup2 root's cgroup.controllers is not read by the parser.
		assert.Equal(t, map[string]string{"memory": "", "cpu": "", "pids": ""}, m.Usable())
		m.V2Available = []string{"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"}
		assert.Equal(t, map[string]string{"memory": "v2", "cpu": "v2", "pids": "v2"}, m.Usable())
	})

	t.Run("hybrid, this CI machine", func(t *testing.T) {
		m := doctor.ParseCgroupMounts(testdata(t, "mountinfo-hybrid-ci.txt"))
		assert.Equal(t, "hybrid", m.Mode)
		assert.Equal(t, "/sys/fs/cgroup/unified", m.V2Root)
		assert.Equal(t, map[string]string{
			"cpu":     "/sys/fs/cgroup/cpu",
			"cpuacct": "/sys/fs/cgroup/cpuacct",
			"cpuset":  "/sys/fs/cgroup/cpuset",
			"memory":  "/sys/fs/cgroup/memory",
			"devices": "/sys/fs/cgroup/devices",
			"freezer": "/sys/fs/cgroup/freezer",
			"blkio":   "/sys/fs/cgroup/blkio",
			"pids":    "/sys/fs/cgroup/pids",
		}, m.V1, "name=systemd is a named hierarchy, not a controller")
		// The cgroup2 root holds only hugetlb: memory, cpu and pids stay v1.
		m.V2Available = []string{"hugetlb"}
		assert.Equal(t, map[string]string{"memory": "v1", "cpu": "v1", "pids": "v1"}, m.Usable())
	})

	t.Run("hybrid, systemd's default", func(t *testing.T) {
		m := doctor.ParseCgroupMounts(testdata(t, "mountinfo-hybrid-systemd.txt"))
		assert.Equal(t, "hybrid", m.Mode)
		assert.Equal(t, "/sys/fs/cgroup/unified", m.V2Root)
		assert.Equal(t, "/sys/fs/cgroup/cpu,cpuacct", m.V1["cpu"], "a co-mounted hierarchy serves both")
		assert.Equal(t, "/sys/fs/cgroup/cpu,cpuacct", m.V1["cpuacct"])
		assert.Equal(t, "/sys/fs/cgroup/net_cls,net_prio", m.V1["net_prio"])
		assert.Equal(t, "/sys/fs/cgroup/memory", m.V1["memory"])
		assert.Equal(t, "/sys/fs/cgroup/pids", m.V1["pids"])
		assert.Len(t, m.V1, 13)
		assert.NotContains(t, m.V1, "systemd")
		assert.NotContains(t, m.V1, "xattr")
		// systemd leaves the cgroup2 root's cgroup.controllers empty.
		assert.Equal(t, map[string]string{"memory": "v1", "cpu": "v1", "pids": "v1"}, m.Usable())
	})

	t.Run("pure v1", func(t *testing.T) {
		m := doctor.ParseCgroupMounts(testdata(t, "mountinfo-v1.txt"))
		assert.Equal(t, "v1", m.Mode)
		assert.Empty(t, m.V2Root)
		assert.Equal(t, "/sys/fs/cgroup/memory", m.V1["memory"])
		assert.Equal(t, "/sys/fs/cgroup/cpu,cpuacct", m.V1["cpu"])
		assert.Equal(t, "/sys/fs/cgroup/pids", m.V1["pids"])
		assert.Len(t, m.V1, 8)
		assert.Equal(t, map[string]string{"memory": "v1", "cpu": "v1", "pids": "v1"}, m.Usable())
	})

	t.Run("a hierarchy mounted twice: the first mount counts, as in stage 03", func(t *testing.T) {
		m := doctor.ParseCgroupMounts(testdata(t, "mountinfo-v2.txt") +
			"90 30 0:27 / /run/other/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n" +
			"91 30 0:40 / /mnt/memory rw,relatime - cgroup cgroup rw,memory\n" +
			"92 30 0:40 / /mnt/memory2 rw,relatime - cgroup cgroup rw,memory\n")
		assert.Equal(t, "/sys/fs/cgroup", m.V2Root)
		assert.Equal(t, "/mnt/memory", m.V1["memory"])
	})

	t.Run("mountinfo's escapes decoded, by cleanup's parser", func(t *testing.T) {
		m := doctor.ParseCgroupMounts("" +
			"90 30 0:27 / /run/my\\040cgroups/v2 rw - cgroup2 cgroup2 rw\n" +
			"91 30 0:40 / /run/my\\040cgroups/mem rw - cgroup cgroup rw,memory\n")
		assert.Equal(t, "/run/my cgroups/v2", m.V2Root)
		assert.Equal(t, map[string]string{"memory": "/run/my cgroups/mem"}, m.V1)
	})

	t.Run("none", func(t *testing.T) {
		m := doctor.ParseCgroupMounts("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\ngarbage line\n")
		assert.Equal(t, "none", m.Mode)
		assert.Empty(t, m.V2Root)
		assert.Empty(t, m.V1)
		assert.Equal(t, map[string]string{"memory": "", "cpu": "", "pids": ""}, m.Usable())
	})
}

func TestNotEnabled(t *testing.T) {
	m := doctor.CgroupMode{
		Mode:        "v2",
		V2Root:      "/sys/fs/cgroup",
		V1:          map[string]string{},
		V2Available: []string{"cpu", "memory", "pids"},
		V2Enabled:   []string{"cpu"},
	}
	assert.Equal(t, []string{"memory", "pids"}, m.NotEnabled(), "in the order memory, cpu, pids")
	assert.Equal(t, "echo +memory +pids > /sys/fs/cgroup/cgroup.subtree_control", m.EnableCommand(m.NotEnabled()))
	m.V2Enabled = []string{"pids", "memory", "cpu", "io"}
	assert.Empty(t, m.NotEnabled())

	// v1 controllers need no subtree_control.
	h := doctor.ParseCgroupMounts(testdata(t, "mountinfo-hybrid-ci.txt"))
	h.V2Available = []string{"hugetlb"}
	assert.Empty(t, h.NotEnabled())
}

func TestUsableFollowsTheMode(t *testing.T) {
	// A hybrid host whose cgroup2 tree got pids: stage 03 uses v1 on a
	// hybrid host, so pids is missing there, not v2.
	m := doctor.CgroupMode{
		Mode:        "hybrid",
		V2Root:      "/sys/fs/cgroup/unified",
		V1:          map[string]string{"memory": "/sys/fs/cgroup/memory"},
		V2Available: []string{"pids"},
	}
	assert.Equal(t, map[string]string{"memory": "v1", "cpu": "", "pids": ""}, m.Usable())
	// On v2 a v1 tree mounted somewhere does not count.
	m.Mode = "v2"
	assert.Equal(t, map[string]string{"memory": "", "cpu": "", "pids": "v2"}, m.Usable())
}

func TestDecide(t *testing.T) {
	hybrid := doctor.ParseCgroupMounts(testdata(t, "mountinfo-hybrid-ci.txt"))
	hybrid.V2Available = []string{"hugetlb", "pids"}
	d := hybrid.Decide(false)
	assert.Equal(t, "hybrid", d.Mode)
	assert.Empty(t, d.V2Available, "the cgroup2 tree of a hybrid host is not used")
	assert.Equal(t, map[string]string{"memory": "v1", "cpu": "v1", "pids": "v1"}, d.Usable())

	// statfs has the last word: cgroup2 at /sys/fs/cgroup is v2 whatever
	// else is mounted.
	d = hybrid.Decide(true)
	assert.Equal(t, "v2", d.Mode)
	assert.Equal(t, "/sys/fs/cgroup", d.V2Root)
	assert.Empty(t, d.V1)

	v2 := doctor.ParseCgroupMounts(testdata(t, "mountinfo-v2.txt"))
	assert.Equal(t, "v1", doctor.ParseCgroupMounts(testdata(t, "mountinfo-v1.txt")).Decide(false).Mode)
	assert.Equal(t, "none", v2.Decide(false).Mode, "a cgroup2 mount that statfs does not see at /sys/fs/cgroup")
}

func TestCgroupsCheck(t *testing.T) {
	t.Run("v2", func(t *testing.T) {
		r := check(t, healthyHost(t), "cgroups")
		assert.Equal(t, doctor.OK, r.Status)
		assert.Equal(t, "cgroup v2 (unified) at /sys/fs/cgroup; memory (v2), cpu (v2), pids (v2)", r.Detail)
		assert.Empty(t, r.Fix)
	})

	t.Run("v2 without memory and pids", func(t *testing.T) {
		h := healthyHost(t)
		h.files["/sys/fs/cgroup/cgroup.controllers"] = "cpuset cpu io\n"
		r := check(t, h, "cgroups")
		assert.Equal(t, doctor.Fail, r.Status)
		assert.Equal(t, "cgroup v2 (unified) at /sys/fs/cgroup; cpu (v2); missing: memory, pids", r.Detail)
		assert.Contains(t, r.Fix, "the kernel offers no memory, pids controllers: ")
		assert.Contains(t, r.Fix, "cgroup_enable=memory")
		assert.NotContains(t, r.Fix, "systemd.unified_cgroup_hierarchy", "the host is v2 already")
		assert.NotContains(t, r.Fix, "subtree_control", "cpu is enabled: nothing to echo")
	})

	// Stage 03 refuses to run unless the v2 root's cgroup.subtree_control
	// enables each controller it uses from v2, and never writes it itself:
	// doctor fails the same hosts, with the command stage 03 prints.
	t.Run("v2, root does not enable memory and pids for its children", func(t *testing.T) {
		h := healthyHost(t)
		h.files["/sys/fs/cgroup/cgroup.subtree_control"] = "cpu io\n"
		r := check(t, h, "cgroups")
		assert.Equal(t, doctor.Fail, r.Status)
		assert.Equal(t, "cgroup v2 (unified) at /sys/fs/cgroup; memory (v2), cpu (v2), pids (v2); "+
			"not enabled in /sys/fs/cgroup/cgroup.subtree_control: memory, pids (lesson 3 stops)", r.Detail)
		assert.True(t, strings.HasPrefix(r.Fix, "echo +memory +pids > /sys/fs/cgroup/cgroup.subtree_control  (as root"), r.Fix)
		assert.NotContains(t, r.Fix, "\n", "one fix: the controllers exist")
		assert.NotContains(t, r.Fix, "systemd.unified_cgroup_hierarchy")
		assert.NotContains(t, r.Fix, "cgroup_enable")
	})

	t.Run("v2, a bare VM: nothing enabled in the root", func(t *testing.T) {
		h := healthyHost(t)
		h.files["/sys/fs/cgroup/cgroup.subtree_control"] = "\n"
		r := check(t, h, "cgroups")
		assert.Equal(t, doctor.Fail, r.Status)
		assert.Contains(t, r.Detail, "not enabled in /sys/fs/cgroup/cgroup.subtree_control: memory, cpu, pids")
		assert.True(t, strings.HasPrefix(r.Fix, "echo +memory +cpu +pids > /sys/fs/cgroup/cgroup.subtree_control"), r.Fix)
	})

	t.Run("v2, subtree_control unreadable counts as empty", func(t *testing.T) {
		h := healthyHost(t)
		delete(h.files, "/sys/fs/cgroup/cgroup.subtree_control")
		r := check(t, h, "cgroups")
		assert.Equal(t, doctor.Fail, r.Status, "stage 03 reads it the same way")
		assert.True(t, strings.HasPrefix(r.Fix, "echo +memory +cpu +pids > /sys/fs/cgroup/cgroup.subtree_control"), r.Fix)
	})

	t.Run("v2, one controller missing and one not enabled", func(t *testing.T) {
		h := healthyHost(t)
		h.files["/sys/fs/cgroup/cgroup.controllers"] = "cpu io pids\n"
		h.files["/sys/fs/cgroup/cgroup.subtree_control"] = "cpu io\n"
		r := check(t, h, "cgroups")
		assert.Equal(t, doctor.Fail, r.Status)
		assert.Equal(t, "cgroup v2 (unified) at /sys/fs/cgroup; cpu (v2), pids (v2); missing: memory; "+
			"not enabled in /sys/fs/cgroup/cgroup.subtree_control: pids (lesson 3 stops)", r.Detail)
		fixes := strings.Split(r.Fix, "\n")
		require.Len(t, fixes, 2)
		assert.Contains(t, fixes[0], "cgroup_enable=memory")
		assert.True(t, strings.HasPrefix(fixes[1], "echo +pids > /sys/fs/cgroup/cgroup.subtree_control"), fixes[1])
	})

	t.Run("hybrid, a controller only on the cgroup2 tree", func(t *testing.T) {
		// pids on the cgroup2 tree, memory and cpu on v1: stage 03 uses
		// v1 on a hybrid host, so pids is missing.
		var lines []string
		for _, l := range strings.Split(testdata(t, "mountinfo-hybrid-ci.txt"), "\n") {
			if !strings.Contains(l, "/sys/fs/cgroup/pids") {
				lines = append(lines, l)
			}
		}
		h := healthyHost(t)
		h.files["/proc/self/mountinfo"] = strings.Join(lines, "\n")
		h.files["/sys/fs/cgroup/unified/cgroup.controllers"] = "pids\n"
		h.files["/sys/fs/cgroup/unified/cgroup.subtree_control"] = "pids\n"
		r := check(t, h, "cgroups")
		assert.Equal(t, doctor.Fail, r.Status)
		assert.Equal(t, "hybrid: v1 controllers under /sys/fs/cgroup, cgroup2 at /sys/fs/cgroup/unified; memory (v1), cpu (v1); missing: pids", r.Detail)
		assert.NotContains(t, r.Fix, "subtree_control")
	})

	t.Run("v2 by statfs, whatever mountinfo lists", func(t *testing.T) {
		h := healthyHost(t)
		h.files["/proc/self/mountinfo"] = testdata(t, "mountinfo-hybrid-ci.txt")
		v2 := true
		h.cgroup2 = &v2
		r := check(t, h, "cgroups")
		assert.Equal(t, doctor.OK, r.Status, r.Detail)
		assert.Equal(t, "cgroup v2 (unified) at /sys/fs/cgroup; memory (v2), cpu (v2), pids (v2)", r.Detail)
	})

	t.Run("cgroup2 mounted elsewhere only", func(t *testing.T) {
		h := healthyHost(t)
		h.files["/proc/self/mountinfo"] = "27 1 254:0 / / rw - ext4 /dev/vda rw\n" +
			"30 27 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
		r := check(t, h, "cgroups")
		assert.Equal(t, doctor.Fail, r.Status)
		assert.Contains(t, r.Detail, "/sys/fs/cgroup is not cgroup2 and holds no v1 controller trees")
		assert.Contains(t, r.Fix, "mount -t cgroup2 none /sys/fs/cgroup")
	})

	t.Run("hybrid, this CI machine", func(t *testing.T) {
		h := healthyHost(t)
		h.files["/proc/self/mountinfo"] = testdata(t, "mountinfo-hybrid-ci.txt")
		h.files["/sys/fs/cgroup/unified/cgroup.controllers"] = "hugetlb\n"
		r := check(t, h, "cgroups")
		assert.Equal(t, doctor.OK, r.Status)
		assert.Equal(t, "hybrid: v1 controllers under /sys/fs/cgroup, cgroup2 at /sys/fs/cgroup/unified; memory (v1), cpu (v1), pids (v1)", r.Detail)
		// No subtree_control there: v1 controllers do not need it.
	})

	t.Run("v1", func(t *testing.T) {
		h := healthyHost(t)
		h.files["/proc/self/mountinfo"] = testdata(t, "mountinfo-v1.txt")
		r := check(t, h, "cgroups")
		assert.Equal(t, doctor.OK, r.Status)
		assert.Equal(t, "cgroup v1 under /sys/fs/cgroup; memory (v1), cpu (v1), pids (v1)", r.Detail)
	})

	t.Run("v1 without memory", func(t *testing.T) {
		// Raspberry Pi OS and some kernels boot with cgroup_disable=memory.
		var lines []string
		for _, l := range strings.Split(testdata(t, "mountinfo-v1.txt"), "\n") {
			if !strings.Contains(l, "/sys/fs/cgroup/memory") {
				lines = append(lines, l)
			}
		}
		h := healthyHost(t)
		h.files["/proc/self/mountinfo"] = strings.Join(lines, "\n")
		r := check(t, h, "cgroups")
		assert.Equal(t, doctor.Fail, r.Status)
		assert.Equal(t, "cgroup v1 under /sys/fs/cgroup; cpu (v1), pids (v1); missing: memory", r.Detail)
		assert.Contains(t, r.Fix, "cgroup_enable=memory")
		assert.NotContains(t, r.Fix, "subtree_control", "no cgroup2 hierarchy here")
	})

	t.Run("no cgroups mounted", func(t *testing.T) {
		h := healthyHost(t)
		h.files["/proc/self/mountinfo"] = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
		r := check(t, h, "cgroups")
		assert.Equal(t, doctor.Fail, r.Status)
		assert.Equal(t, "no cgroup filesystem mounted; missing: memory, cpu, pids", r.Detail)
		assert.Contains(t, r.Fix, "mount -t cgroup2 none /sys/fs/cgroup")
	})

	t.Run("cgroup.controllers unreadable", func(t *testing.T) {
		h := healthyHost(t)
		delete(h.files, "/sys/fs/cgroup/cgroup.controllers")
		r := check(t, h, "cgroups")
		assert.Equal(t, doctor.Fail, r.Status, "stage 03 stops there too")
		assert.Contains(t, r.Detail, "/sys/fs/cgroup/cgroup.controllers")
	})

	t.Run("mountinfo unreadable", func(t *testing.T) {
		h := healthyHost(t)
		delete(h.files, "/proc/self/mountinfo")
		r := check(t, h, "cgroups")
		assert.Equal(t, doctor.Fail, r.Status)
		assert.Contains(t, r.Detail, "/proc/self/mountinfo")
	})
}

func TestCgroupJoin(t *testing.T) {
	for _, tc := range []struct {
		release string
		want    doctor.Status
	}{
		{"6.1.0-18-cloud-amd64", doctor.OK},
		{"5.16.0", doctor.OK},
		{"5.15.90.1-microsoft-standard-WSL2", doctor.Warn}, // may have the backport: cannot tell
		{"5.4.0-150-generic", doctor.Warn},
		{"4.18.0-553.el8_10.x86_64", doctor.Warn},
		{"garbage", doctor.Warn},
	} {
		t.Run(tc.release, func(t *testing.T) {
			h := healthyHost(t) // cgroup v2
			h.release = tc.release
			r := check(t, h, "cgroup join")
			assert.Equal(t, tc.want, r.Status, r.Detail)
			if tc.want == doctor.OK {
				assert.Contains(t, r.Detail, "has the CVE-2021-4197 fix (5.16)")
				return
			}
			assert.Contains(t, r.Detail, "cannot tell whether Linux "+tc.release+" has the CVE-2021-4197 fix (in 5.16, backported to some stable kernels)")
			assert.Contains(t, r.Detail, "--userns")
			assert.Contains(t, r.Fix, "without --userns")
		})
	}

	// cgroup v1 (and hybrid) checks the joining process, not the file.
	h := healthyHost(t)
	h.release = "5.4.0-150-generic"
	h.files["/proc/self/mountinfo"] = testdata(t, "mountinfo-hybrid-ci.txt")
	r := check(t, h, "cgroup join")
	assert.Equal(t, doctor.OK, r.Status)
	assert.Contains(t, r.Detail, "cgroup v1")
}

func TestRootfsAccess(t *testing.T) {
	h := healthyHost(t)
	r := check(t, h, "rootfs access")
	assert.Equal(t, doctor.OK, r.Status, r.Detail)
	assert.Contains(t, r.Detail, "/var/lib/minibox/rootfs")

	// A rootfs in a home directory that only its owner may enter (Ubuntu
	// 21.04+ makes homes 0750).
	h.rootfsDir = "/home/ann/minibox/rootfs"
	h.modes["/home"] = fs.ModeDir | 0o755
	h.modes["/home/ann"] = fs.ModeDir | 0o750
	h.modes["/home/ann/minibox"] = fs.ModeDir | 0o700
	r = check(t, h, "rootfs access")
	assert.Equal(t, doctor.Fail, r.Status)
	assert.Contains(t, r.Detail, "/home/ann, /home/ann/minibox not searchable by others")
	assert.Contains(t, r.Detail, "uid 100000")
	assert.True(t, strings.HasPrefix(r.Fix, "chmod o+x /home/ann /home/ann/minibox  "), r.Fix)

	// Searchable but not readable is enough: o+x.
	h.modes["/home/ann"] = fs.ModeDir | 0o711
	h.modes["/home/ann/minibox"] = fs.ModeDir | 0o701
	r = check(t, h, "rootfs access")
	assert.Equal(t, doctor.OK, r.Status, r.Detail)

	// Not built yet: the directories that exist are checked.
	h.rootfsDir = "/srv/closed/new/rootfs"
	h.modes["/srv"] = fs.ModeDir | 0o755
	h.modes["/srv/closed"] = fs.ModeDir | 0o750
	r = check(t, h, "rootfs access")
	assert.Equal(t, doctor.Fail, r.Status)
	assert.Equal(t, "chmod o+x /srv/closed  (or keep the rootfs elsewhere: --rootfs DIR or MINIBOX_ROOTFS)", r.Fix)
}

func TestLeftovers(t *testing.T) {
	h := healthyHost(t)
	r := check(t, h, "leftovers")
	assert.Equal(t, doctor.OK, r.Status)
	assert.Equal(t, "nothing left by an interrupted lesson or stage", r.Detail)

	// The empty parent stage 03 leaves, and a running container's group,
	// are no leftovers.
	h.leftovers = []cleanup.Object{
		{Kind: "cgroup parent", Name: "/sys/fs/cgroup/minibox"},
		{Kind: "cgroup", Name: "/sys/fs/cgroup/minibox/aaa", Busy: "holds processes 12 (sleep)"},
	}
	r = check(t, h, "leftovers")
	assert.Equal(t, doctor.OK, r.Status, r.Detail)

	h.leftovers = append(h.leftovers,
		cleanup.Object{Kind: "mount", Name: "/tmp/minibox-lesson-1/work/m", Detail: "tmpfs tmpfs"},
		cleanup.Object{Kind: "cgroup", Name: "/sys/fs/cgroup/minibox/bbb"})
	r = check(t, h, "leftovers")
	assert.Equal(t, doctor.Warn, r.Status, "the lessons still run")
	assert.Equal(t, "2 left by an interrupted lesson or stage: mount /tmp/minibox-lesson-1/work/m (tmpfs tmpfs), cgroup /sys/fs/cgroup/minibox/bbb", r.Detail)
	assert.True(t, strings.HasPrefix(r.Fix, "sudo minibox cleanup"), r.Fix)

	for _, id := range []string{"c", "d", "e"} {
		h.leftovers = append(h.leftovers, cleanup.Object{Kind: "cgroup", Name: "/sys/fs/cgroup/minibox/" + id})
	}
	r = check(t, h, "leftovers")
	assert.True(t, strings.HasPrefix(r.Detail, "5 left by an interrupted lesson or stage: "), r.Detail)
	assert.True(t, strings.HasSuffix(r.Detail, ", and 2 more"), r.Detail)

	h.leftErr = errors.New("open /proc/self/mountinfo: permission denied")
	r = check(t, h, "leftovers")
	assert.Equal(t, doctor.Warn, r.Status)
	assert.Contains(t, r.Detail, "permission denied")
}

func TestOverlay(t *testing.T) {
	h := healthyHost(t)
	r := check(t, h, "overlayfs")
	assert.Equal(t, doctor.OK, r.Status)
	assert.Equal(t, "overlay is in /proc/filesystems", r.Detail)

	h.files["/proc/filesystems"] = testdata(t, "filesystems-without-overlay.txt")
	r = check(t, h, "overlayfs")
	assert.Equal(t, doctor.Fail, r.Status)
	assert.Contains(t, r.Detail, "lesson 4")
	assert.Contains(t, r.Fix, "modprobe overlay")

	// Not loaded yet, but the module is installed: the first mount loads it.
	h.exists["/lib/modules/"+h.KernelRelease()+"/kernel/fs/overlayfs"] = true
	r = check(t, h, "overlayfs")
	assert.Equal(t, doctor.OK, r.Status)
	assert.Contains(t, r.Detail, "loads on the first overlay mount")

	delete(h.files, "/proc/filesystems")
	r = check(t, h, "overlayfs")
	assert.Equal(t, doctor.Fail, r.Status)
	assert.Contains(t, r.Detail, "/proc/filesystems")
}

func TestMountAPI(t *testing.T) {
	h := healthyHost(t)
	r := check(t, h, "mount API")
	assert.Equal(t, doctor.OK, r.Status)
	assert.Equal(t, []string{"overlay"}, h.fsopened, "what stage 04 opens")
	assert.Contains(t, r.Detail, `fsopen("overlay") works`)
	assert.Contains(t, r.Detail, "Linux 5.2+")

	for _, tc := range []struct {
		err         error
		detail, fix string
	}{
		{syscall.ENOSYS, "no fsopen(2) (function not implemented): Linux 4.19.0-27-amd64 is older than Linux 5.2, or a seccomp filter hides it", "use Linux 5.2 or newer"},
		{syscall.EPERM, "fsopen(2) refused (operation not permitted) although root: a seccomp filter or a missing CAP_SYS_ADMIN (inside a container?)", "--privileged"},
		{syscall.ENODEV, "the kernel has no overlay file system", "modprobe overlay"},
		{syscall.EINVAL, `fsopen("overlay"): invalid argument`, "a VM or a real machine"},
	} {
		h.release = "4.19.0-27-amd64"
		h.fsopenErr = tc.err
		r = check(t, h, "mount API")
		assert.Equal(t, doctor.Fail, r.Status, tc.err)
		assert.Contains(t, r.Detail, tc.detail)
		assert.Contains(t, r.Detail, "lesson 4 needs it")
		assert.Contains(t, r.Fix, tc.fix)
	}

	// fsopen(2) needs CAP_SYS_ADMIN: as a user it cannot be tried.
	h.euid, h.fsopened = 1000, nil
	r = check(t, h, "mount API")
	assert.Equal(t, doctor.Warn, r.Status)
	assert.Contains(t, r.Detail, "not checked")
	assert.Empty(t, h.fsopened)
}

func TestDataRoot(t *testing.T) {
	h := healthyHost(t)
	r := check(t, h, "data root")
	assert.Equal(t, doctor.OK, r.Status)
	assert.Equal(t, "data root /var/lib/minibox is on ext4: overlay can keep containers' upper layers there", r.Detail)

	for _, fs := range []string{"tmpfs", "xfs", "btrfs", "0x2fc12fc1"} {
		h.dataFS = fs
		r = check(t, h, "data root")
		assert.Equal(t, doctor.OK, r.Status, fs)
		assert.Contains(t, r.Detail, " is on "+fs+":")
	}

	// Inside a container whose / is overlay: overlay refuses an overlay
	// as upper layer.
	h.dataRoot, h.dataFS = "/srv/mb", "overlay"
	r = check(t, h, "data root")
	assert.Equal(t, doctor.Fail, r.Status)
	assert.Contains(t, r.Detail, "data root /srv/mb is on overlayfs (minibox inside a container?)")
	assert.Contains(t, r.Detail, "not supported as upperdir")
	assert.Contains(t, r.Fix, "MINIBOX_ROOT=DIR (or --root DIR)")

	h.dataFS = "nfs"
	r = check(t, h, "data root")
	assert.Equal(t, doctor.Fail, r.Status)
	assert.Contains(t, r.Detail, "is on NFS")
	assert.Contains(t, r.Fix, "MINIBOX_ROOT=DIR")

	h.dataFS, h.dataErr = "", errors.New("statfs /: permission denied")
	r = check(t, h, "data root")
	assert.Equal(t, doctor.Warn, r.Status)
	assert.Contains(t, r.Detail, "cannot tell what file system /srv/mb is on: statfs /: permission denied")
}

func TestHasFilesystem(t *testing.T) {
	fs := testdata(t, "filesystems-with-overlay.txt")
	assert.True(t, doctor.HasFilesystem(fs, "overlay"), "nodev entries")
	assert.True(t, doctor.HasFilesystem(fs, "ext4"), "block-device entries have no nodev")
	assert.False(t, doctor.HasFilesystem(fs, "aufs"))
	assert.False(t, doctor.HasFilesystem(fs, "nodev"), "nodev is a flag, not a filesystem")
	assert.False(t, doctor.HasFilesystem(fs, "fuse.overlay"))
	assert.False(t, doctor.HasFilesystem("nodev\toverlayfs\n", "overlay"), "whole names only")
	assert.False(t, doctor.HasFilesystem(testdata(t, "filesystems-without-overlay.txt"), "overlay"))
}

// rootLine is the "/" line of a mountinfo, with optional fields opt.
func rootLine(opt string) string {
	return "22 1 8:2 / / rw,relatime " + opt + " - ext4 /dev/sda2 rw,errors=remount-ro"
}

func TestRootPropagation(t *testing.T) {
	for _, tc := range []struct {
		name, mountinfo, want string
	}{
		{"shared (systemd)", testdata(t, "mountinfo-v2.txt"), "shared"},
		{"private (this CI machine)", testdata(t, "mountinfo-hybrid-ci.txt"), "private"},
		{"private", "22 1 8:2 / / rw,relatime - ext4 /dev/sda2 rw", "private"},
		{"slave", rootLine("master:1"), "slave"},
		{"shared and slave", rootLine("shared:5 master:1"), "shared"},
		{"slave then shared", rootLine("master:1 shared:5"), "shared"},
		{"slave with propagate_from", rootLine("master:1 propagate_from:2"), "slave"},
		{"unbindable", rootLine("unbindable"), "unbindable"},
		{"a bind mount of / elsewhere is not /",
			"40 22 8:2 / /mnt rw,relatime shared:1 - ext4 /dev/sda2 rw\n" + rootLine(""), "private"},
		{"a mount whose root is / but mounted elsewhere",
			"41 22 0:50 / /srv rw,relatime master:3 - tmpfs tmpfs rw\n" + rootLine("shared:1"), "shared"},
		{"a mount on top of / hides the one below",
			rootLine("shared:1") + "\n" + "30 22 0:60 / / rw - tmpfs tmpfs rw", "private"},
		{"no / mount", "23 22 0:21 / /proc rw,relatime shared:13 - proc proc rw", ""},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, doctor.RootPropagation(tc.mountinfo))
		})
	}
}

func TestPropagationCheck(t *testing.T) {
	h := healthyHost(t)
	r := check(t, h, "mount propagation")
	assert.Equal(t, doctor.OK, r.Status)
	assert.Contains(t, r.Detail, "/ is shared")

	for _, p := range []struct{ opt, word string }{{"", "private"}, {"master:1", "slave"}} {
		h.files["/proc/self/mountinfo"] = rootLine(p.opt)
		r = check(t, h, "mount propagation")
		assert.Equal(t, doctor.OK, r.Status, "stages make their mounts private whatever / is")
		assert.Contains(t, r.Detail, "/ is "+p.word+" ")
	}

	h.files["/proc/self/mountinfo"] = "23 22 0:21 / /proc rw,relatime shared:13 - proc proc rw\n"
	r = check(t, h, "mount propagation")
	assert.Equal(t, doctor.Warn, r.Status)
	assert.Contains(t, r.Detail, "no / mount")

	delete(h.files, "/proc/self/mountinfo")
	r = check(t, h, "mount propagation")
	assert.Equal(t, doctor.Warn, r.Status)
}

func TestIPForward(t *testing.T) {
	h := healthyHost(t)
	r := check(t, h, "ip forwarding")
	assert.Equal(t, doctor.OK, r.Status)
	assert.Equal(t, "net.ipv4.ip_forward = 1", r.Detail)

	h.files["/proc/sys/net/ipv4/ip_forward"] = "0\n"
	r = check(t, h, "ip forwarding")
	assert.Equal(t, doctor.Warn, r.Status, "lesson 5 turns it on in its own namespace: not a failure")
	assert.Contains(t, r.Detail, "net.ipv4.ip_forward = 0")
	assert.Equal(t, "sysctl -w net.ipv4.ip_forward=1", r.Fix)

	delete(h.files, "/proc/sys/net/ipv4/ip_forward")
	r = check(t, h, "ip forwarding")
	assert.Equal(t, doctor.Warn, r.Status)
}

func TestCommands(t *testing.T) {
	for _, tc := range []struct{ check, cmd, path, fix, why string }{
		{"iproute2", "ip", "/usr/sbin/ip",
			"apt-get install iproute2 (Debian/Ubuntu) or dnf install iproute (Fedora)", "veth"},
	} {
		t.Run(tc.check, func(t *testing.T) {
			h := healthyHost(t)
			r := check(t, h, tc.check)
			assert.Equal(t, doctor.OK, r.Status)
			assert.Equal(t, tc.path, r.Detail)

			// Lesson 5 cannot run without the command.
			delete(h.paths, tc.cmd)
			r = check(t, h, tc.check)
			assert.Equal(t, doctor.Fail, r.Status)
			assert.True(t, strings.HasPrefix(r.Detail, tc.cmd+" not found: lesson 5 needs it"), r.Detail)
			assert.Contains(t, r.Detail, tc.why)
			assert.Equal(t, tc.fix, r.Fix)
		})
	}
}

// Lesson 7 hands its bundle to runc and its image to podman: each
// missing one is named, with the packages that have it.
func TestEngineTools(t *testing.T) {
	h := healthyHost(t)
	r := check(t, h, "engine tools")
	assert.Equal(t, doctor.OK, r.Status)
	assert.Equal(t, "/usr/sbin/runc, /usr/bin/podman", r.Detail)

	delete(h.paths, "podman")
	r = check(t, h, "engine tools")
	assert.Equal(t, doctor.Fail, r.Status, "lesson 7 cannot run without it")
	assert.Equal(t, "podman not found: lesson 7 runs the engine's bundle on runc and the image minibox built on podman", r.Detail)
	assert.Equal(t, []string{
		"apt-get install podman (Debian/Ubuntu), or sudo scripts/install-prereqs.sh, which installs every package the lessons need",
		"Fedora: dnf install podman",
	}, strings.Split(r.Fix, "\n"))
}

// Lesson 6 starts a registry and fills it with umoci and skopeo: each
// missing one is named, with the Debian packages that have it and the
// script that installs them all.
func TestImageTools(t *testing.T) {
	h := healthyHost(t)
	r := check(t, h, "image tools")
	assert.Equal(t, doctor.OK, r.Status)
	assert.Equal(t, "/usr/bin/docker-registry, /usr/bin/skopeo, /usr/bin/umoci, /usr/bin/curl", r.Detail)

	delete(h.paths, "umoci")
	r = check(t, h, "image tools")
	assert.Equal(t, doctor.Fail, r.Status, "lesson 6 cannot run without it")
	assert.Equal(t, "umoci not found: lesson 6 needs it (a local registry to pull from, and an image put in it with umoci and skopeo)", r.Detail)
	assert.Equal(t, []string{
		"apt-get install umoci (Debian/Ubuntu; on Ubuntu from universe), or sudo scripts/install-prereqs.sh, which installs every package the lessons need",
		"Fedora: dnf install umoci",
	}, strings.Split(r.Fix, "\n"))

	delete(h.paths, "docker-registry")
	r = check(t, h, "image tools")
	assert.Equal(t, doctor.Fail, r.Status)
	assert.True(t, strings.HasPrefix(r.Detail, "docker-registry, umoci not found: lesson 6 needs them"), r.Detail)
	assert.Equal(t, []string{
		"apt-get install docker-registry umoci (Debian/Ubuntu; on Ubuntu from universe), or sudo scripts/install-prereqs.sh, which installs every package the lessons need",
		"Fedora: dnf install docker-distribution umoci, then ln -s /usr/bin/registry /usr/local/bin/docker-registry",
	}, strings.Split(r.Fix, "\n"))
	assert.False(t, doctor.Healthy(doctor.Run(h, doctor.Checks())), "a failed check makes doctor exit 1")

	h.paths["docker-registry"] = "/usr/local/bin/docker-registry"
	h.paths["umoci"] = "/usr/bin/umoci"
	delete(h.paths, "skopeo")
	r = check(t, h, "image tools")
	assert.Equal(t, "skopeo not found: lesson 6 needs it (a local registry to pull from, and an image put in it with umoci and skopeo)", r.Detail)
	assert.Contains(t, r.Fix, "apt-get install skopeo ")
}

func TestIptables(t *testing.T) {
	install := "apt-get install iptables (Debian/Ubuntu) or dnf install iptables-nft (Fedora)"
	h := healthyHost(t)
	r := check(t, h, "iptables")
	assert.Equal(t, doctor.OK, r.Status)
	assert.Equal(t, "/usr/sbin/iptables (nf_tables backend): the nat table can be read in this network namespace", r.Detail)

	h.outputs["/usr/sbin/iptables --version"] = "iptables v1.8.7 (legacy)\n"
	r = check(t, h, "iptables")
	assert.Equal(t, doctor.OK, r.Status)
	assert.Contains(t, r.Detail, "(legacy backend)")

	// The nft backend warns when the legacy one holds tables too: both
	// apply, so a DROP there beats minibox's ACCEPT here.
	h.outputs["/usr/sbin/iptables --version"] = "iptables v1.8.9 (nf_tables)\n"
	h.outputs["/usr/sbin/iptables -t nat -S"] = "# Warning: iptables-legacy tables present, use iptables-legacy to see them\n-P PREROUTING ACCEPT\n"
	r = check(t, h, "iptables")
	assert.Equal(t, doctor.Warn, r.Status)
	assert.Contains(t, r.Detail, "the legacy backend holds rules too")
	assert.Contains(t, r.Fix, "iptables-legacy-save")

	// Installed, but the kernel refuses the backend's table.
	h.outputs["/usr/sbin/iptables -t nat -S"] = "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Invalid argument\n"
	h.outErrs = map[string]error{"/usr/sbin/iptables -t nat -S": errors.New("exit status 4")}
	r = check(t, h, "iptables")
	assert.Equal(t, doctor.Fail, r.Status, "lesson 5 cannot make its rules")
	assert.Equal(t, "/usr/sbin/iptables -t nat -S fails in this network namespace (exit status 4: iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Invalid argument): stage 05 cannot make its NAT rules", r.Detail)
	assert.Equal(t, []string{install, "installed but failing: the kernel lacks the backend's modules: with nf_tables, modprobe nf_tables (or use the legacy backend: update-alternatives --set iptables /usr/sbin/iptables-legacy); with legacy, modprobe iptable_nat"},
		strings.Split(r.Fix, "\n"))

	// Not root: the nat table cannot be read, so it is not checked.
	h = healthyHost(t)
	h.euid = 1000
	r = check(t, h, "iptables")
	assert.Equal(t, doctor.Warn, r.Status)
	assert.Equal(t, "/usr/sbin/iptables (nf_tables backend); not checked: reading the nat table needs root", r.Detail)

	// Not installed.
	h = healthyHost(t)
	delete(h.paths, "iptables")
	r = check(t, h, "iptables")
	assert.Equal(t, doctor.Fail, r.Status)
	assert.True(t, strings.HasPrefix(r.Detail, "iptables not found: lesson 5 needs it"), r.Detail)
	assert.Contains(t, r.Detail, "NAT")
	assert.Equal(t, install, r.Fix)
}

func TestGoToolchain(t *testing.T) {
	h := healthyHost(t)
	r := check(t, h, "go toolchain")
	assert.Equal(t, doctor.OK, r.Status)
	assert.True(t, strings.HasPrefix(r.Detail, "/usr/local/go/bin/go "), r.Detail)

	// sudo's secure_path leaves /usr/local/go/bin out: found there anyway.
	h.paths = map[string]string{"/usr/local/go/bin/go": "/usr/local/go/bin/go"}
	r = check(t, h, "go toolchain")
	assert.Equal(t, doctor.OK, r.Status)

	// The floor is stages.MinGo (go.mod's go line), read, not repeated.
	major, minor, found := strings.Cut(stages.MinGo, ".")
	require.True(t, found, stages.MinGo)
	m, err := strconv.Atoi(minor)
	require.NoError(t, err)
	older := fmt.Sprintf("go%s.%d.9", major, m-1)
	for version, ok := range map[string]bool{"go" + stages.MinGo + ".0": true, "go" + stages.MinGo: true, "go1.99rc1": true, older: false, "go1.19": false} {
		h.goVersion = version
		r = check(t, h, "go toolchain")
		if ok {
			assert.Equal(t, doctor.OK, r.Status, version)
		} else {
			assert.Equal(t, doctor.Fail, r.Status, version)
			assert.Contains(t, r.Detail, "minibox needs Go "+stages.MinGo+" or newer", version)
		}
	}

	h.goVersion = ""
	r = check(t, h, "go toolchain")
	assert.Equal(t, doctor.Fail, r.Status, "a go that does not run")

	h.paths = nil
	r = check(t, h, "go toolchain")
	assert.Equal(t, doctor.Fail, r.Status)
	assert.Contains(t, r.Fix, "https://go.dev/doc/install")
}

func TestBusybox(t *testing.T) {
	h := healthyHost(t)
	r := check(t, h, "static busybox")
	assert.Equal(t, doctor.OK, r.Status)
	assert.Equal(t, "/bin/busybox is statically linked", r.Detail)

	h.busybox, h.busyErr = "", rootfs.ErrNoStaticBusybox
	r = check(t, h, "static busybox")
	assert.Equal(t, doctor.Fail, r.Status)
	assert.Equal(t, rootfs.ErrNoStaticBusybox.Error(), r.Detail)
	assert.Equal(t, "apt-get install busybox-static (Debian/Ubuntu) or dnf install busybox (Fedora)", r.Fix)
}

func TestRootfs(t *testing.T) {
	h := healthyHost(t)
	r := check(t, h, "demo rootfs")
	assert.Equal(t, doctor.OK, r.Status)
	assert.Equal(t, "/var/lib/minibox/rootfs", r.Detail)

	// `minibox lesson N` builds it on first use when a static busybox is
	// there (and the static busybox check fails when it is not): a warning.
	h.rootfsOK = false
	r = check(t, h, "demo rootfs")
	assert.Equal(t, doctor.Warn, r.Status)
	assert.Equal(t, "/var/lib/minibox/rootfs is not built (the first lesson that needs it builds it)", r.Detail)
	assert.Contains(t, r.Fix, "sudo minibox rootfs")
}

// A laptop that can run every lesson passes, even before the demo rootfs
// is built; without lesson 5's tools it does not.
func TestFreshLaptopIsHealthy(t *testing.T) {
	h := healthyHost(t)
	h.rootfsOK = false
	results := doctor.Run(h, doctor.Checks())
	for _, r := range results {
		switch r.Name {
		case "demo rootfs":
			assert.Equal(t, doctor.Warn, r.Status, r.Name)
		default:
			assert.Equal(t, doctor.OK, r.Status, "%s: %s", r.Name, r.Detail)
		}
	}
	assert.True(t, doctor.Healthy(results))
	delete(h.paths, "iptables")
	assert.False(t, doctor.Healthy(doctor.Run(h, doctor.Checks())), "lesson 5 needs iptables")
	h.paths["iptables"] = "/usr/sbin/iptables"

	// Without a static busybox the rootfs cannot be built: that fails.
	h.busybox, h.busyErr = "", rootfs.ErrNoStaticBusybox
	assert.False(t, doctor.Healthy(doctor.Run(h, doctor.Checks())))
}

func TestContainer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rootFS string
		signs  []string
		want   doctor.Status
		detail string
	}{
		{"VM or laptop", "other", nil, doctor.OK, "not inside a container"},
		{"overlay root", "overlay", nil, doctor.Fail, "/ is an overlay filesystem"},
		{"docker with overlay root", "overlay", []string{"/.dockerenv"}, doctor.Fail, "/ is an overlay filesystem"},
		{"docker with ext4 root", "other", []string{"/.dockerenv"}, doctor.Warn, "signs of a container (/.dockerenv)"},
		{"podman", "other", []string{"/run/.containerenv"}, doctor.Warn, "signs of a container (/run/.containerenv)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := healthyHost(t)
			h.rootFS = tc.rootFS
			for _, s := range tc.signs {
				h.exists[s] = true
			}
			r := check(t, h, "container")
			assert.Equal(t, tc.want, r.Status)
			assert.Contains(t, r.Detail, tc.detail)
			switch tc.want {
			case doctor.Fail:
				assert.Contains(t, r.Fix, "MINIBOX_ROOT")
			case doctor.Warn:
				assert.Contains(t, r.Detail, "the lessons can run")
				assert.Contains(t, r.Fix, "EPERM")
			}
		})
	}
}

func TestStatusString(t *testing.T) {
	assert.Equal(t, "ok", doctor.OK.String())
	assert.Equal(t, "warn", doctor.Warn.String())
	assert.Equal(t, "FAIL", doctor.Fail.String())
}

func TestHealthy(t *testing.T) {
	assert.True(t, doctor.Healthy(nil))
	assert.True(t, doctor.Healthy([]doctor.Result{{Status: doctor.OK}, {Status: doctor.OK}}))
	assert.True(t, doctor.Healthy([]doctor.Result{{Status: doctor.OK}, {Status: doctor.Warn}}), "warnings do not stop a lesson")
	assert.False(t, doctor.Healthy([]doctor.Result{{Status: doctor.OK}, {Status: doctor.Fail}, {Status: doctor.Warn}}))
}

func TestPrint(t *testing.T) {
	results := []doctor.Result{
		{Name: "root", Status: doctor.OK, Detail: "running as root", Fix: "never shown"},
		{Name: "ip forwarding", Status: doctor.Warn, Detail: "net.ipv4.ip_forward = 0", Fix: "sysctl -w net.ipv4.ip_forward=1"},
		{Name: "namespaces", Status: doctor.Fail, Detail: "cannot create: net, user", Fix: "first fix\nsecond fix"},
	}

	t.Run("plain", func(t *testing.T) {
		var b bytes.Buffer
		doctor.Print(&b, results, false)
		want := "" +
			"✓ root           running as root\n" +
			"! ip forwarding  net.ipv4.ip_forward = 0\n" +
			"                 fix: sysctl -w net.ipv4.ip_forward=1\n" +
			"✗ namespaces     cannot create: net, user\n" +
			"                 fix: first fix\n" +
			"                 fix: second fix\n" +
			"\n1 check(s) failed: fix them, then run `minibox doctor` again.\n"
		assert.Equal(t, want, b.String())
		assert.NotContains(t, b.String(), "\x1b[")
		assert.NotContains(t, b.String(), "never shown", "an OK check's fix is not printed")
	})

	t.Run("colour", func(t *testing.T) {
		var b bytes.Buffer
		doctor.Print(&b, results, true)
		out := b.String()
		assert.Contains(t, out, "\x1b[32m✓\x1b[0m root ")
		assert.Contains(t, out, "\x1b[33m!\x1b[0m ip forwarding ")
		assert.Contains(t, out, "\x1b[31m✗\x1b[0m namespaces ")
		assert.Contains(t, out, "fix: second fix\n")
	})

	t.Run("warnings only", func(t *testing.T) {
		var b bytes.Buffer
		doctor.Print(&b, results[:2], false)
		assert.True(t, strings.HasSuffix(b.String(), "\nReady for the lessons (1 warning(s) above are worth reading).\n"), b.String())
	})

	t.Run("all ok", func(t *testing.T) {
		var b bytes.Buffer
		doctor.Print(&b, results[:1], false)
		assert.Equal(t, "✓ root  running as root\n\nReady for the lessons.\n", b.String())
	})
}

// TestRealHost runs the checks on this machine. It asserts only what holds
// on any host the lessons support — a cgroup v1/hybrid CI VM and a cgroup v2
// laptop alike — not this machine's accidents (ip_forward, propagation of /).
func TestRealHost(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.CheckLeaks(t)

	host := doctor.Real{
		RootfsDir: t.TempDir(),
		DataRoot:  filepath.Join(t.TempDir(), "data"), // not made yet
		Busybox:   rootfs.FindStaticBusybox,
		IsBuilt:   rootfs.IsBuilt,
	}
	results := doctor.Run(host, doctor.Checks())
	byName := map[string]doctor.Result{}
	for _, r := range results {
		byName[r.Name] = r
	}

	assert.Equal(t, doctor.OK, byName["root"].Status)
	assert.Equal(t, doctor.OK, byName["kernel"].Status, byName["kernel"].Detail)
	osrelease, err := os.ReadFile("/proc/sys/kernel/osrelease")
	require.NoError(t, err)
	assert.Equal(t, "Linux "+strings.TrimSpace(string(osrelease)), byName["kernel"].Detail)

	ns := byName["namespaces"]
	assert.Equal(t, doctor.OK, ns.Status, "%s\n%s", ns.Detail, ns.Fix)
	assert.Equal(t, "all six can be created: mnt uts ipc pid net user", ns.Detail)

	assert.Equal(t, doctor.OK, byName["overlayfs"].Status, byName["overlayfs"].Detail)
	// Stage 04's first step, tried for real: a supported host has it.
	assert.Equal(t, doctor.OK, byName["mount API"].Status, byName["mount API"].Detail)
	assert.Equal(t, doctor.OK, byName["data root"].Status, byName["data root"].Detail)

	// The cgroup verdict agrees with this host's own mountinfo, whichever of
	// v2, hybrid or v1 it is.
	mi, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	var st unix.Statfs_t
	require.NoError(t, unix.Statfs("/sys/fs/cgroup", &st))
	mode := doctor.ParseCgroupMounts(string(mi)).Decide(st.Type == unix.CGROUP2_SUPER_MAGIC)
	assert.Equal(t, st.Type == unix.CGROUP2_SUPER_MAGIC, host.IsCgroup2("/sys/fs/cgroup"))
	// Doctor and cleanup decide by one rule: the trees cleanup looks in are
	// the ones doctor's mode names.
	trees := cleanup.CgroupTrees(doctor.CgroupRoot)
	if mode.Mode == "v2" {
		assert.Equal(t, []string{doctor.CgroupRoot}, trees)
	} else {
		for c, dir := range mode.V1 {
			real, err := filepath.EvalSymlinks(dir)
			require.NoError(t, err)
			assert.Contains(t, trees, real, "cleanup looks in the %s tree", c)
		}
	}
	if mode.Mode == "v2" {
		if c, err := os.ReadFile(mode.V2Root + "/cgroup.controllers"); err == nil {
			mode.V2Available = strings.Fields(string(c))
		}
		if c, err := os.ReadFile(mode.V2Root + "/cgroup.subtree_control"); err == nil {
			mode.V2Enabled = strings.Fields(string(c))
		}
	}
	// A supported host enables in its cgroup2 root what it gives v2
	// (systemd does; on a hybrid host v1 has memory, cpu and pids).
	assert.Empty(t, mode.NotEnabled(), "stage 03 would stop on this host")
	cg := byName["cgroups"]
	assert.Equal(t, doctor.OK, cg.Status, "%s\n%s", cg.Detail, cg.Fix)
	prefix := map[string]string{"v2": "cgroup v2 (unified) at ", "hybrid": "hybrid: v1 controllers under ", "v1": "cgroup v1 under "}[mode.Mode]
	require.NotEmpty(t, prefix, "cgroup mode %q", mode.Mode)
	assert.True(t, strings.HasPrefix(cg.Detail, prefix), "mode %s, detail %q", mode.Mode, cg.Detail)
	for c, v := range mode.Usable() {
		assert.Contains(t, cg.Detail, c+" ("+v+")")
	}

	// The temporary rootfs directory is empty: not built, and said so; a
	// lesson would build it, so that is a warning.
	assert.Equal(t, doctor.Warn, byName["demo rootfs"].Status)
	assert.True(t, strings.HasPrefix(byName["demo rootfs"].Detail, host.RootfsDir+" is not built"), byName["demo rootfs"].Detail)

	// t.TempDir()'s parent is 0700: uid 100000 cannot reach the rootfs.
	access := byName["rootfs access"]
	assert.Equal(t, doctor.Fail, access.Status, access.Detail)
	assert.Contains(t, access.Fix, "chmod o+x "+filepath.Dir(host.RootfsDir))

	// The cleanup registry's answer, less what minibox keeps on purpose.
	assert.Contains(t, []doctor.Status{doctor.OK, doctor.Warn}, byName["leftovers"].Status)

	// A propagation is always found: every mount namespace has a /.
	assert.Equal(t, doctor.OK, byName["mount propagation"].Status, byName["mount propagation"].Detail)
}

func TestRealHostMethods(t *testing.T) {
	var h doctor.Real
	assert.Equal(t, os.Geteuid(), h.Euid())
	osrelease, err := os.ReadFile("/proc/sys/kernel/osrelease")
	require.NoError(t, err)
	assert.Equal(t, strings.TrimSpace(string(osrelease)), h.KernelRelease())
	assert.True(t, h.Exists("/proc/self"))
	assert.False(t, h.Exists("/nonexistent/minibox"))
	fs, err := h.ReadFile("/proc/filesystems")
	require.NoError(t, err)
	assert.True(t, doctor.HasFilesystem(fs, "proc"))
	_, err = h.ReadFile("/nonexistent/minibox")
	assert.ErrorIs(t, err, os.ErrNotExist)
	p, err := h.LookPath("sh")
	require.NoError(t, err)
	assert.True(t, filepath.IsAbs(p))
	assert.Contains(t, []string{"overlay", "other"}, h.RootFstype())
}

func TestRealTryFsopen(t *testing.T) {
	testenv.RequireRoot(t)
	var h doctor.Real
	assert.NoError(t, h.TryFsopen("overlay"))
	assert.NoError(t, h.TryFsopen("tmpfs"))
	// A probe that ignored its argument would not fail here.
	assert.ErrorIs(t, h.TryFsopen("no-such-fs-minibox"), syscall.ENODEV)
}

// DataRootFS names the file system the data root is on, or would be on
// (the nearest directory that exists), overlay included: mounted here for
// real, as in a container whose / is overlay.
func TestRealDataRootFS(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.CheckLeaks(t)
	tmp := t.TempDir()
	var st unix.Statfs_t
	require.NoError(t, unix.Statfs(tmp, &st))
	dir, fstype, err := doctor.Real{DataRoot: filepath.Join(tmp, "not", "made")}.DataRootFS()
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(tmp, "not", "made"), dir)
	assert.NotEmpty(t, fstype)
	assert.NotEqual(t, "overlay", fstype, "t.TempDir() is not on overlay on a host the lessons support")

	t.Setenv("MINIBOX_ROOT", filepath.Join(tmp, "env"))
	dir, _, err = doctor.Real{}.DataRootFS()
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(tmp, "env"), dir, "$MINIBOX_ROOT, as the stages read it")

	for _, d := range []string{"tmpfs", "lower", "upper", "work", "merged"} {
		require.NoError(t, os.Mkdir(filepath.Join(tmp, d), 0o755))
	}
	mounts := []struct{ fstype, point, opts string }{
		{"tmpfs", "tmpfs", "size=1m"},
		{"overlay", "merged", "lowerdir=" + tmp + "/lower,upperdir=" + tmp + "/upper,workdir=" + tmp + "/work"},
	}
	for _, m := range mounts {
		point := filepath.Join(tmp, m.point)
		require.NoError(t, unix.Mount("minibox-test", point, m.fstype, 0, m.opts))
		t.Cleanup(func() { _ = unix.Unmount(point, unix.MNT_DETACH) })
		_, fstype, err = doctor.Real{DataRoot: filepath.Join(point, "minibox")}.DataRootFS()
		require.NoError(t, err)
		assert.Equal(t, m.fstype, fstype)
	}
	r := check(t, doctor.Real{DataRoot: filepath.Join(tmp, "merged", "minibox")}, "data root")
	assert.Equal(t, doctor.Fail, r.Status, r.Detail)
	assert.Contains(t, r.Detail, "is on overlayfs")
}

func TestRealTryNamespaceReportsFailure(t *testing.T) {
	testenv.RequireRoot(t)
	var h doctor.Real
	assert.NoError(t, h.TryNamespace(syscall.CLONE_NEWUTS))
	// clone(2): CLONE_NEWUSER with CLONE_FS is EINVAL, and no child is
	// made. A probe that ignored its flag would not fail here.
	err := h.TryNamespace(syscall.CLONE_NEWUSER | syscall.CLONE_FS)
	assert.ErrorIs(t, err, syscall.EINVAL)
}
