package network

// NAT and filtering: what containers send is accepted and masqueraded
// behind the host's address; published ports are DNAT rules. Every rule
// carries the comment minibox:<bridge> (shared by the bridge's containers)
// or minibox:<container> (one container's), the marks `minibox cleanup`
// finds them by.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// A rule is one iptables rule: its table, chain and match/target.
type rule struct {
	table, chain string
	spec         []string
}

// args is the iptables command line for action (-I, -A, -C, -D) on r.
func (r rule) args(action string) []string {
	return append([]string{"-t", r.table, action, r.chain}, r.spec...)
}

func (r rule) String() string { return strings.Join(r.args("-A"), " ") }

// tagged adds the comment that finds the rule again.
func tagged(table, chain, tag string, spec ...string) rule {
	return rule{table, chain, append(append([]string(nil), spec...), "-m", "comment", "--comment", "minibox:"+tag)}
}

// bridgeRules are a bridge's shared rules (stage 05's): what containers
// send, and what answers them or reaches a published port, accepted
// whatever the FORWARD policy; the subnet masqueraded on the way out;
// 127.0.0.0/8 masqueraded towards the bridge (-p on 127.0.0.1, with
// route_localnet), but never let in from the bridge: the raw-table drop
// closes the hole of CVE-2020-8558 that route_localnet opens.
func bridgeRules(bridge string, subnet *net.IPNet) []rule {
	return []rule{
		tagged("filter", "FORWARD", bridge, "-i", bridge, "-j", "ACCEPT"),
		tagged("filter", "FORWARD", bridge, "-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "ACCEPT"),
		tagged("nat", "POSTROUTING", bridge, "-s", subnet.String(), "!", "-o", bridge, "-j", "MASQUERADE"),
		tagged("nat", "POSTROUTING", bridge, "-s", "127.0.0.0/8", "-o", bridge, "-j", "MASQUERADE"),
		tagged("raw", "PREROUTING", bridge, "-i", bridge, "-d", "127.0.0.0/8", "-j", "DROP"),
	}
}

// ensureBridgeRules turns forwarding and route_localnet on and inserts
// each shared rule that is missing: checked every time the ruleset has
// changed since the last good check (a firewall reload may have flushed
// them), whose stamp (rulesgen.go) stays in root's network directory.
func ensureBridgeRules(root, bridge string, subnet *net.IPNet) error {
	if err := sysctl("net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	if err := sysctl("net/ipv4/conf/"+bridge+"/route_localnet", "1"); err != nil {
		return err
	}
	rules := bridgeRules(bridge, subnet)
	stampFile := filepath.Join(leasesDir(root), bridge+".rules")
	stamp := rulesStamp(rules)
	if stampUnchanged(stampFile, stamp) {
		return nil // no change to the ruleset since they were all there
	}
	if restore("-C", rules) == nil { // all there: one iptables-restore instead of one iptables -C each
		if rulesStamp(rules) == stamp { // nothing changed meanwhile
			writeStamp(stampFile, stamp)
		}
		return nil
	}
	for _, r := range rules {
		present, err := hasRule(r)
		if err == nil && !present {
			err = iptables(r.args("-I")...)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// dnatRules are one container's rules: per published port, DNAT in
// PREROUTING (from outside) and in OUTPUT (from the host itself,
// 127.0.0.1 included), on to the container's address.
func dnatRules(id string, ip net.IP, ports []Port) []rule {
	var rules []rule
	for _, p := range ports {
		dst := []string{"-m", "addrtype", "--dst-type", "LOCAL"} // any address of the host
		if p.HostIP != "" {
			dst = []string{"-d", p.HostIP}
		}
		spec := append(append([]string{"-p", p.Proto}, dst...), "--dport", strconv.Itoa(p.HostPort),
			"-j", "DNAT", "--to-destination", net.JoinHostPort(ip.String(), strconv.Itoa(p.ContainerPort)))
		rules = append(rules, tagged("nat", "PREROUTING", id, spec...), tagged("nat", "OUTPUT", id, spec...))
	}
	return rules
}

// addRules appends rules, and on failure deletes those it added.
func addRules(rules []rule) error {
	if restore("-A", rules) == nil {
		return nil
	}
	_ = deleteRules(rules) // a table committed before another failed
	for i, r := range rules {
		if err := iptables(r.args("-A")...); err != nil {
			_ = deleteRules(rules[:i])
			return err
		}
	}
	return nil
}

// deleteRules deletes rules; one that is not there counts as deleted, so
// that deleting twice is safe.
func deleteRules(rules []rule) error {
	if restore("-D", rules) == nil {
		return nil
	}
	var errs []error
	for _, r := range rules {
		if err := iptables(r.args("-D")...); err != nil {
			if present, cerr := hasRule(r); present || cerr != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// hasRule is iptables -C: exit status 1 means "no such rule", any other
// failure is an error (no iptables, no such table).
func hasRule(r rule) (bool, error) {
	out, err := exec.Command("iptables", append([]string{"-w"}, r.args("-C")...)...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		return false, nil
	default:
		return false, fmt.Errorf("iptables %s: %v: %s", strings.Join(r.args("-C"), " "), err, strings.TrimSpace(string(out)))
	}
}

// restore applies action (-A, -D, or -C to check) to all of rules in one
// run of iptables-restore(8) --noflush, table by table; each iptables
// command costs an exec (~2 ms), a container's start several. It fails
// at the first rule it cannot apply (for -C: the first missing), without
// saying which: callers then fall back to one iptables command a rule.
func restore(action string, rules []rule) error {
	if len(rules) == 0 {
		return nil
	}
	var in strings.Builder
	for i, r := range rules {
		if i == 0 || r.table != rules[i-1].table {
			if i > 0 {
				in.WriteString("COMMIT\n")
			}
			fmt.Fprintf(&in, "*%s\n", r.table)
		}
		args := append([]string{action, r.chain}, r.spec...)
		for _, a := range args {
			if a == "" || strings.ContainsAny(a, " \t\"'\n") {
				return fmt.Errorf("iptables-restore: %q needs quoting", a) // the fallback handles it
			}
		}
		in.WriteString(strings.Join(args, " ") + "\n")
	}
	in.WriteString("COMMIT\n")
	cmd := exec.Command("iptables-restore", "--noflush", "-w")
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore --noflush: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// iptables runs iptables(8); -w waits for the xtables lock that
// concurrent callers (other containers, docker, firewalld) hold.
func iptables(args ...string) error {
	out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// sysctl sets a setting of this network namespace.
func sysctl(name, value string) error {
	if err := os.WriteFile("/proc/sys/"+name, []byte(value), 0); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(name, "/", "."), value, err)
	}
	return nil
}
