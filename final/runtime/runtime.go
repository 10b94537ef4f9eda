package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minibox-lab/minibox/internal/lazyregexp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// DefaultRoot is where state lives unless Runtime.Root says otherwise (a
// tmpfs: state does not outlive a reboot, nor do the containers).
const DefaultRoot = "/run/minibox/runtime"

// Runtime makes and manages containers from OCI bundles. Root holds one
// directory per container, with state.json and, until Start, exec.fifo.
type Runtime struct {
	Root string
	// DeathSignal, if set, is sent to a container's init when the thread
	// that called Create ends (prctl(2) PR_SET_PDEATHSIG): the engine's
	// supervisor, locked to its thread, sets SIGKILL so that a container
	// never outlives it. Not with namespaces joined by path (their init
	// is forked from a thread that ends at once).
	DeathSignal unix.Signal
}

// IO are the container process's standard files; nil means /dev/null.
type IO struct{ Stdin, Stdout, Stderr *os.File }

// Status values beyond the spec's own.
const (
	stateFile = "state.json"
	fifoName  = "exec.fifo"
)

// containerState is state.json: the spec's state plus what the runtime
// needs later (runc keeps the same kind of file).
type containerState struct {
	specs.State
	Rootfs    string      `json:"rootfs"`
	Created   time.Time   `json:"created"`
	InitStart uint64      `json:"initStart"` // /proc/PID/stat start time: a reused PID is not ours
	Cgroup    *cgroup     `json:"cgroup,omitempty"`
	Spec      *specs.Spec `json:"spec"`
}

var validID = lazyregexp.New(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

func (r *Runtime) root() string {
	if r.Root == "" {
		return DefaultRoot
	}
	return r.Root
}

func (r *Runtime) dir(id string) (string, error) {
	if !validID.MatchString(id) || len(id) > 128 {
		return "", fmt.Errorf("container id %q: use letters, digits, '_', '.' and '-' (as runc)", id)
	}
	return filepath.Join(r.root(), id), nil
}

// Create makes container id from bundle and leaves its init waiting for
// Start. It returns the init's PID (as seen from here).
func (r *Runtime) Create(id, bundle string, io IO, consoleSocket, pidFile string) (pid int, err error) {
	return r.CreateFrom(id, bundle, nil, io, consoleSocket, pidFile)
}

// CreateFrom is Create with the bundle's config.json given as spec, by a
// caller that has just written it (the engine: reading it back costs
// ~0.3 ms of JSON in a fresh process); nil reads it.
func (r *Runtime) CreateFrom(id, bundle string, spec *specs.Spec, io IO, consoleSocket, pidFile string) (pid int, err error) {
	dir, err := r.dir(id)
	if err != nil {
		return 0, err
	}
	if bundle, err = filepath.Abs(bundle); err != nil {
		return 0, err
	}
	if spec == nil {
		if spec, err = loadSpec(bundle); err != nil {
			return 0, err
		}
	}
	if err := validate(spec, bundle); err != nil {
		return 0, err
	}
	if spec.Process.Terminal && consoleSocket == "" {
		return 0, errors.New("config.json: process.terminal is true: a console socket (--console-socket) is needed to receive the terminal")
	}
	if err := os.MkdirAll(r.root(), 0o700); err != nil {
		return 0, fmt.Errorf("state root: %w", err)
	}
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, os.ErrExist) {
			return 0, fmt.Errorf("container %q exists already (minibox runtime delete %s)", id, id)
		}
		return 0, fmt.Errorf("state directory: %w", err)
	}
	c := &creation{id: id, dir: dir, bundle: bundle, spec: spec, io: io, deathSignal: r.DeathSignal}
	defer func() {
		if err != nil {
			c.undo()
		}
	}()
	st := &containerState{
		State:   specs.State{Version: specs.Version, ID: id, Status: specs.StateCreating, Bundle: bundle, Annotations: spec.Annotations},
		Rootfs:  rootfsPath(bundle, spec),
		Created: time.Now().UTC(),
		Spec:    spec,
	}
	if err := writeState(dir, st); err != nil {
		return 0, err
	}
	if err := c.run(consoleSocket); err != nil {
		return 0, err
	}
	st.Status, st.Pid, st.Cgroup = specs.StateCreated, c.init.pid, c.cgroup
	if st.InitStart, err = startTime(st.Pid); err != nil {
		return 0, fmt.Errorf("container init exited during create: %w", err)
	}
	if err := writeState(dir, st); err != nil {
		return 0, err
	}
	if pidFile != "" {
		if err := writeAtomic(pidFile, []byte(strconv.Itoa(st.Pid))); err != nil {
			return 0, fmt.Errorf("pid file: %w", err)
		}
	}
	return st.Pid, nil
}

