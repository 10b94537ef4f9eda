package stagetest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/internal/testenv"
)

// The six namespaces of lesson 2, as named in /proc/PID/ns.
var stage02Namespaces = []string{"mnt", "uts", "ipc", "pid", "net", "user"}

// needNamespaceStage is needStage plus a guard for the stages from 02 on,
// which set the hostname: if a broken stage (a student's edit, say) sets
// it without a UTS namespace of its own, it sets the host's: put it back,
// and fail. forEachStage uses it for every stage (stage 01 sets none: the
// guard costs nothing there).
func needNamespaceStage(t *testing.T, nn string) string {
	t.Helper()
	stage := needStage(t, nn)
	host, err := os.Hostname()
	require.NoError(t, err)
	t.Cleanup(func() {
		if now, _ := os.Hostname(); now != host {
			t.Errorf("the host's hostname changed from %q to %q; restored", host, now)
			_ = unix.Sethostname([]byte(host))
		}
	})
	return stage
}

func TestStage02Hostname(t *testing.T) {
	forEachStage(t, "02", func(t *testing.T, stage string) {
		host, err := os.Hostname()
		require.NoError(t, err)

		res := run(t, stage, "run", "--hostname", "box", rootfsDir, "--", "hostname")
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, "box\n", res.stdout)

		// Without --hostname: a short random id, different on every run.
		first := run(t, stage, "run", rootfsDir, "--", "hostname")
		second := run(t, stage, "run", rootfsDir, "--", "hostname")
		require.Equal(t, 0, first.code, first.stderr)
		require.Equal(t, 0, second.code, second.stderr)
		assert.Regexp(t, `^[0-9a-f]{12}\n$`, first.stdout)
		assert.NotEqual(t, first.stdout, second.stdout)
		assert.NotEqual(t, host+"\n", first.stdout)

		after, err := os.Hostname()
		require.NoError(t, err)
		assert.Equal(t, host, after, "setting the hostname inside must not change the host's")
	})
}

func TestStage02CommandIsPID1(t *testing.T) {
	forEachStage(t, "02", func(t *testing.T, stage string) {

		// ps lists exactly one process, itself, as PID 1: nothing of the host.
		res := run(t, stage, "run", rootfsDir, "--", "ps", "-o", "pid,args")
		require.Equal(t, 0, res.code, res.stderr)
		lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
		require.Len(t, lines, 2, "a header and one process:\n%s", res.stdout)
		assert.Equal(t, []string{"1", "ps", "-o", "pid,args"}, strings.Fields(lines[1]))

		res = run(t, stage, "run", rootfsDir, "--", "sh", "-c", `echo $$`)
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, "1\n", res.stdout)
	})
}

func TestStage02NamespacesDifferFromHost(t *testing.T) {
	forEachStage(t, "02", func(t *testing.T, stage string) {
		allowContainerRoot(t)
		script := `for n in ` + strings.Join(stage02Namespaces, " ") + `; do echo "$n $(readlink /proc/self/ns/$n)"; done`

		for _, userns := range []bool{false, true} {
			t.Run(fmt.Sprintf("userns=%v", userns), func(t *testing.T) {
				args := []string{"run", rootfsDir, "--", "sh", "-c", script}
				if userns {
					args = append([]string{"run", "--userns"}, args[1:]...)
				}
				res := run(t, stage, args...)
				require.Equal(t, 0, res.code, res.stderr)
				inside := map[string]string{}
				for _, line := range strings.Split(strings.TrimSpace(res.stdout), "\n") {
					if f := strings.Fields(line); len(f) == 2 {
						inside[f[0]] = f[1]
					}
				}
				for _, ns := range stage02Namespaces {
					host, err := os.Readlink("/proc/self/ns/" + ns)
					require.NoError(t, err)
					require.Regexp(t, `^`+ns+`:\[\d+\]$`, inside[ns], "inside %s", ns)
					if ns == "user" && !userns {
						assert.Equal(t, host, inside[ns], "without --userns the user namespace is the host's")
						continue
					}
					assert.NotEqual(t, host, inside[ns], "the %s namespace inside must be a new one", ns)
				}
			})
		}
	})
}

