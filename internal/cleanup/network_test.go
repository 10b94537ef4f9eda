package cleanup_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netns"

	"github.com/minibox-lab/minibox/internal/cleanup"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// writeLeases writes ROOT/network/BRIDGE.json (and its lock file) as stage
// 05 leaves it, with the entries given.
func writeLeases(t *testing.T, root, bridge string, entries ...map[string]any) string {
	t.Helper()
	dir := filepath.Join(root, "network")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, bridge+".lock"), nil, 0o644))
	data, err := json.MarshalIndent(entries, "", "  ")
	require.NoError(t, err)
	file := filepath.Join(dir, bridge+".json")
	require.NoError(t, os.WriteFile(file, data, 0o644))
	return file
}

func readLeaseFile(t *testing.T, file string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	var out []map[string]any
	require.NoError(t, json.Unmarshal(data, &out))
	return out
}

// cleanOne does what Clean does, for one kind only: a test without its own
// network namespace must not clean the machine's.
func cleanOne(k cleanup.Kind, env cleanup.Env) (cleanup.Report, error) {
	var rep cleanup.Report
	objs, err := k.Find(env)
	for _, o := range objs {
		switch {
		case o.Busy != "":
			rep.Busy = append(rep.Busy, o)
		case k.Remove(o) != nil:
			rep.Failed = append(rep.Failed, cleanup.Failure{Object: o})
		default:
			rep.Removed = append(rep.Removed, o)
		}
	}
	return rep, err
}

// Leases whose stage is dead are dropped from their file; a live stage's
// lease is busy and kept, with every field the stage wrote.
func TestLeases(t *testing.T) {
	root := t.TempDir()
	sleep := exec.Command("sleep", "30")
	require.NoError(t, sleep.Start())
	t.Cleanup(func() { _ = sleep.Process.Kill(); _ = sleep.Wait() })
	live, dead := sleep.Process.Pid, deadPID(t)
	file := writeLeases(t, root, "minibox0",
		map[string]any{"ip": "10.89.0.2", "id": "0123456789a1", "pid": dead, "ports": []string{":18080/tcp"}},
		map[string]any{"ip": "10.89.0.3", "id": "0123456789a2", "pid": live, "ports": []string{":18081/tcp"}, "later": "a field a later stage adds"})
	other := writeLeases(t, root, "minibox1") // an empty file: nothing

	env := cleanup.Env{DataRoots: []string{root}}
	objs, err := cleanup.Leases.Find(env)
	require.NoError(t, err)
	require.Len(t, objs, 2)
	stale, running := objs[0], objs[1]
	assert.Equal(t, "lease 10.89.0.2 of container 0123456789a1 (stage "+strconv.Itoa(dead)+", "+file+")", stale.String())
	assert.Empty(t, stale.Busy)
	assert.Equal(t, "10.89.0.3 of container 0123456789a2", running.Name)
	assert.Contains(t, running.Busy, "its stage, process "+strconv.Itoa(live)+" (sleep), is alive")
	assert.Contains(t, running.Busy, "kill "+strconv.Itoa(live))

	rep, err := cleanOne(cleanup.Leases, env)
	require.NoError(t, err)
	assert.Equal(t, []string{stale.Name}, names(rep.Removed))
	assert.Equal(t, []string{running.Name}, names(rep.Busy))
	left := readLeaseFile(t, file)
	require.Len(t, left, 1)
	assert.Equal(t, "0123456789a2", left[0]["id"])
	assert.Equal(t, "a field a later stage adds", left[0]["later"], "the other entries are kept as they are")
	assert.Equal(t, []any{":18081/tcp"}, left[0]["ports"])
	assert.Empty(t, readLeaseFile(t, other))

	assert.NoError(t, cleanup.Leases.Remove(stale), "gone already: removed")
	err = cleanup.Leases.Remove(running)
	assert.ErrorContains(t, err, "is alive", "the leak check's Remove checks again")
	assert.Len(t, readLeaseFile(t, file), 1)

	require.NoError(t, sleep.Process.Kill())
	_ = sleep.Wait()
	rep, err = cleanOne(cleanup.Leases, env)
	require.NoError(t, err)
	assert.Equal(t, []string{running.Name}, names(rep.Removed))
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, "[]", string(data), "an empty list, as the stage leaves it")
	assert.FileExists(t, filepath.Join(root, "network", "minibox0.lock"), "the stage's lock file stays")

	// Refused: what is not a leases file cleanup listed.
	for _, o := range []cleanup.Object{
		{Kind: "lease", Name: "10.89.0.2 of container 0123456789a1", Detail: "stage 1, /etc/passwd"},
		{Kind: "lease", Name: "10.89.0.2", Detail: "stage 1, " + file},
		{Kind: "lease", Name: "10.89.0.2 of container 0123456789a1", Detail: "pid 1, " + file},
	} {
		assert.ErrorContains(t, cleanup.Leases.Remove(o), "refusing", o.String())
	}
}