// creation is one Create in progress, with what to undo if it fails.
type creation struct {
	id, dir, bundle string
	spec            *specs.Spec
	io              IO
	cgroup          *cgroup
	init            *initProcess
	deathSignal     unix.Signal
}

func (c *creation) undo() {
	if c.init != nil {
		c.init.kill()
	}
	if c.cgroup != nil {
		_ = c.cgroup.remove(2 * time.Second)
	}
	_ = os.RemoveAll(c.dir)
}

// run starts the init and waits until it says the container is made.
func (c *creation) run(consoleSocket string) error {
	userNS := hasNamespace(c.spec, specs.UserNamespace)
	fifo := filepath.Join(c.dir, fifoName)
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		return fmt.Errorf("mkfifo %s: %w", fifo, err)
	}
	if userNS {
		// The init is container root, some other uid on the host.
		uid, gid := hostID(c.spec.Linux.UIDMappings, 0), hostID(c.spec.Linux.GIDMappings, 0)
		if err := os.Chown(fifo, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", fifo, err)
		}
	}
	var err error
	if c.cgroup, err = createCgroup(c.id, c.spec.Linux); err != nil {
		return err
	}
	parentSock, childSock, err := socketPair()
	if err != nil {
		return err
	}
	defer parentSock.Close()
	defer childSock.Close()
	stateDir, err := os.OpenFile(c.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", c.dir, err)
	}
	defer stateDir.Close()
	// The init is executed from a sealed copy of the shim (or of this
	// binary): never the host's file itself, see selfexe.go.
	exe, err := sealedExe(initBinary(), c.dir)
	if err != nil {
		return err
	}
	defer exe.Close() // the init has its own reference once it runs
	path := fmt.Sprintf("/proc/self/fd/%d", exe.Fd())
	c.init = &initProcess{path: path, args: []string{path, "runtime", "init"}, env: []string{}, io: c.io}
	c.init.extra = []*os.File{childSock, stateDir}
	if c.spec.Process.Terminal {
		console, err := dialConsole(consoleSocket)
		if err != nil {
			return err
		}
		defer console.Close()
		c.init.extra = append(c.init.extra, console)
	}
	c.init.sys = initAttr(c.spec)
	if c.deathSignal != 0 && !joinsByPath(c.spec) {
		c.init.sys.Pdeathsig = syscall.Signal(c.deathSignal)
	}
	tasks, done, err := c.cgroup.joinAtFork(c.init.sys)
	if err != nil {
		return err
	}
	defer done()
	var taskFDs []int // the init's numbers for the v1 tasks files
	for _, f := range tasks {
		taskFDs = append(taskFDs, 3+len(c.init.extra))
		c.init.extra = append(c.init.extra, f)
	}
	if err := c.start(); err != nil {
		return err
	}
	childSock.Close()
	done()
	mnt, _ := os.Readlink("/proc/self/ns/mnt")
	boot := bootstrap{Init: newInitSpec(c.spec), Bundle: c.bundle, Rootfs: rootfsPath(c.bundle, c.spec), ParentMnt: mnt, Cgroup: c.cgroup, CgroupTasks: taskFDs}
	if err := json.NewEncoder(parentSock).Encode(boot); err != nil {
		return fmt.Errorf("send the config to the init: %w", err)
	}
	var rep reply
	if err := json.NewDecoder(parentSock).Decode(&rep); err != nil {
		return fmt.Errorf("the container's init died while making the container: %w (see its stderr)", err)
	}
	if rep.Error != "" {
		return errors.New(rep.Error)
	}
	return nil
}

// start forks the init. A v2 init forked into its cgroup (joinAtFork)
// can fail where clone3's CLONE_INTO_CGROUP cannot be had: before Linux
// 5.7, or from a thread in another cgroup namespace (a namespace joined by
// path, on a host whose cgroup2 has nsdelegate). The init is then forked
// as before and its PID written into cgroup.procs.
func (c *creation) start() error {
	err := startJoined(c.init, c.spec)
	if err != nil && c.init.sys.UseCgroupFD {
		c.init.sys.UseCgroupFD = false
		if err = startJoined(c.init, c.spec); err == nil {
			return c.cgroup.add(c.init.pid)
		}
	}
	if err != nil {
		return fmt.Errorf("start the container's init: %w", err)
	}
	return nil
}

