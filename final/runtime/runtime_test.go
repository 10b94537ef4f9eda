package runtime_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/runtime"
)

func TestRunExitStatus(t *testing.T) {
	r := kernelTest(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"/bin/true"}, 0},
		{[]string{"sh", "-c", "exit 7"}, 7},
		{[]string{"sh", "-c", "exit 255"}, 255},
	} {
		_, code := run(t, r, "exit"+strconv.Itoa(tc.code), testSpec(tc.args...))
		assert.Equal(t, tc.code, code, "%v", tc.args)
	}
	list, err := r.List()
	require.NoError(t, err)
	assert.Empty(t, list, "every container deleted")
}

func TestLifecycle(t *testing.T) {
	r := kernelTest(t)
	s := testSpec("sleep", "100")
	s.Annotations = map[string]string{"org.example": "yes"}
	s.Linux.Resources.Pids = &specs.LinuxPids{Limit: int64p(64)}
	s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: int64p(64 << 20)}
	bundle := writeBundle(t, s)
	pidFile := filepath.Join(t.TempDir(), "pid")
	pid, err := r.Create("life", bundle, runtime.IO{}, "", pidFile)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Delete("life", true) })

	st, err := r.State("life")
	require.NoError(t, err)
	assert.Equal(t, specs.StateCreated, st.Status)
	assert.Equal(t, pid, st.Pid)
	assert.Equal(t, bundle, st.Bundle)
	assert.Equal(t, "yes", st.Annotations["org.example"])
	data, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(pid), string(data))

	// The init is in the container's cgroup, with its limits, before Start.
	groups := cgroupDirs(t, "life")
	for _, d := range groups {
		procs, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		require.NoError(t, err)
		assert.Contains(t, strings.Fields(string(procs)), strconv.Itoa(pid), d)
	}
	assert.Equal(t, "64", readCgroup(t, "life", "pids", "pids.max"))
	assert.Equal(t, strconv.Itoa(64<<20), readCgroup(t, "life", "memory", "memory.limit_in_bytes", "memory.max"))

	_, err = r.Create("life", bundle, runtime.IO{}, "", "")
	assert.ErrorContains(t, err, "exists already")

	list, err := r.List()
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, "life", list[0].ID)

	require.NoError(t, r.Start("life"))
	waitStatus(t, r, "life", specs.StateRunning)
	// The container's process itself (after execve, the one thread left:
	// the one that joined) is in every group: /proc/PID/cgroup.
	data, err = os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	require.NoError(t, err)
	for _, d := range groups {
		controller, _, _ := strings.Cut(strings.TrimPrefix(d, "/sys/fs/cgroup/"), "/")
		if controller == "minibox" { // v2: 0::/minibox/life
			controller = ""
		}
		assert.Regexp(t, `(?m)^[0-9]+:`+controller+`:/minibox/life$`, string(data), "the process in %s", d)
	}
	assert.ErrorContains(t, r.Start("life"), "not created")
	assert.ErrorContains(t, r.Delete("life", false), "running")
	assert.Eventually(t, func() bool {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		return string(comm) == "sleep\n"
	}, 2*time.Second, 5*time.Millisecond, "Start made the init become the process")

	require.NoError(t, r.Kill("life", unix.SIGKILL, false))
	assert.Equal(t, 137, wait(t, pid))
	waitStatus(t, r, "life", specs.StateStopped)
	require.NoError(t, r.Delete("life", false))
	_, err = r.State("life")
	assert.ErrorContains(t, err, "does not exist")
	for _, d := range groups {
		assert.NoDirExists(t, d, "delete removes the cgroup")
	}
}

func TestDeleteForceKillsEverything(t *testing.T) {
	r := kernelTest(t)
	bundle := writeBundle(t, testSpec("sh", "-c", "sleep 100 & sleep 100"))
	pid, err := r.Create("force", bundle, runtime.IO{}, "", "")
	require.NoError(t, err)
	require.NoError(t, r.Start("force"))
	waitStatus(t, r, "force", specs.StateRunning)
	require.NoError(t, r.Kill("force", unix.SIGKILL, true))
	assert.Equal(t, 137, wait(t, pid))
	require.NoError(t, r.Delete("force", true))
}