// The new network namespace has no device of the host's: only lo. From
// stage 05 on that is --net none; the default network adds eth0, and no
// more.
func TestStage02OnlyLoopbackInside(t *testing.T) {
	forEachStage(t, "02", func(t *testing.T, stage string) {
		var netNone []string
		if atLeast(stage, "05") {
			netNone = []string{"--net", "none"}
		}
		res := run(t, stage, append(append([]string{"run"}, netNone...), rootfsDir, "--", "ip", "-o", "link")...)
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, []string{"lo"}, linkNames(res.stdout))

		// The read-only /sys shows the devices of the new network namespace.
		res = run(t, stage, append(append([]string{"run"}, netNone...), rootfsDir, "--", "ls", "/sys/class/net")...)
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, "lo\n", res.stdout)

		if atLeast(stage, "05") {
			res := run(t, stage, "run", rootfsDir, "--", "sh", "-c", "ip -o link; echo ---; ls /sys/class/net")
			require.Equal(t, 0, res.code, res.stderr)
			links, sys, _ := strings.Cut(res.stdout, "---\n")
			assert.ElementsMatch(t, []string{"lo", "eth0"}, linkNames(links), "with the default network")
			assert.Equal(t, "eth0\nlo\n", sys, "with the default network")
		}
	})
}

