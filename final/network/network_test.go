package network

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// --- Addresses and routes ----------------------------------------------------------------

// Inside, eth0 has the first free address (.2), the MAC made from it, and
// is up; lo is up; the default route goes via the gateway. On the host,
// the bridge holds the gateway address, the veth is a port of it, and
// forwarding, route_localnet and the shared rules are on. The lease
// follows the container's process. Release takes the veth and the lease,
// and leaves the bridge.
func TestAttachAddressesAndRoutes(t *testing.T) {
	o := newOptions(t)
	o.Hostname = "web"
	id := newID(t)
	e, err := Setup(id, o)
	require.NoError(t, err)
	assert.Equal(t, "10.89.0.2", e.IP.String())
	assert.Equal(t, "10.89.0.1", e.Gateway.String())
	assert.Equal(t, "mbx"+id[:8], e.Veth)
	c := startContainer(t)
	require.NoError(t, e.Attach(c.pid))

	ns, err := netns.GetFromPath(c.nsPath())
	require.NoError(t, err)
	defer ns.Close()
	inside, err := netlink.NewHandleAt(ns)
	require.NoError(t, err)
	defer inside.Close()
	links, err := inside.LinkList()
	require.NoError(t, err)
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
		assert.NotZero(t, l.Attrs().Flags&net.FlagUp, "%s is up", l.Attrs().Name)
	}
	assert.ElementsMatch(t, []string{"lo", "eth0"}, names)
	eth0, err := inside.LinkByName("eth0")
	require.NoError(t, err)
	assert.Equal(t, "02:42:0a:59:00:02", eth0.Attrs().HardwareAddr.String())
	addrs, err := inside.AddrList(eth0, netlink.FAMILY_V4)
	require.NoError(t, err)
	require.Len(t, addrs, 1)
	assert.Equal(t, "10.89.0.2/24", addrs[0].IPNet.String())
	routes, err := inside.RouteList(eth0, netlink.FAMILY_V4)
	require.NoError(t, err)
	var gateways []string
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() && r.Dst.Mask.String() == "00000000" {
			gateways = append(gateways, r.Gw.String())
		}
	}
	assert.Equal(t, []string{"10.89.0.1"}, gateways, "the default route")

	br, err := netlink.LinkByName(DefaultBridge)
	require.NoError(t, err)
	assert.Equal(t, "bridge", br.Type())
	brAddrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
	require.NoError(t, err)
	require.Len(t, brAddrs, 1)
	assert.Equal(t, "10.89.0.1/24", brAddrs[0].IPNet.String())
	veth, err := netlink.LinkByName(e.Veth)
	require.NoError(t, err)
	assert.Equal(t, br.Attrs().Index, veth.Attrs().MasterIndex, "the veth is a port of the bridge")
	assert.NotZero(t, veth.Attrs().Flags&net.FlagUp)
	for file, want := range map[string]string{"ip_forward": "1", "conf/minibox0/route_localnet": "1"} {
		got, err := os.ReadFile("/proc/sys/net/ipv4/" + file)
		require.NoError(t, err)
		assert.Equal(t, want, strings.TrimSpace(string(got)), file)
	}
	_, subnet, _ := net.ParseCIDR(DefaultSubnet)
	for _, r := range bridgeRules(DefaultBridge, subnet) {
		present, err := hasRule(r)
		require.NoError(t, err)
		assert.True(t, present, "shared rule %s", r)
	}

	leases := leasesOf(t, o)
	require.Len(t, leases, 1)
	assert.Equal(t, lease{IP: "10.89.0.2", ID: id[:12], PID: c.pid, Start: mustStart(t, c.pid)},
		lease{IP: leases[0].IP, ID: leases[0].ID, PID: leases[0].PID, Start: leases[0].Start}, "the lease follows the container")

	files := e.Files()
	assert.Equal(t, "web\n", string(files["/etc/hostname"]))
	assert.Contains(t, string(files["/etc/hosts"]), "127.0.0.1\tlocalhost\n")
	assert.Contains(t, string(files["/etc/hosts"]), "\n10.89.0.2\tweb\n")
	assert.Regexp(t, `(?m)^nameserver \S+$`, string(files["/etc/resolv.conf"]))
	assert.NotRegexp(t, `nameserver 127\.`, string(files["/etc/resolv.conf"]), "the host's loopback is not the container's")

	require.NoError(t, e.Release())
	_, err = netlink.LinkByName(e.Veth)
	assert.ErrorAs(t, err, &netlink.LinkNotFoundError{}, "the veth after Release")
	assert.Empty(t, leasesOf(t, o))
	_, err = netlink.LinkByName(DefaultBridge)
	assert.NoError(t, err, "the bridge stays for the next container")
}

