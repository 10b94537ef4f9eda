package network

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/testenv"
)

// restore applies a batch of rules across tables in one iptables-restore:
// -A adds them all, -C passes only while every one is there, -D removes
// them all, and a batch that cannot apply (one rule missing) fails, so
// that its callers fall back to one iptables command a rule.
func TestRestoreAddsChecksAndDeletesRules(t *testing.T) {
	newOptions(t) // root, inside the test's own network namespace
	rules := []rule{
		tagged("filter", "FORWARD", "mbxtest", "-i", "mbxtest0", "-j", "ACCEPT"),
		tagged("nat", "POSTROUTING", "mbxtest", "-s", "10.99.0.0/24", "!", "-o", "mbxtest0", "-j", "MASQUERADE"),
		tagged("nat", "PREROUTING", "mbxtest", "-p", "tcp", "--dport", "18099", "-j", "DNAT", "--to-destination", "10.99.0.2:80"),
	}
	t.Cleanup(func() { _ = deleteRules(rules) })
	require.Error(t, restore("-C", rules), "none is there yet")
	require.NoError(t, restore("-A", rules))
	for _, r := range rules {
		present, err := hasRule(r)
		require.NoError(t, err)
		assert.True(t, present, "added: %s", r)
	}
	assert.NoError(t, restore("-C", rules))
	require.NoError(t, iptables(rules[1].args("-D")...))
	assert.Error(t, restore("-C", rules), "one is missing")
	assert.Error(t, restore("-D", rules), "one is missing: the batch fails")
	require.NoError(t, deleteRules(rules), "the fallback deletes the others")
	for _, r := range rules {
		present, err := hasRule(r)
		require.NoError(t, err)
		assert.False(t, present, "deleted: %s", r)
	}
	assert.Error(t, restore("-A", []rule{tagged("filter", "FORWARD", "a b", "-j", "ACCEPT")}), "an argument with a space is left to iptables")
}

// The shared rules are checked only when the ruleset has changed since
// the last good check (rulesgen.go): a Setup whose stamp is unchanged
// runs no iptables-restore; a rule deleted meanwhile moves nf_tables'
// generation on, so the next check runs and puts it back. The stamp is
// another for other rules, and in another network namespace; where a
// legacy (x_tables) table is in use, none is trusted.
func TestBridgeRulesAreCheckedWhenTheRulesetChanged(t *testing.T) {
	o := newOptions(t)
	_, subnet, _ := net.ParseCIDR(DefaultSubnet)
	rules := bridgeRules(o.Bridge, subnet)
	require.NoError(t, ensureBridge(o.Bridge, subnet))
	require.NoError(t, os.MkdirAll(leasesDir(o.Root), 0o755))
	checks := spyOnIptablesRestore(t)
	ensure := func() { require.NoError(t, ensureBridgeRules(o.Root, o.Bridge, subnet)) }

	ensure() // inserts what is missing: the generation moves on
	ensure() // checks, and stamps the generation it saw
	stamp := rulesStamp(rules)
	testenv.Require(t, stamp != "", "nf_tables answers and no legacy iptables table is in use (iptables-nft)")
	kept, err := os.ReadFile(filepath.Join(leasesDir(o.Root), o.Bridge+".rules"))
	require.NoError(t, err, "the good check left its stamp")
	assert.Equal(t, stamp, string(kept))
	before := checks()
	ensure()
	ensure()
	assert.Equal(t, before, checks(), "nothing changed: no check")

	drop := rules[4]
	require.NoError(t, iptables(drop.args("-D")...))
	ensure()
	assert.Greater(t, checks(), before, "a rule was deleted: checked again")
	present, err := hasRule(drop)
	require.NoError(t, err)
	assert.True(t, present, "and put back")

	_, other, _ := net.ParseCIDR("10.99.0.0/24")
	assert.NotEqual(t, rulesStamp(rules), rulesStamp(bridgeRules(o.Bridge, other)), "other rules, another stamp")
	here := rulesStamp(rules)
	c := startContainer(t) // another network namespace
	require.NoError(t, inNetns(c.nsPath(), func() error {
		assert.NotEqual(t, here, rulesStamp(rules), "another namespace, another stamp")
		if out, err := exec.Command("iptables-legacy", "-t", "raw", "-n", "-L").CombinedOutput(); err != nil {
			return fmt.Errorf("iptables-legacy: %v: %s", err, out)
		}
		assert.Empty(t, rulesStamp(rules), "a legacy table is in use: its changes would not move the generation")
		return nil
	}))
	assert.Equal(t, here, rulesStamp(rules), "here, unchanged by the other namespace's legacy table")
}

// spyOnIptablesRestore puts an iptables-restore first in PATH that counts
// its runs and hands on to the real one; it returns the count so far.
func spyOnIptablesRestore(t *testing.T) func() int {
	t.Helper()
	real, err := exec.LookPath("iptables-restore")
	require.NoError(t, err)
	dir := t.TempDir()
	log := filepath.Join(dir, "runs")
	script := fmt.Sprintf("#!/bin/sh\necho run >> %s\nexec %s \"$@\"\n", log, real)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "iptables-restore"), []byte(script), 0o755))
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return func() int {
		data, _ := os.ReadFile(log)
		return strings.Count(string(data), "run\n")
	}
}