// linkNames takes the names out of `ip -o link` ("1: lo: <LOOPBACK> ...").
func linkNames(out string) []string {
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^\d+: ([^:@ ]+)`).FindAllStringSubmatch(out, -1) {
		names = append(names, m[1])
	}
	return names
}

func TestStage02IPCInvisible(t *testing.T) {
	forEachStage(t, "02", func(t *testing.T, stage string) {

		t.Run("host object invisible inside", func(t *testing.T) {
			// A System V shared memory segment, made on the host.
			id, err := unix.SysvShmGet(unix.IPC_PRIVATE, 4096, unix.IPC_CREAT|0o600)
			require.NoError(t, err)
			t.Cleanup(func() { _, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil) })
			hostShm, err := os.ReadFile("/proc/sysvipc/shm")
			require.NoError(t, err)
			require.Contains(t, shmIDs(string(hostShm)), id, "the host lists its own segment")

			res := run(t, stage, "run", rootfsDir, "--", "cat", "/proc/sysvipc/shm")
			require.Equal(t, 0, res.code, res.stderr)
			assert.Empty(t, shmIDs(res.stdout), "the new IPC namespace has no segments:\n%s", res.stdout)
		})

		t.Run("object made inside invisible on the host", func(t *testing.T) {
			// A POSIX message queue, made inside while the container lives.
			queue := fmt.Sprintf("minibox-test-%d", os.Getpid())
			// Without an IPC namespace the queue would be the host's: remove it.
			t.Cleanup(func() { _ = mqUnlink(queue) })
			c := startContainer(t, stage, "run", rootfsDir, "--", "sh", "-c",
				"mkdir /dev/mqueue && mount -t mqueue mqueue /dev/mqueue && touch /dev/mqueue/"+queue+
					" && echo ready && exec sleep 60")
			c.waitFor(t, "ready")
			// Seen from the host through the container's own mount of it...
			_, err := os.Stat(fmt.Sprintf("/proc/%d/root/dev/mqueue/%s", c.pid(t), queue))
			require.NoError(t, err, "the queue exists inside")
			// ...but the host's IPC namespace has no such queue.
			assert.ErrorIs(t, mqOpen(queue), unix.ENOENT)
			c.kill(t)
		})
	})
}

// shmIDs lists the shmid column of /proc/sysvipc/shm (proc(5)).
func shmIDs(table string) []int {
	var ids []int
	for _, line := range strings.Split(table, "\n")[1:] {
		if f := strings.Fields(line); len(f) > 1 {
			if id, err := strconv.Atoi(f[1]); err == nil {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// mqOpen opens the host's POSIX message queue NAME read-only and closes it
// again (mq_open(3); the system call takes the name without its "/").
func mqOpen(name string) error {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return err
	}
	fd, _, errno := unix.Syscall6(unix.SYS_MQ_OPEN, uintptr(unsafe.Pointer(p)), uintptr(unix.O_RDONLY), 0, 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return unix.Close(int(fd))
}

// mqUnlink removes the host's POSIX message queue NAME (mq_unlink(3)).
func mqUnlink(name string) error {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return err
	}
	if _, _, errno := unix.Syscall(unix.SYS_MQ_UNLINK, uintptr(unsafe.Pointer(p)), 0, 0); errno != 0 {
		return errno
	}
	return nil
}

func TestStage02MountsStayInside(t *testing.T) {
	forEachStage(t, "02", func(t *testing.T, stage string) {

		// "/" inside is exactly the rootfs.
		res := run(t, stage, "run", rootfsDir, "--", "ls", "-1", "/")
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, listDir(t, rootfsDir), res.stdout)

		// A run makes mounts (/proc, /dev, /sys, a tmpfs of its own); the host's
		// mount table is byte for byte what it was.
		before := readMountinfo(t)
		res = run(t, stage, "run", rootfsDir, "--", "mount", "-t", "tmpfs", "minibox-test-tmpfs", "/tmp")
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, before, readMountinfo(t), "a run must not change the host's mounts")

		// While the container lives, its mount is in its mount table, not in the host's.
		c := startContainer(t, stage, "run", rootfsDir, "--", "sh", "-c",
			"mount -t tmpfs minibox-test-tmpfs /tmp && echo ready && exec sleep 60")
		c.waitFor(t, "ready")
		inside, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", c.pid(t)))
		require.NoError(t, err)
		assert.Contains(t, string(inside), " /tmp rw")
		assert.Contains(t, string(inside), "minibox-test-tmpfs")
		assert.NotContains(t, readMountinfo(t), "minibox-test-tmpfs")
		c.kill(t)
		assert.Equal(t, before, readMountinfo(t))
	})
}

// On systemd hosts every mount is shared, so a mount made in a new mount
// namespace propagates back unless the stage makes its mounts private first
// (and pivot_root refuses shared mounts). This test machine may not be such
// a host, so make one: a throwaway mount namespace whose mounts are all
// shared, and run the stage in it. The namespace is first made a private
// copy (`unshare --propagation private`), and only then shared inside
// (`mount --make-rshared /`): its peer groups are its own, so a broken
// stage's mounts cannot reach the host's (as `--propagation shared` would
// let them on a systemd host).
func TestStage02MountsStayInsideOnSharedHost(t *testing.T) {
	forEachStage(t, "02", func(t *testing.T, stage string) {
		unshare, err := exec.LookPath("unshare")
		testenv.Require(t, err == nil, "needs unshare(1) from util-linux")

		script := `mount --make-rshared / || exit
	grep -q shared: /proc/self/mountinfo || echo "no shared mounts here"
	cat /proc/self/mountinfo; echo ---
	"$0" run "$1" -- mount -t tmpfs minibox-test-tmpfs /tmp || echo "stage failed: $?"
	echo ---; cat /proc/self/mountinfo`
		argv := inThrowawayNetns(t, stage, []string{unshare, "--mount", "--propagation", "private", "sh", "-c", script, stage, rootfsDir})
		res := run(t, argv[0], argv[1:]...)
		require.Equal(t, 0, res.code, res.stderr)
		require.NotContains(t, res.stdout, "no shared mounts here")
		require.NotContains(t, res.stdout, "stage failed", res.stderr)
		parts := strings.Split(res.stdout, "---\n")
		require.Len(t, parts, 3)
		assert.Equal(t, parts[0], parts[2], "the stage's mounts leaked into the namespace it was started from")
	})
}

func readMountinfo(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	return string(data)
}

// /dev and /sys inside, with and without a user namespace. /sys is
// read-only: writing a file that would be writable (lo's mtu, in the
// container's own network namespace: harmless) fails with EROFS.
func TestStage02DevAndSys(t *testing.T) {
	forEachStage(t, "02", func(t *testing.T, stage string) {
		allowContainerRoot(t)
		script := `ls /dev; echo ---
	echo hello > /dev/null && echo null ok
	head -c 16 /dev/urandom | wc -c
	head -c 4 /dev/zero | od -An -tx1
	case $( (echo 65536 >/sys/class/net/lo/mtu) 2>&1 ) in
	*"Read-only file system"*) echo sys read-only ;;
	*) echo "sys: writing lo's mtu did not fail with EROFS" ;;
	esac
	grep -q ' /sys ro,' /proc/self/mountinfo && echo sys mounted ro`
		for _, flags := range [][]string{nil, {"--userns"}} {
			t.Run(strings.Join(append([]string{"run"}, flags...), " "), func(t *testing.T) {
				args := append(append([]string{"run"}, flags...), rootfsDir, "--", "sh", "-c", script)
				res := run(t, stage, args...)
				require.Equal(t, 0, res.code, res.stderr)
				dev, rest, _ := strings.Cut(res.stdout, "---\n")
				assert.ElementsMatch(t,
					[]string{"fd", "full", "null", "ptmx", "pts", "random", "stderr", "stdin", "stdout", "tty", "urandom", "zero"},
					strings.Fields(dev), "a minimal /dev, not the host's")
				assert.Equal(t, "null ok\n16\n 00 00 00 00\nsys read-only\nsys mounted ro\n", rest)
			})
		}
	})
}

func TestStage02UserNamespace(t *testing.T) {
	forEachStage(t, "02", func(t *testing.T, stage string) {
		allowContainerRoot(t)

		res := run(t, stage, "run", "--userns", rootfsDir, "--", "sh", "-c",
			"id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups")
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, []string{"0", "0", "0", "100000", "65536", "0", "100000", "65536", "deny"}, strings.Fields(res.stdout))

		// Seen from the host, container root is uid 100000: its process...
		// (Up to stage 03 the file it makes is the rootfs's own.)
		t.Cleanup(func() { os.Remove(filepath.Join(rootfsDir, "tmp", "minibox-userns-test")) })
		c := startContainer(t, stage, "run", "--userns", rootfsDir, "--", "sh", "-c",
			"touch /tmp/minibox-userns-test && echo ready && exec sleep 60")
		c.waitFor(t, "ready")
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.pid(t)))
		require.NoError(t, err)
		assert.Regexp(t, `(?m)^Uid:\s+100000\s+100000\s+100000\s+100000$`, string(status))
		assert.Regexp(t, `(?m)^Gid:\s+100000\s+100000\s+100000\s+100000$`, string(status))
		// ...and the files it makes, seen through its root while it runs
		// (from stage 04 on they are in its own upper layer).
		var st unix.Stat_t
		require.NoError(t, unix.Stat(fmt.Sprintf("/proc/%d/root/tmp/minibox-userns-test", c.pid(t)), &st))
		assert.Equal(t, uint32(100000), st.Uid)
		assert.Equal(t, uint32(100000), st.Gid)
		c.kill(t)

		// Host root can make device nodes; container root cannot.
		mknod := []string{"--", "mknod", "/dev/minibox-test", "c", "1", "3"}
		res = run(t, stage, append([]string{"run", rootfsDir}, mknod...)...)
		assert.Equal(t, 0, res.code, "without --userns, root inside is host root: %s", res.stderr)
		res = run(t, stage, append([]string{"run", "--userns", rootfsDir}, mknod...)...)
		assert.NotEqual(t, 0, res.code)
		assert.Contains(t, res.stderr, "not permitted")

		// The stage binary may sit where container root cannot reach it (`go
		// run` builds it in a 0700 directory): re-executing /proc/self/exe
		// still works.
		hidden := filepath.Join(t.TempDir(), "hidden")
		require.NoError(t, os.Mkdir(hidden, 0o700))
		data, err := os.ReadFile(stage)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(hidden, filepath.Base(stage)), data, 0o755))
		res = run(t, filepath.Join(hidden, filepath.Base(stage)), "run", "--userns", rootfsDir, "--", "id", "-u")
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, "0\n", res.stdout)

		// A rootfs that container root cannot reach is a clear error.
		locked := filepath.Join(t.TempDir(), "locked")
		require.NoError(t, os.MkdirAll(filepath.Join(locked, "rootfs"), 0o755))
		require.NoError(t, os.Chmod(locked, 0o700))
		if atLeast(stage, "04") {
			assertLockedLayerReachable(t, stage, filepath.Join(locked, "rootfs"))
			return
		}
		res = run(t, stage, "run", "--userns", filepath.Join(locked, "rootfs"), "--", "true")
		assert.Equal(t, 1, res.code)
		assert.Contains(t, res.stderr, filepath.Join(locked, "rootfs"))
		assert.Contains(t, res.stderr, "o+x")
	})
}

