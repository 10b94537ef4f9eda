package network

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
