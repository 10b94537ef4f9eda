package engine

// The keeper: a detached container's supervisor hands over to
// minibox-keeper (package keeper). Mounting the root, writing the bundle
// and starting the runtime leave a Go supervisor with ~2 MiB of heap it
// never frees, and its binary's package inits (the engine, the image
// store, the network) cost ~0.4 MiB more in any process that runs it,
// paid for each container as long as it runs. Once a detached container
// runs, nobody is attached to it, and all its supervisor still does is
// copy its output into the log, serve the attach socket and wait. So the
// supervisor stops its pumps and replaces itself (execve(2), the same PID)
// by minibox-keeper, which links only package keeper, and which inherits
// what it needs as descriptors: supervisor.lock, the log, the output pipes
// (or the pty's master), stdin, the attach socket. The container, its
// cgroup, mounts and network do not notice: they belong to the PID, which
// stays the container's parent and subreaper. When the container ends,
// the keeper executes the supervisor's binary again, which finishes as the
// supervisor would have (Supervise's finish).
//
// A minibox-keeper missing or of another build is not used: the
// supervisor's own binary keeps instead (the same code, its inits' heap).
//
// The execve runs on the thread that forked the container's init: the
// init's death signal (PR_SET_PDEATHSIG) fires when that thread ends, and
// execve keeps only the calling thread.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/engine/keeper"
	"github.com/minibox-lab/minibox/final/runtime"
)

// keeperAfter is how long a detached container runs before its
// supervisor hands over: one that ends sooner costs no keeper's start.
const keeperAfter = 100 * time.Millisecond

// handOver makes this supervisor the keeper of container pid. It returns
// only if it did not: the supervisor then goes on as before.
func (s *supervision) handOver(pid int, lock *os.File) {
	select {
	case <-s.streams.Attach.Ready(): // with -t, the pty's master has come
	case <-time.After(5 * time.Second):
		return
	}
	if s.console != nil {
		s.console()
	}
	if !s.streams.Attach.StopServing() {
		return // a client is attached (wait): stay, to tell it the end
	}
	if !s.streams.StopPumps() {
		s.streams.Restart()
		return
	}
	err := s.execKeeper(pid, lock)
	fmt.Fprintf(os.Stderr, "minibox supervise: %.12s: no keeper, the supervisor stays: %v\n", s.c.ID, err)
	s.streams.Restart()
}

// execKeeper replaces this process by the keeper; it returns only on
// failure, with every descriptor closed on execve again.
func (s *supervision) execKeeper(pid int, lock *os.File) error {
	// Our own binary, open for the keeper to execute at the end: the very
	// build running now, even if its file is replaced meanwhile by another
	// (make build). One overwritten in place is told by Build.
	self, err := unix.Open("/proc/self/exe", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open our own binary: %w", err)
	}
	defer unix.Close(self) // reached only if the execve failed
	path, argv0, done := keeperBinary()
	defer done()
	h := keeper.Handover{Root: s.e.Root, ID: s.c.ID, Network: s.c.Config.Network, Pid: pid,
		Lock: int(lock.Fd()), Tty: s.c.Config.Tty, Supervisor: self, Build: buildDigest(), StatusFile: s.e.endedPath(s.c.ID)}
	return s.streams.ExecKeeper(path, append([]string{argv0}, os.Args[1:]...), os.Environ(), h)
}

// keeperBinary is what the keeper executes: minibox-keeper next to the
// running binary if it is the same build (checked on the file it opens,
// executed as /proc/self/fd/N: the very file checked), and otherwise the
// running binary itself (/proc/self/exe), which keeps as minibox-keeper
// does. argv0 names it for ps; done closes the file if execve failed.
func keeperBinary() (path, argv0 string, done func()) {
	if f, err := runtime.OpenCompanion(keeper.Name); err == nil {
		return fmt.Sprintf("/proc/self/fd/%d", f.Fd()), f.Name(), func() { f.Close() }
	}
	return "/proc/self/exe", os.Args[0], func() {}
}

