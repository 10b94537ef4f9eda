package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// execNamespaces are joined in this order; the mount namespace last but
// one, so that the /proc paths opened before stay the host's (they are
// all opened first anyway), the cgroup namespace after it.
var execNamespaces = []string{"ipc", "uts", "net", "pid", "mnt", "cgroup"}

// Exec starts p in the running container id: in all its namespaces (the
// user namespace excepted: see doc.go), its cgroup, with p's user,
// capabilities and no_new_privs. The caller waits for the process.
func (r *Runtime) Exec(id string, p specs.Process, io IO) (*os.Process, error) {
	st, _, err := r.load(id)
	if err != nil {
		return nil, err
	}
	if st.Status != specs.StateRunning && st.Status != specs.StateCreated {
		return nil, fmt.Errorf("container %s is %s: exec needs a running container", id, st.Status)
	}
	if err := validateProcess(&p); err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	if hasNamespace(st.Spec, specs.UserNamespace) {
		return nil, fmt.Errorf("exec into container %s: it has a user namespace, and a multi-threaded Go process cannot setns(CLONE_NEWUSER); runc does it in C before its Go runtime starts (see final/runtime/doc.go)", id)
	}
	caps, err := capsOf(&p)
	if err != nil {
		return nil, err
	}
	path, err := lookPathIn(st.Pid, p.Args[0], p.Env, p.Cwd)
	if err != nil {
		return nil, err
	}
	if err := checkCwdIn(st.Pid, p.Cwd); err != nil {
		return nil, err
	}
	files, closeFiles, err := stdFiles(io)
	if err != nil {
		return nil, err
	}
	defer closeFiles()
	attr := &os.ProcAttr{Env: p.Env, Dir: p.Cwd, Files: files, Sys: &syscall.SysProcAttr{
		Setsid:      true,
		Setctty:     p.Terminal,
		Credential:  &syscall.Credential{Uid: p.User.UID, Gid: p.User.GID, Groups: p.User.AdditionalGids},
		AmbientCaps: ambientList(caps.ambient),
	}}
	if attr.Env == nil {
		attr.Env = []string{}
	}
	type result struct {
		proc *os.Process
		err  error
	}
	// Until it execs the command, the child is a copy of this process,
	// whose /proc/PID/exe is the host's binary: not dumpable (prctl(2)
	// PR_SET_DUMPABLE, inherited, reset by execve), the container's
	// processes cannot open it, nor ptrace the child (CVE-2019-5736; runc
	// makes its init non-dumpable for the same reason).
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("exec: prctl(PR_SET_DUMPABLE): %w", err)
	}
	// Only the process's stdio goes into the container: nothing this
	// process inherited by accident (fds.go).
	CloseOnExecFrom(3)
	// The thread's namespaces, cgroup, bounding set and no_new_privs
	// become the container's: it must die afterwards.
	var res result
	onDisposableThread(func() {
		res.proc, res.err = forkInto(st, caps, p.NoNewPrivileges, path, p.Args, attr)
	})
	if res.err != nil {
		return nil, fmt.Errorf("exec into %s: %w", id, res.err)
	}
	return res.proc, nil
}

// forkInto runs on a locked, disposable OS thread: it moves the thread into
// the container, then forks the process from it.
func forkInto(st *containerState, caps capSets, nnp bool, path string, args []string, attr *os.ProcAttr) (*os.Process, error) {
	fds, err := openNamespaces(st.Pid)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, f := range fds {
			f.Close()
		}
	}()
	// Its own fs_struct (root, cwd), or setns into a mount namespace
	// refuses (EINVAL): the other threads share ours.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return nil, fmt.Errorf("unshare(CLONE_FS): %w", err)
	}
	cg, err := joinCgroupThread(st.Cgroup, attr)
	if err != nil {
		return nil, err
	}
	if cg != nil {
		defer cg.Close()
	}
	for _, ns := range execNamespaces {
		f, ok := fds[ns]
		if !ok {
			continue
		}
		if ns == "cgroup" && cg != nil {
			// cgroup v2 mounted with nsdelegate (systemd's default) lets
			// clone3(CLONE_INTO_CGROUP) move a child only between groups
			// the forking thread's cgroup namespace can see: from inside
			// the container's, ours is invisible (ENOENT). So the child
			// gets a cgroup namespace of its own, made after it is in the
			// container's group: rooted there, it sees what the container
			// sees (0::/). runc avoids this by joining the group from
			// outside before its C code setns()es; a Go child cannot.
			attr.Sys.Unshareflags |= unix.CLONE_NEWCGROUP
			continue
		}
		if err := unix.Setns(int(f.Fd()), 0); err != nil {
			return nil, fmt.Errorf("setns %s: %w", ns, err)
		}
	}
	if err := dropBounding(caps.bounding); err != nil {
		return nil, err
	}
	if err := setInheritable(caps.inheritable); err != nil {
		return nil, fmt.Errorf("process.capabilities.inheritable: %w", err)
	}
	if nnp {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return nil, fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
		}
	}
	return os.StartProcess(path, args, attr)
}

