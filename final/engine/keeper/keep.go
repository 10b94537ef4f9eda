package keeper

// The handovers, both ways. A detached container's supervisor execs the
// keeper with Handover in its environment: descriptor numbers (the lock,
// the log, the output pipes or the pty's master, stdin, the attach socket,
// its own binary) and the lines the log had not finished. When the
// container ends, the keeper execs that binary back with Finish: the
// status, and what the finish needs (the lock, the socket, the clients
// waiting to hear the status).
//
// Each execve runs on the thread that forked the container's init: the
// init's death signal (PR_SET_PDEATHSIG) fires when that thread ends, and
// execve keeps only the calling thread. Here that is the main thread,
// locked by init below.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	goruntime "runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Name is the keeper's binary, looked for next to the supervisor's.
const Name = "minibox-keeper"

// Environment variables carrying the handovers.
const (
	KeepEnv   = "MINIBOX_KEEP"
	FinishEnv = "MINIBOX_FINISH"
)

// Handover is what the keeper inherits.
type Handover struct {
	Root       string            `json:"root"`
	ID         string            `json:"id"`
	Network    string            `json:"network"` // what the finish needs, should the record be unreadable
	Pid        int               `json:"pid"`     // the container's init
	Lock       int               `json:"lock"`
	Log        int               `json:"log"`
	Listener   int               `json:"listener"` // attach.sock: wait attaches to hear the exit status; -1: none
	Outputs    []KeptOutput      `json:"outputs"`
	Stdin      int               `json:"stdin"` // -i without -t: the pipe's write end; -1: none
	Tty        bool              `json:"tty"`   // the output is the pty's master, also the input
	Partial    map[string][]byte `json:"partial,omitempty"`
	Supervisor int               `json:"supervisor"` // the supervisor's binary, open (O_RDONLY): the keeper finishes by executing it
	Build      string            `json:"build"`      // the supervisor's build, handed back with Finish: its binary checks it
	StatusFile string            `json:"statusFile"` // where the keeper writes how the container ended (Ended); "": nowhere
}

// KeptOutput is one of the container's output streams.
type KeptOutput struct {
	Fd     int    `json:"fd"`
	Stream string `json:"stream"`
}

// Finish is what the supervisor's binary inherits from the keeper.
type Finish struct {
	Root     string `json:"root"`
	ID       string `json:"id"`
	Network  string `json:"network"`
	Status   int    `json:"status"` // the container's, as a shell reports it
	Lock     int    `json:"lock"`
	Listener int    `json:"listener"` // -1: none
	Clients  []int  `json:"clients"`  // attached clients, to be told the status
	Build    string `json:"build"`    // Handover's
}

// IsKeeper reports whether this process is a keeper: a supervisor that
// has just executed minibox-keeper, or its own binary when that is
// missing (cmd/minibox-shim then calls final/engine's Keep, which calls
// Main). Both keep the supervisor's arguments, `supervise …`: a command
// run with MINIBOX_KEEP in its environment by mistake is not a keeper.
func IsKeeper() bool { return handedOver(KeepEnv) }

// IsFinish reports whether this process is a supervisor's binary executed
// by its keeper to finish the container.
func IsFinish() bool { return handedOver(FinishEnv) }

func handedOver(env string) bool {
	return len(os.Args) > 1 && os.Args[1] == "supervise" && os.Getenv(env) != ""
}

// The keeper must exec the finish from the thread that forked the
// container's init, the main thread: LockOSThread in an init keeps main
// on it.
func init() {
	if IsKeeper() {
		goruntime.LockOSThread()
	}
}

// ExecKeeper replaces this process by the keeper at path, with argv and
// env (to which it adds the handover): h's descriptors are given, and the
// streams' (outputs, stdin, the log and its unfinished lines, the attach
// socket) are added. It returns only on failure, with every descriptor
// closed on execve again; the caller then restarts the streams.
func (s *Streams) ExecKeeper(path string, argv, env []string, h Handover) error {
	kept := []int{h.Lock, h.Supervisor}
	keep := func(f rawConner) int {
		fd := Inherit(f)
		kept = append(kept, fd)
		return fd
	}
	defer func() {
		for _, fd := range kept {
			if fd >= 0 {
				unix.CloseOnExec(fd)
			}
		}
	}()
	h.Log, h.Listener, h.Stdin, h.Partial = keep(s.Log.f), -1, -1, s.Log.partial
	if s.Attach.l != nil {
		h.Listener = keep(s.Attach.l)
	}
	for _, o := range s.outputs {
		h.Outputs = append(h.Outputs, KeptOutput{Fd: keep(o.r), Stream: o.stream})
	}
	if w, ok := s.Attach.Stdin().(*os.File); ok && !h.Tty { // with -t, the master is the output
		h.Stdin = keep(w)
	}
	for _, fd := range kept {
		if fd < 0 {
			return errors.New("a descriptor could not be kept across execve")
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("keep descriptor %d across execve: %w", fd, err)
		}
	}
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return syscall.Exec(path, argv, withEnv(env, KeepEnv, string(data)))
}

