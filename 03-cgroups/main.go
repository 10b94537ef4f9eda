// Stage 03 — cgroups: limits on how much memory and CPU the container may
// use and how many processes it may have.
//
// This is stage 02 plus control groups (cgroups.go). Namespaces decide what
// the command can see; a cgroup decides how much it may use. Before the
// child exists, the parent creates the group minibox/<id> and writes the
// limits into it. The child joins the group as its last step before exec,
// so the command never runs unlimited. After the exit the parent reports
// an OOM kill and removes the group. Lesson 3 (`minibox lesson 3`) explains it.
//
//	go build -o stage03 ./03-cgroups && sudo ./stage03 run -v --memory 64m --cpus 0.5 --pids-limit 20 ROOTFS -- CMD [ARGS...]
//
// What it adds to stage 02, file by file (`minibox diff 3`):
//
//	new:     cgroups.go limits.go
//	changed: main.go
package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// stage is this program's name in messages: copying a stage forward
// changes this line.
const stage = "stage03"

const usage = `usage:
  ` + stage + ` run [-v] [--memory 64m] [--cpus 0.5] [--pids-limit 20] [--hostname NAME] [--userns] ROOTFS -- CMD [ARGS...]
                                        run CMD as PID 1 of new namespaces, in ROOTFS
      -v                                narrate each kernel step on stderr
      --memory SIZE                     memory limit: bytes, or 512k, 64m, 1g (OOM kill beyond it)
      --cpus N                          CPU time in CPUs: 0.5 = half of one CPU
      --pids-limit N                    at most N processes (and threads)
      --hostname NAME                   the hostname inside (default: a random id)
      --userns                          also a user namespace: root inside is host uid 100000
  ` + stage + ` escape HOST-FILE              (inside a container) break out and read HOST-FILE`

// The death signal that run asks for (Pdeathsig, below) is the forked
// thread's alone, and the child keeps it only if it execs the command
// from that same thread, its main one: a thread Go starts has none
// (prctl(2), PR_SET_PDEATHSIG), and a command exec'd from one would outlive
// a killed parent. Locked here, in init, main runs on the main thread and
// stays there (runtime.LockOSThread).
func init() { runtime.LockOSThread() }

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
	// First, before there is a container to leave behind: from now on,
	// Ctrl-C, SIGTERM and SIGHUP kill the container (signals.go).
	sigs := catchSignals()

	flags := flag.NewFlagSet("run", flag.ContinueOnError)
	flags.SetOutput(io.Discard) // errors are reported below, with the usage
	verbose := flags.Bool("v", false, "")
	hostname := flags.String("hostname", "", "")
	userns := flags.Bool("userns", false, "")
	var limits limits
	limits.addFlags(flags) // --memory, --cpus, --pids-limit (limits.go)
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
	if *verbose {
		os.Setenv(traceEnv, "1") // for the child too
	}
	// The container's id names its cgroup, minibox/<id>, and is its
	// default hostname: `hostname` inside tells which group is its own.
	id := randomID()
	if *hostname == "" {
		*hostname = id
	}

	// Re-execute this very program as "child", now in new namespaces
	// (namespaces(7)). The child is the first process of its PID
	// namespace, so it (and then the command it becomes) is PID 1 there.
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
		addUserNamespace(cmd) // userns.go
	}
	passNamespaces(cmd, *userns) // the child's proof (namespaces.go)

	// The cgroup with the limits, made before the child exists, and
	// removed when run returns, after the wait. A signal that comes during
	// the clean-up only arrives on sigs: it cannot cut it short.
	cg, err := createCgroup(id, limits)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", stage, err)
		return 1 // after the deferred clean-up
	}
	defer cg.remove()
	cg.passTo(cmd) // the child joins right before exec (joinCgroup)

	if err := startChild(cmd); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", stage, err)
		return 1 // after the deferred clean-up
	}
	go killOnSignal(sigs, cmd.Process)
	err = cmd.Wait()
	cg.reportOOM() // the exit status alone does not say why (cgroups.go)
	if err != nil {
		return exitStatus(err)
	}
	return 0
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

	// Before anything changes: are these namespaces really new?
	checkNamespaces()
	// Changes the new UTS namespace only (sethostname(2)).
	must(unix.Sethostname([]byte(hostname)), "hostname %s", hostname)
	// Private mounts; /proc, /dev and /sys; pivot_root (rootfs.go).
	enterRootfs(rootfs)
	// The limits apply from here on (cgroups.go).
	joinCgroup()
	execCommand(rootfs, command) // command.go
}
