package stagetest

// Stage 05 adds the network: a bridge on the host, a veth pair per
// container (eth0 inside), an address from the IPAM, a default route,
// MASQUERADE on the way out and DNAT for published ports (-p).
//
// A stage 05 run changes the network namespace it runs in, so no test here
// runs one in the machine's own. Each test makes two network namespaces
// (testNet): one plays the host (`ip netns add minibox-test-…`), where the
// stage runs (`ip netns exec`) and makes its bridge and rules; the other
// plays the internet ("outside"), joined to the host by a veth pair, with
// an address of the benchmarking range 198.18.0.0/15, which is never
// routed on the internet. Traffic goes only between these namespaces and
// the containers'. Both are deleted when the test ends, also when it
// fails; TestMain checks that the machine's own links, addresses, routes
// and iptables rules are unchanged after the whole package.
//
// busybox nc in the demo rootfs has no UDP mode (-u), so the UDP test's
// server is a socket the test opens in the container's network namespace
// (/proc/PID/ns/net): what -p publishes is that namespace's port.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/internal/rootfs"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// The stage's defaults, and the addresses of the test's two namespaces.
const (
	bridgeName  = "minibox0"
	gatewayAddr = "10.89.0.1"
	hostAddr    = "198.18.0.1" // the "host"'s own address, on its uplink
	outsideAddr = "198.18.0.2" // the "internet"'s
)

// --- Addresses and routes ------------------------------------------------------------

// Inside, eth0 has an address of the subnet (the lowest free one: the
// first container gets .2) and the default route goes via the gateway,
// .1, which is the bridge's address on the host, where the container's
// veth end is a port of the bridge. lo is up. /etc/hosts and
// /etc/hostname name the container; the rootfs's own files do not change.
func TestStage05AddressAndRoute(t *testing.T) {
	forEachStage(t, "05", func(t *testing.T, stage string) {
		n := newTestNet(t)
		hostsBefore := fileContent(t, filepath.Join(rootfsDir, "etc", "hosts"))
		c := n.start(t, stage, "run", rootfsDir, "--", "sh", "-c",
			`ip -o link; echo ---; ip -4 -o addr show dev eth0; ip route; echo "id $(hostname)"; cat /etc/hostname /etc/hosts; echo ready; exec sleep 60`)
		links, out, _ := strings.Cut(c.readUntil(t, "ready"), "---\n")
		assert.ElementsMatch(t, []string{"lo", "eth0"}, linkNames(links))
		assert.Regexp(t, `(?m)^\d+: lo: <[^>]*\bUP\b`, links, "lo is up")
		assert.Regexp(t, `(?m)^\d+: eth0@\S+ <[^>]*\bUP\b`, links, "eth0 is up")
		assert.Regexp(t, `(?m)^\d+: eth0\s+inet 10\.89\.0\.2/24 `, out, "the first container's address")
		assert.Regexp(t, `(?m)^default via `+regexp.QuoteMeta(gatewayAddr)+` dev eth0`, out)
		id := match(t, `(?m)^id ([0-9a-f]{12})$`, out)
		assert.Regexp(t, `(?m)^`+id+`\n127\.0\.0\.1\s+localhost\n10\.89\.0\.2\s+`+id+`$`, out, "/etc/hostname, /etc/hosts")

		// On the host: the bridge, with the gateway's address, and the
		// container's end of the veth on it.
		br := n.output(t, n.host, "ip", "-4", "-o", "addr", "show", "dev", bridgeName)
		assert.Contains(t, br, "inet "+gatewayAddr+"/24 ", "the bridge's address")
		veth := "mbx" + id[:8]
		assert.Contains(t, n.output(t, n.host, "ip", "-o", "link", "show", "master", bridgeName), ": "+veth+"@",
			"the container's veth end is a port of the bridge")
		assert.Equal(t, "1", strings.TrimSpace(n.output(t, n.host, "cat", "/proc/sys/net/ipv4/ip_forward")))
		c.kill(t)
		assert.Equal(t, hostsBefore, fileContent(t, filepath.Join(rootfsDir, "etc", "hosts")), "the rootfs's /etc/hosts changed")
		n.assertNothingLeft(t)

		// --bridge and --subnet: another bridge, another subnet.
		res := n.run(t, stage, "run", "--bridge", "miniboxt1", "--subnet", "10.90.7.0/24", rootfsDir, "--", "sh", "-c",
			"ip -4 -o addr show dev eth0; ip route")
		require.Equal(t, 0, res.code, res.stderr)
		assert.Regexp(t, `(?m)^\d+: eth0\s+inet 10\.90\.7\.2/24 `, res.stdout)
		assert.Regexp(t, `(?m)^default via 10\.90\.7\.1 dev eth0`, res.stdout)
		assert.Contains(t, n.output(t, n.host, "ip", "-4", "-o", "addr", "show", "dev", "miniboxt1"), "inet 10.90.7.1/24 ")
	})
}