func mustStart(t *testing.T, pid int) uint64 {
	t.Helper()
	start, err := processStart(pid)
	require.NoError(t, err)
	return start
}

// resolv.conf: search and options kept, loopback servers dropped, docker's
// fallback when none is left.
func TestResolvConf(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "resolv.conf")
	require.NoError(t, os.WriteFile(file, []byte("# x\nsearch example.org\nnameserver 127.0.0.53\nnameserver 192.0.2.1\noptions edns0\n"), 0o644))
	assert.Equal(t, "search example.org\noptions edns0\nnameserver 192.0.2.1\n", string(resolvConf(file)))
	require.NoError(t, os.WriteFile(file, []byte("nameserver 127.0.0.53\n"), 0o644))
	assert.Equal(t, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n", string(resolvConf(file)))
}

// --- Traffic --------------------------------------------------------------------------------

// Two containers on the bridge reach each other: busybox ping from one's
// namespace to the other's address, both ways, and TCP.
func TestEndpointsPingEachOther(t *testing.T) {
	o := newOptions(t)
	busybox, err := exec.LookPath("busybox")
	require.NoError(t, err, "busybox (Debian package busybox-static)")
	a, ca := attached(t, o)
	b, cb := attached(t, o)
	assert.NotEqual(t, a.IP.String(), b.IP.String())
	for _, p := range []struct {
		from *ctr
		to   net.IP
	}{{ca, b.IP}, {cb, a.IP}} {
		out, err := exec.Command("nsenter", "--net="+p.from.nsPath(), "--", busybox, "ping", "-c", "1", "-W", "5", p.to.String()).CombinedOutput()
		assert.NoError(t, err, "ping %s: %s", p.to, out)
	}
	ln := listenIn(t, ca.nsPath(), "tcp", ":7000")
	go serveGreeting(ln, "from a")
	got, err := dialFrom(cb.nsPath(), net.JoinHostPort(a.IP.String(), "7000"))
	require.NoError(t, err)
	assert.Equal(t, "from a, to "+b.IP.String(), got, "A answered B, and saw B's own address")
}

// attached is a container with an endpoint, released when the test ends.
func attached(t *testing.T, o Options) (*Endpoint, *ctr) {
	t.Helper()
	e, err := Setup(newID(t), o)
	require.NoError(t, err)
	c := startContainer(t)
	t.Cleanup(func() { assert.NoError(t, e.Release()) }) // after the container's kill: cleanups run last first
	require.NoError(t, e.Attach(c.pid))
	return e, c
}

// listenIn listens in the network namespace at path until the test ends.
func listenIn(t *testing.T, path, network, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	require.NoError(t, inNetns(path, func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	return ln
}

// serveGreeting answers each connection with "greeting, to <its source
// address>" and closes it.
func serveGreeting(ln net.Listener, greeting string) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		host, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
		fmt.Fprintf(conn, "%s, to %s", greeting, host)
		conn.Close()
	}
}

