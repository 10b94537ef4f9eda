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
	c, err := e.Get(ref)
	if err != nil {
		return 0, err
	}
	if c.State.Status != "running" {
		return 0, fmt.Errorf("container %s is not running", c.Name)
	}
	rootfs := e.containerDir(c.ID) + "/rootfs"
	user, err := resolveUser(rootfs, first(o.User, c.Config.User))
	if err != nil {
		return 0, err
	}
	p := runtime.Spec().Process
	p.Args, p.Cwd, p.User, p.Terminal = o.Cmd, first(o.Workdir, c.Config.WorkingDir, "/"), user, o.Tty
	p.Env = mergeEnv(c.Config.Env, []string{"HOSTNAME=" + c.Config.Hostname}, o.Env)
	if home := homeOf(rootfs, user.UID); home != "" && !hasEnv(p.Env, "HOME") {
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
	master, slave, err := openPty()
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
				setWinsize(master, size[0], size[1])
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

// openPty opens a new pseudo-terminal pair: ptmx's master, then its
// slave /dev/pts/N, unlocked (what posix_openpt, unlockpt and ptsname do).
func openPty() (*os.File, *os.File, error) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("ptsname: %w", err)
	}
	slave, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}

func exitStatusOf(state *os.ProcessState) int {
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return state.ExitCode()
}
