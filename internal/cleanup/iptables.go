package cleanup

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// ContainerRules are stage 05's per-container iptables rules, the DNAT of
// each published port (-p), tagged with the comment minibox:<container
// id>. A stage deletes its own at exit, so one whose container is not
// running (no live lease for it, and no live process at the other end of
// its veth) was left by a stage killed with SIGKILL. The rules of a
// running container are busy.
var ContainerRules = Kind{Name: containerRuleKind, Find: findContainerRules, Remove: removeContainerRule}

// BridgeRules are stage 05's shared iptables rules, made once per bridge
// (MASQUERADE, FORWARD accept) and tagged minibox:<bridge name>. The stage
// leaves them with the bridge for the next container; cleanup removes
// them when no running container uses the bridge.
var BridgeRules = Kind{Name: bridgeRuleKind, Find: findBridgeRules, Remove: removeBridgeRule}

const (
	containerRuleKind = "container rule"
	bridgeRuleKind    = "bridge rule"
	// ruleTag starts the comment of every rule minibox makes.
	ruleTag = "minibox:"
)

// A rule is one line of iptables-save: its table and the rule as
// "-A CHAIN spec…", which iptables takes back as it is.
type rule struct {
	table string
	line  string // -A PREROUTING -p tcp … -m comment --comment "minibox:…" -j DNAT …
}

// name is how an Object names the rule: the iptables arguments that add
// it, "-t nat -A PREROUTING …".
func (r rule) name() string { return "-t " + r.table + " " + r.line }

// tag is what follows minibox: in the rule's comment, or "" for a rule
// that is not minibox's.
func (r rule) tag() string { return ruleTagOf(splitQuoted(r.line)) }

func ruleTagOf(args []string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--comment" {
			if tag, ok := strings.CutPrefix(args[i+1], ruleTag); ok {
				return tag
			}
		}
	}
	return ""
}

// parseIptablesSave reads iptables-save(8) output: "*table" starts a
// table's section, "-A CHAIN …" is a rule in it, ":CHAIN POLICY",
// "COMMIT" and "# comments" are not rules.
func parseIptablesSave(out string) []rule {
	var rules []rule
	table := ""
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, "-A ") && table != "":
			rules = append(rules, rule{table: table, line: line})
		}
	}
	return rules
}

// splitQuoted splits a line of iptables-save into its arguments, as a
// shell would: iptables-save writes a comment in double quotes
// (--comment "minibox:…"), with \" and \\ inside. No shell runs the rule
// later: its arguments go to iptables as they are.
func splitQuoted(line string) []string {
	var args []string
	var cur strings.Builder
	inArg, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			quoted, inArg = !quoted, true
		case !quoted && (c == ' ' || c == '\t'):
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args
}

// minboxRules returns the rules tagged minibox: in this network namespace.
// Without iptables there are none: stage 05 could not have made any. Only
// root can read them (iptables-save fails otherwise), so a dry run
// without root lists none.
func minboxRules() ([]rule, error) {
	if _, err := exec.LookPath("iptables-save"); err != nil || os.Geteuid() != 0 {
		return nil, nil
	}
	var stderr bytes.Buffer
	cmd := exec.Command("iptables-save")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("iptables-save: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var ours []rule
	for _, r := range parseIptablesSave(string(out)) {
		if r.tag() != "" {
			ours = append(ours, r)
		}
	}
	return ours, nil
}

func findContainerRules(env Env) ([]Object, error) {
	rules, err := minboxRules()
	var out []Object
	for _, r := range rules {
		if id := r.tag(); IsContainerID(id) {
			out = append(out, Object{Kind: containerRuleKind, Name: r.name(), Busy: containerRunning(env.DataRoots, id), dataRoots: env.DataRoots})
		}
	}
	return out, err
}

func findBridgeRules(env Env) ([]Object, error) {
	rules, err := minboxRules()
	var out []Object
	for _, r := range rules {
		if bridge := r.tag(); !IsContainerID(bridge) {
			out = append(out, Object{Kind: bridgeRuleKind, Name: r.name(), Busy: bridgeInUse(env.DataRoots, bridge), dataRoots: env.DataRoots})
		}
	}
	return out, err
}

// ruleArgs reads back the rule an Object names ("-t TABLE -A CHAIN …")
// and returns its arguments and its tag, refusing anything else, and any
// rule without the minibox: tag.
func ruleArgs(o Object) ([]string, string, error) {
	args := splitQuoted(o.Name)
	if len(args) < 4 || args[0] != "-t" || args[2] != "-A" {
		return nil, "", fmt.Errorf("refusing to delete %q: not an iptables rule as cleanup lists them (-t TABLE -A CHAIN …)", o.Name)
	}
	tag := ruleTagOf(args[3:])
	if tag == "" {
		return nil, "", fmt.Errorf("refusing to delete %q: it has no minibox: comment", o.Name)
	}
	return args, tag, nil
}

func removeContainerRule(o Object) error {
	args, id, err := ruleArgs(o)
	if err != nil {
		return err
	}
	if !IsContainerID(id) {
		return fmt.Errorf("refusing to delete %q: minibox:%s is not a container's tag", o.Name, id)
	}
	if why := containerRunning(o.roots(), id); why != "" {
		return fmt.Errorf("refusing to delete %q: %s", o.Name, why)
	}
	return deleteRule(o.Name, args)
}

func removeBridgeRule(o Object) error {
	args, bridge, err := ruleArgs(o)
	if err != nil {
		return err
	}
	if IsContainerID(bridge) {
		return fmt.Errorf("refusing to delete %q: minibox:%s is a container's tag, not a bridge's", o.Name, bridge)
	}
	if why := bridgeInUse(o.roots(), bridge); why != "" {
		return fmt.Errorf("refusing to delete %q: %s", o.Name, why)
	}
	return deleteRule(o.Name, args)
}

// deleteRule runs iptables -w -t TABLE -D CHAIN spec…: the rule's own
// arguments with -A turned into -D, without a shell. A rule that is gone
// already (iptables-save no longer shows it) counts as deleted.
func deleteRule(name string, args []string) error {
	del := append([]string(nil), args...)
	del[2] = "-D"
	// -w: wait for the legacy backend's lock (/run/xtables.lock) rather
	// than fail while a stage adds its rules.
	out, err := exec.Command("iptables", append([]string{"-w"}, del...)...).CombinedOutput()
	if err == nil {
		return nil
	}
	if rules, lerr := minboxRules(); lerr == nil && !hasRule(rules, name) {
		return nil
	}
	return fmt.Errorf("iptables %s: %w: %s", strings.Join(del, " "), err, strings.TrimSpace(string(out)))
}

func hasRule(rules []rule, name string) bool {
	for _, r := range rules {
		if r.name() == name {
			return true
		}
	}
	return false
}