// dialFrom connects to addr from the network namespace at path ("": this
// one) and returns what the server sent (5 s at most).
func dialFrom(path, addr string) (string, error) {
	var conn net.Conn
	dial := func() (err error) {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}
	var err error
	if path == "" {
		err = dial()
	} else {
		err = inNetns(path, dial)
	}
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return "", err
	}
	data, err := io.ReadAll(conn)
	return string(data), err
}

// uplink gives this namespace (the host) an address, 198.18.0.1/24, on a
// veth to a namespace playing the internet (198.18.0.2), and drops what
// it forwards unless a rule accepts it, as docker hosts do. Returns the
// outside namespace's path.
func uplink(t *testing.T) string {
	t.Helper()
	out := startContainer(t)
	ns, err := netns.GetFromPid(out.pid)
	require.NoError(t, err)
	defer ns.Close()
	up := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink"}, PeerName: "uplink", PeerNamespace: netlink.NsFd(ns)}
	require.NoError(t, netlink.LinkAdd(up))
	t.Cleanup(func() { assert.NoError(t, deleteLink("uplink")) })
	require.NoError(t, netlink.AddrAdd(up, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(198, 18, 0, 1), Mask: net.CIDRMask(24, 32)}}))
	require.NoError(t, netlink.LinkSetUp(up))
	inside, err := netlink.NewHandleAt(ns)
	require.NoError(t, err)
	defer inside.Close()
	peer, err := inside.LinkByName("uplink")
	require.NoError(t, err)
	require.NoError(t, inside.AddrAdd(peer, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(198, 18, 0, 2), Mask: net.CIDRMask(24, 32)}}))
	require.NoError(t, inside.LinkSetUp(peer))
	lo, err := inside.LinkByName("lo")
	require.NoError(t, err)
	require.NoError(t, inside.LinkSetUp(lo))
	require.NoError(t, iptables("-P", "FORWARD", "DROP"))
	t.Cleanup(func() { assert.NoError(t, iptables("-P", "FORWARD", "ACCEPT")) })
	return out.nsPath()
}

// A published TCP port reaches the container's listener from the host,
// on its address and on 127.0.0.1, and from outside on the host's
// address (DNAT in OUTPUT and PREROUTING, FORWARD accepted under a DROP
// policy). -p 127.0.0.1:… publishes on that address only. -p 80 gets a
// free port of the ephemeral range.
func TestPublishedTCPPort(t *testing.T) {
	o := newOptions(t)
	outside := uplink(t)
	ports := []Port{mustPort(t, "8080:80"), mustPort(t, "127.0.0.1:8081:80"), mustPort(t, "80")}
	o.Ports = ports
	e, c := attached(t, o)
	require.Len(t, e.Ports, 3)
	random := e.Ports[2].HostPort
	assert.GreaterOrEqual(t, random, 1024, "-p 80: a host port of the ephemeral range")
	assert.Equal(t, 80, e.Ports[2].ContainerPort)
	assert.Len(t, containerRules(t, e.ID), 6, "a DNAT rule in PREROUTING and one in OUTPUT per port")
	ln := listenIn(t, c.nsPath(), "tcp", ":80")
	go serveGreeting(ln, "hello")

	for _, from := range []struct{ ns, addr string }{
		{"", "198.18.0.1:8080"},
		{"", "127.0.0.1:8080"},
		{"", "127.0.0.1:8081"},
		{"", "127.0.0.1:" + strconv.Itoa(random)},
		{outside, "198.18.0.1:8080"},
	} {
		got, err := dialFrom(from.ns, from.addr)
		if assert.NoError(t, err, "%s from %q", from.addr, from.ns) {
			assert.True(t, strings.HasPrefix(got, "hello, to "), "%s from %q: %q", from.addr, from.ns, got)
		}
	}
	_, err := dialFrom("", "198.18.0.1:8081")
	assert.Error(t, err, "-p 127.0.0.1:8081:80 published on the host's other address too")
	got, err := dialFrom(outside, "198.18.0.1:8080")
	require.NoError(t, err)
	assert.Equal(t, "hello, to 198.18.0.2", got, "DNAT keeps the outside's source address")
}