// assertLockedLayerReachable checks what replaces the "cannot reach the
// rootfs" error from stage 04 on: host root makes the overlay and reads
// its layers, so container root reads a layer that it could not reach
// by its path (dir, below a 0700 directory).
func assertLockedLayerReachable(t *testing.T, stage, dir string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "stage02-locked"), []byte("reached\n"), 0o644))
	res := run(t, stage, "run", "--userns", "--layer", dir, rootfsDir, "--", "cat", "/stage02-locked")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Equal(t, "reached\n", res.stdout)
}

// Container root starts with no supplementary groups: not the stage's (under
// sudo: group 0, root), which it could not drop itself (setgroups is denied
// in its user namespace) and which would let it read the host's files that
// group root may read.
func TestStage02UserNamespaceDropsSupplementaryGroups(t *testing.T) {
	forEachStage(t, "02", func(t *testing.T, stage string) {
		allowContainerRoot(t)
		groupsInside := func(args ...string) string {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			argv := inThrowawayNetns(t, stage, append([]string{stage}, append(args, rootfsDir, "--", "grep", "^Groups:", "/proc/self/status")...))
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			// The stage runs as root with the supplementary group 0, as under sudo.
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{0}}}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			require.NoError(t, err, "%s %v: %s", filepath.Base(stage), args, &stderr)
			return string(out)
		}
		// Without --userns root inside is host root, groups and all: the set-up works.
		assert.Regexp(t, `^Groups:\s+0\s*\n$`, groupsInside("run"))
		assert.Regexp(t, `^Groups:[ \t]*\n$`, groupsInside("run", "--userns"), "container root kept supplementary groups")
	})
}

