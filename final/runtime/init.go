package runtime

// The container's init: the running binary re-executed as
// `minibox runtime init` in the new namespaces. It makes the container's
// file system, reports to Create, waits for Start on exec.fifo, then sets
// the process's user and capabilities and becomes the process (execve).

import (
	"encoding/json"
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
	Spec      *specs.Spec `json:"spec"`
	Bundle    string      `json:"bundle"`
	Rootfs    string      `json:"rootfs"`
	ParentMnt string      `json:"parentMnt"`
	Cgroup    *cgroup     `json:"cgroup"`
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
	sync := os.NewFile(syncFD, "init-sync")
	var boot bootstrap
	if err := json.NewDecoder(sync).Decode(&boot); err != nil {
		fmt.Fprintf(os.Stderr, "minibox runtime init: read the config: %v\n", err)
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
		p := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
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
	if err := unix.Chdir(s.Process.Cwd); err != nil {
		return "", fmt.Errorf("config.json: process.cwd %q: %w", s.Process.Cwd, err)
	}
	return lookPath(s.Process.Args[0], s.Process.Env)
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
	slave, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("process.terminal: open %s: %w", name, err)
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
	// /dev/console is the terminal too, as runc makes it.
	if f, err := os.OpenFile("/dev/console", os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
		f.Close()
		_ = unix.Mount(name, "/dev/console", "", unix.MS_BIND, "")
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