func TestLeasesNeverFollowSymlinks(t *testing.T) {
	root, elsewhere := t.TempDir(), t.TempDir()
	writeLeases(t, elsewhere, "minibox0", map[string]any{"ip": "10.89.0.2", "id": "0123456789a1", "pid": deadPID(t)})
	require.NoError(t, os.Symlink(filepath.Join(elsewhere, "network"), filepath.Join(root, "network")))
	objs, err := cleanup.Leases.Find(cleanup.Env{DataRoots: []string{root}})
	assert.ErrorContains(t, err, "is a symlink")
	assert.Empty(t, objs)

	root2 := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root2, "network"), 0o755))
	require.NoError(t, os.Symlink(filepath.Join(elsewhere, "network", "minibox0.json"), filepath.Join(root2, "network", "minibox0.json")))
	objs, err = cleanup.Leases.Find(cleanup.Env{DataRoots: []string{root2}})
	assert.NoError(t, err)
	assert.Empty(t, objs, "a symlinked file is not minibox's")
}

// inNewNetns moves the test's goroutine, locked to its thread, into a new
// network namespace until the test ends: the links and rules the test
// makes, and the commands it runs (children inherit the thread's
// namespace), are there, never in the machine's own namespace, and go
// with the namespace when the test ends.
func inNewNetns(t *testing.T) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	require.NoError(t, err)
	ns, err := netns.New() // unshare(CLONE_NEWNET), this thread only
	require.NoError(t, err)
	t.Cleanup(func() {
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		} // else the thread ends with the test's goroutine, still locked
		ns.Close()
		orig.Close()
	})
}

func run(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	require.NoError(t, err, "%s: %s", strings.Join(args, " "), out)
}

func output(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	require.NoError(t, err, "%s: %s", strings.Join(args, " "), out)
	return string(out)
}

