package testenv

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/internal/cleanup"
	"github.com/minibox-lab/minibox/internal/rootfs"
)

// KernelState is what a test could leave behind in the kernel.
type KernelState struct {
	// Made are the objects of the kinds minibox makes (mounts, cgroups…),
	// found by the same registry that `minibox cleanup` uses.
	Made []cleanup.Object
	// Cgroups are the cgroup directories whose name contains "minibox",
	// anywhere in the cgroup file systems (to sweepDepth): a group a stage
	// made outside the minibox/<id> layout the registry knows (a typo, a
	// mutated stage, a student's own) is still a leak, reported, though
	// not removed, since only the registry's are surely minibox's.
	Cgroups  []string
	Links    []string // network links in our network namespace
	NetNS    []string // named network namespaces (ip netns)
	Children []string // live child processes of the test binary
	// Supervisors are the engine's supervisors (`minibox supervise ID`,
	// final/engine) anywhere on the host, "PID command line": one a test
	// left runs a container, whoever its parent is now.
	Supervisors []string
}

// CheckLeaks snapshots the kernel state now and, when the test ends, fails
// it if objects minibox makes (mounts, cgroups: internal/cleanup's kinds),
// cgroup directories named minibox anywhere else, links or named network
// namespaces appeared, or a process it started is still running, or an
// engine supervisor (`minibox supervise ID`) appeared anywhere. Leftover
// processes are killed and leftover objects removed, by the cleanup
// registry, so a leak does not spread to the next test; a cgroup the
// registry does not know is only reported, and so is a supervisor that is
// not our child (ours are killed with the other children: the test
// binary is their subreaper, so one whose starter exited is ours too).
//
// It makes the test binary a child subreaper (prctl(2)
// PR_SET_CHILD_SUBREAPER): processes orphaned by a container's exit are
// reparented to us instead of to init, so none can hide.
// Do not use it in tests that run in parallel, and call it first in a
// test, so that its clean-up runs last.
func CheckLeaks(t testing.TB) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("prctl PR_SET_CHILD_SUBREAPER: %v", err)
	}
	before := ours(Snapshot())
	parents := cgroupParents()
	t.Cleanup(func() {
		after := ours(waitForChildren(before.Children, 2*time.Second))
		if leaked := Diff(before, after); leaked != "" {
			t.Errorf("the test left these behind (now removed):\n%s", leaked)
		}
		killChildren(before.Children, newItems(before.Children, after.Children))
		removeLeaks(before, after)
		removeNewParents(parents)
	})
}

// cgroupParents lists the shared minibox/ parents of the cgroup trees
// (<root>/minibox, <root>/<controller>/minibox): the stages, the runtime
// and runc (for /minibox/<id>) make them and leave them for the next
// container, so the leak check does not count them.
func cgroupParents() map[string]bool {
	found := map[string]bool{}
	for _, pattern := range []string{filepath.Join(cgroupRoot, "minibox"), filepath.Join(cgroupRoot, "*", "minibox")} {
		matches, _ := filepath.Glob(pattern)
		for _, m := range matches {
			found[m] = true
		}
	}
	return found
}

// removeNewParents removes the minibox/ parents the test made, once
// empty (rmdir(2) refuses a group with children or processes): a test
// removes what it made, and the next test takes the path of a first run.
func removeNewParents(before map[string]bool) {
	for p := range cgroupParents() {
		if !before[p] {
			_ = unix.Rmdir(p)
		}
	}
}

// cgroupRoot is where the leak check looks for cgroups: the host's cgroup
// root. This package's tests point it at a minibox sub-tree of their own.
var cgroupRoot = cleanup.CgroupRoot

// sweepDepth bounds the sweep for cgroups named minibox: deep enough for
// <root>/<controller>/<slice>/<service>/<group>.
const sweepDepth = 5

// LeakEnv is where the registry looks during a test: as on any host (the
// demo rootfs the CLI would use, $MINIBOX_ROOTFS or below $MINIBOX_ROOT,
// else /var/lib/minibox/rootfs, included), plus every mount below the
// temporary directory, where tests make their own (t.TempDir()).
func LeakEnv() cleanup.Env {
	env := cleanup.DefaultEnv(rootfs.Dir(""))
	env.Owned = []string{os.TempDir()}
	env.CgroupRoot = cgroupRoot
	return env
}

// ours keeps what a minibox test can have made, so that what the rest of
// the machine does meanwhile (a VPN link, another container engine) is
// neither reported nor touched: minibox links and network namespaces. The
// registry's objects are minibox's already; processes are our children.
func ours(s KernelState) KernelState {
	keep := func(list []string, ok func(string) bool) []string {
		var out []string
		for _, x := range list {
			if ok(x) {
				out = append(out, x)
			}
		}
		return out
	}
	minibox := func(name string) bool { return strings.Contains(name, "minibox") }
	s.Links = keep(s.Links, minibox)
	s.NetNS = keep(s.NetNS, minibox)
	return s
}

// removeLeaks undoes what a failed test left in the kernel, so that it does
// not spread to the next test or stay on the machine: each new object is
// removed by its kind, in the registry's order (mounts the deepest first,
// then cgroups). The test's processes are dead by now, so busy or not, all
// of them go.
func removeLeaks(before, after KernelState) {
	for _, o := range leakedObjects(before.Made, after.Made) {
		if k, ok := cleanup.KindNamed(o.Kind); ok {
			_ = k.Remove(o)
		}
	}
}

