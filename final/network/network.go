// Package network connects containers to the host the way docker's
// default bridge network does, grown up from stage 05 (05-network, lesson
// 5): a bridge on the host (minibox0, 10.89.0.0/24), one veth pair per
// container whose inner end is the container's eth0, an address from a
// file-based IPAM, MASQUERADE on the way out and DNAT for published ports.
//
// The engine calls Setup (an address, the bridge, the rules), starts the
// container in a new network namespace, calls Attach with its PID (the
// veth, eth0, the route), writes Files into its root, and calls Release
// when the container ends. Everything happens in the caller's network
// namespace, which plays the host.
//
// Several processes may do all this at once: the leases are changed only
// under a flock(2) of $ROOT/network/<bridge>.lock, and a lease whose
// owner died (a SIGKILLed engine) is reclaimed, with its rules and veth,
// by the next Setup. Release may be called any number of times.
package network

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The defaults of Options, docker's bridge network under minibox's names.
const (
	DefaultBridge = "minibox0"
	DefaultSubnet = "10.89.0.0/24"
)

// Options says where and how to connect a container.
type Options struct {
	Root     string // the data root: leases in Root/network/<bridge>.json
	Bridge   string // default DefaultBridge
	Subnet   string // IPv4 CIDR, default DefaultSubnet
	Ports    []Port // published ports
	Hostname string // for /etc/hosts and /etc/hostname; default the short ID
}

// An Endpoint is one container's connection. It is plain data (JSON) so
// the engine can keep it in the container's state and Release it from
// another process; Load reads it back from the lease instead.
type Endpoint struct {
	ID       string `json:"id"` // the short ID (12 hex digits): rules' and lease's mark
	Root     string `json:"root"`
	Bridge   string `json:"bridge"`
	IP       net.IP `json:"ip"`
	Gateway  net.IP `json:"gateway"`
	Veth     string `json:"veth"` // the host end, mbx + 8 hex digits of the ID
	Ports    []Port `json:"ports,omitempty"`
	Hostname string `json:"hostname"`
	Prefix   int    `json:"prefix"` // the subnet's mask length

	subnet *net.IPNet // Setup's, for the bridge
}

// Setup leases an address for container id (12 to 64 lower-case hex
// digits; the first 12 mark its rules and lease), makes the bridge and its
// shared rules if missing, checks and publishes the ports. On error
// nothing of the container's is left.
func Setup(id string, o Options) (*Endpoint, error) {
	e, err := newEndpoint(id, o)
	if err != nil {
		return nil, err
	}
	pid, start, err := owner(os.Getpid())
	if err != nil {
		return nil, err
	}
	var stale []lease
	err = withLeases(e.Root, e.Bridge, func(list *[]lease) error {
		stale = splitStale(list)
		if err := reclaim(e.Bridge, stale); err != nil {
			return err
		}
		for _, l := range *list {
			if l.ID == e.ID {
				return fmt.Errorf("container %s is already on %s, with %s", e.ID, e.Bridge, l.IP)
			}
		}
		ports, err := choosePorts(*list, o.Ports)
		if err != nil {
			return err
		}
		if e.IP, err = allocate(*list, e.subnet); err != nil {
			return err
		}
		e.Ports = ports
		keys := make([]string, len(ports))
		for i, p := range ports {
			keys[i] = p.key()
		}
		*list = append(*list, lease{IP: e.IP.String(), ID: e.ID, PID: pid, Start: start, Ports: keys, Published: ports})
		if err := ensureBridge(e.Bridge, e.subnet); err != nil {
			return err
		}
		return ensureBridgeRules(e.Root, e.Bridge, e.subnet)
	})
	if err != nil {
		return nil, fmt.Errorf("network of container %s: %w", e.ID, err)
	}
	if err := addRules(dnatRules(e.ID, e.IP, e.Ports)); err != nil {
		return nil, errors.Join(fmt.Errorf("publish the ports of container %s: %w", e.ID, err), e.Release())
	}
	return e, nil
}