func mustPort(t *testing.T, s string) Port {
	t.Helper()
	p, err := ParsePort(s)
	require.NoError(t, err)
	return p
}

// --- Errors ------------------------------------------------------------------------------------

// A host port another container publishes is a clear error naming it,
// also across addresses (every address includes 127.0.0.1); nothing is
// left of the refused container. The other protocol is another port. A
// port a program of the host listens on is refused too.
func TestPortConflictIsAClearError(t *testing.T) {
	o := newOptions(t)
	first := o
	first.Ports = []Port{mustPort(t, "8080:80")}
	a, _ := attached(t, first)

	for _, spec := range []string{"8080:80", "127.0.0.1:8080:81"} {
		o.Ports = []Port{mustPort(t, spec)}
		id := newID(t)
		_, err := Setup(id, o)
		if assert.Error(t, err, spec) {
			assert.Contains(t, err.Error(), "8080/tcp", spec)
			assert.Contains(t, err.Error(), "already published by container "+a.ID, spec)
		}
		assert.Empty(t, containerRules(t, id), spec)
		require.Len(t, leasesOf(t, o), 1, "only the first container's lease")
	}
	o.Ports = []Port{mustPort(t, "8080:80/udp")}
	_, _ = attached(t, o)

	ln, err := net.Listen("tcp4", ":9090")
	require.NoError(t, err)
	defer ln.Close()
	o.Ports = []Port{mustPort(t, "9090:80")}
	_, err = Setup(newID(t), o)
	assert.ErrorContains(t, err, "host port 0.0.0.0:9090/tcp is in use by a program of the host")
	o.Ports = []Port{mustPort(t, "9091:80"), mustPort(t, "127.0.0.1:9091:81")}
	_, err = Setup(newID(t), o)
	assert.ErrorContains(t, err, "published twice")
	assert.Len(t, leasesOf(t, o), 2)
}

// A subnet that overlaps a route of the host is refused, and nothing is
// made: no bridge, no lease.
func TestSubnetOverlappingARouteIsRefused(t *testing.T) {
	o := newOptions(t)
	dummy := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "mbtest0"}, PeerName: "mbtest1"}
	require.NoError(t, netlink.LinkAdd(dummy))
	t.Cleanup(func() { assert.NoError(t, deleteLink("mbtest0")) })
	require.NoError(t, netlink.AddrAdd(dummy, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 89, 7, 1), Mask: net.CIDRMask(16, 32)}}))
	require.NoError(t, netlink.LinkSetUp(dummy))
	_, err := Setup(newID(t), o)
	assert.ErrorContains(t, err, "subnet 10.89.0.0/24 overlaps the route 10.89.0.0/16 dev mbtest0")
	_, err = netlink.LinkByName(o.Bridge)
	assert.ErrorAs(t, err, &netlink.LinkNotFoundError{}, "no bridge made")
	assert.Empty(t, leasesOf(t, o))
}

// Attach refuses a process in this very namespace (a container of the
// host network, a mistaken PID): eth0, the address and the default route
// would be the host's.
func TestAttachRefusesTheHostsNamespace(t *testing.T) {
	o := newOptions(t)
	e, err := Setup(newID(t), o)
	require.NoError(t, err)
	sleep := exec.Command("sleep", "60")
	require.NoError(t, sleep.Start())
	defer func() { _ = sleep.Process.Kill(); _ = sleep.Wait() }()
	err = e.Attach(sleep.Process.Pid)
	assert.ErrorContains(t, err, "is in this network namespace")
	_, err = netlink.LinkByName("eth0")
	assert.ErrorAs(t, err, &netlink.LinkNotFoundError{})
	assert.Empty(t, veths(t))
	require.NoError(t, e.Release())
}