// --- Traffic ----------------------------------------------------------------------------

// Two containers on the bridge reach each other: ping, and TCP both ways
// (busybox nc): A answers the line B sends, quoting it. B starts once A
// listens (A's namespace's /proc/net/tcp says so).
func TestStage05ContainersTalk(t *testing.T) {
	forEachStage(t, "05", func(t *testing.T, stage string) {
		n := newTestNet(t)
		a := n.start(t, stage, "run", rootfsDir, "--", "sh", "-c",
			`ip -4 -o addr show dev eth0; exec nc -l -p 7000 -e sh -c 'read line; echo "from-a got $line"'`)
		addrA := match(t, `inet (10\.89\.0\.\d+)/24`, a.waitForMatch(t, `inet 10\.89\.0\.\d+/24`))
		waitListening(t, a.pid(t), 7000)

		res := n.run(t, stage, "run", rootfsDir, "--", "sh", "-c",
			"ping -c 1 -W 5 "+addrA+" >/dev/null && echo ping ok; echo from-b | nc "+addrA+" 7000")
		assert.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, "ping ok\nfrom-a got from-b\n", res.stdout, "B pinged A, and A read B's line and answered")
		resA := a.wait(t)
		assert.Equal(t, 0, resA.code, resA.stderr)
		n.assertNothingLeft(t)
	})
}

// -p publishes a container's TCP port on the host: busybox httpd inside,
// fetched from the host on its own address and on 127.0.0.1 (DNAT in
// OUTPUT, route_localnet and the MASQUERADE of 127.0.0.0/8 make that one
// work), and from the outside on the host's address (DNAT in PREROUTING).
// With an IP (-p 127.0.0.1:…) the port is published on that address only.
func TestStage05PublishedTCPPort(t *testing.T) {
	forEachStage(t, "05", func(t *testing.T, stage string) {
		n := newTestNet(t)
		c := n.start(t, stage, "run", "-p", "8080:80", "-p", "127.0.0.1:8081:80", rootfsDir, "--", "sh", "-c",
			`mkdir /tmp/www && echo "hello from $(hostname)" >/tmp/www/index.html && echo ready && exec httpd -f -p 80 -h /tmp/www`)
		c.waitFor(t, "ready")
		id := containerOfStage(t, os.Getenv("MINIBOX_ROOT"), c.cmd.Process.Pid)
		waitListening(t, c.pid(t), 80)
		want := "hello from " + id + "\n"

		for _, from := range []struct{ ns, url string }{
			{n.host, "http://" + hostAddr + ":8080/"},
			{n.host, "http://127.0.0.1:8080/"},
			{n.host, "http://127.0.0.1:8081/"},
			{n.outside, "http://" + hostAddr + ":8080/"},
		} {
			out, err := n.fetch(from.ns, from.url)
			if assert.NoError(t, err, "GET %s from %s", from.url, from.ns) {
				assert.Equal(t, want, out, "GET %s from %s", from.url, from.ns)
			}
		}
		_, err := n.fetch(n.host, "http://"+hostAddr+":8081/")
		assert.Error(t, err, "-p 127.0.0.1:8081:80 published the port on the host's other address")

		rules := n.containerRules(t, id)
		assert.Len(t, rules, 4, "a DNAT rule in PREROUTING and one in OUTPUT per port:\n%s", strings.Join(rules, "\n"))
		c.kill(t)
		n.assertNothingLeft(t)
	})
}

// -p …/udp publishes a UDP port, on the host's address and on 127.0.0.1.
// The server is a socket of the test's in the container's namespace: it
// answers each datagram with "echo: " and the datagram.
func TestStage05PublishedUDPPort(t *testing.T) {
	forEachStage(t, "05", func(t *testing.T, stage string) {
		n := newTestNet(t)
		c := n.start(t, stage, "run", "-p", "5353:53/udp", rootfsDir, "--", "sh", "-c", "echo ready; exec sleep 60")
		c.waitFor(t, "ready")
		stop := serveUDPEcho(t, fmt.Sprintf("/proc/%d/ns/net", c.pid(t)), ":53")

		for _, addr := range []string{hostAddr + ":5353", "127.0.0.1:5353"} {
			got, err := udpRoundTrip(n.nsPath(n.host), addr, "ping "+addr)
			if assert.NoError(t, err, "UDP to %s from the host", addr) {
				assert.Equal(t, "echo: ping "+addr, got)
			}
		}
		got, err := udpRoundTrip(n.nsPath(n.outside), hostAddr+":5353", "from outside")
		if assert.NoError(t, err, "UDP to the host's address from the outside") {
			assert.Equal(t, "echo: from outside", got)
		}
		stop()
		c.kill(t)
		n.assertNothingLeft(t)
	})
}

