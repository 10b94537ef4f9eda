package engine

// The supervisor: one small process per running container, the shim
// beside minibox run as `minibox-shim supervise ID`, in a session of its
// own so that it outlives the command that started it. It is the
// container's parent and a child subreaper (prctl(2)): it mounts the root
// file system, sets up the network, has the runtime create and start the
// container, keeps its output (log file, attached clients), waits for it,
// records how it ended (exit status, OOM kill) and undoes everything. While it lives it holds
// supervisor.lock: `ps` knows a container whose supervisor was killed.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/engine/keeper"
	"github.com/minibox-lab/minibox/final/network"
	"github.com/minibox-lab/minibox/final/runtime"
	"github.com/minibox-lab/minibox/internal/flock"
)

// Supervise runs container id, once its starter says so (prestart.go),
// and returns when it has ended. It reports on ready ("listening", then
// "ok" or "error: …", one per line, after TellBuild's line) so that
// Start can tell its caller;
// told "attach", it starts the container only once a client is attached,
// so that no output is missed.
func (e *Engine) Supervise(id string, ready io.WriteCloser) error {
	// The container's init gets a death signal bound to the thread that
	// forks it (Runtime.DeathSignal): this goroutine keeps that thread
	// for the supervisor's whole life, so the container dies with it.
	goruntime.LockOSThread()
	go func() { // meanwhile, what the start would pay on its way
		warmSpecJSON()
		runtime.FindInit()
	}()
	waitAttach, ok := awaitGoAhead()
	if !ok {
		ready.Close()
		return nil // no container comes
	}
	lock, err := lockSupervisor(e.containerDir(id))
	if err != nil {
		return report(ready, fmt.Errorf("container %.12s: %w", id, err))
	}
	defer lock.Close()
	// prctl(PR_SET_CHILD_SUBREAPER): orphans of the container come to us.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	c, err := e.load(id)
	if err != nil {
		return report(ready, err)
	}
	// A supervisor killed while it was starting the container (before the
	// record said running) left its mount, network and runtime state:
	// undo them before making new ones.
	e.recoverOrphan(c)
	s := &supervision{e: e, c: c, lock: lock}
	defer s.undo()
	pid, err := s.create(ready, waitAttach)
	if err != nil {
		s.undo() // before anyone hears of the failure (run --rm removes then)
		e.update(id, func(c *Container) error { c.State.Status, c.State.Error = "created", err.Error(); return nil })
		return report(ready, err)
	}
	fmt.Fprintln(ready, "ok")
	ready.Close()
	if !waitAttach && !keeper.ExitsWithin(pid, keeperAfter) {
		// Nobody attaches to a detached container that runs on: its
		// supervisor becomes a keeper with a fresh heap (keep.go). On
		// success handOver does not return.
		s.handOver(pid, lock)
	}
	status := keeper.Wait(pid)
	return s.finish(status)
}

// TellBuild is the first thing a supervisor says on its ready pipe, even
// before it opens the engine: "build" and its build information, quoted,
// which the starter of an early supervisor checks (prestart.go) instead of
// reading our binary's file.
func TellBuild(ready io.Writer) {
	fmt.Fprintf(ready, "build %s\n", strconv.Quote(runtime.BuildInfo()))
}

// warmSpecJSON has encoding/json prepare the OCI spec's encoders and
// decoders, which it does the first time a process uses a type, for every
// type the type reaches: ~0.8 ms for specs.Spec, that writeBundle and the
// runtime would otherwise pay on the way of the container's start. It
// runs on another CPU while the supervisor waits for its word, then locks,
// loads and mounts.
func warmSpecJSON() {
	_, _ = json.Marshal(&specs.Spec{})
}

