package runtime_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/runtime"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// runcSpec is what `runc spec` writes, with a command instead of the
// interactive sh, our rootfs, and a cgroup in our sub-tree (runc's
// default, /<id>, is outside it).
func runcSpec(t *testing.T, id string, args ...string) *specs.Spec {
	t.Helper()
	_, err := exec.LookPath("runc")
	testenv.Require(t, err == nil, "runc is not installed (apt-get install runc)")
	dir := t.TempDir()
	cmd := exec.Command("runc", "spec")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	require.NoError(t, err)
	var s specs.Spec
	require.NoError(t, json.Unmarshal(data, &s))
	s.Process.Terminal = false
	s.Process.Args = args
	s.Root.Path = sharedRootfs
	s.Linux.CgroupsPath = "/minibox/" + id
	return &s
}

// statusCaps are the capability lines of /proc/self/status.
const statusCaps = `grep -E '^(Cap|NoNewPrivs)' /proc/self/status; hostname`

func TestRuncSpecBundleRunsOnMinibox(t *testing.T) {
	r := kernelTest(t)
	_, code := run(t, r, "runc-true", runcSpec(t, "runc-true", "/bin/true"))
	assert.Equal(t, 0, code)
	out, code := run(t, r, "runc-echo", runcSpec(t, "runc-echo", "sh", "-c", "echo ok"))
	assert.Equal(t, 0, code)
	assert.Equal(t, "ok\n", out)

	// Same bundle, same process: minibox and runc agree on capabilities,
	// no_new_privs and hostname.
	s := runcSpec(t, "runc-caps", "sh", "-c", statusCaps)
	ours, code := run(t, r, "runc-caps", s)
	require.Equal(t, 0, code, ours)
	theirs, code := runcRun(t, "runc-caps", s)
	require.Equal(t, 0, code, theirs)
	assert.Equal(t, theirs, ours)
	assert.Contains(t, ours, "CapEff:\t0000000020000420") // runc spec's AUDIT_WRITE, KILL, NET_BIND_SERVICE
}

func TestMiniboxSpecBundleRunsOnRunc(t *testing.T) {
	kernelTest(t)
	_, err := exec.LookPath("runc")
	testenv.Require(t, err == nil, "runc is not installed (apt-get install runc)")
	for _, args := range [][]string{{"/bin/true"}, {"sh", "-c", "echo ok"}} {
		s := testSpec(args...)
		s.Linux.CgroupsPath = "/minibox/mbspec"
		out, code := runcRun(t, "mbspec", s)
		assert.Equal(t, 0, code, out)
		if len(args) > 1 {
			assert.Equal(t, "ok\n", out)
		}
	}
	// The full default spec as `minibox runtime spec` writes it (runc's
	// own checks on every field, the terminal aside).
	s := runtime.Spec()
	s.Process.Terminal = false
	s.Process.Args = []string{"sh", "-c", statusCaps}
	s.Root.Path = sharedRootfs
	s.Linux.CgroupsPath = "/minibox/mbspec-caps"
	out, code := runcRun(t, "mbspec-caps", &s)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "CapEff:\t00000000a80425fb")
	assert.Contains(t, out, "minibox")
}

// runcRun runs the bundle on runc, with a state root of its own.
func runcRun(t *testing.T, id string, s *specs.Spec) (string, int) {
	t.Helper()
	bundle := writeBundle(t, s)
	root := t.TempDir()
	cmd := exec.Command("runc", "--root", root, "run", "--bundle", bundle, id)
	out, err := cmd.CombinedOutput()
	t.Cleanup(func() { _ = exec.Command("runc", "--root", root, "delete", "--force", id).Run() })
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	require.NoError(t, err, string(out))
	return string(out), 0
}

func TestTerminalViaConsoleSocket(t *testing.T) {
	r := kernelTest(t)
	sock := filepath.Join(t.TempDir(), "console.sock")
	ln, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(ln)
	require.NoError(t, unix.Bind(ln, &unix.SockaddrUnix{Name: sock}))
	require.NoError(t, unix.Listen(ln, 1))

	s := testSpec("sh", "-c", `echo "tty: $(tty)"; [ -t 0 ] && echo "stdin: terminal"; read line; echo "got: $line"`)
	s.Process.Terminal = true
	s.Process.ConsoleSize = &specs.Box{Height: 30, Width: 100}
	bundle := writeBundle(t, s)
	received := make(chan *os.File, 1)
	go func() {
		conn, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
		if err != nil {
			received <- nil
			return
		}
		defer unix.Close(conn)
		received <- recvFD(t, conn)
	}()
	pid, err := r.Create("tty", bundle, runtime.IO{}, sock, "")
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Delete("tty", true) })
	var master *os.File
	select {
	case master = <-received:
	case <-time.After(5 * time.Second):
	}
	require.NotNil(t, master, "no terminal master received on the console socket")
	defer master.Close()
	ws, err := unix.IoctlGetWinsize(int(master.Fd()), unix.TIOCGWINSZ)
	require.NoError(t, err)
	assert.Equal(t, uint16(100), ws.Col, "process.consoleSize")
	require.NoError(t, r.Start("tty"))
	_, err = master.Write([]byte("hello\n"))
	require.NoError(t, err)
	var out strings.Builder
	buf := make([]byte, 1024)
	for !strings.Contains(out.String(), "got: hello") {
		require.NoError(t, master.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, err := master.Read(buf)
		out.Write(buf[:n])
		require.NoError(t, err, out.String())
	}
	text := strings.ReplaceAll(out.String(), "\r", "")
	assert.Equal(t, "/dev/pts/0", field(text, "tty: "), "the container's own devpts: %s", text)
	assert.Equal(t, "terminal", field(text, "stdin: "), text)
	assert.Equal(t, 0, wait(t, pid))
	require.NoError(t, r.Delete("tty", false))

	s.Process.Args = []string{"true"}
	_, err = r.Create("tty2", writeBundle(t, s), runtime.IO{}, "", "")
	assert.ErrorContains(t, err, "process.terminal is true")
}