// cgroupDirs are the container's cgroup directories on this host.
func isCgroup2(t *testing.T) bool {
	var fs unix.Statfs_t
	require.NoError(t, unix.Statfs("/sys/fs/cgroup", &fs))
	return fs.Type == unix.CGROUP2_SUPER_MAGIC
}

func cgroupDirs(t *testing.T, id string) []string {
	if isCgroup2(t) {
		return []string{"/sys/fs/cgroup/minibox/" + id}
	}
	return []string{"/sys/fs/cgroup/memory/minibox/" + id, "/sys/fs/cgroup/cpu/minibox/" + id, "/sys/fs/cgroup/pids/minibox/" + id, "/sys/fs/cgroup/devices/minibox/" + id}
}

// readCgroup reads a v1 file (controller/minibox/id/v1) or its v2 twin.
func readCgroup(t *testing.T, id, controller, v1 string, v2 ...string) string {
	data, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, "minibox", id, v1))
	if err != nil && len(v2) > 0 {
		data, err = os.ReadFile(filepath.Join("/sys/fs/cgroup/minibox", id, v2[0]))
	} else if err != nil {
		data, err = os.ReadFile(filepath.Join("/sys/fs/cgroup/minibox", id, v1))
	}
	require.NoError(t, err)
	return strings.TrimSpace(string(data))
}

// viewScript prints what a container sees, one "name: value" per line.
const viewScript = `
echo "pid: $$"
echo "host: $(hostname)"
grep -E '^(Cap|NoNewPrivs|Uid|Gid|Groups)' /proc/self/status | sed 's/:\t/: /'
echo "nofile: $(ulimit -n) $(ulimit -Hn)"
echo "mem: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
echo "pidsmax: $(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)"
touch /newfile 2>/dev/null && echo "root: rw" || echo "root: ro"
echo "kcore: $(cat /proc/kcore | wc -c)"
echo "firmware: $(ls /sys/firmware | wc -l) $(awk '$2=="/sys/firmware"{print $3}' /proc/mounts)"
echo "procsys: $(awk '$2=="/proc/sys"{split($4,o,","); print o[1]}' /proc/mounts)"
echo "null: $(stat -c '%F %t %T %a' /dev/null)"
echo "urandom: $(head -c 4 /dev/urandom | wc -c)"
mknod /tmp/tun c 10 200 && { (exec 3<>/tmp/tun) 2>/dev/null && echo "tun: opened" || echo "tun: denied"; }
echo "ptmx: $(readlink /dev/ptmx) fd: $(readlink /dev/fd)"
echo "mqueue: $(awk '$2=="/dev/mqueue"{print $3}' /proc/mounts)"
echo "data: $(cat /data/in)"
echo written > /data/out && echo "datawrite: ok"
touch /rodata/x 2>/dev/null && echo "rodata: rw" || echo "rodata: ro"
echo "rodatafile: $(cat /rodata/in)"
echo x > /scratch/f && echo "scratch: $(awk '$2=="/scratch"{print $3}' /proc/mounts)"
echo "cwd: $(pwd)"
echo "env: $FOO"
`

func viewSpec(t *testing.T) (*specs.Spec, string) {
	host := t.TempDir()
	require.NoError(t, os.Chmod(host, 0o777))
	require.NoError(t, os.WriteFile(filepath.Join(host, "in"), []byte("from the host\n"), 0o644))
	s := testSpec("sh", "-c", viewScript)
	s.Hostname = "viewbox"
	s.Process.Cwd = "/tmp"
	s.Process.Env = append(s.Process.Env, "FOO=bar")
	s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 100, Hard: 200}}
	s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: int64p(48 << 20)}
	s.Linux.Resources.Pids = &specs.LinuxPids{Limit: int64p(50)}
	s.Mounts = append(s.Mounts,
		specs.Mount{Destination: "/data", Type: "bind", Source: host, Options: []string{"bind", "rw", "rprivate"}},
		specs.Mount{Destination: "/rodata", Type: "bind", Source: host, Options: []string{"rbind", "ro", "nosuid", "nodev"}},
		specs.Mount{Destination: "/scratch", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "size=1m"}},
		specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs"},
	)
	return s, host
}

