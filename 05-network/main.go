// Stage 05 — network: the container gets a network of its own, joined to
// the host by a virtual cable to a virtual switch, and can publish ports.
//
// This is stage 04 plus networking (network.go, ipam.go, nat.go). The
// parent leases an address, makes a bridge and the NAT rules, and starts
// the child, which waits on an init pipe; the parent puts one end of a
// veth pair into the child's network namespace as eth0, with the address
// and a default route, and only then lets it go on. Lesson 5 explains it.
//
//	go build -o stage05 ./05-network && sudo unshare --net ./stage05 run -v -p 8080:80 ROOTFS -- httpd -f
//
// What it adds to stage 04, file by file (`minibox diff 5`):
//
//	new:     ipam.go nat.go network.go
//	changed: main.go
package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// stage is this program's name in messages: copying a stage forward
// changes this line.
const stage = "stage05"

const usage = `usage:
  ` + stage + ` run [-v] [--net bridge|none] [-p PORTS]... [--layer DIR|TAR]... [--keep] [--root DIR] [--memory 64m] [--cpus 0.5] [--pids-limit 20]
            [--hostname NAME] [--userns] [ROOTFS] -- CMD [ARGS...]
                                        run CMD as PID 1 of new namespaces, on ROOTFS and the layers
      -v                                narrate each kernel step on stderr
      --layer DIR|TAR                   a read-only layer on top of ROOTFS and the layers before it
      --keep                            keep the container's writable layer, for commit
      --net bridge|none                 a network joined to the host's bridge (default), or lo only
      -p [IP:]HOSTPORT:PORT[/udp]       publish the container's PORT on the host's HOSTPORT
      --bridge NAME, --subnet CIDR      the bridge (default minibox0, 10.89.0.0/24)
      --root DIR                        the layer store and containers (default $MINIBOX_ROOT or /var/lib/minibox)
      --memory SIZE                     memory limit: bytes, or 512k, 64m, 1g (OOM kill beyond it)
      --cpus N                          CPU time in CPUs: 0.5 = half of one CPU
      --pids-limit N                    at most N processes (and threads)
      --hostname NAME                   the hostname inside (default: a random id)
      --userns                          also a user namespace: root inside is host uid 100000
  ` + stage + ` commit [-v] [--root DIR] ID OUT.tar
                                        save kept container ID's writable layer as a layer tar
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
	case "commit":
		os.Exit(commit(os.Args[2:])) // commit.go
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
	var layers []string
	flags.Func("layer", "", func(l string) error { layers = append(layers, l); return nil })
	keep := flags.Bool("keep", false, "")
	netMode := flags.String("net", "bridge", "")
	bridge := flags.String("bridge", "minibox0", "")
	subnet := flags.String("subnet", "10.89.0.0/24", "")
	var ports []port
	flags.Func("p", "", func(s string) error { p, err := parsePort(s); ports = append(ports, p); return err })
	root := flags.String("root", "", "")
	if err := flags.Parse(args); err != nil {
		fail(2, "%v\n%s", err, usage)
	}
	rest := flags.Args()
	if len(rest) >= 2 && rest[1] == "--" { // ROOTFS -- CMD: ROOTFS is the bottom layer
		layers = append([]string{rest[0]}, layers...)
		if info, err := os.Stat(rest[0]); err != nil || !info.IsDir() {
			fail(1, "rootfs %s: not a directory (build one with `minibox rootfs`)", rest[0])
		}
		rest = rest[2:]
	} else if len(rest) == len(args) || args[len(args)-len(rest)-1] != "--" {
		rest = nil // no "--" before the command
	}
	if len(rest) == 0 || len(layers) == 0 {
		fail(2, usage)
	}
	if _, ipnet, err := net.ParseCIDR(*subnet); err != nil || ipnet.IP.To4() == nil || !subnetFits(ipnet) {
		fail(2, "--subnet %s: expected an IPv4 network such as 10.89.0.0/24, /8 to /30\n%s", *subnet, usage)
	}
	if !bridgeName.MatchString(*bridge) {
		fail(2, "--bridge %s: expected minibox and up to 8 lower-case letters or digits (minibox0): it names a link, files and rules\n%s", *bridge, usage)
	}
	if (*netMode != "bridge" && *netMode != "none") || (*netMode == "none" && len(ports) > 0) {
		fail(2, "--net %s: expected bridge, or none without -p\n%s", *netMode, usage)
	}
	command := rest
	if *verbose {
		os.Setenv(traceEnv, "1") // for the child too
	}
	// The container's id names its cgroup, minibox/<id>, and is its
	// default hostname: `hostname` inside tells which group is its own.
	id := randomID()
	if *hostname == "" {
		*hostname = id
	}

	// The network: an address, the bridge, the rules (network.go).
	nw, err := setupNetwork(dataRoot(*root), id, *hostname, *netMode, *bridge, *subnet, ports)
	if err != nil {
		fail(1, "%v", err)
	}
	defer nw.release()
	if !nw.none {
		layers = append(layers, nw.initLayer()) // /etc/hosts, resolv.conf, hostname
	}

	// The layers, and the container's own writable one (layers.go).
	ctr, err := prepareLayers(dataRoot(*root), id, layers, *keep)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", stage, err)
		return 1 // after the deferred clean-up
	}
	defer ctr.remove()

	// Re-execute this very program as "child", now in new namespaces
	// (namespaces(7)). The child is the first process of its PID
	// namespace, so it (and then the command it becomes) is PID 1 there.
	cmd := exec.Command("/proc/self/exe", append([]string{"child", *hostname, ctr.merged()}, command...)...)
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
	cg.passTo(cmd)                         // the child joins right before exec (joinCgroup)
	ctr.passTo(cmd)                        // the overlay, for mountLayers
	if err := nw.passTo(cmd); err != nil { // the init pipe
		fmt.Fprintf(os.Stderr, "%s: init pipe: %v\n", stage, err)
		return 1
	}

	if err := startChild(cmd); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", stage, err)
		return 1 // after the deferred clean-up
	}
	go killOnSignal(sigs, cmd.Process)
	if err := nw.connect(cmd.Process.Pid); err != nil { // while the child waits
		fmt.Fprintf(os.Stderr, "%s: %v\n", stage, err)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return 1
	}
	err = cmd.Wait()
	cg.reportOOM() // the exit status alone does not say why (cgroups.go)
	if err != nil {
		return exitStatus(err)
	}
	return 0
}

// bridgeName is what --bridge may be: a link name no other program uses,
// and safe in a file name and an iptables rule (no "+" wildcard).
var bridgeName = regexp.MustCompile(`^minibox[a-z0-9]{0,8}$`)

// subnetFits accepts subnets from /8 to /30: room for a gateway and containers.
func subnetFits(subnet *net.IPNet) bool {
	ones, _ := subnet.Mask.Size()
	return ones >= 8 && ones <= 30
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
	// Then wait until the parent has made our network (network.go).
	waitForNetwork()
	// Changes the new UTS namespace only (sethostname(2)).
	must(unix.Sethostname([]byte(hostname)), "hostname %s", hostname)
	// Private mounts; /proc, /dev and /sys; pivot_root (rootfs.go).
	enterRootfs(rootfs)
	// The limits apply from here on (cgroups.go).
	joinCgroup()
	execCommand(rootfs, command) // command.go
}
