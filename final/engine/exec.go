package engine

// exec: one more process in a running container (docker exec). The CLI
// asks the runtime directly; no supervisor is involved: the runtime joins
// the container's namespaces, its cgroup and its user, and forks the
// command there (final/runtime/exec.go says how, the mount namespace
// included).

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/engine/keeper"
	"github.com/minibox-lab/minibox/final/runtime"
)

// ExecOptions are exec's flags.
type ExecOptions struct {
	Cmd         []string
	Env         []string
	Workdir     string
	User        string
	Tty         bool
	Interactive bool
}

// Exec runs o.Cmd in container ref with the given streams and returns its
// exit status. With Tty, the process gets a new pseudo-terminal as its
// controlling terminal, and resize changes its size.
func (e *Engine) Exec(ref string, o ExecOptions, stdin io.Reader, stdout, stderr io.Writer, resize <-chan [2]uint16) (int, error) {
	var err error
	if o.Env, err = callerEnv(o.Env); err != nil {
		return 0, err
	}
	c, err := e.Get(ref)
	if err != nil {
		return 0, err
	}
	if c.State.Status != "running" {
		return 0, fmt.Errorf("container %s is not running", c.Name)
	}
	rootfs := e.containerDir(c.ID) + "/rootfs"
	user, home, err := resolveUser(rootfs, first(o.User, c.Config.User))
	if err != nil {
		return 0, err
	}
	p := runtime.Spec().Process
	p.Args, p.Cwd, p.User, p.Terminal = o.Cmd, first(o.Workdir, c.Config.WorkingDir, "/"), user, o.Tty
	p.Env = mergeEnv(c.Config.Env, []string{"HOSTNAME=" + c.Config.Hostname}, o.Env)
	if home != "" && !hasEnv(p.Env, "HOME") {
		p.Env = append(p.Env, "HOME="+home)
	}
	if o.Tty {
		return e.execTTY(c, *p, stdin, stdout, resize)
	}
	return e.execPipes(c, *p, o.Interactive, stdin, stdout, stderr)
}

// execPipes runs p with pipes for its streams.
func (e *Engine) execPipes(c *Container, p specs.Process, interactive bool, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	var rio runtime.IO
	var copies sync.WaitGroup
	var inW *os.File
	var err error
	if interactive && stdin != nil {
		if rio.Stdin, inW, err = os.Pipe(); err != nil {
			return 0, err
		}
	}
	var outR, errR *os.File
	if outR, rio.Stdout, err = os.Pipe(); err != nil {
		return 0, err
	}
	if errR, rio.Stderr, err = os.Pipe(); err != nil {
		return 0, err
	}
	proc, err := e.Runtime.Exec(c.ID, p, rio)
	closeChildEnds(rio)
	if err != nil {
		outR.Close()
		errR.Close()
		if inW != nil {
			inW.Close()
		}
		return 0, err
	}
	if inW != nil {
		go func() { _, _ = io.Copy(inW, stdin); inW.Close() }()
	}
	for _, pair := range []struct {
		w io.Writer
		r *os.File
	}{{stdout, outR}, {stderr, errR}} {
		copies.Add(1)
		go func(w io.Writer, r *os.File) { defer copies.Done(); _, _ = io.Copy(w, r); r.Close() }(pair.w, pair.r)
	}
	state, err := proc.Wait()
	copies.Wait()
	if err != nil {
		return 0, err
	}
	return exitStatusOf(state), nil
}

// execTTY runs p on a new pseudo-terminal (/dev/ptmx, pts(4)).
func (e *Engine) execTTY(c *Container, p specs.Process, stdin io.Reader, stdout io.Writer, resize <-chan [2]uint16) (int, error) {
	master, slave, err := openPtyIn(c.State.Pid)
	if err != nil {
		return 0, err
	}
	defer master.Close()
	proc, err := e.Runtime.Exec(c.ID, p, runtime.IO{Stdin: slave, Stdout: slave, Stderr: slave})
	slave.Close()
	if err != nil {
		return 0, err
	}
	if resize != nil {
		go func() {
			for size := range resize {
				keeper.SetWinsize(master, size[0], size[1])
			}
		}()
	}
	if stdin != nil {
		go func() { _, _ = io.Copy(master, stdin) }()
	}
	done := make(chan struct{})
	go func() { _, _ = io.Copy(stdout, master); close(done) }()
	state, err := proc.Wait()
	<-done // EIO once the last process holding the terminal has gone
	if err != nil {
		return 0, err
	}
	return exitStatusOf(state), nil
}

// openPtyIn opens a new pseudo-terminal pair in the container's own
// devpts (its /dev/pts/ptmx, as runc's exec -t does): a pair from the
// host's /dev/ptmx is a terminal to isatty(3) but has no name inside
// (ttyname(3), `tty`: "not a tty"). The ptmx is opened through the
// container's root with openat2 RESOLVE_IN_ROOT, so that the container's
// symlinks cannot lead to a host file, and checked to be a ptmx; the slave
// is the master's peer (TIOCGPTPEER), opened by no path at all. Unlocking
// it is what unlockpt(3) does.
func openPtyIn(pid int) (*os.File, *os.File, error) {
	root, err := os.Open("/proc/" + strconv.Itoa(pid) + "/root")
	if err != nil {
		return nil, nil, fmt.Errorf("the container's root: %w", err)
	}
	defer root.Close()
	fd, err := unix.Openat2(int(root.Fd()), "dev/pts/ptmx", &unix.OpenHow{
		Flags: unix.O_RDWR | unix.O_NOCTTY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return nil, nil, fmt.Errorf("open the container's /dev/pts/ptmx: %w", err)
	}
	master := os.NewFile(uintptr(fd), "ptmx")
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 5 || unix.Minor(st.Rdev) != 2 {
		master.Close()
		return nil, nil, fmt.Errorf("the container's /dev/pts/ptmx is not a ptmx (%v)", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	peer, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		master.Close()
		return nil, nil, fmt.Errorf("open the terminal's slave (TIOCGPTPEER): %w", errno)
	}
	return master, os.NewFile(peer, "pts"), nil
}

func exitStatusOf(state *os.ProcessState) int {
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return state.ExitCode()
}