// A container reaches the "internet" through MASQUERADE: the server there
// sees the host's address, not the container's (it has no route back to
// the subnet: without MASQUERADE the answer could not come back at all).
func TestStage05Masquerade(t *testing.T) {
	forEachStage(t, "05", func(t *testing.T, stage string) {
		n := newTestNet(t)
		ln := listenIn(t, n.nsPath(n.outside), "tcp", outsideAddr+":8080")
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			fmt.Fprintf(w, "you are %s\n", host)
		}), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })

		res := n.run(t, stage, "run", rootfsDir, "--", "sh", "-c",
			"ip -4 -o addr show dev eth0; timeout 10 wget -q -O - http://"+outsideAddr+":8080/")
		require.Equal(t, 0, res.code, res.stderr)
		assert.Regexp(t, `inet 10\.89\.0\.\d+/24`, res.stdout)
		assert.Contains(t, res.stdout, "you are "+hostAddr+"\n", "the outside saw this source address")
		n.assertNothingLeft(t)
	})
}

// --- IPAM -----------------------------------------------------------------------------

// Twenty containers started at once get twenty addresses, the lowest
// twenty free (.2 to .21), each leased in the IPAM file to its own
// container; when they end, every lease and veth goes.
func TestStage05ParallelStartsGetDistinctAddresses(t *testing.T) {
	forEachStage(t, "05", func(t *testing.T, stage string) {
		const count = 20
		n := newTestNet(t)
		root := os.Getenv("MINIBOX_ROOT")
		var cs []*container
		for i := 0; i < count; i++ {
			cs = append(cs, n.start(t, stage, "run", rootfsDir, "--", "sh", "-c",
				`echo "addr $(hostname) $(ip -4 -o addr show dev eth0)"; exec sleep 60`))
		}
		addrs := map[string]string{} // id → address
		var got []string
		for _, c := range cs {
			line := c.waitForMatch(t, `^addr `)
			m := regexp.MustCompile(`^addr ([0-9a-f]{12}) .*inet (10\.89\.0\.\d+)/24 `).FindStringSubmatch(line)
			require.NotNil(t, m, "no address in %q", line)
			addrs[m[1]] = m[2]
			got = append(got, m[2])
		}
		var want []string
		for i := 2; i < 2+count; i++ {
			want = append(want, fmt.Sprintf("10.89.0.%d", i))
		}
		assert.ElementsMatch(t, want, got, "the addresses of %d containers started at once", count)

		leased := map[string]string{}
		for _, l := range n.leases(t, root, bridgeName) {
			leased[l.ID] = l.IP
		}
		assert.Equal(t, addrs, leased, "the IPAM file's leases")
		for _, c := range cs {
			c.kill(t)
		}
		n.assertNothingLeft(t)
	})
}

// --- Clean-up ----------------------------------------------------------------------------