// The network kinds, on real links and rules in a namespace of the test's
// own: what a killed stage 05 leaves (a container's DNAT rules, its veth,
// its lease) goes, and the bridge and its shared rules with them once no
// running container uses it; a running container's are left, busy; links
// and rules without minibox's name or tag are never touched.
func TestNetworkKinds(t *testing.T) {
	testenv.RequireRoot(t)
	for _, cmd := range []string{"ip", "iptables", "iptables-save"} {
		_, err := exec.LookPath(cmd)
		testenv.Require(t, err == nil, "needs "+cmd+" (apt-get install iproute2 iptables)")
	}
	testenv.CheckLeaks(t)
	root := t.TempDir()
	inNewNetns(t)

	// Container 0123456789ab's stage was killed: its rules, veth (on the
	// bridge, its peer held here) and lease are left.
	run(t, "ip", "link", "add", "miniboxt9", "type", "bridge")
	run(t, "ip", "link", "add", "mbx01234567", "master", "miniboxt9", "type", "veth", "peer", "name", "mbx01234567p")
	gone := "0123456789ab"
	for _, chain := range []string{"PREROUTING", "OUTPUT"} {
		run(t, "iptables", "-t", "nat", "-A", chain, "-p", "tcp", "--dport", "18080", "-j", "DNAT", "--to-destination", "10.99.0.2:80",
			"-m", "comment", "--comment", "minibox:"+gone)
	}
	// Container fedcba987654 is running: its stage (a sleep here) is alive.
	stage := exec.Command("sleep", "60")
	require.NoError(t, stage.Start())
	t.Cleanup(func() { _ = stage.Process.Kill(); _ = stage.Wait() })
	running := "fedcba987654"
	run(t, "iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "18081", "-j", "DNAT", "--to-destination", "10.99.0.3:80",
		"-m", "comment", "--comment", "minibox:"+running)
	writeLeases(t, root, "miniboxt9",
		map[string]any{"ip": "10.99.0.2", "id": gone, "pid": deadPID(t)},
		map[string]any{"ip": "10.99.0.3", "id": running, "pid": stage.Process.Pid})
	// The bridge's shared rules.
	run(t, "iptables", "-t", "nat", "-I", "POSTROUTING", "-s", "10.99.0.0/24", "!", "-o", "miniboxt9", "-j", "MASQUERADE", "-m", "comment", "--comment", "minibox:miniboxt9")
	run(t, "iptables", "-t", "filter", "-I", "FORWARD", "-i", "miniboxt9", "-j", "ACCEPT", "-m", "comment", "--comment", "minibox:miniboxt9")
	// A container whose stage keeps its leases in another data root: a
	// process is in the namespace at the other end of its veth.
	other := exec.Command("unshare", "--net", "sleep", "60")
	require.NoError(t, other.Start())
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	elsewhere := "222222220000"
	waitForNetns(t, other.Process.Pid)
	run(t, "ip", "link", "add", "mbx22222222", "type", "veth", "peer", "name", "mbx22222222p")
	run(t, "ip", "link", "set", "mbx22222222p", "netns", strconv.Itoa(other.Process.Pid))
	run(t, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "udp", "--dport", "5353", "-j", "DNAT", "--to-destination", "10.99.0.4:53",
		"-m", "comment", "--comment", "minibox:"+elsewhere)

	// Not minibox's: other names, untagged rules, near-miss tags.
	run(t, "ip", "link", "add", "br-other", "type", "bridge")
	run(t, "ip", "link", "add", "mbxzzzzzzzz", "type", "veth", "peer", "name", "vethother")
	run(t, "ip", "link", "add", "mbx89abcdef", "type", "bridge")
	run(t, "iptables", "-t", "filter", "-A", "FORWARD", "-i", "br-other", "-j", "ACCEPT")
	run(t, "iptables", "-t", "filter", "-A", "FORWARD", "-o", "br-other", "-j", "ACCEPT", "-m", "comment", "--comment", "miniboxer")
	run(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "br-other", "-j", "MASQUERADE", "-m", "comment", "--comment", "not minibox:x")
	notOurs := func() {
		t.Helper()
		links := output(t, "ip", "-o", "link")
		for _, l := range []string{"br-other", "mbxzzzzzzzz", "vethother", "mbx89abcdef"} {
			assert.Contains(t, links, " "+l, "not minibox's: left alone")
		}
		saved := output(t, "iptables-save")
		assert.Contains(t, saved, "-A FORWARD -i br-other -j ACCEPT\n")
		assert.Contains(t, saved, `--comment miniboxer`)
		assert.Contains(t, saved, `--comment "not minibox:x"`)
	}

	env := cleanup.Env{TempDir: t.TempDir(), CgroupRoot: t.TempDir(), Mountinfo: os.DevNull, DataRoots: []string{root}}
	rep, err := cleanup.Clean(env, true)
	require.NoError(t, err)
	require.NotEmpty(t, rep.Removed)
	assert.Contains(t, output(t, "iptables-save"), "minibox:"+gone, "a dry run removes nothing")

	rep, err = cleanup.Clean(env, false)
	require.NoError(t, err)
	assert.Empty(t, rep.Failed)
	removed := map[string][]string{}
	for _, o := range rep.Removed {
		removed[o.Kind] = append(removed[o.Kind], o.Name)
	}
	busy := map[string]string{}
	for _, o := range rep.Busy {
		busy[o.Kind+" "+o.Name] = o.Busy
	}
	assert.Len(t, removed["container rule"], 2)
	for _, r := range removed["container rule"] {
		assert.Contains(t, r, `--comment "minibox:`+gone+`"`)
	}
	assert.Equal(t, []string{"mbx01234567"}, removed["veth"])
	assert.Equal(t, []string{"10.99.0.2 of container " + gone}, removed["lease"])
	assert.Empty(t, removed["bridge rule"], "a running container's lease is in the bridge's file")
	assert.Empty(t, removed["bridge"])
	saved := output(t, "iptables-save")
	assert.NotContains(t, saved, "minibox:"+gone)
	assert.NotContains(t, output(t, "ip", "-o", "link"), "mbx01234567")

	pid := strconv.Itoa(stage.Process.Pid)
	var runningRule, elsewhereRule string
	for k, why := range busy {
		switch {
		case strings.Contains(k, "minibox:"+running):
			runningRule = k
			assert.Contains(t, why, "container "+running+" is running: its stage, process "+pid+" (sleep), holds its lease")
		case strings.Contains(k, "minibox:"+elsewhere):
			elsewhereRule = k
			assert.Contains(t, why, "in the network namespace at the other end of mbx22222222")
		}
	}
	assert.NotEmpty(t, runningRule, "busy: %v", busy)
	assert.NotEmpty(t, elsewhereRule, "busy: %v", busy)
	assert.Contains(t, busy["veth mbx22222222"], "process "+strconv.Itoa(other.Process.Pid)+" (sleep) is in the network namespace at the other end")
	assert.Contains(t, busy["lease 10.99.0.3 of container "+running], "is alive")
	assert.Contains(t, busy["bridge miniboxt9"], "in use by container "+running)
	assert.Contains(t, saved, `--comment "minibox:miniboxt9"`)
	notOurs()

	// The leak check's Remove checks again: a running container's are refused.
	for _, o := range rep.Busy {
		k, ok := cleanup.KindNamed(o.Kind)
		require.True(t, ok)
		assert.ErrorContains(t, k.Remove(o), "refusing", o.String())
	}

	// Both containers end: the rest goes, the bridge last.
	require.NoError(t, stage.Process.Kill())
	_ = stage.Wait()
	require.NoError(t, other.Process.Kill())
	_ = other.Wait()
	// Its namespace, and the veth pair with it, goes a moment later (the
	// kernel tears namespaces down in a work queue).
	for i := 0; i < 500 && strings.Contains(output(t, "ip", "-o", "link"), "mbx22222222"); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	rep, err = cleanup.Clean(env, false)
	require.NoError(t, err)
	assert.Empty(t, rep.Failed)
	assert.Empty(t, rep.Busy)
	var got []string
	for _, o := range rep.Removed {
		got = append(got, o.Kind)
	}
	// mbx22222222 went with its peer's namespace: not listed.
	assert.Equal(t, []string{"container rule", "container rule", "lease", "bridge rule", "bridge rule", "bridge"}, got)
	assert.NotContains(t, output(t, "iptables-save"), `"minibox:`)
	links := output(t, "ip", "-o", "link")
	assert.NotContains(t, links, "miniboxt9")
	assert.NotContains(t, links, "mbx22222222")
	notOurs()

	rep, err = cleanup.Clean(env, false)
	require.NoError(t, err)
	assert.Empty(t, rep.Removed, "nothing left: safe to run twice")
	assert.Empty(t, rep.Busy)

	// Never anything without minibox's name or tag, even asked directly.
	for _, o := range []cleanup.Object{
		{Kind: "veth", Name: "mbxzzzzzzzz"}, {Kind: "veth", Name: "vethother"},
		{Kind: "veth", Name: "mbx89abcdef"}, // a bridge, not a veth
		{Kind: "bridge", Name: "br-other"},
		{Kind: "container rule", Name: `-t filter -A FORWARD -i br-other -j ACCEPT`},
		{Kind: "bridge rule", Name: `-t filter -A FORWARD -o br-other -m comment --comment "miniboxer" -j ACCEPT`},
	} {
		k, _ := cleanup.KindNamed(o.Kind)
		assert.ErrorContains(t, k.Remove(o), "refusing", o.String())
	}
	notOurs()
}