// The chroot escape of stage 01 no longer reaches the host.
func TestStage02EscapeFails(t *testing.T) {
	forEachStage(t, "02", func(t *testing.T, stage string) {
		secret := filepath.Join(t.TempDir(), "host-secret")
		require.NoError(t, os.WriteFile(secret, []byte("only on the host\n"), 0o600))
		escape := copyIntoRootfs(t, stage, "escape")

		// The same escape program, run by stage 01, gets out: the set-up works.
		res := run(t, filepath.Join(binDir, "stage01"), "run", rootfsDir, "--", escape, "escape", secret)
		require.Equal(t, 0, res.code, res.stderr)
		require.Contains(t, res.stdout, "only on the host")

		res = run(t, stage, "run", rootfsDir, "--", escape, "escape", secret)
		assert.Equal(t, 1, res.code)
		assert.NotContains(t, res.stdout, "only on the host")
		assert.Contains(t, res.stderr, "escape failed: cannot read "+secret)
		assert.NoDirExists(t, filepath.Join(rootfsDir, ".escape"), "the escape must clean up after itself")
	})
}

// Exit statuses special to a PID 1 (TestStage01ExitStatusPropagates has
// the others): it ignores SIGINT (it has no handler), so Ctrl-C to the
// stage makes the stage kill it: the container was killed, 137.
func TestStage02ExitStatusPropagates(t *testing.T) {
	forEachStage(t, "02", func(t *testing.T, stage string) {
		c := startContainer(t, stage, "run", rootfsDir, "--", "sh", "-c", "echo ready && exec sleep 60")
		c.waitFor(t, "ready")
		pid1 := c.pid(t)
		require.NoError(t, unix.Kill(c.cmd.Process.Pid, unix.SIGINT))
		assert.Equal(t, 137, c.wait(t).code, c.stderr.String())
		assert.Eventually(t, func() bool { return !running(pid1) }, 5*time.Second, 20*time.Millisecond,
			"the container's PID 1 outlived the stage")
	})
}

func TestStage02SignalEndsContainer(t *testing.T) {
	forEachStage(t, "02", func(t *testing.T, stage string) {
		assertSignalEndsContainer(t, stage)
	})
}