func TestContainerView(t *testing.T) {
	r := kernelTest(t)
	s, host := viewSpec(t)
	out, code := run(t, r, "view", s)
	require.Equal(t, 0, code, out)
	for name, want := range map[string]string{
		"pid":        "1",
		"host":       "viewbox",
		"CapEff":     "00000000a80425fb", // docker's 14 capabilities
		"CapBnd":     "00000000a80425fb",
		"CapAmb":     "0000000000000000",
		"NoNewPrivs": "1",
		"Uid":        "0\t0\t0\t0",
		"nofile":     "100 200",
		"mem":        strconv.Itoa(48 << 20),
		"pidsmax":    "50",
		"root":       "ro",
		"kcore":      "0",
		"firmware":   "0 tmpfs",
		"procsys":    "ro",
		"null":       "character special file 1 3 666",
		"urandom":    "4",
		"ptmx":       "pts/ptmx fd: /proc/self/fd",
		"mqueue":     "mqueue",
		"data":       "from the host",
		"datawrite":  "ok",
		"rodata":     "ro",
		"rodatafile": "from the host",
		"scratch":    "tmpfs",
		"cwd":        "/tmp",
		"env":        "bar",
	} {
		assert.Equal(t, want, field(out, name+": "), "%s in:\n%s", name, out)
	}
	assert.Equal(t, "denied", field(out, "tun: "), "a device not in the allowed list (/dev/net/tun), made with CAP_MKNOD:\n%s", out)
	written, err := os.ReadFile(filepath.Join(host, "out"))
	require.NoError(t, err)
	assert.Equal(t, "written\n", string(written))
}

func TestUserAndCapabilities(t *testing.T) {
	r := kernelTest(t)
	s, _ := viewSpec(t)
	s.Process.User = specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{10, 20}}
	s.Process.NoNewPrivileges = false
	c := s.Process.Capabilities
	c.Inheritable = []string{"CAP_NET_BIND_SERVICE"}
	c.Ambient = []string{"CAP_NET_BIND_SERVICE"}
	out, code := run(t, r, "user", s)
	require.Equal(t, 0, code, out)
	assert.Equal(t, "1000\t1000\t1000\t1000", field(out, "Uid: "), out)
	assert.Equal(t, "1001\t1001\t1001\t1001", field(out, "Gid: "), out)
	assert.Equal(t, "10 20", field(out, "Groups: "), out)
	// A non-root process keeps only its ambient capabilities across execve.
	assert.Equal(t, "0000000000000400", field(out, "CapEff: "), out)
	assert.Equal(t, "0000000000000400", field(out, "CapAmb: "), out)
	assert.Equal(t, "00000000a80425fb", field(out, "CapBnd: "), out)
	assert.Equal(t, "0", field(out, "NoNewPrivs: "), out)
	assert.Equal(t, "ro", field(out, "rodata: "), out)
}

func TestUserNamespace(t *testing.T) {
	r := kernelTest(t)
	s := testSpec("sh", "-c", `echo "uidmap: $(cat /proc/self/uid_map | tr -s ' ')"; echo "uid: $(id -u)"; grep CapEff /proc/self/status | sed 's/:\t/: /'; sleep 100`)
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	bundle := writeBundle(t, s)
	rd, wr, err := os.Pipe()
	require.NoError(t, err)
	defer rd.Close()
	pid, err := r.Create("userns", bundle, runtime.IO{Stdout: wr, Stderr: wr}, "", "")
	wr.Close()
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Delete("userns", true) })
	require.NoError(t, r.Start("userns"))
	buf := make([]byte, 4096)
	n, _ := rd.Read(buf)
	out := string(buf[:n])
	for !strings.Contains(out, "CapEff") {
		k, err := rd.Read(buf)
		require.NoError(t, err, out)
		out += string(buf[:k])
	}
	assert.Equal(t, "0 100000 65536", field(out, "uidmap: "), out)
	assert.Equal(t, "0", field(out, "uid: "), out)
	assert.Equal(t, "00000000a80425fb", field(out, "CapEff: "), out)
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	require.NoError(t, err)
	assert.Contains(t, string(status), "Uid:\t100000\t100000\t100000\t100000", "container root is host uid 100000")

	_, err = r.Exec("userns", specs.Process{Args: []string{"true"}, Cwd: "/"}, runtime.IO{})
	assert.ErrorContains(t, err, "user namespace")
	require.NoError(t, r.Delete("userns", true))
}

