// Package early starts the supervisor of `minibox run`'s container from a
// package init, before the rest of minibox has started: the init is its
// sub-package onrun's, which only cmd/minibox imports (so that no other
// binary that links the engine starts one).
//
// Go runs the init of every package a program links before main: ~2.5 ms
// for minibox, which links the image distribution client, the Dockerfile
// parser and cobra's every command. `minibox run` needs a supervisor
// (final/engine, prestart.go), and the supervisor's own start (fork, exec
// of minibox-shim, its Go start: ~3.5 ms) is the longest step on the way
// to the container. Started from main, it follows minibox's inits; started
// here, it overlaps them.
//
// Go initialises a package once every package it imports is, and among
// the packages ready at a moment the one first in import path order (the
// Go spec, "Package initialization", since Go 1.21). This package imports
// only os and what os imports itself (io, syscall), and onrun only this
// one and os: onrun's init runs about a millisecond into the process. It
// must stay that way: an import of, say, path/filepath or strings would
// make it wait for every ready package that sorts before that one.
//
// Spawn, the way this package starts a supervisor, is how every supervisor
// starts (engine.Prestart).
//
// Nothing here decides anything the command line has not said plainly.
// The supervisor is started only for `minibox run` as root, without
// --root (the data root is then $MINIBOX_ROOT or the default, both
// absolute, which is all this package can tell without parsing flags),
// without -h/--help, and when minibox-shim lies next to minibox. It is
// told nothing until `run` gives it the word (engine.Supervisor.Start), and
// `run` does that only after checking that it was told this data root
// (engine.Engine.PrestartNew) and that it is of minibox's build: its first
// line on the ready pipe, within a second, is its build information,
// which run compares with its own (final/runtime.SameBuild). Otherwise
// run closes the pipe, and the supervisor exits (end of file: no
// container comes), having done nothing but open the engine (make the
// data root's directories if missing, as every command does); run starts
// another. A minibox-shim of an older build is not run by `make build`'s
// tree; one left there by hand does whatever that build does with
// `supervise --root ROOT ID` before it reads its word.
package early

import (
	"io"
	"os"
	"syscall"
)

// ShimName is minibox-shim's file name (final/runtime.ShimName: this
// package cannot import final/runtime, see above).
const ShimName = "minibox-shim"

// DefaultRoot is the data root without --root and $MINIBOX_ROOT
// (internal/cleanup.DefaultDataRoot).
const DefaultRoot = "/var/lib/minibox"

// close_range(2) (Linux 5.9; CLOSE_RANGE_CLOEXEC 5.11): 436 on amd64,
// arm64 and the other architectures of the common table (not on mips,
// where the call then fails and closeOnExecFrom3 goes one by one); the
// syscall package predates it.
const (
	sysCloseRange     = 436
	closeRangeCloexec = 4
)

// A Supervisor is a supervisor started here, waiting for its word.
type Supervisor struct {
	Binary  string   // the minibox-shim it runs
	Root    string   // the data root it was told (--root)
	ID      string   // the new container's id
	Pid     int      // its process: our child, to reap
	Ready   *os.File // its descriptor 3 (engine.Supervisor)
	GoAhead *os.File // its descriptor 4
}

var started *Supervisor

// Begin is what minibox does first (package onrun's init, with os.Args):
// for a `run` that Take will take, start its supervisor now.
func Begin(args []string) {
	if !wanted(args) || os.Geteuid() != 0 {
		return
	}
	self, err := os.Executable()
	if err != nil {
		return
	}
	started, _ = Start(dir(self)+"/"+ShimName, dataRoot())
}

// Take returns the supervisor this process started early, once; nil if
// there is none (any other command, or a `run` with --root).
func Take() *Supervisor {
	s := started
	started = nil
	return s
}

// wanted reports whether args (os.Args) are a `minibox run` whose data
// root is not given by --root, and that is not a request for help.
func wanted(args []string) bool {
	if len(args) < 2 || args[1] != "run" {
		return false
	}
	for _, a := range args[2:] {
		if a == "-h" || a == "--help" || a == "--root" || (len(a) > len("--root=") && a[:len("--root=")] == "--root=") {
			return false
		}
	}
	return true
}