// assertSignalEndsContainer checks that SIGTERM to the stage ends the
// container even when its PID 1 has changed its credentials (`su nobody`),
// which clears the Pdeathsig backstop: the stage itself kills PID 1 (137).
// And a signal the stage was started ignoring, as under nohup, stays
// ignored: SIGHUP then leaves stage and container running.
func assertSignalEndsContainer(t *testing.T, stage string, flags ...string) {
	t.Helper()
	args := append(append([]string{"run"}, flags...), rootfsDir, "--",
		"su", "-s", "/bin/sh", "nobody", "-c", "echo ready; exec sleep 30 </dev/null >/dev/null 2>&1")

	c := startContainer(t, stage, args...)
	c.waitFor(t, "ready")
	sleep := c.pid(t) // su and sh exec, so PID 1 becomes the sleep
	require.Eventually(t, func() bool { return sleepsAsNobody(sleep) }, 10*time.Second, 10*time.Millisecond,
		"PID 1 (host PID %d) never became a sleep run by nobody", sleep)
	require.NoError(t, c.cmd.Process.Signal(unix.SIGTERM))
	res := c.wait(t)
	assert.False(t, running(sleep), "the container's sleep (host PID %d) outlived the stage", sleep)
	assert.Equal(t, 137, res.code, res.stderr)

	// A shell's `trap "" HUP` ignores SIGHUP, as nohup does, and the stage
	// it then becomes starts with SIGHUP ignored.
	nohup := inThrowawayNetns(t, stage, append([]string{"/bin/sh", "-c", `trap "" HUP; exec "$0" "$@"`, stage}, args...))
	c = startContainer(t, nohup[0], nohup[1:]...)
	c.waitFor(t, "ready")
	require.NoError(t, c.cmd.Process.Signal(unix.SIGHUP))
	time.Sleep(200 * time.Millisecond)
	select {
	case <-c.ended:
		t.Errorf("SIGHUP, ignored since the start, ended the stage: %s", &c.stderr)
	default:
		assert.True(t, running(c.pid(t)), "SIGHUP, ignored since the start, ended the container")
	}
	c.kill(t)
}

// sleepsAsNobody reports whether process pid is `sleep`, run by uid 65534.
func sleepsAsNobody(pid int) bool {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	return err == nil && regexp.MustCompile(`(?m)^Name:\tsleep$`).Match(status) &&
		regexp.MustCompile(`(?m)^Uid:\t65534\t`).Match(status)
}

// Bad input special to the stages that mount (TestStage01BadInputIsAClearError
// has the rest): a directory that is not a root filesystem makes the first
// mount into it fail, and the error names it.
func TestStage02BadInputIsAClearError(t *testing.T) {
	forEachStage(t, "02", func(t *testing.T, stage string) {
		empty := t.TempDir()
		res := run(t, stage, "run", empty, "--", "true")
		assert.Equal(t, 1, res.code)
		if !atLeast(stage, "04") {
			assert.Contains(t, res.stderr, filepath.Join(empty, "proc")+": no such file or directory")
			return
		}
		// From stage 04 on the mount point is in the overlay of the layers.
		merged := regexp.QuoteMeta(os.Getenv("MINIBOX_ROOT")) + `/containers/[0-9a-f]{12}/merged`
		assert.Regexp(t, merged+`/proc: no such file or directory`, res.stderr)
	})
}

// `stageNN child` run by hand, outside new namespaces, would rename the
// host and pivot_root it: it must refuse, with a message naming the
// namespace, and change nothing. It runs in a throwaway PID, mount and UTS
// namespace, so a broken refusal harms only that namespace, where the test
// compares the hostname and the mount table before and after.
func TestStage02ChildRefusesHostNamespaces(t *testing.T) {
	forEachStage(t, "02", func(t *testing.T, stage string) {
		unshare, err := exec.LookPath("unshare")
		testenv.Require(t, err == nil, "needs unshare(1) from util-linux")

		script := `hostname minibox-test-before || exit
cat /proc/self/mountinfo; echo ---
"$0" child minibox-test-host "$1" true; echo "status $?"
echo ---; hostname; cat /proc/self/mountinfo`
		argv := inThrowawayNetns(t, stage, []string{unshare, "--pid", "--fork", "--mount-proc", "--mount", "--uts", "--",
			"sh", "-c", script, stage, rootfsDir})
		res := run(t, argv[0], argv[1:]...)
		require.Equal(t, 0, res.code, res.stderr)
		parts := strings.Split(res.stdout, "---\n")
		require.Len(t, parts, 3, res.stdout)
		assert.Equal(t, "status 1\n", parts[1], res.stderr)
		// One line says both, in either order.
		assert.Regexp(t, `(?m)^.*(refusing.*not in a new (uts|pid|mnt|ipc|net) namespace|not in a new (uts|pid|mnt|ipc|net) namespace.*refusing)`, res.stderr)
		hostname, mounts, _ := strings.Cut(parts[2], "\n")
		assert.Equal(t, "minibox-test-before", hostname, "the child changed the hostname")
		assert.Equal(t, parts[0], mounts, "the child changed the mount table")
	})
}