func TestJoinNetworkNamespaceByPath(t *testing.T) {
	r := kernelTest(t)
	holder := exec.Command("sleep", "100")
	holder.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNET}
	require.NoError(t, holder.Start())
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	nsPath := "/proc/" + strconv.Itoa(holder.Process.Pid) + "/ns/net"
	want, err := os.Readlink(nsPath)
	require.NoError(t, err)

	s := testSpec("sh", "-c", `echo "net: $(readlink /proc/self/ns/net)"; echo "uts: $(readlink /proc/self/ns/uts)"`)
	for i, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			s.Linux.Namespaces[i].Path = nsPath
		}
	}
	out, code := run(t, r, "joinnet", s)
	require.Equal(t, 0, code, out)
	assert.Equal(t, want, field(out, "net: "), out)
	ours, err := os.Readlink("/proc/self/ns/uts")
	require.NoError(t, err)
	assert.NotEqual(t, ours, field(out, "uts: "), "the other namespaces are still new")
}

func TestExec(t *testing.T) {
	r := kernelTest(t)
	s := testSpec("sh", "-c", "echo marker > /scratch/f; sleep 100")
	s.Hostname = "execbox"
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/scratch", Type: "tmpfs", Source: "tmpfs"})
	bundle := writeBundle(t, s)
	pid, err := r.Create("exec", bundle, runtime.IO{}, "", "")
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Delete("exec", true) })
	require.NoError(t, r.Start("exec"))
	waitStatus(t, r, "exec", specs.StateRunning)

	p := *s.Process
	p.Args = []string{"sh", "-c", `
while [ ! -s /scratch/f ]; do sleep 0.01; done
echo "host: $(hostname)"; echo "file: $(cat /scratch/f)"; echo "pid: $$"; echo "cwd: $(pwd)"
echo "init: $(cat /proc/1/comm)"; echo "cg: $(grep -E 'pids|^0::' /proc/self/cgroup | head -1)"
grep -qx $$ /sys/fs/cgroup/pids/cgroup.procs /sys/fs/cgroup/cgroup.procs 2>/dev/null && echo "incgroup: yes"
grep -E '^(CapEff|NoNewPrivs|Uid)' /proc/self/status | sed 's/:\t/: /'`}
	p.Cwd = "/scratch"
	p.User = specs.User{UID: 0, GID: 0}
	rd, wr, err := os.Pipe()
	require.NoError(t, err)
	defer rd.Close()
	proc, err := r.Exec("exec", p, runtime.IO{Stdout: wr, Stderr: wr})
	wr.Close()
	require.NoError(t, err)
	out := readAll(t, rd)
	ps, err := proc.Wait()
	require.NoError(t, err)
	require.Equal(t, 0, ps.ExitCode(), out)
	assert.Equal(t, "execbox", field(out, "host: "), out)
	assert.Equal(t, "marker", field(out, "file: "), "the container's own tmpfs: its mount namespace")
	assert.Equal(t, "sleep", field(out, "init: "), "its PID namespace: PID 1 is the container's process")
	execPid, _ := strconv.Atoi(field(out, "pid: "))
	assert.True(t, execPid > 1 && execPid < 100, "a PID of the container's namespace, got %d", execPid)
	assert.Equal(t, "/scratch", field(out, "cwd: "))
	assert.True(t, strings.HasSuffix(field(out, "cg: "), ":/"), "the root of the container's cgroup namespace: %s", out)
	assert.Equal(t, "yes", field(out, "incgroup: "), "listed in the container's cgroup.procs")
	assert.Equal(t, "00000000a80425fb", field(out, "CapEff: "), out)
	assert.Equal(t, "1", field(out, "NoNewPrivs: "), out)

	_, err = r.Exec("exec", specs.Process{Args: []string{"nosuchcommand"}, Cwd: "/"}, runtime.IO{})
	assert.ErrorContains(t, err, `"nosuchcommand": executable file not found`)

	require.NoError(t, r.Delete("exec", true))
	assert.False(t, exists("/proc/"+strconv.Itoa(pid)), "delete --force killed and reaped the init")
	_, err = r.Exec("exec", p, runtime.IO{})
	assert.ErrorContains(t, err, "does not exist")
}

func readAll(t *testing.T, f *os.File) string {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := f.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
