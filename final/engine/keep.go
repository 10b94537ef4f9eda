package engine

// The keeper: a detached container's supervisor sheds its heap. Mounting
// the root, writing the bundle and starting the runtime leave a Go
// supervisor with ~2 MiB of heap it never frees (the garbage of the setup
// is spread over pages the runtime keeps), paid for each container as
// long as it runs. Once a detached container runs, nobody will attach to
// it, and all its supervisor still does is copy its output into the log
// and wait for it. So the supervisor stops its pumps, closes its sockets
// and replaces itself (execve(2), the same PID) by a fresh copy of its
// binary, the keeper, that inherits what it needs as descriptors:
// supervisor.lock, the log, the output pipes (or the pty's master) and
// stdin. The container, its cgroup, mounts and network do not notice:
// they belong to the PID, which stays the container's parent and
// subreaper. When the container ends, the keeper loads the engine and
// finishes as the supervisor would have (Supervise's finish).
//
// The execve runs on the thread that forked the container's init: the
// init's death signal (PR_SET_PDEATHSIG) fires when that thread ends, and
// execve keeps only the calling thread.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// keepEnv carries the handover to the keeper.
const keepEnv = "MINIBOX_KEEP"

// handover is what the keeper inherits: descriptor numbers, and the
// lines the log had not finished.
type handover struct {
	Root     string            `json:"root"`
	ID       string            `json:"id"`
	Network  string            `json:"network"` // what recoverOrphan needs, should the record be unreadable
	Pid      int               `json:"pid"`     // the container's init
	Lock     int               `json:"lock"`
	Log      int               `json:"log"`
	Listener int               `json:"listener"` // attach.sock: wait attaches to hear the exit status
	Outputs  []keptOutput      `json:"outputs"`
	Stdin    int               `json:"stdin"` // -i without -t: the pipe's write end; -1: none
	Tty      bool              `json:"tty"`   // the output is the pty's master, also the input
	Partial  map[string][]byte `json:"partial,omitempty"`
}

type keptOutput struct {
	Fd     int    `json:"fd"`
	Stream string `json:"stream"`
}

// fds are the descriptors the keeper inherits.
func (h *handover) fds() []int {
	fds := []int{h.Lock, h.Log, h.Listener, h.Stdin}
	for _, o := range h.Outputs {
		fds = append(fds, o.Fd)
	}
	return slices.DeleteFunc(fds, func(fd int) bool { return fd < 0 })
}

// keeperAfter is how long a detached container runs before its
// supervisor hands over: one that ends sooner costs no keeper's start.
const keeperAfter = 100 * time.Millisecond

// exitsWithin reports whether process pid (our child) ends within d,
// without reaping it: poll(2) on its pidfd (pidfd_open(2), Linux 5.3).
func exitsWithin(pid int, d time.Duration) bool {
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

// handOver makes this supervisor the keeper of container pid. It returns
// only if it did not: the supervisor then goes on as before.
func (s *supervision) handOver(pid int, lock *os.File) {
	select {
	case <-s.attach.ready: // with -t, the pty's master has come
	case <-time.After(5 * time.Second):
		return
	}
	if s.console != nil {
		s.console()
	}
	if !s.attach.stopServing() {
		return // a client is attached (wait): stay, to tell it the end
	}
	if !s.stopPumps() {
		s.restart()
		return
	}
	err := s.execKeeper(pid, lock)
	fmt.Fprintf(os.Stderr, "minibox supervise: %.12s: no keeper, the supervisor stays: %v\n", s.c.ID, err)
	s.restart()
}

// execKeeper replaces this process by the keeper; it returns only on
// failure, with every descriptor closed on execve again.
func (s *supervision) execKeeper(pid int, lock *os.File) error {
	var kept []int // to close on execve again if it fails
	keep := func(f rawConner) int {
		fd := inherit(f)
		kept = append(kept, fd)
		return fd
	}
	h := handover{Root: s.e.Root, ID: s.c.ID, Network: s.c.Config.Network, Pid: pid, Lock: keep(lock), Log: keep(s.log.f),
		Listener: -1, Stdin: -1, Tty: s.c.Config.Tty, Partial: s.log.partial}
	if s.attach.l != nil {
		h.Listener = keep(s.attach.l)
	}
	for _, o := range s.outputs {
		h.Outputs = append(h.Outputs, keptOutput{Fd: keep(o.r), Stream: o.stream})
	}
	if w, ok := s.attach.stdin.(*os.File); ok && !h.Tty { // with -t, the master is the output
		h.Stdin = keep(w)
	}
	defer func() {
		for _, fd := range kept {
			if fd >= 0 {
				unix.CloseOnExec(fd)
			}
		}
	}()
	if slices.Contains(kept, -1) {
		return errors.New("a descriptor could not be kept across execve")
	}
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	// execve(2) /proc/self/exe: the very binary running now, even if the
	// file was replaced since.
	return syscall.Exec("/proc/self/exe", os.Args, keeperEnv(string(data)))
}

// keeperEnv is our environment with the handover, and GOMAXPROCS=1: the
// keeper only copies output and waits, and each P of the Go scheduler
// costs memory (~120 KiB less per keeper measured with one).
func keeperEnv(handover string) []string {
	env := []string{keepEnv + "=" + handover, "GOMAXPROCS=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, keepEnv+"=") && !strings.HasPrefix(kv, "GOMAXPROCS=") {
			env = append(env, kv)
		}
	}
	return env
}