// openNamespaces opens the init's namespaces that differ from ours.
func openNamespaces(pid int) (map[string]*os.File, error) {
	fds := map[string]*os.File{}
	for _, ns := range execNamespaces {
		theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if err != nil {
			continue // a kernel without that kind
		}
		if ours, _ := os.Readlink("/proc/self/ns/" + ns); ours == theirs {
			continue
		}
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if err != nil {
			for _, f := range fds {
				f.Close()
			}
			return nil, fmt.Errorf("open the container's %s namespace: %w", ns, err)
		}
		fds[ns] = f
	}
	return fds, nil
}

// joinCgroupThread puts the new process in the container's cgroup from its
// first instruction: on v1 by moving this thread (tasks; the child
// inherits it), on v2 with clone3's CLONE_INTO_CGROUP.
func joinCgroupThread(g *cgroup, attr *os.ProcAttr) (*os.File, error) {
	if g == nil || len(g.Dirs) == 0 {
		return nil, nil
	}
	if g.V2 {
		// The caller closes it after the fork.
		f, err := os.Open(g.Dirs[0])
		if err != nil {
			return nil, fmt.Errorf("open cgroup %s: %w", g.Dirs[0], err)
		}
		attr.Sys.UseCgroupFD = true
		attr.Sys.CgroupFD = int(f.Fd())
		return f, nil
	}
	// "0" is this thread: moving itself, a thread does not wait for the
	// lock over all thread groups that moving another does (joinAtFork).
	for _, d := range g.Dirs {
		if err := writeFile(d, "tasks", "0"); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// checkCwdIn refuses a working directory that is not a directory inside
// the container's root, resolved as openat2(2) RESOLVE_IN_ROOT with magic
// links refused: the child chdirs before execve, while the descriptors of
// this process are still open, and "/proc/self/fd/N" would lead out of
// the container (CVE-2024-21626, runc's "Leaky Vessels"). (A container
// that swaps a directory for such a link between this check and the
// chdir could still win that race: runc closes its descriptors first.)
func checkCwdIn(pid int, cwd string) error {
	root, err := unix.Open(fmt.Sprintf("/proc/%d/root", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("exec: the container's root: %w", err)
	}
	defer unix.Close(root)
	fd, err := openInRoot(root, cwd)
	if err != nil {
		return fmt.Errorf("exec: process.cwd %q: %w", cwd, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("exec: process.cwd %q: not a directory in the container", cwd)
	}
	return nil
}

// lookPathIn finds the program inside the container's root, seen through
// /proc/PID/root, and returns its path as the container sees it.
func lookPathIn(pid int, name string, env []string, cwd string) (string, error) {
	root := fmt.Sprintf("/proc/%d/root", pid)
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(cwd, p)
		}
		host, err := secureJoin(root, p)
		if err == nil {
			_, err = os.Stat(host)
		}
		if err != nil {
			return "", fmt.Errorf("exec: process.args[0] %q: %w", name, err)
		}
		return p, nil
	}
	for _, d := range filepath.SplitList(envPath(env)) {
		p := filepath.Join(d, name)
		host, err := secureJoin(root, p)
		if err != nil {
			continue
		}
		if fi, err := os.Stat(host); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: process.args[0] %q: executable file not found in $PATH (%s) of the container", name, envPath(env))
}

// stdFiles are io's files, with /dev/null for the missing ones.
func stdFiles(io IO) ([]*os.File, func(), error) {
	var opened []*os.File
	files := []*os.File{io.Stdin, io.Stdout, io.Stderr}
	for i, f := range files {
		if f != nil {
			continue
		}
		null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			for _, o := range opened {
				o.Close()
			}
			return nil, nil, errors.New("open /dev/null: " + err.Error())
		}
		opened = append(opened, null)
		files[i] = null
	}
	return files, func() {
		for _, o := range opened {
			o.Close()
		}
	}, nil
}