// dataRoot is $MINIBOX_ROOT, else the default; "" if it is not absolute
// (engine.New makes it absolute from the working directory; here that
// would take path/filepath).
func dataRoot() string {
	root := os.Getenv("MINIBOX_ROOT")
	if root == "" {
		root = DefaultRoot
	}
	if root[0] != '/' {
		return ""
	}
	return root
}

// Start starts binary as the supervisor of a new container of data root
// root, with a new id (Spawn).
func Start(binary, root string) (*Supervisor, error) {
	id, err := newID()
	if err != nil {
		return nil, err
	}
	return Spawn(binary, root, id)
}

// Spawn starts binary as the supervisor of container id of data root root
// (absolute): `binary supervise --root ROOT ID`, in a session of its own,
// with the ready pipe on its descriptor 3 and the go-ahead pipe on 4. It
// is how every supervisor starts (engine.Prestart too).
func Spawn(binary, root, id string) (*Supervisor, error) {
	if root == "" || root[0] != '/' {
		return nil, syscall.EINVAL
	}
	if info, err := os.Stat(binary); err != nil || !info.Mode().IsRegular() {
		return nil, syscall.ENOENT
	}
	ready, readyEnd, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	goAheadEnd, goAhead, err := os.Pipe()
	if err != nil {
		return nil, closeAll(err, ready, readyEnd)
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, closeAll(err, ready, readyEnd, goAhead, goAheadEnd)
	}
	// The child gets these five descriptors and no other. Go opens its own
	// close-on-exec, but one our caller left us open would stay open in
	// the supervisor for the container's life (a pipe whose reader then
	// waits for its end).
	closeOnExecFrom3()
	pid, err := syscall.ForkExec(binary, []string{binary, "supervise", "--root", root, id}, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{null.Fd(), null.Fd(), null.Fd(), readyEnd.Fd(), goAheadEnd.Fd()},
		Sys:   &syscall.SysProcAttr{Setsid: true}, // no terminal: no Ctrl-C of ours reaches it
	})
	closeAll(nil, null, readyEnd, goAheadEnd)
	if err != nil {
		return nil, closeAll(err, ready, goAhead)
	}
	return &Supervisor{Binary: binary, Root: root, ID: id, Pid: pid, Ready: ready, GoAhead: goAhead}, nil
}

// closeOnExecFrom3 marks every descriptor from 3 up close-on-exec:
// close_range(2) CLOSE_RANGE_CLOEXEC (Linux 5.11), else one by one from
// /proc/self/fd (final/runtime.CloseOnExecFrom, which this package cannot
// import).
func closeOnExecFrom3() {
	if _, _, errno := syscall.Syscall(sysCloseRange, 3, 1<<32-1, closeRangeCloexec); errno == 0 {
		return
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		fd := 0
		for _, c := range e.Name() {
			fd = fd*10 + int(c-'0')
		}
		if fd >= 3 {
			syscall.CloseOnExec(fd)
		}
	}
}

// newID is a container id (engine.NewID): 32 random bytes in hex.
func newID() (string, error) {
	f, err := os.Open("/dev/urandom")
	if err != nil {
		return "", err
	}
	defer f.Close()
	b := make([]byte, 32)
	if _, err := io.ReadFull(f, b); err != nil {
		return "", err
	}
	const digits = "0123456789abcdef"
	id := make([]byte, 0, 64)
	for _, c := range b {
		id = append(id, digits[c>>4], digits[c&15])
	}
	return string(id), nil
}

// dir is path/filepath.Dir of an absolute path.
func dir(path string) string {
	i := len(path) - 1
	for i > 0 && path[i] != '/' {
		i--
	}
	return path[:i]
}

func closeAll(err error, files ...*os.File) error {
	for _, f := range files {
		f.Close()
	}
	return err
}
