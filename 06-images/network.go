package main

// The network, what stage 05 adds: each network namespace has its own
// devices, addresses and routes, and starts with nothing but lo. Docker
// joins a container to the host with a veth pair, a virtual cable whose
// one end is in the container (eth0) and the other on a bridge, a virtual
// switch on the host; the host forwards and masquerades the bridge's
// traffic, and publishes ports with DNAT. The order is the lesson: the
// child waits on an init pipe (as runc's does) until the parent has made
// its network; it never runs its command before. Lesson 5 explains it.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// network is one container's: its address on the bridge, its published
// ports, and the init pipe that holds the child back.
type network struct {
	root, id, bridge string
	none             bool       // --net none: lo only
	subnet           *net.IPNet // the bridge's
	ip               net.IP     // the container's
	ports            []port
	rules            []rule   // the container's own (DNAT)
	ready            *os.File // the init pipe's write end
}

// setupNetwork leases the address, makes the bridge and its rules if
// missing, and writes the init layer (/etc/hosts …) of the container.
func setupNetwork(root, id, hostname, mode, bridge, subnet string, ports []port) (*network, error) {
	n := &network{root: root, id: id, bridge: bridge, none: mode == "none", ports: ports}
	if n.none {
		return n, nil
	}
	_, n.subnet, _ = net.ParseCIDR(subnet) // checked with the flags
	var keys []string
	for _, p := range ports {
		keys = append(keys, p.key())
	}
	// Under the leases' lock: two stages starting at once must not both
	// make the bridge or its shared rules.
	err := withLeases(root, bridge, func(leases *[]lease) (err error) {
		if n.ip, err = allocate(leases, n.subnet, id, keys); err == nil {
			err = n.makeBridge()
		}
		if err == nil {
			err = natBridge(bridge, n.subnet)
		}
		return err
	})
	for _, p := range ports {
		for _, r := range dnatRules(p, n.ip, id) {
			if err == nil {
				if err = iptables(r.args("-A")...); err == nil {
					n.rules = append(n.rules, r)
				}
			}
		}
	}
	if err == nil {
		err = n.writeInitLayer(hostname)
	}
	if err != nil {
		n.release()
		os.RemoveAll(filepath.Dir(n.initLayer())) // the container's directory holds nothing else yet
		return nil, err
	}
	return n, nil
}

// makeBridge makes the bridge with the gateway address, once; a subnet
// that overlaps a route of the host would make addresses ambiguous.
func (n *network) makeBridge() error {
	if link, err := netlink.LinkByName(n.bridge); err == nil { // made by an earlier container?
		addrs, _ := netlink.AddrList(link, netlink.FAMILY_V4)
		for _, a := range addrs {
			if _, ok := link.(*netlink.Bridge); ok && a.IP.Equal(n.gateway()) && a.Mask.String() == n.subnet.Mask.String() {
				return nil
			}
		}
		return fmt.Errorf("%s exists but is not a bridge with the gateway %s/%d: remove it (minibox cleanup) or choose another --bridge or --subnet",
			n.bridge, n.gateway(), maskBits(n.subnet))
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4) // ip route
	for _, r := range routes {
		if r.Dst == nil || r.Dst.Mask.String() == "00000000" { // the default route
			continue
		}
		if r.Dst.Contains(n.subnet.IP) || n.subnet.Contains(r.Dst.IP) {
			link, _ := netlink.LinkByIndex(r.LinkIndex)
			name := "?"
			if link != nil {
				name = link.Attrs().Name
			}
			return fmt.Errorf("subnet %s overlaps the route %s dev %s: choose another with --subnet", n.subnet, r.Dst, name)
		}
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.bridge}}
	gw := &netlink.Addr{IPNet: &net.IPNet{IP: n.gateway(), Mask: n.subnet.Mask}}
	if err == nil {
		err = netlink.LinkAdd(br)
		narrate("ip link add %s type bridge", n.bridge)
	}
	if err == nil {
		err = netlink.AddrAdd(br, gw)
		narrate("ip addr add %s dev %s", gw.IPNet, n.bridge)
	}
	if err == nil {
		err = netlink.LinkSetUp(br)
		narrate("ip link set %s up", n.bridge)
	}
	if err != nil {
		_ = netlink.LinkDel(br) // not half a bridge for the next container
		return fmt.Errorf("make the bridge %s: %w", n.bridge, err)
	}
	return nil
}

func maskBits(subnet *net.IPNet) int {
	ones, _ := subnet.Mask.Size()
	return ones
}

// gateway is the bridge's own address, the subnet's first.
func (n *network) gateway() net.IP {
	ip := append(net.IP(nil), n.subnet.IP.To4()...)
	ip[3]++
	return ip
}

// writeInitLayer writes /etc/hosts, /etc/resolv.conf and /etc/hostname
// into a small layer of the container's own, on top of the others: the
// shared layers never change (docker calls it the init layer).
func (n *network) writeInitLayer(hostname string) error {
	etc := filepath.Join(n.initLayer(), "etc")
	resolv, _ := os.ReadFile("/etc/resolv.conf") // the host's servers, but not its own loopback
	var servers []string
	for _, line := range strings.Split(string(resolv), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "nameserver" && !strings.HasPrefix(f[1], "127.") {
			servers = append(servers, line)
		}
	}
	files := map[string]string{
		"hosts":       fmt.Sprintf("127.0.0.1\tlocalhost\n%s\t%s\n", n.ip, hostname),
		"resolv.conf": strings.Join(append(servers, ""), "\n"),
		"hostname":    hostname + "\n",
	}
	err := os.MkdirAll(etc, 0o755)
	for name, text := range files {
		if err == nil {
			err = os.WriteFile(filepath.Join(etc, name), []byte(text), 0o644)
		}
	}
	return err
}