// restart undoes stopPumps and stopServing: the pumps that stopped run
// again (one that did not stop is still running).
func (s *supervision) restart() {
	outputs := s.outputs
	s.outputs = nil
	for _, o := range outputs {
		_ = o.r.SetReadDeadline(time.Time{})
		select {
		case <-o.stopped:
			s.pumpFrom(o)
		default:
			s.outputs = append(s.outputs, o)
		}
	}
	if s.attach.l != nil {
		_ = s.attach.l.SetDeadline(time.Time{})
		s.attach.listen(s.attach.l)
	}
}

// stopPumps stops the pumps between two reads: what is still in a pipe
// stays there for the keeper. It reports false if a pump did not stop.
func (s *supervision) stopPumps() bool {
	for _, o := range s.outputs {
		if err := o.r.SetReadDeadline(time.Now()); err != nil {
			return false
		}
	}
	done := make(chan struct{})
	go func() { s.pumps.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// rawConner is a file or socket whose descriptor can be reached.
type rawConner interface {
	SyscallConn() (syscall.RawConn, error)
}

// inherit returns f's descriptor, no longer closed on execve (fcntl(2)
// F_SETFD without FD_CLOEXEC), or -1. It leaves f non-blocking, unlike
// f.Fd.
func inherit(f rawConner) int {
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

// IsKeeper reports whether this process is a supervisor that handOver
// has just replaced: cmd/minibox-shim and cmd/minibox call Keep first
// thing when it is true.
func IsKeeper() bool {
	return len(os.Args) > 1 && os.Args[1] == "supervise" && os.Getenv(keepEnv) != ""
}

// Keep is the keeper: it pumps the container's output into its log,
// waits for it to end and finishes as its supervisor. It returns the
// supervisor's exit status.
func Keep() int {
	var h handover
	err := json.Unmarshal([]byte(os.Getenv(keepEnv)), &h)
	os.Unsetenv(keepEnv)
	if err == nil && (h.Lock < 0 || h.Log < 0 || h.Pid <= 0 || slices.ContainsFunc(h.Outputs, func(o keptOutput) bool { return o.Fd < 0 })) {
		err = errors.New("a descriptor or the PID is missing")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "minibox supervise: the keeper's handover: %v\n", err)
		return 1
	}
	// What is ours stays ours: nothing the keeper starts (iptables, when
	// the network is released) may hold the lock or the pipes.
	for _, fd := range h.fds() {
		unix.CloseOnExec(fd)
	}
	lock := os.NewFile(uintptr(h.Lock), "supervisor.lock")
	defer lock.Close() // held until the container is finished
	s := &supervision{
		log:    &logger{f: os.NewFile(uintptr(h.Log), "container.log"), partial: map[string][]byte{}},
		attach: &attachServer{clients: map[net.Conn]bool{}, first: make(chan struct{}), ready: make(chan struct{})},
	}
	for stream, p := range h.Partial {
		s.log.partial[stream] = p
	}
	for _, o := range h.Outputs {
		s.pumpFrom(output{r: os.NewFile(uintptr(o.Fd), o.Stream), stream: o.Stream})
	}
	switch {
	case h.Tty && len(s.outputs) == 1:
		master := s.outputs[0].r
		s.attach.stdin = master
		s.attach.resize = func(rows, cols uint16) { setWinsize(master, rows, cols) }
	case h.Stdin >= 0:
		s.attach.stdin = os.NewFile(uintptr(h.Stdin), "stdin")
	}
	close(s.attach.ready)
	closeListener := func() {}
	if h.Listener >= 0 {
		f := os.NewFile(uintptr(h.Listener), "attach.sock")
		l, err := net.FileListener(f) // a copy of the descriptor
		f.Close()
		if err == nil {
			s.attach.listen(l.(*net.UnixListener))
			closeListener = func() { l.Close() }
		}
	}
	status := s.wait(h.Pid)
	// Only now the engine: its heap is the keeper's for a moment only.
	if s.e, err = New(h.Root); err != nil {
		fmt.Fprintf(os.Stderr, "minibox supervise: %.12s ended with status %d, but: %v\n", h.ID, status, err)
		return 1
	}
	if s.c, err = s.e.load(h.ID); err != nil {
		// Undo what the record would have told (cleanup removes the rest).
		s.e.recoverOrphan(&Container{ID: h.ID, Config: Config{Network: h.Network}})
		fmt.Fprintf(os.Stderr, "minibox supervise: %.12s ended with status %d, but: %v\n", h.ID, status, err)
		return 1
	}
	c := s.c
	// What Supervise's undos do, in their order (undo runs them last first).
	s.undos = []func(){func() { s.e.recoverOrphan(c) }, s.log.close, func() { closeListener(); os.Remove(s.e.attachPath(c.ID)) }}
	if err := s.finish(status); err != nil {
		fmt.Fprintf(os.Stderr, "minibox supervise: %v\n", err)
		return 1
	}
	return 0
}