// --- Concurrency, cycles, stale leases ------------------------------------------------------------

// Ten processes set up at once get ten distinct addresses, the lowest
// ten (.2 to .11), each leased to its own container; the bridge and its
// shared rules are made once.
func TestParallelSetupsFromManyProcesses(t *testing.T) {
	o := newOptions(t)
	const count = 10
	type child struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		id    string
		ip    string
	}
	children := make([]*child, count)
	var wg sync.WaitGroup
	for i := range children {
		c := &child{id: newID(t)}
		c.cmd = exec.Command(os.Args[0])
		c.cmd.Env = append(os.Environ(), helperEnv+"="+c.id, helperRootEnv+"="+o.Root)
		var err error
		c.stdin, err = c.cmd.StdinPipe()
		require.NoError(t, err)
		stdout, err := c.cmd.StdoutPipe()
		require.NoError(t, err)
		c.cmd.Stderr = os.Stderr
		require.NoError(t, c.cmd.Start())
		t.Cleanup(func() { _ = c.cmd.Process.Kill(); _ = c.cmd.Wait() })
		children[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if ip, ok := strings.CutPrefix(sc.Text(), "leased "); ok {
					c.ip = ip
				}
			}
		}()
	}
	require.Eventually(t, func() bool { return len(leasesOf(t, o)) == count }, 30*time.Second, 20*time.Millisecond)
	leased := map[string]string{}
	for _, l := range leasesOf(t, o) {
		leased[l.ID] = l.IP
	}
	want := map[string]bool{}
	for i := 2; i < 2+count; i++ {
		want[fmt.Sprintf("10.89.0.%d", i)] = true
	}
	got := map[string]bool{}
	for _, c := range children {
		got[leased[c.id[:12]]] = true
	}
	assert.Equal(t, want, got, "the addresses of %d containers set up at once", count)
	assert.Len(t, miniboxRules(t), 5, "the bridge's shared rules, once")
	for _, c := range children {
		require.NoError(t, c.stdin.Close()) // release, then exit
	}
	for _, c := range children {
		assert.NoError(t, c.cmd.Wait())
	}
	wg.Wait()
	for _, c := range children {
		assert.Equal(t, leased[c.id[:12]], c.ip, "the child's endpoint and its lease")
	}
}

// Fifty setup/attach/release cycles with a published port leave nothing:
// no veth, no container rule, no lease, the shared rules once, and each
// container gets .2 again, its port working.
func TestFiftyCyclesLeaveNothing(t *testing.T) {
	o := newOptions(t)
	o.Ports = []Port{mustPort(t, "8080:80")}
	for i := 0; i < 50; i++ {
		e, err := Setup(newID(t), o)
		require.NoError(t, err, "cycle %d", i)
		c := startContainer(t)
		require.NoError(t, e.Attach(c.pid), "cycle %d", i)
		assert.Equal(t, "10.89.0.2", e.IP.String(), "cycle %d", i)
		if i%10 == 0 { // the port works on a reused address (the MAC follows it)
			ln := listenIn(t, c.nsPath(), "tcp", ":80")
			go serveGreeting(ln, "cycle")
			got, err := dialFrom("", "127.0.0.1:8080")
			assert.NoError(t, err, "cycle %d", i)
			assert.Equal(t, "cycle, to 10.89.0.1", got, "cycle %d", i)
			ln.Close()
		}
		if i%2 == 0 {
			c.kill() // the container ends first, as it usually does
		}
		require.NoError(t, e.Release(), "cycle %d", i)
		c.kill()
	}
	assertNothingLeft(t, o)
	assert.Len(t, miniboxRules(t), 5, "the bridge's shared rules, once:\n%s", strings.Join(miniboxRules(t), "\n"))
}