// allowContainerRoot lets host uid 100000, root inside --userns, reach the
// test rootfs: the directories above it are made o+x until the test ends.
func allowContainerRoot(t *testing.T) {
	t.Helper()
	info, err := os.Stat("/")
	require.NoError(t, err)
	testenv.Require(t, info.Mode().Perm()&0o001 != 0, fmt.Sprintf(
		"--userns needs / searchable by others, and it is %o here: no other uid, so not container root, can resolve a path", info.Mode().Perm()))
	for dir := filepath.Dir(rootfsDir); dir != "/" && dir != "."; dir = filepath.Dir(dir) {
		info, err := os.Stat(dir)
		require.NoError(t, err)
		mode := info.Mode().Perm()
		if mode&0o001 == 0 {
			require.NoError(t, os.Chmod(dir, mode|0o001))
			t.Cleanup(func() { _ = os.Chmod(dir, mode) })
		}
	}
}

// container is a stage run in the background, for looking at it from the
// host while it lives.
type container struct {
	cmd    *exec.Cmd
	name   string      // if started by startCgContainer: prefix of its files in its /tmp
	lines  chan string // its standard output, line by line
	stdout bytes.Buffer
	stderr bytes.Buffer
	ended  chan struct{} // closed when the stage has ended
	res    result        // then, its output and exit status
}

// startContainer starts a stage in the background (from stage 05 on in a
// network namespace of its own: inThrowawayNetns). When the test ends, the
// container is killed if it is still running.
func startContainer(t *testing.T, bin string, args ...string) *container {
	t.Helper()
	argv := inThrowawayNetns(t, bin, append([]string{bin}, args...))
	c := &container{cmd: exec.Command(argv[0], argv[1:]...), lines: make(chan string, 1000), ended: make(chan struct{})}
	c.cmd.Env = stageEnv()
	c.cmd.Stderr = &c.stderr
	stdout, err := c.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, c.cmd.Start())
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			c.stdout.WriteString(s.Text() + "\n")
			select {
			case c.lines <- s.Text():
			default: // nobody is reading that far
			}
		}
		_, _ = io.Copy(&c.stdout, stdout)
		close(c.lines)
		_ = c.cmd.Wait()
		c.res = result{stdout: c.stdout.String(), stderr: c.stderr.String(), code: c.cmd.ProcessState.ExitCode()}
		close(c.ended)
	}()
	t.Cleanup(func() { c.kill(t) })
	return c
}

// waitFor reads the container's output until a line equals want.
func (c *container) waitFor(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatalf("the container ended before printing %q; stderr: %s", want, c.wait(t).stderr)
			}
			if line == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %q from the container after 30s", want)
		}
	}
}

// pid is the host PID of the container's PID 1.
func (c *container) pid(t *testing.T) int {
	t.Helper()
	pid := childOf(c.cmd.Process.Pid)
	if pid == 0 {
		t.Fatalf("stage %d has no child", c.cmd.Process.Pid)
	}
	return pid
}

// childOf finds the child of process parent (a stage has just one, the
// container's PID 1) in /proc/PID/stat (proc(5)), or returns 0.
func childOf(parent int) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == parent {
			pid, _ := strconv.Atoi(e.Name())
			return pid
		}
	}
	return 0
}

// running reports whether process pid exists and is not a zombie.
func running(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z"
}

