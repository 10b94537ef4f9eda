package main

// NAT: how containers on the bridge reach out (MASQUERADE), and how the
// host's ports reach containers (-p: DNAT). Every rule carries a comment,
// minibox:<bridge> for the shared ones and minibox:<id> for a container's,
// so it can always be found and removed (iptables-save | grep minibox).

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// A port is one -p [IP:]HOSTPORT:CTRPORT[/tcp|udp].
type port struct {
	ip        string // "" for every host address
	host, ctr int
	proto     string
}

// parsePort reads docker's -p format.
func parsePort(s string) (port, error) {
	p := port{proto: "tcp"}
	spec, proto, found := strings.Cut(s, "/")
	if found {
		p.proto = proto
	}
	parts := strings.Split(spec, ":")
	if len(parts) == 3 {
		p.ip, parts = parts[0], parts[1:]
	}
	var err1, err2 error
	if len(parts) == 2 {
		p.host, err1 = strconv.Atoi(parts[0])
		p.ctr, err2 = strconv.Atoi(parts[1])
	}
	switch {
	case len(parts) != 2 || err1 != nil || err2 != nil || p.host < 1 || p.host > 65535 || p.ctr < 1 || p.ctr > 65535:
		return p, fmt.Errorf("%q: expected [IP:]HOSTPORT:CONTAINERPORT[/tcp|/udp], ports 1 to 65535", s)
	case p.proto != "tcp" && p.proto != "udp":
		return p, fmt.Errorf("%q: the protocol is tcp or udp", s)
	case p.ip != "" && net.ParseIP(p.ip).To4() == nil:
		return p, fmt.Errorf("%q: %s is not an IPv4 address", s, p.ip)
	}
	return p, nil
}

func (p port) key() string { return fmt.Sprintf("%s:%d/%s", p.ip, p.host, p.proto) }

// A rule is one iptables rule: its table, chain and match/target.
type rule struct {
	table, chain string
	spec         []string
}

// args is the iptables command line for action (-I, -A, -C, -D) on r.
func (r rule) args(action string) []string {
	return append([]string{"-t", r.table, action, r.chain}, r.spec...)
}

// tagged adds the comment that finds the rule again.
func tagged(table, chain, tag string, spec ...string) rule {
	return rule{table, chain, append(append([]string(nil), spec...), "-m", "comment", "--comment", "minibox:"+tag)}
}

// natBridge makes the bridge's shared rules, once: forwarding on; what
// containers send, and what answers them or a published port, accepted
// whatever the FORWARD chain's policy (not new connections to any of
// their ports); the subnet masqueraded behind the host's address on the
// way out; 127.0.0.1 allowed to be sent to a container (for -p on
// localhost), but a container never let into the host's 127.0.0.0/8 (the
// hole of CVE-2020-8558 that route_localnet would open).
func natBridge(bridge string, subnet *net.IPNet) error {
	err := sysctl("net/ipv4/ip_forward", "1")
	if err == nil {
		err = sysctl("net/ipv4/conf/"+bridge+"/route_localnet", "1")
	}
	for _, r := range []rule{
		tagged("filter", "FORWARD", bridge, "-i", bridge, "-j", "ACCEPT"),
		tagged("filter", "FORWARD", bridge, "-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "ACCEPT"),
		tagged("nat", "POSTROUTING", bridge, "-s", subnet.String(), "!", "-o", bridge, "-j", "MASQUERADE"),
		tagged("nat", "POSTROUTING", bridge, "-s", "127.0.0.0/8", "-o", bridge, "-j", "MASQUERADE"),
		tagged("raw", "PREROUTING", bridge, "-i", bridge, "-d", "127.0.0.0/8", "-j", "DROP"),
	} {
		if err == nil && iptablesQuiet(r.args("-C")...) != nil { // not there yet
			err = iptables(r.args("-I")...)
		}
	}
	return err
}

// dnatRules are one published port's rules: PREROUTING for what comes
// from outside, OUTPUT for what the host itself sends, both on to the
// container's address.
func dnatRules(p port, ip net.IP, id string) []rule {
	dst := []string{"-m", "addrtype", "--dst-type", "LOCAL"} // any address of the host
	if p.ip != "" {
		dst = []string{"-d", p.ip}
	}
	spec := append(append([]string{"-p", p.proto}, dst...), "--dport", strconv.Itoa(p.host),
		"-j", "DNAT", "--to-destination", fmt.Sprintf("%s:%d", ip, p.ctr))
	return []rule{tagged("nat", "PREROUTING", id, spec...), tagged("nat", "OUTPUT", id, spec...)}
}

// iptables runs iptables(8), narrated.
func iptables(args ...string) error {
	narrate("iptables %s", strings.Join(args, " "))
	return iptablesQuiet(args...)
}

func iptablesQuiet(args ...string) error {
	out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput() // -w: wait for the lock
	if err != nil {
		return fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// sysctl sets a kernel setting of this network namespace.
func sysctl(name, value string) error {
	narrate("sysctl -w %s=%s", strings.ReplaceAll(name, "/", "."), value)
	return os.WriteFile("/proc/sys/"+name, []byte(value), 0)
}