// leakedObjects are the objects in after and not in before, except shared
// ones (the empty minibox/ parent cgroup that stage 03 leaves on purpose).
func leakedObjects(before, after []cleanup.Object) []cleanup.Object {
	seen := map[string]int{}
	for _, o := range before {
		seen[o.Key()]++
	}
	var out []cleanup.Object
	for _, o := range after {
		if seen[o.Key()] > 0 {
			seen[o.Key()]--
			continue
		}
		if k, ok := cleanup.KindNamed(o.Kind); ok && k.Shared {
			continue
		}
		out = append(out, o)
	}
	return out
}

// Snapshot reads the current kernel state.
func Snapshot() KernelState {
	made, err := cleanup.Find(LeakEnv())
	if err != nil {
		made = append(made, cleanup.Object{Kind: "error", Name: err.Error()})
	}
	return KernelState{
		Made:        made,
		Cgroups:     miniboxCgroups(cgroupRoot, sweepDepth),
		Links:       links(),
		NetNS:       dirNames("/run/netns"),
		Children:    children(),
		Supervisors: supervisors(),
	}
}

// Diff describes what is in after but not in before, or "" if nothing.
func Diff(before, after KernelState) string {
	var b strings.Builder
	for _, o := range leakedObjects(before.Made, after.Made) {
		fmt.Fprintf(&b, "  %s\n", o.Key())
	}
	add := func(what string, old, cur []string) {
		for _, x := range newItems(old, cur) {
			fmt.Fprintf(&b, "  %s: %s\n", what, x)
		}
	}
	add("cgroup named minibox, outside minibox/<id> (not removed: rmdir it)", before.Cgroups, strays(after))
	add("link", before.Links, after.Links)
	add("netns", before.NetNS, after.NetNS)
	add("process", before.Children, after.Children)
	add("supervisor of a container still running (minibox rm -f ID, or kill PID)", before.Supervisors, after.Supervisors)
	return b.String()
}

// strays are the cgroup directories named minibox in s that the registry
// does not know: the ones it knows (minibox/<id>, the minibox/ parents)
// it judges, and reports, itself.
func strays(s KernelState) []string {
	known := map[string]bool{}
	for _, o := range s.Made {
		known[o.Name] = true
	}
	var out []string
	for _, dir := range s.Cgroups {
		if !known[dir] {
			out = append(out, dir)
		}
	}
	return out
}

// miniboxCgroups lists the directories whose name contains "minibox" in
// the cgroup file systems under root, at most depth levels down. Symlinks
// (cpu -> cpu,cpuacct) are not followed: the tree they name is walked
// under its own name.
func miniboxCgroups(root string, depth int) []string {
	var out []string
	base := strings.Count(filepath.Clean(root), "/")
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || path == root {
			return nil
		}
		if strings.Contains(d.Name(), "minibox") {
			out = append(out, path)
		}
		if strings.Count(path, "/")-base >= depth {
			return filepath.SkipDir
		}
		return nil
	})
	return out
}

func newItems(old, cur []string) []string {
	seen := map[string]int{}
	for _, x := range old {
		seen[x]++
	}
	var extra []string
	for _, x := range cur {
		if seen[x] > 0 {
			seen[x]--
			continue
		}
		extra = append(extra, x)
	}
	return extra
}

func links() []string {
	ifaces, err := net.Interfaces()
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	var out []string
	for _, i := range ifaces {
		out = append(out, i.Name)
	}
	sort.Strings(out)
	return out
}

func dirNames(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// children lists the live (not zombie) children of this process as
// "PID command", from /proc/PID/stat (proc(5)).
func children() []string {
	me := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "PID (comm) STATE PPID ..."; comm may hold spaces, so split after ')'.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		rest := strings.Fields(s[i+1:])
		if len(rest) < 2 || rest[0] == "Z" {
			continue
		}
		if ppid, _ := strconv.Atoi(rest[1]); ppid == me {
			out = append(out, fmt.Sprintf("%d %s", pid, s[strings.IndexByte(s, '(')+1:i]))
		}
	}
	return out
}

// supervisors lists the live processes that are an engine's supervisor:
// a command line "… supervise [flags] ID" with ID a 64-hex container ID,
// as final/engine starts them (the binary may be minibox or a test
// binary standing in for it).
func supervisors() []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if isSupervisor(args) {
			out = append(out, e.Name()+" "+strings.Join(args, " "))
		}
	}
	return out
}

// isSupervisor reports whether args are a supervisor's command line.
func isSupervisor(args []string) bool {
	for i := 1; i < len(args); i++ {
		if args[i] != "supervise" {
			continue
		}
		for _, a := range args[i+1:] {
			if cleanup.IsEngineID(a) {
				return true
			}
		}
	}
	return false
}

// waitForChildren gives exiting processes a moment, reaping the zombies that
// the subreaper inherits, then takes the final snapshot. Children that
// were there before the test (existing) are not waited for.
func waitForChildren(existing []string, limit time.Duration) KernelState {
	deadline := time.Now().Add(limit)
	for {
		reapZombies()
		// Only the children while waiting: a whole snapshot (the mount
		// table, the cgroup sweep) every 20ms would be wasted.
		if len(newItems(existing, children())) == 0 || time.Now().After(deadline) {
			return Snapshot()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func reapZombies() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

// killChildren kills the leftover processes. Their own children are
// reparented to us (the subreaper) as they die, so repeat a few rounds;
// children that existed before the test are spared.
func killChildren(existing, list []string) {
	for round := 0; round < 5 && len(list) > 0; round++ {
		for _, c := range list {
			pid, _ := strconv.Atoi(strings.Fields(c)[0])
			if pid > 0 {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
		time.Sleep(50 * time.Millisecond)
		reapZombies()
		list = newItems(existing, children())
	}
}