// initAttr are the clone flags (new namespaces) and ID maps of the init.
func initAttr(s *specs.Spec) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setsid: true, Pdeathsig: 0}
	for _, ns := range s.Linux.Namespaces {
		// A new cgroup namespace is made by the init itself, once it is
		// in its cgroup: that group must be the namespace's root.
		if ns.Path == "" && ns.Type != specs.CgroupNamespace {
			attr.Cloneflags |= namespaceFlags[ns.Type].flag
		}
	}
	if attr.Cloneflags&unix.CLONE_NEWUSER != 0 {
		for _, m := range s.Linux.UIDMappings {
			attr.UidMappings = append(attr.UidMappings, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
		}
		for _, m := range s.Linux.GIDMappings {
			attr.GidMappings = append(attr.GidMappings, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
		}
		attr.GidMappingsEnableSetgroups = true
		// Become root of the new namespace: the host uid 0 we start as
		// is not mapped there.
		attr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	return attr
}

// joinsByPath reports whether the spec joins a namespace by its path.
func joinsByPath(s *specs.Spec) bool {
	for _, ns := range s.Linux.Namespaces {
		if ns.Path != "" {
			return true
		}
	}
	return false
}

// startJoined starts the init inside the namespaces the spec joins by path.
// setns changes only the calling thread, so it happens on a locked OS
// thread that forks the child and is then thrown away (never unlocked:
// Go ends the thread with the goroutine).
func startJoined(p *initProcess, s *specs.Spec) error {
	var joins []specs.LinuxNamespace
	for _, ns := range s.Linux.Namespaces {
		if ns.Path != "" {
			joins = append(joins, ns)
		}
	}
	if len(joins) == 0 {
		return p.start()
	}
	var err error
	onDisposableThread(func() {
		for _, ns := range joins {
			if err = setnsPath(ns.Path, int(namespaceFlags[ns.Type].flag)); err != nil {
				err = fmt.Errorf("config.json: linux.namespaces %s path %s: %w", ns.Type, ns.Path, err)
				return
			}
		}
		err = p.start()
	})
	return err
}

func setnsPath(path string, flag int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), flag); err != nil {
		return fmt.Errorf("setns: %w", err)
	}
	return nil
}

// socketPair is the channel between Create and the init.
func socketPair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "init-sync"), os.NewFile(uintptr(fds[1]), "init-sync"), nil
}

// dialConsole connects to the console socket the init will send the
// terminal's master to (runc's --console-socket protocol).
func dialConsole(path string) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("console socket %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), "console-socket"), nil
}

// Start lets a created container's init run its process.
func (r *Runtime) Start(id string) error {
	st, dir, err := r.load(id)
	if err != nil {
		return err
	}
	if st.Status != specs.StateCreated {
		return fmt.Errorf("container %s is %s, not created: only a created container can be started", id, st.Status)
	}
	fifo := filepath.Join(dir, fifoName)
	f, err := os.OpenFile(fifo, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	defer f.Close()
	// The init blocks opening the fifo for writing until we open it for
	// reading, then writes one byte. Poll, so that an init that died does
	// not hang us.
	deadline := time.Now().Add(10 * time.Second)
	for {
		fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 50)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("start %s: poll %s: %w", id, fifo, err)
		}
		if n > 0 {
			buf := make([]byte, 1)
			if k, _ := f.Read(buf); k == 1 {
				break
			}
		}
		if !alive(st.Pid, st.InitStart) || time.Now().After(deadline) {
			return fmt.Errorf("start %s: the container's init is gone", id)
		}
	}
	if err := os.Remove(fifo); err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	return nil
}

// State is the container's state as runc reports it.
func (r *Runtime) State(id string) (specs.State, error) {
	st, _, err := r.load(id)
	if err != nil {
		return specs.State{}, err
	}
	return st.State, nil
}

// ErrNotExist is what the errors about an id the runtime has no state of
// wrap: never created, or deleted.
var ErrNotExist = errors.New("does not exist")

