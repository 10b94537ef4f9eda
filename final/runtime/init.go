package runtime

// The container's init: the running binary re-executed as
// `minibox runtime init` in the new namespaces. It makes the container's
// file system, reports to Create, waits for Start on exec.fifo, then sets
// the process's user and capabilities and becomes the process (execve).

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The init's file descriptors, passed by Create.
const (
	syncFD     = 3 // the socket to Create
	stateDirFD = 4 // the state directory, for exec.fifo after pivot_root
	consoleFD  = 5 // the console socket, when process.terminal
)

// bootstrap is what Create sends the init.
type bootstrap struct {
	Init      *initSpec   `json:"spec"` // what of the spec the init reads (initspec.go)
	Spec      *specs.Spec `json:"-"`    // Init as a spec, once the init has it
	Bundle    string      `json:"bundle"`
	Rootfs    string      `json:"rootfs"`
	ParentMnt string      `json:"parentMnt"`
	Cgroup    *cgroup     `json:"cgroup"`
	// CgroupTasks are the init's descriptors of its v1 groups' tasks
	// files (cgroup.joinAtFork).
	CgroupTasks []int `json:"cgroupTasks,omitempty"`
}

// reply is what the init answers once the container is made.
type reply struct {
	Error string `json:"error,omitempty"`
}

// IsInit reports whether this process was started as a container's init
// (the hidden `runtime init` subcommand): programs that embed the runtime
// call Init first thing when it is true.
func IsInit() bool {
	return len(os.Args) >= 3 && os.Args[1] == "runtime" && os.Args[2] == "init"
}

// Init is the container's init; it never returns.
func Init() {
	// Everything per-thread below (capabilities, no_new_privs, a new
	// cgroup namespace, the credentials) must be on the thread that calls
	// execve at the end.
	goruntime.LockOSThread()
	// Not dumpable until execve (prctl(2) PR_SET_DUMPABLE, as runc's
	// nsexec does): while the init holds descriptors of the host (the
	// state directory, the rootfs), only a process with CAP_SYS_PTRACE may
	// ptrace it or open its /proc/PID/fd and /proc/PID/root, whatever its
	// uid. Nothing sets it back: execve(2) makes the process dumpable
	// again (its real and effective ids are equal then), and the init's
	// own /proc/self stays open to it.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "minibox runtime init: prctl(PR_SET_DUMPABLE, 0): %v\n", err)
		os.Exit(1)
	}
	sync := os.NewFile(syncFD, "init-sync")
	var boot bootstrap
	err := json.NewDecoder(sync).Decode(&boot)
	if err == nil && (boot.Init == nil || boot.Init.Process == nil || boot.Init.Root == nil) {
		err = errors.New("no process or root in it")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "minibox runtime init: read the config: %v\n", err)
		os.Exit(1)
	}
	boot.Spec = boot.Init.spec()
	// Into the container's cgroups first (v1; v2 forked us there), so
	// that what follows is charged to them and a new cgroup namespace
	// has the container's group as its root.
	if err := joinOwnCgroups(boot.CgroupTasks); err != nil {
		_ = json.NewEncoder(sync).Encode(reply{Error: err.Error()})
		os.Exit(1)
	}
	path, err := prepare(&boot)
	if err != nil {
		_ = json.NewEncoder(sync).Encode(reply{Error: err.Error()})
		os.Exit(1)
	}
	if err := json.NewEncoder(sync).Encode(reply{}); err != nil {
		os.Exit(1)
	}
	sync.Close()
	if err := waitForStart(); err != nil {
		fmt.Fprintf(os.Stderr, "minibox runtime init: %v\n", err)
		os.Exit(1)
	}
	p := boot.Spec.Process
	if err := becomeProcess(p); err != nil {
		fmt.Fprintf(os.Stderr, "minibox runtime init: %v\n", err)
		os.Exit(1)
	}
	// Only stdin, stdout and stderr go on to the container's process
	// (fds.go).
	CloseOnExecFrom(3)
	err = unix.Exec(path, p.Args, p.Env)
	fmt.Fprintf(os.Stderr, "minibox runtime init: exec %s: %v\n", p.Args[0], err)
	os.Exit(127)
}