// A lease whose owner died without Release (a SIGKILLed engine) is
// reclaimed by the next Setup, with its rules and veth: its address and
// its port are free again. A lease whose PID now belongs to another
// process (the start time differs), and stage 05's leases (no start
// time) of dead stages, are reclaimed too.
func TestStaleLeaseIsReclaimed(t *testing.T) {
	o := newOptions(t)
	o.Ports = []Port{mustPort(t, "8080:80")}
	dead, err := Setup(newID(t), o)
	require.NoError(t, err)
	c := startContainer(t)
	require.NoError(t, dead.Attach(c.pid))
	// Hold the container's namespace, as a bind mount of it would: its
	// veth outlives the process.
	hold, err := os.Open(c.nsPath())
	require.NoError(t, err)
	defer hold.Close()
	c.kill()
	require.Len(t, containerRules(t, dead.ID), 2)
	require.Contains(t, veths(t), dead.Veth)

	// Two more stale leases: a reused PID, and a dead stage 05's.
	me, err := processStart(os.Getpid())
	require.NoError(t, err)
	require.NoError(t, withLeases(o.Root, o.Bridge, func(list *[]lease) error {
		*list = append(*list,
			lease{IP: "10.89.0.3", ID: "0123456789ab", PID: os.Getpid(), Start: me + 1, Published: []Port{mustPort(t, "9000:90")}, Ports: []string{":9000/tcp"}},
			lease{IP: "10.89.0.4", ID: "ba9876543210", PID: c.pid, Ports: []string{":9001/tcp"}})
		return nil
	}))

	o.Ports = []Port{mustPort(t, "8080:80"), mustPort(t, "9000:90"), mustPort(t, "9001:91")}
	e, c2 := attached(t, o)
	assert.Equal(t, "10.89.0.2", e.IP.String(), "the dead container's address, free again")
	assert.Empty(t, containerRules(t, dead.ID), "the dead container's rules")
	assert.NotContains(t, veths(t), dead.Veth, "the dead container's veth")
	leases := leasesOf(t, o)
	require.Len(t, leases, 1)
	assert.Equal(t, e.ID, leases[0].ID)
	assert.Equal(t, c2.pid, leases[0].PID)
	assert.NoError(t, dead.Release(), "releasing what was reclaimed is fine")
	assert.Len(t, leasesOf(t, o), 1, "… and touches no other lease")
}

// Release can be called again, after the container is gone, and from an
// endpoint read back from the lease (Load) or from JSON (another process).
func TestReleaseIsIdempotent(t *testing.T) {
	o := newOptions(t)
	o.Ports = []Port{mustPort(t, "8080:80")}
	id := newID(t)
	e, err := Setup(id, o)
	require.NoError(t, err)
	c := startContainer(t)
	require.NoError(t, e.Attach(c.pid))

	loaded, err := Load(id, o)
	require.NoError(t, err)
	assert.Equal(t, e.IP.String(), loaded.IP.String())
	assert.Equal(t, e.Ports, loaded.Ports)
	data, err := json.Marshal(e)
	require.NoError(t, err)
	var fromJSON Endpoint
	require.NoError(t, json.Unmarshal(data, &fromJSON))

	require.NoError(t, fromJSON.Release())
	assert.Empty(t, containerRules(t, id))
	assert.Empty(t, leasesOf(t, o))
	assert.NotContains(t, veths(t), e.Veth)
	require.NoError(t, e.Release(), "a second time")
	c.kill()
	require.NoError(t, loaded.Release(), "after the container is gone")
	_, err = Load(id, o)
	assert.ErrorContains(t, err, "has no address")
}