// newEndpoint checks the options and fills in what Setup and Load share.
func newEndpoint(id string, o Options) (*Endpoint, error) {
	short, err := shortID(id)
	if err != nil {
		return nil, err
	}
	if o.Root == "" {
		return nil, errors.New("network: no data root")
	}
	if o.Bridge == "" {
		o.Bridge = DefaultBridge
	}
	if len(o.Bridge) > unix.IFNAMSIZ-1 || strings.ContainsAny(o.Bridge, "/ \t\n:") {
		return nil, fmt.Errorf("bridge name %q: at most 15 characters, no '/', ':' or spaces", o.Bridge)
	}
	if o.Subnet == "" {
		o.Subnet = DefaultSubnet
	}
	_, subnet, err := net.ParseCIDR(o.Subnet)
	if err != nil || subnet.IP.To4() == nil {
		return nil, fmt.Errorf("subnet %q: not an IPv4 CIDR (10.89.0.0/24)", o.Subnet)
	}
	ones, _ := subnet.Mask.Size()
	if ones > 30 {
		return nil, fmt.Errorf("subnet %s: too small, at most /30", subnet)
	}
	subnet.IP = subnet.IP.To4()
	if o.Hostname == "" {
		o.Hostname = short
	}
	return &Endpoint{ID: short, Root: o.Root, Bridge: o.Bridge, subnet: subnet, Gateway: gatewayOf(subnet),
		Veth: "mbx" + short[:8], Hostname: o.Hostname, Prefix: ones}, nil
}

// shortID is the first 12 hex digits of a container ID: what `minibox
// cleanup` recognises in rule comments and leases.
func shortID(id string) (string, error) {
	if len(id) < 12 || len(id) > 64 || strings.Trim(id, "0123456789abcdef") != "" {
		return "", fmt.Errorf("container ID %q: expected 12 to 64 lower-case hex digits", id)
	}
	return id[:12], nil
}

// reclaim undoes what dead owners' containers left: their DNAT rules and
// veths (their leases are already out of the list).
func reclaim(bridge string, stale []lease) error {
	var errs []error
	for _, l := range stale {
		ip := net.ParseIP(l.IP)
		if ip != nil {
			errs = append(errs, deleteRules(dnatRules(l.ID, ip, l.Published)))
		}
		if len(l.ID) >= 8 {
			errs = append(errs, deleteLink("mbx"+l.ID[:8]))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reclaim the network of a dead container: %w", err)
	}
	return nil
}

// Load reads back container id's endpoint from its lease (for Release
// from another process than Setup's). Hostname is not kept: it is o's.
func Load(id string, o Options) (*Endpoint, error) {
	e, err := newEndpoint(id, o)
	if err != nil {
		return nil, err
	}
	list, err := readLeases(filepath.Join(leasesDir(e.Root), e.Bridge+".json"))
	if err != nil {
		return nil, err
	}
	for _, l := range list {
		if l.ID == e.ID {
			e.IP, e.Ports = net.ParseIP(l.IP).To4(), l.Published
			return e, nil
		}
	}
	return nil, fmt.Errorf("container %s has no address on %s", e.ID, e.Bridge)
}

// Attach connects the container whose first process is pid: a veth pair,
// one end on the bridge, the other made right in pid's network namespace
// as eth0, with the MAC and address, up, the default route via the
// gateway, and lo up. The lease then follows pid: if the container dies
// unreleased, the next Setup reclaims it.
func (e *Endpoint) Attach(pid int) error {
	if err := e.attach(pid); err != nil {
		_ = deleteLink(e.Veth) // both ends
		return fmt.Errorf("attach container %s (process %d) to %s: %w", e.ID, pid, e.Bridge, err)
	}
	return nil
}

func (e *Endpoint) attach(pid int) error {
	ns, err := netns.GetFromPid(pid) // /proc/PID/ns/net
	if err != nil {
		return fmt.Errorf("its network namespace: %w", err)
	}
	defer ns.Close()
	if self, err := netns.Get(); err == nil {
		same := ns.Equal(self)
		self.Close()
		if same { // eth0, routes and lo would be the host's own
			return fmt.Errorf("process %d is in this network namespace, not a new one of its own: refusing", pid)
		}
	}
	inside, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer inside.Close()
	br, err := netlink.LinkByName(e.Bridge)
	if err != nil {
		return fmt.Errorf("the bridge: %w", err)
	}
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: e.Veth, MasterIndex: br.Attrs().Index},
		PeerName:         "eth0",
		PeerHardwareAddr: macOf(e.IP),
		PeerNamespace:    netlink.NsFd(ns),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("ip link add %s master %s type veth peer name eth0 netns %d: %w", e.Veth, e.Bridge, pid, err)
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return fmt.Errorf("ip link set %s up: %w", e.Veth, err)
	}
	if err := e.configureInside(inside); err != nil {
		return err
	}
	return e.followOwner(pid)
}

