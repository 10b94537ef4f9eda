package runtime

import (
	"fmt"
	"os"
	goruntime "runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// initProcess is the init as it is forked: syscall.ForkExec, not os/exec.
// os.StartProcess first checks, once in each process's life, that pidfds
// work, by forking and reaping a child of its own (Go ≥ 1.23, os/
// pidfd_linux.go checkPidfd): a supervisor starts one init in its life,
// so it would pay that check (0.25-0.7 ms measured here) on every `run`.
// Nothing here needs an os.Process: the caller waits for the init with
// wait4(2) (doc.go), and a failed Create kills and reaps it by PID.
type initProcess struct {
	path  string
	args  []string
	env   []string
	io    IO
	extra []*os.File // the init's descriptors 3, 4, …
	sys   *syscall.SysProcAttr
	pid   int // 0 until started
}

// start forks and executes the init (clone(2), execve(2)): its standard
// files are io's, /dev/null where nil, then extra.
func (p *initProcess) start() error {
	files := []*os.File{p.io.Stdin, p.io.Stdout, p.io.Stderr}
	for i, f := range files {
		if f == nil {
			null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
			if err != nil {
				return fmt.Errorf("the init's standard file %d: %w", i, err)
			}
			defer null.Close()
			files[i] = null
		}
	}
	files = append(files, p.extra...)
	fds := make([]uintptr, len(files))
	for i, f := range files {
		fds[i] = f.Fd()
	}
	pid, err := syscall.ForkExec(p.path, p.args, &syscall.ProcAttr{Env: p.env, Files: fds, Sys: p.sys})
	goruntime.KeepAlive(files) // their descriptors must stay open until the fork
	if err != nil {
		return fmt.Errorf("fork/exec %s: %w", p.path, err)
	}
	p.pid = pid
	return nil
}

// kill ends a started init and reaps it (kill -KILL PID; wait).
func (p *initProcess) kill() {
	if p.pid == 0 {
		return
	}
	_ = unix.Kill(p.pid, unix.SIGKILL)
	for {
		if _, err := unix.Wait4(p.pid, nil, 0, nil); err != unix.EINTR {
			return
		}
	}
}
