package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
)

// HostNetwork is what a network test could change in the network
// namespace this process is in (links, addresses, routes, firewall rules,
// forwarding): the machine's own, which no test may change. A test
// package takes it before its tests and compares it after (DiffLines).
// Only as root (iptables-save needs it; "" otherwise). What varies by
// itself is left out: address lifetimes, rule counters, dated comments.
func HostNetwork() string {
	if os.Geteuid() != 0 {
		return ""
	}
	var b strings.Builder
	for _, argv := range [][]string{
		{"ip", "-o", "link"}, {"ip", "-o", "addr"}, {"ip", "route"}, {"iptables-save"},
	} {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		fmt.Fprintf(&b, "$ %s (%v)\n", strings.Join(argv, " "), err)
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			line = lifetimes.ReplaceAllString(line, "")
			b.WriteString(counters.ReplaceAllString(line, "[0:0]") + "\n")
		}
	}
	forward, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	fmt.Fprintf(&b, "net.ipv4.ip_forward = %s (%v)\n", strings.TrimSpace(string(forward)), err)
	return b.String()
}

var (
	lifetimes = regexp.MustCompile(`\s*(valid|preferred)_lft \S+`)
	counters  = regexp.MustCompile(`\[\d+:\d+\]`)
)

// DiffLines lists the lines of before that after lacks (-) and the lines
// of after that before lacks (+), or returns "".
func DiffLines(before, after string) string {
	count := map[string]int{}
	for _, l := range strings.Split(before, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(after, "\n") {
		count[l]--
	}
	var out []string
	for l, n := range count {
		for ; n > 0; n-- {
			out = append(out, "- "+l)
		}
		for ; n < 0; n++ {
			out = append(out, "+ "+l)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}