// waitForNetns waits until process pid is in a network namespace other
// than this thread's (unshare has run).
func waitForNetns(t *testing.T, pid int) {
	t.Helper()
	mine, err := os.Readlink("/proc/thread-self/ns/net")
	require.NoError(t, err)
	for i := 0; i < 500; i++ {
		theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err == nil && theirs != mine {
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "sleep" {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d never entered a network namespace of its own", pid)
}

// The tests' leak check sees what a stage 05 test left in its namespace:
// the registry's network kinds, the bridge and its rules included (stage
// tests run stage 05 in a namespace of their own, so the one the leak
// check looks at should see none of it).
func TestLeakCheckSeesNetworkLeftovers(t *testing.T) {
	testenv.RequireRoot(t)
	for _, cmd := range []string{"ip", "iptables", "iptables-save"} {
		_, err := exec.LookPath(cmd)
		testenv.Require(t, err == nil, "needs "+cmd+" (apt-get install iproute2 iptables)")
	}
	root := t.TempDir()
	t.Setenv("MINIBOX_ROOT", root)
	inNewNetns(t)
	before := testenv.Snapshot()
	run(t, "ip", "link", "add", "miniboxl1", "type", "bridge")
	run(t, "iptables", "-t", "nat", "-I", "POSTROUTING", "-s", "10.98.0.0/24", "!", "-o", "miniboxl1", "-j", "MASQUERADE", "-m", "comment", "--comment", "minibox:miniboxl1")
	run(t, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "18082", "-j", "DNAT", "--to-destination", "10.98.0.2:80", "-m", "comment", "--comment", "minibox:0123456789cd")
	writeLeases(t, root, "miniboxl1", map[string]any{"ip": "10.98.0.2", "id": "0123456789cd", "pid": deadPID(t)})
	leaked := testenv.Diff(before, testenv.Snapshot())
	for _, want := range []string{
		"container rule: -t nat -A OUTPUT -p tcp -m tcp --dport 18082 -m comment --comment \"minibox:0123456789cd\" -j DNAT --to-destination 10.98.0.2:80",
		"lease: 10.98.0.2 of container 0123456789cd",
		"bridge rule: -t nat -A POSTROUTING -s 10.98.0.0/24 ! -o miniboxl1 -m comment --comment \"minibox:miniboxl1\" -j MASQUERADE",
		"bridge: miniboxl1",
		"link: miniboxl1",
	} {
		assert.Contains(t, leaked, want)
	}
}