// withEnv is env with name=value in place of any earlier value, and
// without the other handover and GOMAXPROCS: a keeper runs with
// GOMAXPROCS=1 (each P of Go's scheduler costs memory, ~120 KiB per
// keeper measured), a supervisor with the default.
func withEnv(env []string, name, value string) []string {
	out := []string{name + "=" + value}
	if name == KeepEnv {
		out = append(out, "GOMAXPROCS=1")
	}
	for _, kv := range env {
		if !strings.HasPrefix(kv, KeepEnv+"=") && !strings.HasPrefix(kv, FinishEnv+"=") && !strings.HasPrefix(kv, "GOMAXPROCS=") {
			out = append(out, kv)
		}
	}
	return out
}

// Main is the keeper: it pumps the container's output into its log and to
// attached clients, waits for the container to end and executes the
// supervisor's binary to finish. It returns only on failure, the status
// to exit with.
func Main() int {
	var h Handover
	err := json.Unmarshal([]byte(os.Getenv(KeepEnv)), &h)
	if err == nil && (h.Lock < 0 || h.Log < 0 || h.Supervisor < 0 || h.Pid <= 0 ||
		slices.ContainsFunc(h.Outputs, func(o KeptOutput) bool { return o.Fd < 0 })) {
		err = errors.New("a descriptor or the PID is missing")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "minibox keeper: its handover: %v\n", err)
		return 1
	}
	// What is ours stays ours: a process the finish starts (iptables, when
	// the network is released) must not hold the lock or the pipes.
	for _, fd := range append([]int{h.Lock, h.Log, h.Listener, h.Stdin, h.Supervisor}, outputFds(h)...) {
		if fd >= 0 {
			unix.CloseOnExec(fd)
		}
	}
	s := &Streams{Log: NewLog(os.NewFile(uintptr(h.Log), "container.log"), h.Partial), Attach: NewAttachServer()}
	for _, o := range h.Outputs {
		s.PumpFrom(os.NewFile(uintptr(o.Fd), o.Stream), o.Stream)
	}
	switch {
	case h.Tty && len(s.outputs) == 1:
		master := s.outputs[0].r
		s.Attach.SetInput(master, func(rows, cols uint16) { SetWinsize(master, rows, cols) })
	case h.Stdin >= 0:
		s.Attach.SetInput(os.NewFile(uintptr(h.Stdin), "stdin"), nil)
	}
	s.Attach.SetReady()
	if h.Listener >= 0 {
		f := os.NewFile(uintptr(h.Listener), "attach.sock")
		l, err := net.FileListener(f) // a copy of the descriptor
		f.Close()
		if err == nil {
			s.Attach.Listen(l.(*net.UnixListener))
		}
	}
	status := Wait(h.Pid)
	if h.StatusFile != "" {
		if err := WriteEnded(h.StatusFile, Ended{Pid: h.Pid, Status: status, FinishedAt: time.Now()}); err != nil {
			fmt.Fprintf(os.Stderr, "minibox keeper: %.12s ended with status %d: %v\n", h.ID, status, err)
		}
	}
	s.Drain()
	s.Log.Close()
	err = s.execFinish(h, status)
	fmt.Fprintf(os.Stderr, "minibox keeper: %.12s ended with status %d, but its supervisor's binary did not start to finish it: %v\n", h.ID, status, err)
	return 1
}

func outputFds(h Handover) []int {
	var fds []int
	for _, o := range h.Outputs {
		fds = append(fds, o.Fd)
	}
	return fds
}

// execFinish executes the supervisor's binary to finish the container.
func (s *Streams) execFinish(h Handover, status int) error {
	f := Finish{Root: h.Root, ID: h.ID, Network: h.Network, Status: status, Lock: h.Lock, Listener: -1, Build: h.Build}
	if !s.Attach.pause() {
		return errors.New("the attach socket did not stop")
	}
	if s.Attach.l != nil {
		f.Listener = Inherit(s.Attach.l)
	}
	s.Attach.mu.Lock()
	for conn := range s.Attach.clients {
		if fd := Inherit(conn.(rawConner)); fd >= 0 {
			f.Clients = append(f.Clients, fd)
		}
	}
	s.Attach.mu.Unlock()
	if _, err := unix.FcntlInt(uintptr(h.Lock), unix.F_SETFD, 0); err != nil {
		return fmt.Errorf("keep the lock across execve: %w", err)
	}
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	// The supervisor's very binary, even if its file was replaced since
	// (execve(2) of /proc/self/fd/N, as fexecve(3) does). ETXTBSY: the
	// file is being written in place right now (cp over it); its finish
	// will tell another build, after the copy.
	path, env := fmt.Sprintf("/proc/self/fd/%d", h.Supervisor), withEnv(os.Environ(), FinishEnv, string(data))
	for try := 0; ; try++ {
		err = syscall.Exec(path, os.Args, env)
		if err != syscall.ETXTBSY || try == 100 {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// AdoptPending adopts the clients waiting in listener's backlog (accept(2)
// until none is left): those that connected while the keeper handed over
// to the finish, which closes the socket once they are adopted.
func (s *AttachServer) AdoptPending(listener int) {
	if err := unix.SetNonblock(listener, true); err != nil {
		return
	}
	var fds []int
	for {
		fd, _, err := unix.Accept4(listener, unix.SOCK_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			break // EAGAIN: none left
		}
		fds = append(fds, fd)
	}
	s.Adopt(fds)
}

// Adopt makes conns (descriptors a keeper passed on) clients, to be told
// the exit status; their input is not read.
func (s *AttachServer) Adopt(fds []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), "attach client")
		conn, err := net.FileConn(f) // a copy of the descriptor
		f.Close()
		if err == nil {
			s.clients[conn] = true
		}
	}
}