// buildDigest names this binary's build (its build information, hashed):
// the keeper hands it back with the finish, which refuses to finish for
// another build, such as a binary overwritten in place while the
// container ran.
func buildDigest() string {
	sum := sha256.Sum256([]byte(runtime.BuildInfo()))
	return hex.EncodeToString(sum[:8])
}

// IsKeeper reports whether this process is a keeper, or a keeper's
// finish: cmd/minibox-shim, cmd/minibox (and the engine's test binary)
// call Keep first thing when it is true.
func IsKeeper() bool {
	return keeper.IsKeeper() || keeper.IsFinish()
}

// Keep is the keeper (package keeper) in a binary that links the engine,
// or the finish the keeper hands the container's end to. It returns the
// exit status.
func Keep() int {
	if keeper.IsKeeper() {
		return keeper.Main()
	}
	return finishKept()
}

// finishKept finishes a container whose keeper has seen it end: records
// how it ended, undoes its mounts, network and runtime state, tells the
// attached clients (wait) its status.
func finishKept() int {
	var f keeper.Finish
	err := json.Unmarshal([]byte(os.Getenv(keeper.FinishEnv)), &f)
	os.Unsetenv(keeper.FinishEnv)
	switch {
	case err != nil:
	case f.Lock < 0:
		err = errors.New("the lock is missing")
	case f.Build != buildDigest():
		err = fmt.Errorf("container %.12s ended with status %d, but this binary is not the build that started it "+
			"(overwritten in place while it ran?), so it does not finish it: the next minibox ps or rm will", f.ID, f.Status)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "minibox supervise: the keeper's finish: %v\n", err)
		return 1
	}
	// What is ours stays ours: nothing the finish starts (iptables, when
	// the network is released) may hold the lock or the clients.
	for _, fd := range append([]int{f.Lock, f.Listener}, f.Clients...) {
		if fd >= 0 {
			unix.CloseOnExec(fd)
		}
	}
	lock := os.NewFile(uintptr(f.Lock), "supervisor.lock")
	defer lock.Close() // held until the container is finished
	streams := &keeper.Streams{Attach: keeper.NewAttachServer()}
	streams.Attach.Adopt(f.Clients)
	closeListener := func() {}
	if f.Listener >= 0 {
		closeListener = func() {
			streams.Attach.AdoptPending(f.Listener) // they hear the status too
			unix.Close(f.Listener)
		}
	}
	e, err := New(f.Root)
	if err != nil {
		fmt.Fprintf(os.Stderr, "minibox supervise: %.12s ended with status %d, but: %v\n", f.ID, f.Status, err)
		return 1
	}
	c, err := e.load(f.ID)
	if err != nil {
		// Undo what the record would have told (cleanup removes the rest).
		e.recoverOrphan(&Container{ID: f.ID, Config: Config{Network: f.Network}})
		fmt.Fprintf(os.Stderr, "minibox supervise: %.12s ended with status %d, but: %v\n", f.ID, f.Status, err)
		return 1
	}
	s := &supervision{e: e, c: c, streams: streams, lock: lock}
	// What Supervise's undos do, in their order (undo runs them last first).
	s.undos = []func(){func() { e.recoverOrphan(c) }, func() { closeListener(); os.Remove(e.attachPath(c.ID)) }}
	if err := s.finish(f.Status); err != nil {
		fmt.Fprintf(os.Stderr, "minibox supervise: %v\n", err)
		return 1
	}
	os.Remove(e.endedPath(f.ID)) // recorded (or removed with the container, --rm)
	return 0
}

// endedPath is where a keeper writes how its container ended, for the
// next command to read should the finish not record it (keeper.Ended).
func (e *Engine) endedPath(id string) string {
	return filepath.Join(e.containerDir(id), "ended.json")
}