// configureInside gives eth0 its address and route, and sets lo up.
func (e *Endpoint) configureInside(inside *netlink.Handle) error {
	eth0, err := inside.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("eth0 inside: %w", err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: e.IP, Mask: net.CIDRMask(e.Prefix, 32)}}
	if err := inside.AddrAdd(eth0, addr); err != nil {
		return fmt.Errorf("ip addr add %s dev eth0: %w", addr.IPNet, err)
	}
	if err := inside.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("ip link set eth0 up: %w", err)
	}
	if err := inside.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: e.Gateway}); err != nil {
		return fmt.Errorf("ip route add default via %s: %w", e.Gateway, err)
	}
	lo, err := inside.LinkByName("lo")
	if err == nil {
		err = inside.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("ip link set lo up: %w", err)
	}
	return nil
}

// followOwner makes pid the lease's owner.
func (e *Endpoint) followOwner(pid int) error {
	pid, start, err := owner(pid)
	if err != nil {
		return err
	}
	return withLeases(e.Root, e.Bridge, func(list *[]lease) error {
		for i := range *list {
			if l := &(*list)[i]; l.ID == e.ID && l.IP == e.IP.String() {
				l.PID, l.Start = pid, start
				return nil
			}
		}
		return fmt.Errorf("its lease of %s is gone (released meanwhile?)", e.IP)
	})
}

// Release undoes the container's network: its rules, its veth (if its
// namespace has not taken it along already), then its lease, last, so
// that no other container gets the address while a rule still points to
// it. What is gone already counts as undone: calling it twice is safe.
// The bridge and its shared rules stay for the next container, as
// docker's docker0 does (`minibox cleanup` removes them when unused).
func (e *Endpoint) Release() error {
	if e == nil {
		return nil
	}
	var errs []error
	if e.IP != nil {
		errs = append(errs, deleteRules(dnatRules(e.ID, e.IP, e.Ports)))
	}
	errs = append(errs, deleteLink(e.Veth))
	errs = append(errs, withLeases(e.Root, e.Bridge, func(list *[]lease) error {
		kept := (*list)[:0]
		for _, l := range *list {
			if l.ID != e.ID {
				kept = append(kept, l)
			}
		}
		*list = kept
		return nil
	}))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("release the network of container %s: %w", e.ID, err)
	}
	return nil
}

// deleteLink deletes a link of this namespace if it is there.
func deleteLink(name string) error {
	link, err := netlink.LinkByName(name)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil
	}
	if err == nil {
		err = netlink.LinkDel(link)
	}
	if err != nil && !errors.Is(err, unix.ENODEV) { // gone meanwhile, with its namespace
		return fmt.Errorf("ip link del %s: %w", name, err)
	}
	return nil
}

// Files are the container's /etc/hosts, /etc/resolv.conf and
// /etc/hostname, for the engine to put in its root (docker writes them
// per container too, never into the image's layers).
func (e *Endpoint) Files() map[string][]byte {
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
	if e.IP != nil {
		hosts += e.IP.String() + "\t" + e.Hostname + "\n"
	}
	return map[string][]byte{
		"/etc/hosts":       []byte(hosts),
		"/etc/resolv.conf": resolvConf("/etc/resolv.conf"),
		"/etc/hostname":    []byte(e.Hostname + "\n"),
	}
}

// resolvConf is the host's resolv.conf for a container: its search and
// options lines, its name servers but those on the host's loopback (the
// container's 127.0.0.1 is its own), and docker's fallback, Google's
// public servers, when none is left.
func resolvConf(path string) []byte {
	host, _ := os.ReadFile(path)
	var keep, servers []string
	for _, line := range strings.Split(string(host), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "nameserver":
			if ip := net.ParseIP(f[1]); ip != nil && !ip.IsLoopback() {
				servers = append(servers, "nameserver "+f[1])
			}
		case len(f) >= 2 && (f[0] == "search" || f[0] == "options" || f[0] == "domain"):
			keep = append(keep, strings.Join(f, " "))
		}
	}
	if len(servers) == 0 {
		servers = []string{"nameserver 8.8.8.8", "nameserver 8.8.4.4"}
	}
	return []byte(strings.Join(append(keep, servers...), "\n") + "\n")
}

// String is the endpoint as a line: "10.89.0.2/24 on minibox0 (mbx…)".
func (e *Endpoint) String() string {
	return e.IP.String() + "/" + strconv.Itoa(e.Prefix) + " on " + e.Bridge + " (" + e.Veth + ")"
}