// recvFD receives one descriptor sent with SCM_RIGHTS.
func recvFD(t *testing.T, conn int) *os.File {
	buf, oob := make([]byte, 256), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(conn, buf, oob, 0)
	if err != nil {
		return nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil
	}
	// Non-blocking, so that os.File can use deadlines on it.
	if unix.SetNonblock(fds[0], true) != nil {
		return nil
	}
	return os.NewFile(uintptr(fds[0]), "pty-master")
}

func TestBadConfig(t *testing.T) {
	r := kernelTest(t)
	var nofile unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile))
	for _, tc := range []struct {
		name   string
		change func(*specs.Spec)
		want   string
	}{
		{"rlimit above hard", func(s *specs.Spec) {
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 10, Hard: nofile.Max + 1}}
		}, fmt.Sprintf("config.json: process.rlimits[0]: RLIMIT_NOFILE hard %d above the inherited hard limit %d", nofile.Max+1, nofile.Max)},
		{"unknown rlimit", func(s *specs.Spec) { s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_FOO"}} }, `process.rlimits[0].type "RLIMIT_FOO": unknown`},
		{"unknown capability", func(s *specs.Spec) { s.Process.Capabilities.Effective = []string{"CAP_FLY"} }, `process.capabilities.effective[0]: unknown capability "CAP_FLY"`},
		{"no args", func(s *specs.Spec) { s.Process.Args = nil }, "process.args: empty"},
		{"relative cwd", func(s *specs.Spec) { s.Process.Cwd = "tmp" }, `process.cwd "tmp": must be an absolute path`},
		{"no mount namespace", func(s *specs.Spec) {
			s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.PIDNamespace}}
		}, "linux.namespaces: no mount namespace"},
		{"hostname without uts", func(s *specs.Spec) {
			s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.MountNamespace}}
		}, `hostname "minibox": needs a uts namespace`},
		{"unknown namespace", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "time"})
		}, `linux.namespaces[6].type "time"`},
		{"missing rootfs", func(s *specs.Spec) { s.Root.Path = "/nonexistent" }, `root.path "/nonexistent": not a directory`},
		{"relative mount", func(s *specs.Spec) { s.Mounts[0].Destination = "proc" }, `mounts[0].destination "proc": must be an absolute path`},
		{"command not found", func(s *specs.Spec) { s.Process.Args = []string{"nosuch"} }, `process.args[0] "nosuch": executable file not found`},
		{"cwd missing", func(s *specs.Spec) { s.Process.Cwd = "/nonexistent" }, `process.cwd "/nonexistent"`},
		{"bind source missing", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: "/nonexistent", Options: []string{"bind"}})
		}, "mounts[7] (bind on /x): source"},
		{"joined user namespace", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: "/proc/self/ns/user"})
		}, "joining a user namespace by path is not supported"},
		// Asked for, not implemented: refused, never silently skipped.
		{"seccomp", func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}
		}, "config.json: linux.seccomp: not implemented by minibox's runtime, which will not run the container without it"},
		{"apparmor", func(s *specs.Spec) { s.Process.ApparmorProfile = "docker-default" }, "config.json: process.apparmorProfile: not implemented"},
		{"oom score", func(s *specs.Spec) { adj := 500; s.Process.OOMScoreAdj = &adj }, "config.json: process.oomScoreAdj: not implemented"},
		{"hooks", func(s *specs.Spec) {
			s.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true"}}}
		}, "config.json: hooks: not implemented"},
		{"domainname", func(s *specs.Spec) { s.Domainname = "example.org" }, "config.json: domainname: not implemented"},
	} {
		s := testSpec("true")
		tc.change(s)
		_, err := r.Create("bad", writeBundle(t, s), runtime.IO{}, "", "")
		assert.ErrorContains(t, err, tc.want, tc.name)
		_, err = r.State("bad")
		assert.ErrorContains(t, err, "does not exist", "%s: nothing left behind", tc.name)
	}
	bundle := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bundle, "config.json"), []byte("{"), 0o644))
	_, err := r.Create("bad", bundle, runtime.IO{}, "", "")
	assert.ErrorContains(t, err, "not valid JSON")
	_, err = r.Create("../x", bundle, runtime.IO{}, "", "")
	assert.ErrorContains(t, err, "container id")
}