// prepare makes the container, up to what happens at Start, and returns
// the path of the program to run.
func prepare(b *bootstrap) (string, error) {
	s := b.Spec
	if mnt, err := os.Readlink("/proc/self/ns/mnt"); err != nil || mnt == b.ParentMnt {
		// Fail closed: never remount or pivot the host's mount table.
		return "", fmt.Errorf("the init is not in a new mount namespace (%s); refusing to mount anything", mnt)
	}
	if hasNamespace(s, specs.CgroupNamespace) {
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return "", fmt.Errorf("unshare(CLONE_NEWCGROUP): %w", err)
		}
	}
	if err := setupRootfs(b); err != nil {
		return "", err
	}
	if s.Hostname != "" {
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			return "", fmt.Errorf("config.json: hostname %q: %w", s.Hostname, err)
		}
	}
	for k, v := range s.Linux.Sysctl {
		if err := writeSysctl(k, v); err != nil {
			return "", fmt.Errorf("config.json: linux.sysctl %s: %w", k, err)
		}
	}
	if s.Process.Terminal {
		if err := setupConsole(s.Process); err != nil {
			return "", err
		}
	}
	if err := finishRootfs(s); err != nil {
		return "", err
	}
	for i, r := range s.Process.Rlimits {
		// syscall's Setrlimit, not unix's: it also tells the Go runtime
		// not to restore its own RLIMIT_NOFILE at execve.
		lim := syscall.Rlimit{Cur: r.Soft, Max: r.Hard}
		if err := syscall.Setrlimit(rlimitNames[r.Type], &lim); err != nil {
			return "", fmt.Errorf("config.json: process.rlimits[%d]: %s: %w", i, r.Type, err)
		}
	}
	if err := chdirInRoot(s.Process.Cwd); err != nil {
		return "", fmt.Errorf("config.json: process.cwd %q: %w", s.Process.Cwd, err)
	}
	return lookPath(s.Process.Args[0], s.Process.Env)
}

// writeSysctl writes a sysctl through the container's /proc/sys, and only
// there: a /proc that is not a procfs (no proc mount, a symlink the image
// made) would send the write to one of the image's files, or further
// (runc checks the same since CVE-2025-52881).
func writeSysctl(key, value string) error {
	p := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	// open(2) O_NOFOLLOW: a sysctl file is never a symlink.
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: p, Err: err}
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	if !isProcfs(fd) {
		return fmt.Errorf("%s is not on a procfs: refusing to write it", p)
	}
	_, err = f.Write([]byte(value))
	return err
}

// chdirInRoot makes cwd (resolved inside the container's root, magic
// links refused) the working directory, and checks that it is below the
// root: a cwd of /proc/self/fd/N naming a descriptor of the host (the state
// directory the init holds) would otherwise leave the process outside the
// container (CVE-2024-21626; runc checks getcwd the same way).
func chdirInRoot(cwd string) error {
	root, err := openRoot()
	if err != nil {
		return err
	}
	defer unix.Close(root)
	fd, err := openInRoot(root, cwd)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// fchdir(2) on the directory resolved, not the name again.
	if err := unix.Fchdir(fd); err != nil {
		return err
	}
	// getcwd(2) answers a path not starting with "/" ("(unreachable)…")
	// for a directory outside the root.
	buf := make([]byte, unix.PathMax)
	n, err := unix.Getcwd(buf)
	if err != nil {
		return fmt.Errorf("getcwd: %w", err)
	}
	if n < 1 || buf[0] != '/' {
		return errors.New("the working directory is outside the container's root")
	}
	return nil
}

// lookPath finds the program in the container, as execvp would.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if err := unix.Access(name, unix.X_OK); err != nil {
			return "", fmt.Errorf("config.json: process.args[0] %q: %w", name, err)
		}
		return name, nil
	}
	for _, d := range filepath.SplitList(envPath(env)) {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && unix.Access(p, unix.X_OK) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("config.json: process.args[0] %q: executable file not found in $PATH (%s) of the container", name, envPath(env))
}

// waitForStart blocks opening exec.fifo for writing until Start opens it
// for reading, and tells Start we go. The fifo is reached through the
// state directory's descriptor: after pivot_root its path is not visible.
func waitForStart() error {
	fd, err := unix.Openat(stateDirFD, fifoName, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open exec.fifo: %w", err)
	}
	defer unix.Close(fd)
	unix.Close(stateDirFD)
	if _, err := unix.Write(fd, []byte{0}); err != nil {
		return fmt.Errorf("write exec.fifo: %w", err)
	}
	return nil
}

// becomeProcess sets the user, capabilities and no_new_privs of this
// thread, in runc's order: drop the bounding set while still privileged,
// keep the capabilities across the change of uid, then set the rest.
func becomeProcess(p *specs.Process) error {
	caps, err := capsOf(p)
	if err != nil {
		return err
	}
	if err := dropBounding(caps.bounding); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_KEEPCAPS): %w", err)
	}
	// A change of credentials clears the death signal (prctl(2)): read
	// it before, set it again after (as runc does).
	var deathSignal int32
	_ = unix.Prctl(unix.PR_GET_PDEATHSIG, uintptr(unsafe.Pointer(&deathSignal)), 0, 0, 0)
	if err := setUser(p.User); err != nil {
		return err
	}
	if deathSignal != 0 {
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(deathSignal), 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_PDEATHSIG): %w", err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_KEEPCAPS): %w", err)
	}
	if err := capset(caps); err != nil {
		return fmt.Errorf("config.json: process.capabilities: %w", err)
	}
	// The kernel raises an ambient capability only if it is permitted and
	// inheritable; runc skips the others (`runc spec` lists ambient ones
	// without inheritable), and so do we.
	if err := raiseAmbient(caps.ambient & caps.inheritable & caps.permitted); err != nil {
		return fmt.Errorf("config.json: process.capabilities.ambient: %w", err)
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
		}
	}
	return nil
}