// initLayer is the directory of the container's init layer.
func (n *network) initLayer() string { return filepath.Join(n.root, "containers", n.id, "init") }

// initFDEnv tells the child which file descriptor is the init pipe.
const initFDEnv = "MINIBOX_INIT_FD"

// passTo gives the child the init pipe's read end before it starts.
func (n *network) passTo(cmd *exec.Cmd) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	cmd.Env = append(cmd.Env, initFDEnv+"="+strconv.Itoa(2+len(cmd.ExtraFiles)))
	n.ready = w
	return nil
}

// connect makes the network inside the child's namespace, found by its
// PID, while the child waits; then it lets the child go on.
func (n *network) connect(pid int) error {
	ns, err := netns.GetFromPid(pid) // /proc/PID/ns/net
	if err != nil {
		return fmt.Errorf("the child's network namespace: %w", err)
	}
	defer ns.Close()
	inside, err := netlink.NewHandleAt(ns) // a netlink socket in there: nsenter -t PID -n
	if err != nil {
		return err
	}
	defer inside.Close()
	if !n.none {
		err = n.plugVeth(pid, inside)
	}
	if err == nil {
		lo, _ := inside.LinkByName("lo")
		if err = inside.LinkSetUp(lo); err == nil {
			narrate("nsenter -t %d -n ip link set lo up", pid)
		}
	}
	if err == nil {
		narrate("echo >&INIT-PIPE   # the child may go on") // before: it goes on at once
		_, err = n.ready.Write([]byte{1})
	}
	n.ready.Close()
	return err
}

// plugVeth makes the veth pair, puts one end on the bridge and the other
// into the child's namespace as eth0, with its address and default route.
func (n *network) plugVeth(pid int, inside *netlink.Handle) error {
	host, peer := n.veth(), n.veth()+"p"
	br, err := netlink.LinkByName(n.bridge)
	if err == nil {
		err = netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host, MasterIndex: br.Attrs().Index}, PeerName: peer})
		narrate("ip link add %s master %s type veth peer name %s", host, n.bridge, peer)
	}
	var end netlink.Link
	if err == nil {
		err = netlink.LinkSetUp(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host}})
		narrate("ip link set %s up", host)
	}
	if err == nil {
		if end, err = netlink.LinkByName(peer); err == nil {
			err = netlink.LinkSetNsPid(end, pid)
			narrate("ip link set %s netns %d", peer, pid)
		}
	}
	if err == nil {
		if end, err = inside.LinkByName(peer); err == nil {
			err = inside.LinkSetName(end, "eth0")
			narrate("nsenter -t %d -n ip link set %s name eth0", pid, peer)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: n.ip, Mask: n.subnet.Mask}}
	if err == nil {
		err = inside.AddrAdd(end, addr)
		narrate("nsenter -t %d -n ip addr add %s dev eth0", pid, addr.IPNet)
	}
	if err == nil {
		err = inside.LinkSetUp(end)
		narrate("nsenter -t %d -n ip link set eth0 up", pid)
	}
	if err == nil {
		err = inside.RouteAdd(&netlink.Route{LinkIndex: end.Attrs().Index, Gw: n.gateway()})
		narrate("nsenter -t %d -n ip route add default via %s", pid, n.gateway())
	}
	if err != nil {
		return fmt.Errorf("connect the container to %s: %w", n.bridge, err)
	}
	return nil
}

// veth is the host end's name: short (at most 15 bytes), and the id's.
func (n *network) veth() string { return "mbx" + n.id[:8] }

// waitForNetwork is the child's first step after its namespace check: it
// blocks on the init pipe until the parent has made its network.
func waitForNetwork() {
	fd, err := strconv.Atoi(os.Getenv(initFDEnv))
	b := make([]byte, 1)
	if err == nil {
		_, err = unix.Read(fd, b)
	}
	if err != nil || b[0] != 1 {
		fail(1, "the parent did not finish the network: not going on")
	}
	unix.Close(fd)
}

// release undoes the container's network: its rules, its veth (if the
// end of its namespace has not taken it already) and its lease. The
// bridge and its shared rules stay for the next container (`minibox
// cleanup` removes them).
func (n *network) release() {
	if n == nil || n.none {
		return
	}
	for _, r := range n.rules {
		if err := iptables(r.args("-D")...); err != nil {
			fmt.Fprintf(os.Stderr, "%s: warning: %v\n", stage, err)
		}
	}
	if link, err := netlink.LinkByName(n.veth()); err == nil && netlink.LinkDel(link) == nil {
		narrate("ip link del %s", n.veth())
	}
	_ = withLeases(n.root, n.bridge, func(leases *[]lease) error {
		for i, l := range *leases {
			if l.ID == n.id {
				*leases = append((*leases)[:i], (*leases)[i+1:]...)
				narrate("# release %s", l.IP)
				break
			}
		}
		return nil
	})
}
