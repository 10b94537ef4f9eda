// Stage 03 — cgroups: limits on how much memory and CPU the container may
// use and how many processes it may have.
//
// This is stage 02 plus control groups (cgroups.go). Namespaces decide what
// the command can see; a cgroup decides how much it may use. Before the
// child exists, the parent creates the group minibox/<id> (on cgroup v2 one
// directory; on v1 one in each controller's tree) and writes the limits
// into it. The child joins the group as its last step before exec, so the
// command never runs unlimited. After the exit the parent reports an OOM
// kill and removes the group. Lesson 3 (`minibox lesson 3`) explains it.
//
//	sudo go run ./03-cgroups run [--memory 64m] [--cpus 0.5] [--pids-limit 20] [--hostname NAME] [--userns] ROOTFS -- CMD [ARGS...]
//	sudo go run ./03-cgroups escape HOST-FILE   (run inside the container)
package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

const usage = `usage:
  stage03 run [--memory 64m] [--cpus 0.5] [--pids-limit 20] [--hostname NAME] [--userns] ROOTFS -- CMD [ARGS...]
                                        run CMD as PID 1 of new namespaces, in ROOTFS
      --memory SIZE                     memory limit: bytes, or 512k, 64m, 1g (OOM kill beyond it)
      --cpus N                          CPU time in CPUs: 0.5 = half of one CPU
      --pids-limit N                    at most N processes (and threads)
      --hostname NAME                   the hostname inside (default: a random id)
      --userns                          also a user namespace: root inside is host uid 100000
  stage03 escape HOST-FILE              (inside a container) break out and read HOST-FILE`

func main() {
	if len(os.Args) < 2 {
		fail(2, usage)
	}
	switch os.Args[1] {
	case "run":
		os.Exit(run(os.Args[2:]))
	case "child":
		child(os.Args[2:])
	case "escape":
		os.Exit(escape(os.Args[2:]))
	default:
		fail(2, "unknown command %q\n%s", os.Args[1], usage)
	}
}