// However a container ends, its network goes with it: no veth, no rule of
// its own (iptables-save | grep minibox:<id>), no lease. After a normal
// exit, a command that cannot run, a child that fails, SIGTERM or Ctrl-C
// (SIGINT) to the stage; and after SIGKILL of the stage, which can clean up nothing, once
// `minibox cleanup` has run (in the host's namespace), which also removes
// the bridge and its shared rules when no container uses them.
func TestStage05NothingLeftAfterAnyEnd(t *testing.T) {
	forEachStage(t, "05", func(t *testing.T, stage string) {
		n := newTestNet(t)
		root := os.Getenv("MINIBOX_ROOT")
		publish := []string{"run", "-p", "8080:80", "-p", "5353:53/udp"}

		res := n.run(t, stage, append(publish, rootfsDir, "--", "true")...)
		assert.Equal(t, 0, res.code, res.stderr)
		n.assertNothingLeft(t)

		res = n.run(t, stage, append(publish, rootfsDir, "--", "no-such-command")...)
		assert.Equal(t, 127, res.code, res.stderr)
		n.assertNothingLeft(t)

		res = n.run(t, stage, append(publish, t.TempDir(), "--", "true")...) // no /proc to mount on
		assert.Equal(t, 1, res.code, res.stderr)
		n.assertNothingLeft(t)

		for _, sig := range []unix.Signal{unix.SIGTERM, unix.SIGINT} {
			c := n.start(t, stage, append(publish, rootfsDir, "--", "sh", "-c", "echo ready; exec sleep 60")...)
			c.waitFor(t, "ready")
			n.assertNetworkOf(t, containerOfStage(t, root, c.cmd.Process.Pid), 4)
			require.NoError(t, c.cmd.Process.Signal(sig))
			assert.Equal(t, 137, c.wait(t).code, "%v: %s", sig, &c.stderr)
			n.assertNothingLeft(t)
		}

		// SIGKILL: the stage cannot clean up. Its container dies with it
		// (and the veth with the container's namespace); its rules and its
		// lease stay until minibox cleanup.
		c := n.start(t, stage, append(publish, rootfsDir, "--", "sh", "-c", "echo ready; exec sleep 60")...)
		c.waitFor(t, "ready")
		id := containerOfStage(t, root, c.cmd.Process.Pid)
		n.assertNetworkOf(t, id, 4)
		pid1 := c.pid(t)
		require.NoError(t, c.cmd.Process.Kill())
		c.wait(t)
		require.Eventually(t, func() bool { return !running(pid1) }, 10*time.Second, 20*time.Millisecond, "the container outlived its killed stage")
		assert.NotEmpty(t, n.containerRules(t, id), "a killed stage's rules (or this test no longer tests cleanup)")

		res = n.cleanup(t, root)
		t.Logf("minibox cleanup:\n%s%s", res.stdout, res.stderr)
		assert.Equal(t, 0, res.code, "minibox cleanup's status")
		n.assertNothingLeft(t)
		assert.NotContains(t, n.linkNames(t), bridgeName, "cleanup left the bridge, which no container uses")
		assert.Empty(t, n.miniboxRules(t), "cleanup left rules tagged minibox:*")
		assert.Empty(t, containerDirs(t, root), "cleanup left the killed stage's container directory")
	})
}

// A host port that a live container publishes already is a clear error
// naming the port and that container; nothing is made for the second one,
// whose command does not run. The same port number for the other protocol
// is another port.
func TestStage05PortAlreadyPublishedIsAClearError(t *testing.T) {
	forEachStage(t, "05", func(t *testing.T, stage string) {
		n := newTestNet(t)
		root := os.Getenv("MINIBOX_ROOT")
		a := n.start(t, stage, "run", "-p", "8080:80", rootfsDir, "--", "sh", "-c", "echo ready; exec sleep 60")
		a.waitFor(t, "ready")
		idA := containerOfStage(t, root, a.cmd.Process.Pid)
		links, rules, leases := n.linkNames(t), n.miniboxRules(t), n.leases(t, root, bridgeName)

		res := n.run(t, stage, "run", "-p", "8080:80", rootfsDir, "--", "echo", "the command ran")
		assert.Equal(t, 1, res.code, res.stderr)
		assert.Contains(t, res.stderr, "8080")
		assert.Contains(t, res.stderr, idA, "the error names the container that publishes the port")
		assert.NotContains(t, res.stdout, "the command ran")
		assert.Equal(t, links, n.linkNames(t), "links made for the refused container")
		assert.Equal(t, rules, n.miniboxRules(t), "rules made for the refused container")
		assert.Equal(t, leases, n.leases(t, root, bridgeName), "a lease made for the refused container")

		res = n.run(t, stage, "run", "-p", "8080:80/udp", rootfsDir, "--", "echo", "the command ran")
		assert.Equal(t, 0, res.code, "UDP port 8080 is free: %s", res.stderr)
		a.kill(t)
		n.assertNothingLeft(t)
	})
}

