package cleanup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Cgroups are the groups minibox/<id> that a stage made and did not remove
// (its process was killed): in the cgroup v2 tree, /sys/fs/cgroup/minibox/*,
// and in each v1 controller tree, /sys/fs/cgroup/<controller>/minibox/*.
// Cleanup kills nothing: a group that still holds processes belongs to a
// container that is still running (a stage killed with SIGKILL takes its
// container with it, by the death signal it set), so it is reported, with
// the command that ends it, and left alone.
var Cgroups = Kind{Name: cgroupKind, Find: findGroups, Remove: removeGroup}

// CgroupParents are the minibox/ parents of those groups. Stage 03 leaves
// its parent in place (as docker leaves its own): cleanup removes it once
// it is empty, and a leak check does not count it.
var CgroupParents = Kind{Name: parentKind, Shared: true, Find: findParents, Remove: removeParent}

// The kinds' names, as objects carry them.
const (
	cgroupKind = "cgroup"
	parentKind = "cgroup parent"
)

// CgroupTrees returns the cgroup trees under root, as stage 03 decides:
// root itself when it is a cgroup2 file system (v2), otherwise each
// directory in it that is a cgroup tree (v1 and hybrid: memory, pids,
// cpu,cpuacct, unified, …), each once however many links lead to it.
func CgroupTrees(root string) []string {
	if isCgroup2(root) {
		return []string{root}
	}
	entries, _ := os.ReadDir(root)
	seen := map[string]bool{}
	var out []string
	for _, e := range entries {
		real, err := filepath.EvalSymlinks(filepath.Join(root, e.Name()))
		if err != nil || seen[real] || !isCgroupFS(real) {
			continue
		}
		seen[real] = true
		out = append(out, real)
	}
	sort.Strings(out)
	return out
}

func statfsType(path string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0
	}
	return int64(st.Type)
}

func isCgroup2(path string) bool { return statfsType(path) == unix.CGROUP2_SUPER_MAGIC }

func isCgroupFS(path string) bool {
	t := statfsType(path)
	return t == unix.CGROUP_SUPER_MAGIC || t == unix.CGROUP2_SUPER_MAGIC
}

// findGroups lists every group below each tree's minibox/, the deepest
// first, marking busy the ones that hold processes (themselves or below).
func findGroups(env Env) ([]Object, error) {
	var out []Object
	for _, tree := range CgroupTrees(env.CgroupRoot) {
		var groups []string
		parent := filepath.Join(tree, "minibox")
		_ = filepath.WalkDir(parent, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() && path != parent {
				groups = append(groups, path)
			}
			return nil
		})
		sort.SliceStable(groups, func(i, j int) bool {
			return strings.Count(groups[i], "/") > strings.Count(groups[j], "/")
		})
		for _, g := range groups {
			o := Object{Kind: cgroupKind, Name: g}
			if pids := processesBelow(g); len(pids) > 0 {
				o.Busy = busyGroup(pids)
			}
			out = append(out, o)
		}
	}
	return out, nil
}

// findParents lists each tree's minibox/ parent.
func findParents(env Env) ([]Object, error) {
	var out []Object
	for _, tree := range CgroupTrees(env.CgroupRoot) {
		parent := filepath.Join(tree, "minibox")
		if info, err := os.Stat(parent); err != nil || !info.IsDir() {
			continue
		}
		o := Object{Kind: parentKind, Name: parent}
		if pids := processesBelow(parent); len(pids) > 0 {
			o.Busy = busyGroup(pids)
		}
		out = append(out, o)
	}
	return out, nil
}

func busyGroup(pids []string) string {
	return fmt.Sprintf("holds processes %s: a container still running? Stop it (kill %s), then run minibox cleanup again",
		describePIDs(pids), strings.Join(pids, " "))
}

// processesBelow lists the PIDs in the group dir and in every group below it.
func processesBelow(dir string) []string {
	var pids []string
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if err == nil {
			pids = append(pids, strings.Fields(string(data))...)
		}
		return nil
	})
	return pids
}

// describePIDs names each process: "1234 (sleep)".
func describePIDs(pids []string) string {
	var parts []string
	for _, p := range pids {
		comm, err := os.ReadFile(filepath.Join("/proc", p, "comm"))
		if err != nil {
			parts = append(parts, p)
			continue
		}
		parts = append(parts, p+" ("+strings.TrimSpace(string(comm))+")")
	}
	return strings.Join(parts, ", ")
}

// removeGroup removes an empty group (rmdir: a cgroup directory goes with
// its files). It refuses anything outside a minibox/ sub-tree: cleanup
// never touches a cgroup minibox did not make.
func removeGroup(o Object) error {
	if !strings.Contains(o.Name, "/minibox/") {
		return fmt.Errorf("refusing to remove %s: not in a minibox/ sub-tree", o.Name)
	}
	return rmdirGroup(o.Name)
}

func removeParent(o Object) error {
	if filepath.Base(o.Name) != "minibox" {
		return fmt.Errorf("refusing to remove %s: not a minibox/ parent", o.Name)
	}
	return rmdirGroup(o.Name)
}

func rmdirGroup(dir string) error {
	err := unix.Rmdir(dir)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.EBUSY), errors.Is(err, unix.ENOTEMPTY):
		return fmt.Errorf("rmdir %s: it still holds processes or groups: %w", dir, err)
	}
	return fmt.Errorf("rmdir %s: %w", dir, err)
}
