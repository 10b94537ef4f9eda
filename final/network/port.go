package network

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// A Port is one published port, docker's -p: traffic to HostIP:HostPort
// on the host (any host address when HostIP is "") goes to ContainerPort
// of the container. HostPort 0 asks Setup for a free one, as `-p 80` does.
type Port struct {
	HostIP        string `json:"host_ip,omitempty"`
	HostPort      int    `json:"host_port"`
	ContainerPort int    `json:"container_port"`
	Proto         string `json:"proto"` // tcp or udp
}

// ParsePort reads docker's -p forms: 8080:80, 127.0.0.1:8080:80,
// 127.0.0.1::80 and 80 (a free host port, chosen by Setup), each with an
// optional /tcp or /udp. Port ranges (8000-8010:80-90) and IPv6 host
// addresses are not supported: the network is IPv4 only.
func ParsePort(s string) (Port, error) {
	p := Port{Proto: "tcp"}
	spec, proto, found := strings.Cut(s, "/")
	if found {
		p.Proto = proto
	}
	if p.Proto != "tcp" && p.Proto != "udp" {
		return p, fmt.Errorf("publish %q: the protocol is tcp or udp", s)
	}
	if strings.Contains(spec, "-") {
		return p, fmt.Errorf("publish %q: port ranges are not supported: publish each port with its own -p", s)
	}
	if strings.HasPrefix(spec, "[") {
		return p, fmt.Errorf("publish %q: IPv6 host addresses are not supported (the network is IPv4 only)", s)
	}
	parts := strings.Split(spec, ":")
	var host string
	switch len(parts) {
	case 1: // CONTAINERPORT
	case 2: // HOSTPORT:CONTAINERPORT
		host = parts[0]
	case 3: // IP:[HOSTPORT]:CONTAINERPORT
		p.HostIP, host = parts[0], parts[1]
	default:
		return p, fmt.Errorf("publish %q: expected [[IP:][HOSTPORT]:]CONTAINERPORT[/tcp|/udp]", s)
	}
	var err error
	if p.ContainerPort, err = portNumber(parts[len(parts)-1]); err != nil {
		return p, fmt.Errorf("publish %q: container port: %w", s, err)
	}
	if host != "" {
		if p.HostPort, err = portNumber(host); err != nil {
			return p, fmt.Errorf("publish %q: host port: %w", s, err)
		}
	}
	if p.HostIP != "" {
		ip := net.ParseIP(p.HostIP).To4()
		if ip == nil {
			return p, fmt.Errorf("publish %q: %s is not an IPv4 address", s, p.HostIP)
		}
		if ip.IsUnspecified() { // 0.0.0.0: every address, docker's default
			p.HostIP = ""
		} else {
			p.HostIP = ip.String()
		}
	}
	return p, nil
}

func portNumber(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number (1 to 65535)", s)
	}
	return n, nil
}

// String is the port as docker's ps shows it: 0.0.0.0:8080->80/tcp.
func (p Port) String() string {
	ip := p.HostIP
	if ip == "" {
		ip = "0.0.0.0"
	}
	return fmt.Sprintf("%s:%d->%d/%s", ip, p.HostPort, p.ContainerPort, p.Proto)
}

// key is the host side of the port as stage 05 writes it in a lease,
// "IP:HOSTPORT/PROTO" (":8080/tcp" for every address): the leases file is
// shared with stage 05 when both use the same data root and bridge.
func (p Port) key() string { return fmt.Sprintf("%s:%d/%s", p.HostIP, p.HostPort, p.Proto) }

// portOfKey reads a key back (the host side only).
func portOfKey(k string) (Port, bool) {
	rest, proto, ok1 := strings.Cut(k, "/")
	i := strings.LastIndex(rest, ":")
	if !ok1 || i < 0 {
		return Port{}, false
	}
	n, err := strconv.Atoi(rest[i+1:])
	return Port{HostIP: rest[:i], HostPort: n, Proto: proto}, err == nil
}

// clashes reports whether two ports claim the same host port: the same
// number and protocol, on the same address or on every address.
func (p Port) clashes(q Port) bool {
	return p.Proto == q.Proto && p.HostPort == q.HostPort &&
		(p.HostIP == "" || q.HostIP == "" || p.HostIP == q.HostIP)
}