// wait waits (at most a minute) for the stage to end and returns its
// output and exit status.
func (c *container) wait(t *testing.T) result {
	t.Helper()
	select {
	case <-c.ended:
		return c.res
	case <-time.After(time.Minute):
		// SIGKILL to the stage: its Pdeathsig then ends the container.
		_ = c.cmd.Process.Kill()
		t.Fatalf("the stage did not end within a minute")
		return result{}
	}
}

// kill ends the container from the host, unless it has ended already:
// SIGKILL to its PID 1, which takes every process of its PID namespace with
// it. Then it waits for the stage. (A stage that has not started its
// child yet is given a moment to do so.)
func (c *container) kill(t *testing.T) {
	t.Helper()
	for i := 0; i < 100; i++ {
		select {
		case <-c.ended:
			return
		default:
		}
		if pid := childOf(c.cmd.Process.Pid); pid != 0 {
			_ = unix.Kill(pid, unix.SIGKILL)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.wait(t)
}

// With -v the stage narrates its steps as shell lines on stderr, in the
// order they happen: the clone (as unshare, with a flag per namespace),
// then in the child the hostname, the mounts made private before any new
// one, the new root, pivot_root, and last the exec.
func TestStage02Narrates(t *testing.T) {
	forEachStage(t, "02", func(t *testing.T, stage string) {
		res := run(t, stage, "run", "-v", "--hostname", "box", rootfsDir, "--", "echo", "narrated")
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, "narrated\n", res.stdout)
		steps := narration(res.stderr)
		clone := unshareStep(t, steps, false)
		root := narratedRoot(t, stage, steps)
		at := assertInOrder(t, steps[clone:],
			"+ hostname box",
			"+ mount --make-rprivate /",
			"+ mount --rbind "+root+" "+root,
			"+ mount -t proc -o nosuid,nodev,noexec proc "+root+"/proc",
			"+ mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "+root+"/sys",
			"+ cd "+root,
			"+ pivot_root . .",
			"+ umount -l .",
			"+ cd /",
			"+ exec echo narrated")
		// Without limits there is no cgroup to remove afterwards.
		if exec := at[len(at)-1]; exec >= 0 {
			assert.Empty(t, withoutContainerRemoval(stage, steps[clone+exec+1:]), "the exec is the last step:\n%s", res.stderr)
		}

		// With --userns: --user in the clone, then the parent writes the
		// child's maps (while the child runs: in no fixed order with its
		// steps).
		allowContainerRoot(t)
		res = run(t, stage, "run", "-v", "--userns", rootfsDir, "--", "true")
		require.Equal(t, 0, res.code, res.stderr)
		steps = narration(res.stderr)
		clone = unshareStep(t, steps, true)
		pid := `/proc/[^/ ]+/` // the child's PID, or a name for it
		var maps []string
		for _, s := range steps[clone:] {
			if regexp.MustCompile(`^\+ echo .* > ` + pid).MatchString(s) {
				maps = append(maps, regexp.MustCompile(pid).ReplaceAllString(s, "/proc/PID/"))
			}
		}
		assert.Equal(t, []string{
			"+ echo deny > /proc/PID/setgroups",
			"+ echo 0 100000 65536 > /proc/PID/uid_map",
			"+ echo 0 100000 65536 > /proc/PID/gid_map",
		}, maps, "the maps written after the clone:\n%s", res.stderr)
	})
}

// unshareStep returns the index of the clone's step, "+ unshare …", after
// checking that it names each new namespace (and the user namespace if and
// only if userns).
func unshareStep(t *testing.T, steps []string, userns bool) int {
	t.Helper()
	for i, s := range steps {
		if !strings.HasPrefix(s, "+ unshare ") {
			continue
		}
		flags := strings.Fields(s)
		for _, f := range []string{"--uts", "--pid", "--mount", "--ipc", "--net", "--fork"} {
			assert.Contains(t, flags, f, "the clone step %q", s)
		}
		if userns {
			assert.Contains(t, flags, "--user", "the clone step %q", s)
		} else {
			assert.NotContains(t, flags, "--user", "the clone step %q", s)
		}
		return i
	}
	t.Fatalf("no step \"+ unshare …\" in:\n%s", strings.Join(steps, "\n"))
	return -1
}