// lockSupervisor takes supervisor.lock for good (flock(2) LOCK_EX). Other
// commands test it with a shared lock for an instant (supervised, and
// minibox cleanup): a few tries tell them from a live supervisor.
func lockSupervisor(dir string) (*os.File, error) {
	for try := 0; ; try++ {
		lock, err := flock.Lock(filepath.Join(dir, "supervisor.lock"), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return lock, nil
		}
		if err != unix.EWOULDBLOCK || try == 40 {
			return nil, fmt.Errorf("it already has a supervisor: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// report tells the starter why the start failed.
func report(ready io.WriteCloser, err error) error {
	fmt.Fprintf(ready, "error: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
	ready.Close()
	return err
}

// supervision is one run of a container and what must be undone after.
type supervision struct {
	e     *Engine
	c     *Container
	undos []func()
	// deleteFromRuntime undoes the runtime's part (its state, the cgroup):
	// it needs none of the undos, so finish runs it beside them.
	deleteFromRuntime func()
	streams           *keeper.Streams   // the log, the attach socket, the pumps
	console           func()            // closes the console socket (once its master has come)
	mountNS           int               // the container's mount namespace, held open (holdMountNamespace); 0: none
	lock              *os.File          // supervisor.lock, held until the container is finished
	endpoint          *network.Endpoint // the bridge's veth, rules and lease: released last (releaseNetwork)
}

// undo undoes everything, the network included.
func (s *supervision) undo() {
	s.undoAllButNetwork()
	s.releaseNetwork()
}

func (s *supervision) undoAllButNetwork() {
	if s.deleteFromRuntime != nil { // made last: undone first
		s.deleteFromRuntime()
		s.deleteFromRuntime = nil
	}
	for i := len(s.undos) - 1; i >= 0; i-- {
		s.undos[i]()
	}
	s.undos = nil
}

// releaseNetwork gives the container's rules, veth and lease back. The
// end of a --rm container does not wait for it: deleting a veth waits for
// the kernel's RCU (`ip link del` of a veth: 20–40 ms here,
// docs/benchmarks.md), so finish runs it after the clients know the end.
// The lease goes last: no other container gets the address while the
// veth is still on the bridge, and a Setup that comes first (a script's
// next run, publishing the same port) finds the lease's owner, the
// container's init, dead and reclaims it itself (network.Setup).
func (s *supervision) releaseNetwork() {
	if s.endpoint != nil {
		_ = s.endpoint.Release()
		s.endpoint = nil
	}
}

// create prepares everything and has the runtime create and start the
// container; it returns the container's PID 1.
func (s *supervision) create(ready io.Writer, waitAttach bool) (int, error) {
	e, c := s.e, s.c
	rootfs, err := e.mountRootfs(c)
	if err != nil {
		return 0, err
	}
	s.undos = append(s.undos, func() { _ = e.unmountRootfs(c) })
	mounts, err := e.volumeMounts(c) // volumes.go
	if err != nil {
		return 0, err
	}
	ep, files, err := s.network()
	if err != nil {
		return 0, err
	}
	etc, err := s.etcFiles(files)
	if err != nil {
		return 0, err
	}
	bundle, spec, err := e.writeBundle(c, rootfs, append(mounts, etc...))
	if err != nil {
		return 0, err
	}
	log, err := keeper.OpenLog(e.logPath(c.ID))
	if err != nil {
		return 0, err
	}
	s.streams = &keeper.Streams{Log: log, Attach: keeper.NewAttachServer()}
	s.undos = append(s.undos, log.Close)
	stdio, console, err := s.openStreams()
	if err != nil {
		return 0, err
	}
	fmt.Fprintln(ready, "listening")
	if waitAttach {
		select {
		case <-s.streams.Attach.First():
		case <-time.After(30 * time.Second):
			return 0, errors.New("no client attached within 30 s")
		}
	}
	pid, err := e.Runtime.CreateFrom(c.ID, bundle, spec, stdio, console, "")
	closeChildEnds(stdio)
	if err != nil {
		return 0, err
	}
	s.deleteFromRuntime = func() { _ = e.Runtime.Delete(c.ID, true) }
	s.holdMountNamespace(pid)
	if ep != nil {
		if err := ep.Attach(pid); err != nil { // the veth into its namespace
			return 0, err
		}
	}
	if err := e.Runtime.Start(c.ID); err != nil {
		return 0, err
	}
	_, err = e.update(c.ID, func(c *Container) error {
		c.State = State{Status: "running", Pid: pid, SupervisorPid: os.Getpid(), StartedAt: time.Now().UTC()}
		if ep != nil {
			c.Network.IPAddress, c.Network.Gateway = ep.IP.String(), ep.Gateway.String()
			c.Network.Ports = nil // as docker shows them, the host port chosen for -p 80 included
			for _, p := range ep.Ports {
				c.Network.Ports = append(c.Network.Ports, p.String()) // 0.0.0.0:8080->80/tcp
			}
		}
		return nil
	})
	return pid, err
}

// listenUnix listens on a unix socket at path, however long the path.
func listenUnix(path string) (*net.UnixListener, error) {
	short, done, err := shortPath(path)
	if err != nil {
		return nil, err
	}
	defer done()
	return net.ListenUnix("unix", &net.UnixAddr{Name: short, Net: "unix"})
}

// network sets up the container's network (final/network) for bridge.
func (s *supervision) network() (*network.Endpoint, map[string][]byte, error) {
	c := s.c
	files := map[string][]byte{
		"hostname": []byte(c.Config.Hostname + "\n"),
		"hosts":    []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
	}
	if c.Config.Network == "host" {
		for name, host := range map[string]string{"hosts": "/etc/hosts", "resolv.conf": "/etc/resolv.conf"} {
			if data, err := os.ReadFile(host); err == nil {
				files[name] = data
			}
		}
		return nil, files, nil
	}
	if c.Config.Network != "bridge" {
		return nil, files, nil
	}
	var ports []network.Port
	for _, p := range c.Config.Ports {
		port, err := network.ParsePort(p)
		if err != nil {
			return nil, nil, err
		}
		ports = append(ports, port)
	}
	ep, err := network.Setup(c.ID, network.Options{Root: s.e.Root, Ports: ports, Hostname: c.Config.Hostname})
	if err != nil {
		return nil, nil, err
	}
	s.endpoint = ep
	for name, data := range ep.Files() {
		files[strings.TrimPrefix(name, "/etc/")] = data
	}
	return ep, files, nil
}

// etcFiles writes /etc/hostname, hosts and resolv.conf for the container
// into its directory and bind-mounts them, as docker does: the image's
// own files stay as they are.
func (s *supervision) etcFiles(files map[string][]byte) ([]specs.Mount, error) {
	var mounts []specs.Mount
	for _, name := range []string{"hostname", "hosts", "resolv.conf"} {
		data, ok := files[name]
		if !ok || s.userMounts("/etc/"+name) {
			continue // missing, or the user's -v …:/etc/hosts wins, as in docker
		}
		path := filepath.Join(s.e.containerDir(s.c.ID), name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return nil, err
		}
		mounts = append(mounts, specs.Mount{Destination: "/etc/" + name, Type: "bind", Source: path, Options: []string{"rbind", "rprivate"}})
	}
	return mounts, nil
}

// userMounts reports whether a -v of the container mounts on dest.
func (s *supervision) userMounts(dest string) bool {
	for _, m := range s.c.Mounts {
		if filepath.Clean(m.Destination) == dest {
			return true
		}
	}
	return false
}

// openStreams makes the container's standard streams and the attach
// socket: pipes, or with -t a pseudo-terminal whose master the runtime
// sends to console.sock (the OCI runtime's --console-socket).
func (s *supervision) openStreams() (runtime.IO, string, error) {
	dir := s.e.containerDir(s.c.ID)
	_ = os.Remove(s.e.attachPath(s.c.ID))
	l, err := listenUnix(s.e.attachPath(s.c.ID))
	if err != nil {
		return runtime.IO{}, "", err
	}
	s.undos = append(s.undos, func() { l.Close() })
	s.streams.Attach.Listen(l)
	if s.c.Config.Tty {
		console := filepath.Join(dir, "console.sock")
		_ = os.Remove(console)
		cl, err := listenUnix(console)
		if err != nil {
			return runtime.IO{}, "", err
		}
		short, done, err := shortPath(console) // for the runtime, which dials it
		if err != nil {
			cl.Close()
			return runtime.IO{}, "", err
		}
		s.console = sync.OnceFunc(func() { cl.Close(); os.Remove(console); done() })
		s.undos = append(s.undos, s.console)
		go s.receiveConsole(cl)
		return runtime.IO{}, short, nil
	}
	var io runtime.IO
	var err2 error
	io.Stdout, err = s.streams.Pump("stdout")
	if err == nil {
		io.Stderr, err2 = s.streams.Pump("stderr")
	}
	if err == nil && err2 == nil && s.c.Config.OpenStdin {
		var w *os.File
		if io.Stdin, w, err = os.Pipe(); err == nil {
			s.streams.Attach.SetInput(w, nil)
		}
	}
	if err == nil {
		err = err2
	}
	s.streams.Attach.SetReady() // stdin is set (or there is none)
	return io, "", err
}

// receiveConsole takes the pty master the runtime sends (SCM_RIGHTS) and
// pumps it like a pipe; input and window size go to it.
func (s *supervision) receiveConsole(l net.Listener) {
	conn, err := l.Accept()
	if err != nil {
		return
	}
	defer conn.Close()
	master, err := receiveFd(conn.(*net.UnixConn))
	if err != nil {
		return
	}
	s.streams.Attach.SetInput(master, func(rows, cols uint16) { keeper.SetWinsize(master, rows, cols) })
	s.streams.PumpFrom(master, "stdout")
	s.streams.Attach.SetReady() // after PumpFrom: handOver waits for ready
}

// receiveFd reads one file descriptor passed over a unix socket.
func receiveFd(conn *net.UnixConn) (*os.File, error) {
	buf := make([]byte, 256)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) == 0 {
		return nil, fmt.Errorf("console socket: no file descriptor: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) == 0 {
		return nil, fmt.Errorf("console socket: no file descriptor: %v", err)
	}
	// Non-blocking, so that Go polls it and a deadline can stop its
	// pump (handOver).
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("console socket: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "pty-master"), nil
}

func closeChildEnds(io runtime.IO) {
	for _, f := range []*os.File{io.Stdin, io.Stdout, io.Stderr} {
		if f != nil {
			f.Close()
		}
	}
}

// finish records the end: output drained, the exit status and an OOM
// kill, the clients told; with --rm the container is removed.
func (s *supervision) finish(status int) error {
	s.streams.Drain()
	oom := oomKilled(s.c.Short())
	// The runtime's state and cgroup go beside the rest of the teardown
	// (~1 ms sooner for run --rm), and before the clients hear the end.
	deleted := make(chan struct{})
	go func(deleteFromRuntime func()) {
		if deleteFromRuntime != nil {
			deleteFromRuntime()
		}
		close(deleted)
	}(s.deleteFromRuntime)
	s.deleteFromRuntime = nil
	s.undoAllButNetwork()
	if !s.c.Config.AutoRemove {
		// A container that stays can be started again right away: its
		// next run must not meet this one's release (the same id names
		// the veth, the rules and the lease). A --rm container's id is
		// never used again: its network goes after the exit frame.
		s.releaseNetwork()
	}
	var err error
	if s.c.Config.AutoRemove {
		// --rm: no "exited" record that nobody would read; the container
		// goes at once (everything else of it is undone above, but its
		// network: after the exit frame).
		err = s.e.removeStopped(s.c, true)
		<-deleted
	} else {
		// "exited" once all is undone: an rm right after finds nothing
		// of it running.
		<-deleted
		_, err = s.e.update(s.c.ID, func(c *Container) error {
			c.State.Status, c.State.ExitCode, c.State.OOMKilled = "exited", status, oom
			c.State.FinishedAt, c.State.Pid = time.Now().UTC(), 0
			return nil
		})
	}
	// The exit frame goes last (the clients' connections outlive the
	// listener and the socket file): once `run` has returned, the record
	// says exited and a --rm container is gone, as after docker run. Sent
	// before, a script's next command could still see it.
	// Finished: supervisor.lock goes before the clients hear the end, so
	// that a command right after `run` (rm, start) does not find the
	// container still supervised.
	if s.lock != nil {
		s.lock.Close()
	}
	s.streams.Attach.BroadcastExit(status)
	s.releaseMountNamespace()
	s.releaseNetwork()
	return err
}

// oomKilled reads the container's cgroup: did the kernel's OOM killer
// kill in it (v2 memory.events, v1 memory.oom_control: oom_kill N)?
func oomKilled(id string) bool {
	for _, file := range []string{
		"/sys/fs/cgroup/minibox/" + id + "/memory.events",
		"/sys/fs/cgroup/memory/minibox/" + id + "/memory.oom_control",
	} {
		data, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if n, ok := strings.CutPrefix(line, "oom_kill "); ok {
				if count, _ := strconv.Atoi(n); count > 0 {
					return true
				}
			}
		}
	}
	return false
}

// holdMountNamespace opens the container's mount namespace
// (/proc/PID/ns/mnt) and keeps it open until the clients know the end. A
// mount namespace ends with the last reference to it, and its end unmounts
// every mount in it (put_mnt_ns, fs/namespace.c). If that reference is the
// init's, the end runs inside the init's exit, before the kernel tells its
// parent (do_exit undoes the namespaces before exit_notify): wait4 would
// return that much later (0.4–1.9 ms, docs/benchmarks.md). Held here, the
// end runs when the supervisor lets go, after the exit frame. The
// descriptor is closed on execve: a keeper does not hold it.
func (s *supervision) holdMountNamespace(pid int) {
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/mnt", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		s.mountNS = fd
	}
}

// releaseMountNamespace lets the container's mount namespace end.
func (s *supervision) releaseMountNamespace() {
	if s.mountNS > 0 {
		unix.Close(s.mountNS)
		s.mountNS = 0
	}
}