// A -p, --net or --subnet that makes no sense is a usage error (2) naming
// the value, before anything is made.
func TestStage05BadNetworkFlagsAreClearErrors(t *testing.T) {
	forEachStage(t, "05", func(t *testing.T, stage string) {
		n := newTestNet(t)
		root := os.Getenv("MINIBOX_ROOT")
		for _, bad := range []struct {
			flags []string
			named string // what the error must name
		}{
			{[]string{"-p", "99999:80"}, "99999:80"},
			{[]string{"-p", "80"}, "80"},
			{[]string{"-p", "8080:0"}, "8080:0"},
			{[]string{"-p", "x:80"}, "x:80"},
			{[]string{"-p", "80:80/sctp"}, "80:80/sctp"},
			{[]string{"-p", "300.1.1.1:80:80"}, "300.1.1.1"},
			{[]string{"--net", "host"}, "host"},
			{[]string{"--net", "none", "-p", "8080:80"}, "none"},
			{[]string{"--subnet", "10.89.0.0"}, "10.89.0.0"},
			{[]string{"--subnet", "10.89.0.0/31"}, "10.89.0.0/31"},
			{[]string{"--subnet", "fd00::/64"}, "fd00::/64"},
			{[]string{"--bridge", "eth0"}, "eth0"}, // cleanup knows minibox's bridges by their name
			{[]string{"--bridge", "minibox+"}, "minibox+"},
		} {
			res := n.run(t, stage, append(append([]string{"run"}, bad.flags...), rootfsDir, "--", "echo", "the command ran")...)
			assert.Equal(t, 2, res.code, "%v: %s", bad.flags, res.stderr)
			assert.Contains(t, res.stderr, bad.named, "%v: the error names the value", bad.flags)
			assert.NotContains(t, res.stdout, "the command ran", "%v", bad.flags)
		}
		assert.NotContains(t, n.linkNames(t), bridgeName, "a bad flag made the bridge")
		assert.Empty(t, n.miniboxRules(t), "a bad flag made rules")
		assert.Empty(t, n.leases(t, root, bridgeName), "a bad flag leased an address")
	})
}

// --net none: lo only, up, and nothing made on the host: no bridge, no
// rule, no lease, forwarding left off.
func TestStage05NetNoneHasOnlyLoopback(t *testing.T) {
	forEachStage(t, "05", func(t *testing.T, stage string) {
		n := newTestNet(t)
		root := os.Getenv("MINIBOX_ROOT")
		res := n.run(t, stage, "run", "--net", "none", rootfsDir, "--", "sh", "-c", "ip -o link; ping -c 1 -W 2 127.0.0.1 >/dev/null && echo lo works")
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, []string{"lo"}, linkNames(res.stdout))
		assert.Regexp(t, `(?m)^\d+: lo: <[^>]*\bUP\b`, res.stdout, "lo is up")
		assert.Contains(t, res.stdout, "lo works\n")

		assert.Equal(t, []string{"lo", "uplink"}, n.linkNames(t), "links made on the host")
		assert.Empty(t, n.miniboxRules(t), "rules made on the host")
		assert.Empty(t, n.leases(t, root, bridgeName), "an address leased")
		assert.Equal(t, "0", strings.TrimSpace(n.output(t, n.host, "cat", "/proc/sys/net/ipv4/ip_forward")), "forwarding turned on")
	})
}

// A subnet that overlaps a route of the host would make its addresses
// ambiguous: refused, naming the route, before anything is made. The
// host's default route does not count (every host has one), and another
// subnet works.
func TestStage05OverlappingSubnetIsRefused(t *testing.T) {
	forEachStage(t, "05", func(t *testing.T, stage string) {
		n := newTestNet(t)
		root := os.Getenv("MINIBOX_ROOT")
		n.output(t, n.host, "ip", "route", "add", "10.89.0.0/16", "via", outsideAddr)

		res := n.run(t, stage, "run", rootfsDir, "--", "echo", "the command ran")
		assert.Equal(t, 1, res.code, res.stderr)
		assert.Contains(t, res.stderr, "10.89.0.0/16", "the error names the route")
		assert.NotContains(t, res.stdout, "the command ran")
		assert.NotContains(t, n.linkNames(t), bridgeName, "the bridge was made")
		assert.Empty(t, n.miniboxRules(t), "rules were made")
		assert.Empty(t, n.leases(t, root, bridgeName), "an address is leased")

		res = n.run(t, stage, "run", "--bridge", "miniboxt2", "--subnet", "10.91.0.0/24", rootfsDir, "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0")
		assert.Equal(t, 0, res.code, "with a default route on the host: %s", res.stderr)
		assert.Contains(t, res.stdout, "inet 10.91.0.2/24 ")
	})
}

// --- Narration -------------------------------------------------------------------------

