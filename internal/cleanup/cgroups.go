package cleanup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

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

// CgroupRoot is where the cgroup file systems are mounted, where the
// stages look for them.
const CgroupRoot = "/sys/fs/cgroup"

// IsCgroup2 is stage 03's rule (as runc and youki decide): the host is
// cgroup v2 when its cgroup root, path, is itself a cgroup2 file system
// (statfs, as stat -fc %T does); otherwise it is v1, hybrid included, with
// one tree per controller. Cleanup and doctor decide with it alike.
func IsCgroup2(path string) bool { return statfsType(path) == unix.CGROUP2_SUPER_MAGIC }

// CgroupTrees returns the cgroup trees under root, as stage 03 decides:
// root itself when it is a cgroup2 file system (v2), otherwise each
// directory in it that is a cgroup tree (v1 and hybrid: memory, pids,
// cpu,cpuacct, unified, …), each once however many links lead to it.
func CgroupTrees(root string) []string {
	if IsCgroup2(root) {
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

func isCgroupFS(path string) bool {
	t := statfsType(path)
	return t == unix.CGROUP_SUPER_MAGIC || t == unix.CGROUP2_SUPER_MAGIC
}

// findGroups lists every group below each tree's minibox/, the deepest
// first, marking busy the ones in use (themselves or below).
func findGroups(env Env) ([]Object, error) {
	holders := procsHolders()
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
			busy := groupInUse(g, holders)
			if busy == "" {
				busy = engineGroupInUse(env, filepath.Base(g))
			}
			out = append(out, Object{Kind: cgroupKind, Name: g, Busy: busy})
		}
	}
	return out, nil
}

// findParents lists each tree's minibox/ parent, busy while a group below
// it is in use: removing the parent would take the group with it, or, the
// moment before a stage makes its group, make that mkdir fail.
func findParents(env Env) ([]Object, error) {
	holders := procsHolders()
	var out []Object
	for _, tree := range CgroupTrees(env.CgroupRoot) {
		parent := filepath.Join(tree, "minibox")
		if info, err := os.Stat(parent); err != nil || !info.IsDir() {
			continue
		}
		out = append(out, Object{Kind: parentKind, Name: parent, Busy: groupInUse(parent, holders)})
	}
	return out, nil
}

// groupInUse says why the group dir, or a group below it, is in use, or "":
// it holds processes (a container running), or a process has its
// cgroup.procs open. The second covers a container that is starting: the
// stage makes the group, opens its cgroup.procs (exec 3> …/cgroup.procs)
// and keeps it open for the container's whole life, but the container
// joins through it only as its last step before exec, so until then the
// group holds no process.
func groupInUse(dir string, holders map[fileID][]string) string {
	if pids := processesBelow(dir); len(pids) > 0 {
		return fmt.Sprintf("holds processes %s: a container still running? Stop it (%s), then run minibox cleanup again",
			describePIDs(pids), stopHint(dir, pids))
	}
	if pids := holdersBelow(dir, holders); len(pids) > 0 {
		return fmt.Sprintf("process %s has its cgroup.procs open: a container starting or running? Stop it (%s), then run minibox cleanup again",
			describePIDs(pids), stopHint(dir, pids))
	}
	return ""
}

// engineGroupInUse says why the group named name is an engine
// container's that is being started, or "": the engine's groups are
// minibox/<12 hex> of a container whose supervisor runs; the supervisor
// makes the group before the container's init joins it, and until then
// the group is empty.
func engineGroupInUse(env Env, name string) string {
	if len(name) != 12 || !isLowerHex(name) {
		return ""
	}
	for _, root := range env.DataRoots {
		matches, _ := filepath.Glob(filepath.Join(root, engineContainers, name+"*"))
		for _, dir := range matches {
			id := filepath.Base(dir)
			if !IsEngineID(id) {
				continue
			}
			if release, busy := engineSupervisor(root, id); busy != "" {
				return "engine " + busy
			} else {
				release()
			}
		}
	}
	return ""
}

// stopHint is how to stop what holds group dir: an engine container's
// group is minibox/<12 hex>, stopped by minibox stop; a stage's by kill.
func stopHint(dir string, pids []string) string {
	if name := filepath.Base(dir); len(name) == 12 && isLowerHex(name) {
		return "minibox stop " + name + ", or kill " + strings.Join(pids, " ")
	}
	return "kill " + strings.Join(pids, " ")
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

// fileID identifies a file whatever path leads to it: the path a process
// sees depends on its mount namespace and on which link it opened
// (cpu or cpu,cpuacct), the device and inode do not.
type fileID struct{ dev, ino uint64 }

func idOf(info fs.FileInfo) (fileID, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}, true
}

// procsHolders maps every cgroup.procs file that a process has open to the
// PIDs of those processes (/proc/PID/fd/*, as lsof reads them), this one
// included.
func procsHolders() map[fileID][]string {
	out := map[fileID][]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		fdDir := filepath.Join("/proc", e.Name(), "fd")
		fds, _ := os.ReadDir(fdDir)
		for _, fd := range fds {
			link := filepath.Join(fdDir, fd.Name())
			// The cheap readlink first: only cgroup.procs files are worth a stat.
			if target, err := os.Readlink(link); err != nil || !strings.HasSuffix(target, "/cgroup.procs") {
				continue
			}
			info, err := os.Stat(link)
			if err != nil {
				continue
			}
			if id, ok := idOf(info); ok {
				out[id] = appendOnce(out[id], e.Name())
			}
		}
	}
	return out
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// holdersBelow lists the PIDs of the processes that have the cgroup.procs
// of the group dir, or of a group below it, open.
func holdersBelow(dir string, holders map[fileID][]string) []string {
	if len(holders) == 0 {
		return nil
	}
	var pids []string
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		info, err := os.Stat(filepath.Join(path, "cgroup.procs"))
		if err != nil {
			return nil
		}
		if id, ok := idOf(info); ok {
			for _, pid := range holders[id] {
				pids = appendOnce(pids, pid)
			}
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