// run is the parent: it checks the arguments, starts the child, waits for
// it and returns the command's exit status.
func run(args []string) int {
	// First, before there is a container to leave behind: from now until
	// this process exits, Ctrl-C, SIGTERM and SIGHUP no longer end it but
	// arrive on sigs.
	sigs := catchSignals()

	flags := flag.NewFlagSet("run", flag.ContinueOnError)
	flags.SetOutput(io.Discard) // errors are reported below, with the usage
	hostname := flags.String("hostname", "", "")
	userns := flags.Bool("userns", false, "")
	var limits limits
	limits.addFlags(flags) // --memory, --cpus, --pids-limit (cgroups.go)
	if err := flags.Parse(args); err != nil {
		fail(2, "%v\n%s", err, usage)
	}
	args = flags.Args()
	if len(args) < 3 || args[1] != "--" {
		fail(2, usage)
	}
	rootfs, command := args[0], args[2:]
	if info, err := os.Stat(rootfs); err != nil || !info.IsDir() {
		fail(1, "rootfs %s: not a directory (build one with `minibox rootfs`)", rootfs)
	}
	// The container's id names its cgroup, minibox/<id>, and is its
	// default hostname: `hostname` inside tells which group is its own.
	id := randomID()
	if *hostname == "" {
		*hostname = id
	}

	// Re-execute this very program as "child", now in new namespaces:
	// clone(2) with CLONE_NEW* flags (namespaces(7)), as in
	// `unshare --uts --pid --mount --ipc --net --fork`. The child is the
	// first process of its PID namespace, so it (and then the command it
	// becomes) is PID 1 there.
	cmd := exec.Command("/proc/self/exe", append([]string{"child", *hostname, rootfs}, command...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWUTS | unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET,
		// The backstop, for when this parent is killed by a signal it
		// cannot catch (SIGKILL): the kernel then sends the child SIGKILL
		// (prctl(2) PR_SET_PDEATHSIG). Only a backstop: the kernel clears
		// it when the process changes its credentials (`su nobody` inside).
		// Go's "parent already dead?" check does nothing in a new PID
		// namespace (getppid() is 0 there): a microsecond window, accepted.
		Pdeathsig: syscall.SIGKILL,
	}
	if *userns {
		addUserNamespace(cmd.SysProcAttr)
		// setgroups(2) with an empty list, as `setpriv --clear-groups`:
		// the child inherits our supplementary groups (under sudo, group 0:
		// root), and inside the user namespace, where setgroups is denied,
		// container root could not drop them: it could read the host's
		// files that group root may read. Go applies this to all of its
		// threads, so whichever thread starts the child has no groups.
		must(syscall.Setgroups(nil), "setgroups (drop supplementary groups)")
	}

	// The cgroup with the limits, made before the child exists (cgroups.go),
	// and removed when run returns, after the wait. A signal that comes
	// during the clean-up still only arrives on sigs: it cannot cut it short.
	cg, err := createCgroup(id, limits)
	must(err, "cgroup")
	defer cg.remove()
	cg.passTo(cmd) // the child joins the group right before exec (joinCgroup)

	if err := cmd.Start(); err != nil {
		return exitStatus(err)
	}
	go killOnSignal(sigs, cmd.Process)
	err = cmd.Wait()
	cg.reportOOM() // the exit status alone does not say why (cgroups.go)
	if err != nil {
		return exitStatus(err)
	}
	return 0
}

// catchSignals has Ctrl-C (SIGINT), SIGTERM and SIGHUP delivered on a
// channel instead of ending this process (signal(7)). Were they to end it,
// the container would live on: its PID 1 ignores every signal it has no
// handler for. So we stay alive and kill it (killOnSignal). A signal we
// were started ignoring (by nohup, or as a background job of a script)
// stays ignored.
func catchSignals() chan os.Signal {
	sigs := make(chan os.Signal, 1)
	for _, sig := range []os.Signal{unix.SIGINT, unix.SIGTERM, unix.SIGHUP} {
		if !signal.Ignored(sig) {
			signal.Notify(sigs, sig)
		}
	}
	return sigs
}

// killOnSignal waits for one of those signals and kills the container:
// SIGKILL to its PID 1 (kill -9 PID), the one signal that PID 1 cannot
// ignore when it comes from outside its namespace. When PID 1 dies, the
// kernel kills every other process of its PID namespace. The stage then
// exits with 128+9 = 137, as a shell reports a command killed by SIGKILL:
// the container was killed. (Ctrl-C in an interactive shell inside does
// not come here: that shell takes the terminal for itself.)
func killOnSignal(sigs <-chan os.Signal, p *os.Process) {
	<-sigs
	_ = p.Kill() // kill -9 PID
}

// With --userns, uids and gids 0-65535 inside are 100000-165535 on the host:
// the range /etc/subuid conventionally gives the first user, owned by no
// one on the host. Container root is host uid 100000.
const (
	userNSHostID = 100000
	userNSSize   = 65536
)

// addUserNamespace adds CLONE_NEWUSER (user_namespaces(7)). Before the
// child runs, Go writes its maps, as root would with
//
//	echo deny > /proc/PID/setgroups     (no setgroups(2) inside: it could drop
//	                                     a group that a file's mode denies)
//	echo 0 100000 65536 > /proc/PID/uid_map
//	echo 0 100000 65536 > /proc/PID/gid_map
//
// The child starts as host root, uid 0 outside, which the map does not
// name (inside it shows as nobody, 65534); Credential makes it switch to
// uid and gid 0 of the namespace, host uid 100000, before it executes. The
// other namespaces, made in the same clone, belong to this user namespace:
// root inside may mount, set the hostname… there, and nowhere else.
func addUserNamespace(attr *syscall.SysProcAttr) {
	attr.Cloneflags |= unix.CLONE_NEWUSER
	ids := []syscall.SysProcIDMap{{ContainerID: 0, HostID: userNSHostID, Size: userNSSize}}
	attr.UidMappings, attr.GidMappings = ids, ids
	attr.GidMappingsEnableSetgroups = false
	attr.Credential = &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true}
}