// With -v the network's steps are narrated in their order: in the parent,
// the lease, the bridge, forwarding, the shared rules and the container's
// DNAT rules, and its init layer on top of the others; after the clone,
// the veth, its end moved into the child's namespace, renamed eth0, the
// address, the route; only then the child's own first step (the hostname)
// and, last, the exec. After the exit, the rules deleted and the lease
// released.
func TestStage05Narrates(t *testing.T) {
	forEachStage(t, "05", func(t *testing.T, stage string) {
		n := newTestNet(t)
		res := n.run(t, stage, "run", "-v", "-p", "8080:80", rootfsDir, "--", "echo", "narrated")
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, "narrated\n", res.stdout)
		steps := narration(res.stderr)
		id := match(t, `(?m)^\+ hostname ([0-9a-f]{12})$`, res.stderr)
		dnat := `-p tcp .*--dport 8080 .*-j DNAT --to-destination 10\.89\.0\.2:80 .*minibox:` + id
		at := assertMatchInOrder(t, steps,
			`^\+ # lease 10\.89\.0\.2 `,
			`^\+ ip link add minibox0 type bridge$`,
			`^\+ ip addr add 10\.89\.0\.1/24 dev minibox0$`,
			`^\+ ip link set minibox0 up$`,
			`^\+ sysctl -w net\.ipv4\.ip_forward=1$`,
			`^\+ iptables .*-s 10\.89\.0\.0/24 .*-j MASQUERADE .*minibox:minibox0$`,
			`^\+ iptables -t nat -A PREROUTING `+dnat+`$`,
			`^\+ iptables -t nat -A OUTPUT `+dnat+`$`,
			`^\+ ln -s \S+/containers/`+id+`/init \S+/containers/`+id+`/lower/1$`,
			`^\+ mount -t overlay overlay -o lowerdir=1:0,`,
			`^\+ unshare `,
			`^\+ ip link add mbx`+id[:8]+` .*type veth`,
			`^\+ ip link set \S+ netns \d+$`,
			`ip link set \S+ name eth0$`,
			`ip addr add 10\.89\.0\.2/24 dev eth0$`,
			`ip route add default via 10\.89\.0\.1$`,
			`^\+ hostname `+id+`$`,
			`^\+ exec echo narrated$`,
			`^\+ iptables -t nat -D PREROUTING `+dnat+`$`,
			`^\+ iptables -t nat -D OUTPUT `+dnat+`$`,
			`^\+ # release 10\.89\.0\.2$`,
		)
		// The child's first step comes after every step that makes its
		// network: it waited on the init pipe.
		if route, hostname := at[15], at[16]; route >= 0 && hostname >= 0 {
			for _, s := range steps[hostname:] {
				assert.NotRegexp(t, `^\+ (nsenter .*)?ip (link|addr|route) (add|set) `, s,
					"a network step after the child went on:\n%s", strings.Join(steps, "\n"))
			}
		}
		n.assertNothingLeft(t)
	})
}

// --- Helpers ---------------------------------------------------------------------------

// A testNet is a test's two network namespaces: host, where the stage
// runs, and outside, the "internet", joined to host by a veth pair
// (uplink in both), host at 198.18.0.1, outside at 198.18.0.2. The host
// has a default route via the outside, as a real host has one, and drops
// what it forwards unless a rule accepts it.
type testNet struct {
	host, outside string // ip netns names
	busybox       string // the host's, for wget
}

var testNets atomic.Int32

// newTestNet makes the two namespaces, deleted when the test ends.
func newTestNet(t *testing.T) *testNet {
	t.Helper()
	for _, tool := range []string{"ip", "iptables", "iptables-save", "nsenter"} {
		_, err := exec.LookPath(tool)
		testenv.Require(t, err == nil, "stage 05's tests need "+tool+" (Debian packages iproute2, iptables, util-linux)")
	}
	busybox, err := rootfs.FindStaticBusybox()
	require.NoError(t, err)
	name := fmt.Sprintf("minibox-test-%d-%d", os.Getpid(), testNets.Add(1))
	n := &testNet{host: name, outside: name + "-out", busybox: busybox}
	for _, ns := range []string{n.host, n.outside} {
		n.ip(t, "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
		n.ip(t, "-n", ns, "link", "set", "lo", "up")
	}
	n.ip(t, "-n", n.host, "link", "add", "uplink", "type", "veth", "peer", "name", "uplink", "netns", n.outside)
	n.ip(t, "-n", n.host, "addr", "add", hostAddr+"/24", "dev", "uplink")
	n.ip(t, "-n", n.outside, "addr", "add", outsideAddr+"/24", "dev", "uplink")
	n.ip(t, "-n", n.host, "link", "set", "uplink", "up")
	n.ip(t, "-n", n.outside, "link", "set", "uplink", "up")
	n.ip(t, "-n", n.host, "route", "add", "default", "via", outsideAddr)
	// A host that forwards nothing unless told to, as many do (docker
	// sets this policy itself): the stage's own FORWARD rules must do.
	n.output(t, n.host, "iptables", "-P", "FORWARD", "DROP")
	return n
}

// ip runs ip(8) with args, which must succeed.
func (n *testNet) ip(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	require.NoError(t, err, "ip %s: %s", strings.Join(args, " "), out)
}

// nsPath is the file of a namespace of the test's.
func (n *testNet) nsPath(ns string) string { return "/run/netns/" + ns }

// output runs argv in namespace ns and returns its output; it must succeed.
func (n *testNet) output(t *testing.T, ns string, argv ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...).CombinedOutput()
	require.NoError(t, err, "in %s: %s: %s", ns, strings.Join(argv, " "), out)
	return string(out)
}