// setUser changes this thread's groups, gid and uid with the raw system
// calls: Go's own apply to every thread, and only this one will execve.
func setUser(u specs.User) error {
	groups := make([]uint32, len(u.AdditionalGids))
	copy(groups, u.AdditionalGids)
	var ptr unsafe.Pointer
	if len(groups) > 0 {
		ptr = unsafe.Pointer(&groups[0])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), uintptr(ptr), 0); e != 0 {
		if !(e == unix.EPERM && len(groups) == 0) { // setgroups denied in a user namespace: nothing to drop
			return fmt.Errorf("config.json: process.user.additionalGids: setgroups: %w", e)
		}
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(u.GID), uintptr(u.GID), uintptr(u.GID)); e != 0 {
		return fmt.Errorf("config.json: process.user.gid %d: setresgid: %w", u.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(u.UID), uintptr(u.UID), uintptr(u.UID)); e != 0 {
		return fmt.Errorf("config.json: process.user.uid %d: setresuid: %w", u.UID, e)
	}
	return nil
}

// setupConsole makes a pseudo-terminal in the container's devpts, sends
// its master to the console socket, and makes its slave our standard
// files and controlling terminal.
func setupConsole(p *specs.Process) error {
	master, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("process.terminal: open /dev/ptmx: %w", err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("process.terminal: unlockpt: %w", err)
	}
	n, err := unix.IoctlGetInt(master, unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("process.terminal: ptsname: %w", err)
	}
	name := fmt.Sprintf("/dev/pts/%d", n)
	slave, err := openPeer(master, name, n)
	if err != nil {
		return fmt.Errorf("process.terminal: %w", err)
	}
	defer unix.Close(slave)
	_ = unix.Fchown(slave, int(p.User.UID), -1)
	if cs := p.ConsoleSize; cs != nil {
		_ = unix.IoctlSetWinsize(slave, unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(cs.Height), Col: uint16(cs.Width)})
	}
	if err := unix.Sendmsg(consoleFD, []byte(name), unix.UnixRights(master), nil, 0); err != nil {
		return fmt.Errorf("process.terminal: send the terminal to the console socket: %w", err)
	}
	unix.Close(consoleFD)
	if err := bindConsole(slave); err != nil {
		return fmt.Errorf("process.terminal: /dev/console: %w", err)
	}
	for fd := 0; fd < 3; fd++ {
		if err := unix.Dup3(slave, fd, 0); err != nil {
			return fmt.Errorf("process.terminal: dup2: %w", err)
		}
	}
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("process.terminal: TIOCSCTTY: %w", err)
	}
	return nil
}

// openPeer opens the terminal's slave from its master: ioctl_tty(2)
// TIOCGPTPEER (Linux 4.13) looks nothing up by name. Older kernels open
// /dev/pts/N by name, and it must then be that very terminal (the
// Unix98 pty slaves have majors 136 to 143): a /dev/pts/N swapped for a
// symlink must not become the process's stdio and /dev/console
// (CVE-2025-52565).
func openPeer(master int, name string, n int) (int, error) {
	// ioctl(2) TIOCGPTPEER returns a new descriptor.
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno == 0 {
		return int(fd), nil
	}
	if errno != unix.EINVAL && errno != unix.ENOTTY {
		return -1, fmt.Errorf("TIOCGPTPEER: %w", errno)
	}
	// open(2) O_NOFOLLOW
	slave, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", name, err)
	}
	var st unix.Stat_t
	major, minor := unix.Major(0), unix.Minor(0)
	if err := unix.Fstat(slave, &st); err == nil {
		major, minor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || major < 136 || major > 143 || int((major-136)*256+minor) != n {
		unix.Close(slave)
		return -1, fmt.Errorf("%s is not the terminal's slave", name)
	}
	return slave, nil
}

// bindConsole makes /dev/console the terminal too, as runc does: the
// slave's descriptor bound onto /dev/console resolved inside the root.
func bindConsole(slave int) error {
	root, err := openRoot()
	if err != nil {
		return err
	}
	defer unix.Close(root)
	console, err := openOrCreateInRoot(root, "/dev/console", false)
	if err != nil {
		return err
	}
	defer unix.Close(console)
	return bindFd(slave, console, false)
}