// randomID is the default hostname: 12 random hex digits, like the short
// id of a docker container.
func randomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// child runs in the new namespaces, as PID 1: it sets the hostname, makes
// ROOTFS its root, and becomes the command.
func child(args []string) {
	if len(args) < 3 {
		fail(2, usage) // only run itself calls child, with all three
	}
	hostname, rootfs, command := args[0], args[1], args[2:]

	// Refuse to work in the host's own mount or UTS namespace (after a
	// stray `stage03 child ...`, or an edit that dropped CLONE_NEWNS or
	// CLONE_NEWUTS): the steps below would rename the host and pivot_root
	// the whole machine. /proc is still the host's here: /proc/1 is its init.
	for _, ns := range []string{"mnt", "uts"} {
		mine, _ := os.Readlink("/proc/self/ns/" + ns)
		hosts, _ := os.Readlink("/proc/1/ns/" + ns)
		if mine != "" && mine == hosts {
			fail(1, "not in a new %s namespace: refusing to change the host's", ns)
		}
	}

	// hostname NAME — changes the new UTS namespace only (sethostname(2)).
	must(unix.Sethostname([]byte(hostname)), "sethostname %s", hostname)
	// Private mounts; /proc, /dev and /sys; pivot_root (rootfs.go).
	enterRootfs(rootfs)

	path, err := exec.LookPath(command[0])
	if errors.Is(err, fs.ErrPermission) {
		// Found, but access(2) says not executable: 126, as in a shell.
		fail(126, "%s: permission denied (is it executable?)", command[0])
	}
	if err != nil {
		fail(127, "%s: command not found in %s", command[0], rootfs)
	}
	// Join the cgroup: from here on the limits apply (cgroups.go).
	must(joinCgroup(), "join cgroup")
	// exec CMD — the child process becomes the command (execve(2)).
	err = unix.Exec(path, command, os.Environ())
	fail(126, "exec %s: %v", command[0], err)
}

// escape breaks out of a chroot, as root, the classic way: chroot into a
// subdirectory (so the current directory is now *outside* the root), walk up
// with chdir("..") past where the old root was, and chroot(".") at the top.
// It proves the escape by printing a file that exists only on the host.
// It returns its exit status, so that its deferred clean-up always runs.
func escape(args []string) int {
	if len(args) != 1 {
		fail(2, usage)
	}
	hostFile := args[0]
	if _, err := os.Stat(hostFile); err == nil {
		fmt.Printf("note: %s is already visible; not inside a chroot?\n", hostFile)
	}

	// Keep a handle on the chroot's own "/" so the helper directory can be
	// removed afterwards: once out, "/.escape" would name a host path.
	oldRoot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		return escapeFailed("open /: %v", err)
	}
	defer unix.Unlinkat(oldRoot, ".escape", unix.AT_REMOVEDIR)

	// mkdir /.escape && chroot /.escape — the root moves down, cwd stays up.
	_ = os.Mkdir("/.escape", 0o700)
	if err := unix.Chroot("/.escape"); err != nil {
		return escapeFailed("chroot /.escape: %v", err)
	}

	// cd .. (many times) — the kernel stops ".." only at the process's
	// root, and our cwd is no longer beneath it, so we climb to the real /.
	for i := 0; i < 256; i++ {
		if err := unix.Chdir(".."); err != nil {
			return escapeFailed("chdir ..: %v", err)
		}
	}
	// chroot . — make the host's real / our root again.
	if err := unix.Chroot("."); err != nil {
		return escapeFailed("chroot .: %v", err)
	}

	secret, err := os.ReadFile(hostFile)
	if err != nil {
		return escapeFailed("cannot read %s: %v", hostFile, err)
	}
	fmt.Printf("escaped! %s on the host says: %s", hostFile, secret)
	return 0
}

func escapeFailed(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "escape failed: "+format+"\n", args...)
	return 1
}

// exitStatus turns the child's end into a shell-style exit status:
// its exit code, or 128+N when signal N killed it.
func exitStatus(err error) int {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		fmt.Fprintln(os.Stderr, "stage03:", err)
		return 1
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return exit.ExitCode()
}

func must(err error, format string, args ...any) {
	if err != nil {
		fail(1, "%s: %v", fmt.Sprintf(format, args...), err)
	}
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "stage03: "+format+"\n", args...)
	os.Exit(code)
}
