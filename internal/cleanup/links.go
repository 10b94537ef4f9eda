package cleanup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Veths are the host ends of stage 05's veth pairs, mbx<first 8 hex digits
// of the container id>, in the network namespace cleanup runs in. A veth
// pair goes when the container's network namespace goes, which is when
// its last process ends, so a stage killed with SIGKILL normally takes its
// veth with it; one still there, whose container is not running, is held
// by something that keeps that namespace (a bind mount of
// /proc/PID/ns/net, an open descriptor). Deleting one end deletes both.
var Veths = Kind{Name: vethKind, Find: findVeths, Remove: removeVeth}

// Bridges are stage 05's bridges: links of type bridge whose name starts
// with "minibox" (minibox0 by default). The stage makes one once, with its
// gateway address, and leaves it for the next container; cleanup removes
// it when no running container uses it (no live lease in its leases file,
// no link on it). Its address and the route to its subnet go with it. The
// stage's sysctl net.ipv4.ip_forward=1 is left as it is: something else on
// the host may need forwarding too.
var Bridges = Kind{Name: bridgeKind, Find: findBridges, Remove: removeBridge}

const (
	vethKind     = "veth"
	bridgeKind   = "bridge"
	vethPrefix   = "mbx"
	bridgePrefix = "minibox"
)

// isVethName reports whether name is a host end stage 05 names:
// mbx and 8 lower-case hex digits.
func isVethName(name string) bool {
	hex, ok := strings.CutPrefix(name, vethPrefix)
	return ok && len(hex) == 8 && IsContainerID(hex+"0000")
}

func isBridgeName(name string) bool { return strings.HasPrefix(name, bridgePrefix) }

func findVeths(env Env) ([]Object, error) {
	links, err := netlink.LinkList() // ip link, in this network namespace
	if err != nil {
		return nil, fmt.Errorf("list the links: %w", err)
	}
	var out []Object
	for _, l := range links {
		if name := l.Attrs().Name; l.Type() == "veth" && isVethName(name) {
			out = append(out, Object{Kind: vethKind, Name: name, Busy: containerRunning(env.DataRoots, name[len(vethPrefix):]), dataRoots: env.DataRoots})
		}
	}
	return out, nil
}

func removeVeth(o Object) error {
	if !isVethName(o.Name) {
		return fmt.Errorf("refusing to delete link %s: not a veth minibox names (mbx and 8 hex digits)", o.Name)
	}
	link, err := netlink.LinkByName(o.Name)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil // gone already, or with its namespace
	}
	if err != nil {
		return fmt.Errorf("ip link show %s: %w", o.Name, err)
	}
	if link.Type() != "veth" {
		return fmt.Errorf("refusing to delete link %s: a %s, not a veth", o.Name, link.Type())
	}
	if why := containerRunning(o.roots(), o.Name[len(vethPrefix):]); why != "" {
		return fmt.Errorf("refusing to delete veth %s: %s", o.Name, why)
	}
	return deleteLink(link)
}

func findBridges(env Env) ([]Object, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list the links: %w", err)
	}
	var out []Object
	for _, l := range links {
		if name := l.Attrs().Name; l.Type() == "bridge" && isBridgeName(name) {
			out = append(out, Object{Kind: bridgeKind, Name: name, Busy: bridgeInUse(env.DataRoots, name), dataRoots: env.DataRoots})
		}
	}
	return out, nil
}

// removeBridge deletes a minibox bridge, checking again that no running
// container uses it while holding the lock stage 05 holds when it leases
// an address and makes the bridge: a stage starting now either sees the
// bridge gone (and makes it again) or holds a lease cleanup sees.
func removeBridge(o Object) error {
	if !isBridgeName(o.Name) {
		return fmt.Errorf("refusing to delete link %s: not a bridge minibox names (minibox…)", o.Name)
	}
	for _, root := range o.roots() {
		dir := filepath.Join(root, "network")
		if _, err := os.Lstat(filepath.Join(dir, o.Name+".lock")); root == "" || checkRealDir(dir) != nil || err != nil {
			continue // no stage 05 keeps this bridge's leases there
		}
		unlock, err := lockLeases(dir, o.Name)
		if err != nil {
			return err
		}
		defer unlock()
	}
	link, err := netlink.LinkByName(o.Name)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ip link show %s: %w", o.Name, err)
	}
	if link.Type() != "bridge" {
		return fmt.Errorf("refusing to delete link %s: a %s, not a bridge", o.Name, link.Type())
	}
	if why := bridgeInUse(o.roots(), o.Name); why != "" {
		return fmt.Errorf("refusing to delete bridge %s: %s", o.Name, why)
	}
	return deleteLink(link)
}

