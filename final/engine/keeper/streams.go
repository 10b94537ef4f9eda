package keeper

// The pumps: one goroutine per output stream of the container's (a pipe's
// read end, or the pty's master) copies what it reads into the log and to
// the attached clients.

import (
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Streams are a running container's standard streams as its supervisor or
// keeper holds them.
type Streams struct {
	Log     *Log
	Attach  *AttachServer
	pumps   sync.WaitGroup
	outputs []output // what the pumps read
}

// output is one stream of the container's, as its pump reads it.
type output struct {
	r       *os.File
	stream  string        // stdout or stderr
	stopped chan struct{} // closed when its pump has returned
}

// Pump makes a pipe for one stream (stdout or stderr) and pumps its read
// end; it returns the write end, the container's.
func (s *Streams) Pump(stream string) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	s.PumpFrom(r, stream)
	return w, nil
}

// PumpFrom copies r into the log and to the clients until it ends (or
// StopPumps stops it). Drain closes it.
func (s *Streams) PumpFrom(r *os.File, stream string) {
	s.start(output{r: r, stream: stream})
}

func (s *Streams) start(o output) {
	o.stopped = make(chan struct{})
	s.outputs = append(s.outputs, o)
	kind := byte(FrameStdout)
	if o.stream == "stderr" {
		kind = FrameStderr
	}
	s.pumps.Add(1)
	go func() {
		defer s.pumps.Done()
		defer close(o.stopped)
		s.copyOut(o.r, o.stream, kind)
	}()
}

func (s *Streams) copyOut(r io.Reader, stream string, kind byte) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			s.Log.Write(stream, buf[:n])
			s.Attach.Broadcast(kind, buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// StopPumps stops the pumps between two reads: what is still in a pipe
// stays there for the keeper. It reports false if a pump did not stop.
func (s *Streams) StopPumps() bool {
	for _, o := range s.outputs {
		if err := o.r.SetReadDeadline(time.Now()); err != nil {
			return false
		}
	}
	return s.waitPumps(5 * time.Second)
}

// Restart undoes StopPumps and StopServing: the pumps that stopped run
// again (one that did not stop is still running), and the clients are
// served again.
func (s *Streams) Restart() {
	outputs := s.outputs
	s.outputs = nil
	for _, o := range outputs {
		_ = o.r.SetReadDeadline(time.Time{})
		select {
		case <-o.stopped:
			s.start(o)
		default:
			s.outputs = append(s.outputs, o)
		}
	}
	s.Attach.Resume()
}

// Drain waits for the pumps to read the container's last output (at most
// 5 s: a process outside the container may hold a pipe) and closes what
// they read.
func (s *Streams) Drain() {
	s.waitPumps(5 * time.Second)
	for _, o := range s.outputs {
		o.r.Close()
	}
	s.outputs = nil
}

func (s *Streams) waitPumps(d time.Duration) bool {
	done := make(chan struct{})
	go func() { s.pumps.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Wait reaps children (a supervisor is a subreaper: prctl(2)
// PR_SET_CHILD_SUBREAPER) until the container's PID 1, pid, has ended,
// and returns its status as a shell reports it.
func Wait(pid int) int {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 255
		}
		if got != pid {
			continue
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}

// ExitsWithin reports whether process pid (our child) ends within d,
// without reaping it: poll(2) on its pidfd (pidfd_open(2), Linux 5.3).
func ExitsWithin(pid int, d time.Duration) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(d)
	for {
		ms := max(int(time.Until(deadline).Milliseconds()), 0) // never -1: that waits for ever
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		if err != unix.EINTR {
			return err == nil && n > 0
		}
	}
}

// SetWinsize sets a terminal's size (ioctl TIOCSWINSZ), through the raw
// descriptor: f.Fd would make it blocking, and a deadline could then no
// longer stop its pump (StopPumps).
func SetWinsize(f *os.File, rows, cols uint16) {
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
		})
	}
}

// rawConner is a file or socket whose descriptor can be reached.
type rawConner interface {
	SyscallConn() (syscall.RawConn, error)
}

// Inherit returns f's descriptor, no longer closed on execve (fcntl(2)
// F_SETFD without FD_CLOEXEC), or -1. It leaves f non-blocking, unlike
// f.Fd.
func Inherit(f rawConner) int {
	fd := -1
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(d uintptr) {
			if _, err := unix.FcntlInt(d, unix.F_SETFD, 0); err == nil {
				fd = int(d)
			}
		})
	}
	return fd
}