// List shows docker's three networks, and the bridge's containers.
func TestList(t *testing.T) {
	o := newOptions(t)
	_, _ = attached(t, o)
	nets, err := List(o.Root)
	require.NoError(t, err)
	require.Len(t, nets, 3)
	assert.Equal(t, []string{"bridge", "host", "none"}, []string{nets[0].Name, nets[1].Name, nets[2].Name})
	assert.Equal(t, []string{"bridge", "host", "null"}, []string{nets[0].Driver, nets[1].Driver, nets[2].Driver})
	assert.Equal(t, "minibox0", nets[0].Bridge)
	assert.Equal(t, "10.89.0.0/24", nets[0].Subnet)
	assert.Equal(t, 1, nets[0].Containers)
	assert.Regexp(t, `^[0-9a-f]{64}$`, nets[0].ID)
	again, err := List(t.TempDir())
	require.NoError(t, err)
	assert.Equal(t, nets[0].ID, again[0].ID, "a network's ID is stable")
}

// A container never reaches the host's 127.0.0.0/8 (CVE-2020-8558), which
// route_localnet on the bridge (for -p on 127.0.0.1) would otherwise let
// in: a container that routes 127.0.0.0/8 via the gateway cannot connect
// to a host service on 127.0.0.1. The raw-table drop closes it; without
// that rule the same connection succeeds (checked, so the test can see
// the hole).
func TestContainerCannotReachTheHostsLoopback(t *testing.T) {
	o := newOptions(t)
	o.Ports = []Port{mustPort(t, "127.0.0.1:8080:80")} // route_localnet on
	e, c := attached(t, o)
	ln, err := net.Listen("tcp4", "127.0.0.2:7777") // a host service on loopback only (127.0.0.1 stays the container's own)
	require.NoError(t, err)
	defer ln.Close()
	go serveGreeting(ln, "host secret")
	routeLoopbackViaGateway(t, c, e.Gateway)

	_, err = dialFrom(c.nsPath(), "127.0.0.2:7777")
	var timeout net.Error
	assert.True(t, errors.As(err, &timeout) && timeout.Timeout(), "the container's SYN is not dropped: %v", err)

	_, subnet, _ := net.ParseCIDR(DefaultSubnet)
	drop := bridgeRules(o.Bridge, subnet)[4]
	require.Equal(t, "raw", drop.table)
	require.NoError(t, iptables(drop.args("-D")...))
	got, err := dialFrom(c.nsPath(), "127.0.0.2:7777")
	assert.NoError(t, err, "without the raw-table drop the hole is open (or this test no longer tests it)")
	assert.Contains(t, got, "host secret")
	require.NoError(t, ensureBridgeRules(o.Root, o.Bridge, subnet), "the drop again")
}

// routeLoopbackViaGateway makes the container send 127.0.0.0/8 to the
// host, as a hostile container could: its own loopback route removed, a
// route via the gateway instead, route_localnet on its eth0.
func routeLoopbackViaGateway(t *testing.T, c *ctr, gw net.IP) {
	t.Helper()
	ns, err := netns.GetFromPath(c.nsPath())
	require.NoError(t, err)
	defer ns.Close()
	inside, err := netlink.NewHandleAt(ns)
	require.NoError(t, err)
	defer inside.Close()
	lo, err := inside.LinkByName("lo")
	require.NoError(t, err)
	eth0, err := inside.LinkByName("eth0")
	require.NoError(t, err)
	loopback := &net.IPNet{IP: net.IPv4(127, 0, 0, 0).To4(), Mask: net.CIDRMask(8, 32)}
	require.NoError(t, inside.RouteDel(&netlink.Route{Dst: loopback, Table: unix.RT_TABLE_LOCAL, Type: unix.RTN_LOCAL,
		LinkIndex: lo.Attrs().Index, Scope: netlink.SCOPE_HOST, Src: net.IPv4(127, 0, 0, 1)}))
	require.NoError(t, inside.RouteAdd(&netlink.Route{Dst: loopback, Gw: gw, LinkIndex: eth0.Attrs().Index}))
	require.NoError(t, inNetns(c.nsPath(), func() error {
		return os.WriteFile("/proc/sys/net/ipv4/conf/eth0/route_localnet", []byte("1"), 0)
	}))
}