// run runs the stage in the host namespace (ip netns exec, which execs:
// the stage keeps the PID).
func (n *testNet) run(t *testing.T, stage string, args ...string) result {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", n.host, stage}, args...)...)
}

// start runs the stage in the host namespace in the background.
func (n *testNet) start(t *testing.T, stage string, args ...string) *container {
	t.Helper()
	return startContainer(t, "ip", append([]string{"netns", "exec", n.host, stage}, args...)...)
}

// cleanup runs `minibox cleanup --root ROOT` in the host's network
// namespace only (nsenter --net: its unmounts, if any, must reach the
// machine's mount table, which ip netns exec's mount namespace would not).
func (n *testNet) cleanup(t *testing.T, root string) result {
	t.Helper()
	return run(t, "nsenter", "--net="+n.nsPath(n.host), "--", miniboxCLI(t), "cleanup", "--root", root)
}

// fetch GETs url from namespace ns with busybox wget, or says why not.
// (Not wget -T: busybox 1.35's segfaults. The context kills it instead.)
func (n *testNet) fetch(ns, url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, n.busybox, "wget", "-q", "-O", "-", url).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("wget %s: %v: %s", url, err, out)
	}
	return string(out), nil
}

// linkNames are the names of the host namespace's links, sorted.
func (n *testNet) linkNames(t *testing.T) []string {
	t.Helper()
	names := linkNames(n.output(t, n.host, "ip", "-o", "link"))
	sort.Strings(names)
	return names
}

// miniboxRules are the host namespace's iptables rules tagged minibox:*.
func (n *testNet) miniboxRules(t *testing.T) []string {
	t.Helper()
	var rules []string
	for _, line := range strings.Split(n.output(t, n.host, "iptables-save"), "\n") {
		if strings.Contains(line, "minibox:") {
			rules = append(rules, line)
		}
	}
	return rules
}

// containerRules are the rules tagged minibox:<id>.
func (n *testNet) containerRules(t *testing.T, id string) []string {
	t.Helper()
	var rules []string
	tag := regexp.MustCompile(`minibox:` + id + `\b`)
	for _, r := range n.miniboxRules(t) {
		if tag.MatchString(r) {
			rules = append(rules, r)
		}
	}
	return rules
}

// An ipamLease is one lease of the stage's IPAM file.
type ipamLease struct {
	IP string `json:"ip"`
	ID string `json:"id"`
}

// leases reads $ROOT/network/<bridge>.json (none if it does not exist).
func (n *testNet) leases(t *testing.T, root, bridge string) []ipamLease {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "network", bridge+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	var list []ipamLease
	require.NoError(t, json.Unmarshal(data, &list), "%s", data)
	return list
}

// assertNetworkOf checks a running container's network on the host: its
// veth, rules rules of its own, its lease.
func (n *testNet) assertNetworkOf(t *testing.T, id string, rules int) {
	t.Helper()
	assert.Contains(t, n.linkNames(t), "mbx"+id[:8], "the container's veth")
	assert.Len(t, n.containerRules(t, id), rules, "the container's rules")
	var ids []string
	for _, l := range n.leases(t, os.Getenv("MINIBOX_ROOT"), bridgeName) {
		ids = append(ids, l.ID)
	}
	assert.Contains(t, ids, id, "the container's lease")
}

// assertNothingLeft checks that no container's network is left in the host
// namespace: no veth (mbx…), no rule tagged with a container's id, no
// lease. (The bridge and its rules, minibox:<bridge>, stay.) A veth goes
// with the container's namespace, which the kernel tears down a moment
// after the last process: it is given a few seconds.
func (n *testNet) assertNothingLeft(t *testing.T) {
	t.Helper()
	veths := func() []string {
		var out []string
		for _, l := range n.linkNames(t) {
			if strings.HasPrefix(l, "mbx") {
				out = append(out, l)
			}
		}
		return out
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(veths()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	assert.Empty(t, veths(), "veths left on the host")
	var perContainer []string
	for _, r := range n.miniboxRules(t) {
		if regexp.MustCompile(`minibox:[0-9a-f]{12}\b`).MatchString(r) {
			perContainer = append(perContainer, r)
		}
	}
	assert.Empty(t, perContainer, "a container's rules left on the host")
	assert.Empty(t, n.leases(t, os.Getenv("MINIBOX_ROOT"), bridgeName), "leases left")
}

// readUntil reads the container's output until a line equals want, and
// returns the lines before it.
func (c *container) readUntil(t *testing.T, want string) string {
	t.Helper()
	var b strings.Builder
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatalf("the container ended before printing %q; stderr: %s", want, c.wait(t).stderr)
			}
			if line == want {
				return b.String()
			}
			b.WriteString(line + "\n")
		case <-timeout:
			t.Fatalf("no %q from the container after 30s", want)
		}
	}
}