// deleteLink is ip link del; a link gone meanwhile counts as deleted.
func deleteLink(link netlink.Link) error {
	err := netlink.LinkDel(link)
	if err == nil || errors.Is(err, unix.ENODEV) {
		return nil
	}
	return fmt.Errorf("ip link del %s: %w", link.Attrs().Name, err)
}

// containerRunning says why the container whose id starts with idPrefix
// (all 12 hex digits, or the 8 of a veth's name) is running, or "": its
// stage, alive, holds its lease in one of the data roots; or a live
// process is in the network namespace at the other end of its veth (a
// container whose stage keeps its leases in another data root).
func containerRunning(roots []string, idPrefix string) string {
	leases := liveLeases(roots, func(l lease) bool { return strings.HasPrefix(l.ID, idPrefix) })
	if len(leases) > 0 {
		l := leases[0]
		pid := strconv.Itoa(l.PID)
		return fmt.Sprintf("container %s is running: its stage, process %s, holds its lease in %s; stop it (kill %s), then run minibox cleanup again",
			l.ID, describePIDs([]string{pid}), l.file, pid)
	}
	veth := vethPrefix + idPrefix[:min(8, len(idPrefix))]
	if pids := peerProcesses(veth); len(pids) > 0 {
		return fmt.Sprintf("a container is running: process %s is in the network namespace at the other end of %s; stop it (kill %s), then run minibox cleanup again",
			describePIDs(pids), veth, strings.Join(pids, " "))
	}
	return ""
}

// bridgeInUse says why a running container uses the bridge, or "": its
// stage, alive and in this network namespace, holds a lease in the
// bridge's leases file (a stage elsewhere has a bridge of that name of its
// own), or a link is on the bridge.
func bridgeInUse(roots []string, bridge string) string {
	leases := liveLeases(roots, func(l lease) bool { return l.bridge == bridge && inThisNetns(l.PID) })
	if len(leases) > 0 {
		l := leases[0]
		pid := strconv.Itoa(l.PID)
		return fmt.Sprintf("in use by container %s: its stage, process %s, holds a lease in %s; stop it (kill %s), then run minibox cleanup again",
			l.ID, describePIDs([]string{pid}), l.file, pid)
	}
	if on := linksOn(bridge); len(on) > 0 {
		return fmt.Sprintf("in use: %s on it (ip link show master %s); stop the containers that use it, then run minibox cleanup again",
			strings.Join(on, ", "), bridge)
	}
	return ""
}

// linksOn lists the links whose master is the bridge.
func linksOn(bridge string) []string {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil
	}
	links, _ := netlink.LinkList()
	var out []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// netnsOf names the network namespace of the process at procDir
// (/proc/PID, or /proc/thread-self for this thread): "net:[inode]".
func netnsOf(procDir string) string {
	target, _ := os.Readlink(filepath.Join(procDir, "ns", "net"))
	return target
}

// inThisNetns reports whether process pid is in the network namespace
// this thread is in; when that cannot be read, it assumes so (busy is
// the safe answer).
func inThisNetns(pid int) bool {
	theirs, mine := netnsOf(filepath.Join("/proc", strconv.Itoa(pid))), netnsOf("/proc/thread-self")
	return theirs == "" || mine == "" || theirs == mine
}

// peerProcesses lists the live processes in the network namespace at the
// other end of the veth called name: the namespace whose id (ip netns
// list-id, as ip link shows it: link-netnsid N) is the veth's, asked of
// each process's /proc/PID/ns/net.
func peerProcesses(name string) []string {
	link, err := netlink.LinkByName(name)
	if err != nil || link.Attrs().NetNsID < 0 {
		return nil // gone, or its peer is in this namespace
	}
	want := link.Attrs().NetNsID
	mine := netnsOf("/proc/thread-self")
	ids := map[string]int{} // namespace → its id here, asked once each
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ns := netnsOf(filepath.Join("/proc", e.Name()))
		if ns == "" || ns == mine {
			continue
		}
		id, seen := ids[ns]
		if !seen {
			id = netnsID(filepath.Join("/proc", e.Name(), "ns", "net"))
			ids[ns] = id
		}
		if id == want && processAlive(pid) {
			out = append(out, e.Name())
		}
	}
	sort.Slice(out, func(i, j int) bool { a, _ := strconv.Atoi(out[i]); b, _ := strconv.Atoi(out[j]); return a < b })
	return out
}

// netnsID is the id this namespace knows the namespace at nsPath by, or
// -1 (none assigned: no link of ours leads there).
func netnsID(nsPath string) int {
	fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	defer unix.Close(fd)
	id, err := netlink.GetNetNsIdByFd(fd)
	if err != nil {
		return -1
	}
	return id
}