// load reads state.json and works out the status now.
func (r *Runtime) load(id string) (*containerState, string, error) {
	dir, err := r.dir(id)
	if err != nil {
		return nil, "", err
	}
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("container %q %w", id, ErrNotExist)
	}
	if err != nil {
		return nil, "", err
	}
	var st containerState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, "", fmt.Errorf("%s: %w", filepath.Join(dir, stateFile), err)
	}
	switch {
	case st.Status == specs.StateCreating:
	case !alive(st.Pid, st.InitStart):
		st.Status = specs.StateStopped
	case exists(filepath.Join(dir, fifoName)):
		st.Status = specs.StateCreated
	default:
		st.Status = specs.StateRunning
	}
	return &st, dir, nil
}

// CreatedAt is when Create made the container (runc's state shows it).
func (r *Runtime) CreatedAt(id string) (time.Time, error) {
	st, _, err := r.load(id)
	if err != nil {
		return time.Time{}, err
	}
	return st.Created, nil
}

// List is the state of every container under Root.
func (r *Runtime) List() ([]specs.State, error) {
	entries, err := os.ReadDir(r.root())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var list []specs.State
	for _, e := range entries {
		if st, err := r.State(e.Name()); err == nil {
			list = append(list, st)
		}
	}
	return list, nil
}

// Kill sends sig to the container's init, or with all to every process in
// its cgroup.
func (r *Runtime) Kill(id string, sig unix.Signal, all bool) error {
	st, _, err := r.load(id)
	if err != nil {
		return err
	}
	if all {
		return signalAll(st, sig)
	}
	if st.Status == specs.StateStopped {
		return fmt.Errorf("container %s is stopped", id)
	}
	if err := unix.Kill(st.Pid, sig); err != nil {
		return fmt.Errorf("kill %s (pid %d): %w", id, st.Pid, err)
	}
	return nil
}

func signalAll(st *containerState, sig unix.Signal) error {
	if st.Cgroup == nil {
		return nil
	}
	pids, err := st.Cgroup.pids()
	if err != nil {
		return err
	}
	for _, p := range pids {
		if p == os.Getpid() {
			continue // a thread of ours passing through (Exec on cgroup v1)
		}
		if err := unix.Kill(p, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill %d: %w", p, err)
		}
	}
	return nil
}

// Delete removes a stopped (or created) container: its processes, cgroup
// and state. force kills a running one first.
func (r *Runtime) Delete(id string, force bool) error {
	st, dir, err := r.load(id)
	if err != nil {
		return err
	}
	if st.Status == specs.StateRunning && !force {
		return fmt.Errorf("container %s is running: stop it first, or delete --force", id)
	}
	if st.Status != specs.StateStopped && st.Pid > 0 {
		_ = unix.Kill(st.Pid, unix.SIGKILL)
	}
	// What outlives the init (no PID namespace) goes too, as with runc.
	_ = signalAll(st, unix.SIGKILL)
	if st.Pid > 0 {
		waitGone(st.Pid, st.InitStart, 5*time.Second)
	}
	cg := st.Cgroup
	if cg == nil && st.Status == specs.StateCreating {
		// A Create killed before it recorded the cgroup (its caller, the
		// engine's supervisor, killed) may have made it all the same.
		cg = plannedCgroup(id, st.Spec)
	}
	if cg != nil {
		if err := cg.remove(5 * time.Second); err != nil {
			return fmt.Errorf("delete %s: %w", id, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	return nil
}

// waitGone reaps the init if it is our child, or waits for it to go.
func waitGone(pid int, start uint64, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		gone := !alive(pid, start) // a zombie counts as gone: reap it below
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if gone || time.Now().After(deadline) {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// alive reports whether pid is still our container's init: running, not
// a zombie, and started when the state says (not a reused PID).
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	state, st, err := parseStat(string(data))
	if err != nil || state == "Z" || state == "X" {
		return false
	}
	return start == 0 || st == start
}

// startTime is field 22 of /proc/PID/stat, in clock ticks since boot.
func startTime(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	_, st, err := parseStat(string(data))
	return st, err
}

// parseStat returns the state letter and start time; the command name, in
// parentheses, may hold spaces and parentheses itself.
func parseStat(s string) (string, uint64, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", 0, errors.New("bad /proc/PID/stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", 0, errors.New("short /proc/PID/stat")
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	return f[0], st, err
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func writeState(dir string, st *containerState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, stateFile), data)
}

// writeAtomic writes a temporary file and renames it over path: a reader
// sees the old file or the new one, never half of one.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