// waitForMatch reads the container's output until a line matches pattern,
// and returns that line.
func (c *container) waitForMatch(t *testing.T, pattern string) string {
	t.Helper()
	re := regexp.MustCompile(pattern)
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatalf("the container ended before printing a line matching %q; stderr: %s", pattern, c.wait(t).stderr)
			}
			if re.MatchString(line) {
				return line
			}
		case <-timeout:
			t.Fatalf("no line matching %q from the container after 30s", pattern)
		}
	}
}

// match returns the first group of pattern in s, which must match.
func match(t *testing.T, pattern, s string) string {
	t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(s)
	require.NotNil(t, m, "no %q in:\n%s", pattern, s)
	return m[1]
}

// assertMatchInOrder checks that steps has a step matching each pattern,
// in this order, and returns the index of each (-1: missing).
func assertMatchInOrder(t *testing.T, steps []string, patterns ...string) []int {
	t.Helper()
	at := make([]int, len(patterns))
	for i := range at {
		at[i] = -1
	}
	next := 0
	for i, p := range patterns {
		re := regexp.MustCompile(p)
		for j := next; j < len(steps); j++ {
			if re.MatchString(steps[j]) {
				at[i], next = j, j+1
				break
			}
		}
		if at[i] < 0 {
			t.Errorf("no step matching %q after the step matching %q; the steps were:\n%s",
				p, patterns[max(i-1, 0)], strings.Join(steps, "\n"))
			return at
		}
	}
	return at
}

// waitListening waits until a TCP socket of process pid's network
// namespace listens on port, IPv4 or IPv6 (busybox's servers listen on
// "::"): /proc/PID/net/tcp and tcp6, state 0A (LISTEN).
func waitListening(t *testing.T, pid, port int) {
	t.Helper()
	want := regexp.MustCompile(fmt.Sprintf(`(?m)^\s*\d+: [0-9A-F]+:%04X [0-9A-F]+:[0-9A-F]+ 0A `, port))
	require.Eventually(t, func() bool {
		for _, table := range []string{"tcp", "tcp6"} {
			data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
			if err == nil && want.Match(data) {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "nothing listens on TCP port %d in process %d's network namespace", port, pid)
}

// fileContent is a file's content, or that it does not exist.
func fileContent(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "(none)"
	}
	require.NoError(t, err)
	return string(data)
}

// inNetns runs fn on an OS thread of its own in the network namespace at
// path (/run/netns/NAME, /proc/PID/ns/net). The sockets fn makes belong
// to that namespace for good, whichever thread uses them later. The
// thread is never unlocked: it dies with its goroutine instead of going
// back to the Go scheduler in the wrong namespace.
func inNetns(path string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// listenIn listens on address in the network namespace at path; the
// listener is closed when the test ends.
func listenIn(t *testing.T, path, network, address string) net.Listener {
	t.Helper()
	var ln net.Listener
	require.NoError(t, inNetns(path, func() (err error) {
		ln, err = net.Listen(network, address)
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	return ln
}

// serveUDPEcho answers each datagram to address, in the network namespace
// at path, with "echo: " and the datagram, until stop is called or the
// test ends. Stop it before the container ends: an open socket keeps its
// namespace, and so the container's veth, alive.
func serveUDPEcho(t *testing.T, path, address string) (stop func()) {
	t.Helper()
	var pc net.PacketConn
	require.NoError(t, inNetns(path, func() (err error) {
		pc, err = net.ListenPacket("udp", address)
		return err
	}))
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			_, _ = pc.WriteTo(append([]byte("echo: "), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() { pc.Close() })
	return func() { pc.Close() }
}

// udpRoundTrip sends msg to address from the network namespace at path and
// returns the answer (5 s at most).
func udpRoundTrip(path, address, msg string) (string, error) {
	var conn net.Conn
	if err := inNetns(path, func() (err error) {
		conn, err = net.Dial("udp", address)
		return err
	}); err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return "", err
	}
	if _, err := conn.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}
