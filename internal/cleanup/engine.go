package cleanup

// What cleanup knows of the engine (final/engine): its containers live in
// $ROOT/engine/containers/<64 hex>/, each with a supervisor.lock that the
// container's supervisor (`minibox supervise ID`) holds, flock(2)
// LOCK_EX, for as long as it runs the container. A stopped container's
// directory is no leftover (it stays until `minibox rm`, as docker keeps
// its stopped containers), so no kind removes it; but what a supervisor
// makes while it runs the container — the overlay mount on rootfs, the
// runtime's state in $ROOT/engine/runtime/<id>, the cgroup minibox/<12
// hex>, the network's rules, veth and lease — is a leftover once that
// supervisor is gone and the container's init with it.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The engine's places, relative to a data root.
const (
	engineContainers = "engine/containers"
	engineRuntime    = "engine/runtime"
	supervisorLock   = "supervisor.lock"
)

// IsEngineID reports whether name is an engine container's ID: 64
// lower-case hex digits, as docker's.
func IsEngineID(name string) bool { return len(name) == 64 && isLowerHex(name) }

// engineContainerOf splits a path at or below an engine container's
// directory, <root>/engine/containers/<64 hex>[/…], into the data root and
// the ID. ok is false for any other path.
func engineContainerOf(path string) (root, id string, ok bool) {
	marker := "/" + engineContainers + "/"
	i := strings.LastIndex(path, marker)
	if i <= 0 || !filepath.IsAbs(path) {
		return "", "", false
	}
	id, _, _ = strings.Cut(path[i+len(marker):], "/")
	if !IsEngineID(id) {
		return "", "", false
	}
	return path[:i], id, true
}

// engineSupervisor tries the container's supervisor lock the way the
// engine itself does (a shared lock, without waiting): if the supervisor
// holds its exclusive one, the container is its, and nothing of it may be
// removed. On success the caller holds the shared lock, so that no
// supervisor can start the container meanwhile (its own LOCK_EX|LOCK_NB
// fails), until it calls release. A lock file that is missing was never
// taken: the supervisor makes it before it mounts or creates anything.
func engineSupervisor(root, id string) (release func(), busy string) {
	dir := filepath.Join(root, engineContainers, id)
	path := filepath.Join(dir, supervisorLock)
	// O_NONBLOCK: a fifo put there must not hang us; O_NOFOLLOW: a
	// symlink is not the engine's.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return func() {}, ""
	}
	if err != nil {
		return nil, fmt.Sprintf("cannot tell whether its supervisor runs: open %s: %v", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Sprintf("cannot tell whether its supervisor runs: %s is not a regular file", path)
	}
	if err := unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		return nil, fmt.Sprintf("container %.12s is running: its supervisor%s holds %s; stop it (minibox stop %.12s), then run minibox cleanup again",
			id, supervisorPID(dir), supervisorLock, id)
	}
	return func() { unix.Close(fd) }, "" // closing unlocks
}

// supervisorPID names the supervisor the container's record names, if it
// is alive: " process 1234 (minibox)", or "".
func supervisorPID(dir string) string {
	var rec struct{ State struct{ SupervisorPid int } }
	data, err := os.ReadFile(filepath.Join(dir, "container.json"))
	if err != nil || json.Unmarshal(data, &rec) != nil || !processAlive(rec.State.SupervisorPid) {
		return ""
	}
	return ", process " + describePIDs([]string{strconv.Itoa(rec.State.SupervisorPid)}) + ","
}

// engineContainerInUse says why nothing of the engine container id in root
// may be removed, or "": its supervisor runs it, or its init outlived the
// supervisor (the runtime's state names a live init). On "" the caller
// holds the supervisor lock until it calls release.
func engineContainerInUse(root, id string) (release func(), busy string) {
	release, busy = engineSupervisor(root, id)
	if busy != "" {
		return nil, busy
	}
	if why := runtimeInitAlive(filepath.Join(root, engineRuntime, id)); why != "" {
		release()
		return nil, why
	}
	return release, ""
}

// runtimeState is what cleanup reads of final/runtime's state.json.
type runtimeState struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	Pid       int    `json:"pid"`
	InitStart uint64 `json:"initStart"` // /proc/PID/stat field 22: a reused PID is not the init
	Cgroup    *struct {
		Dirs []string `json:"dirs"`
	} `json:"cgroup"`
}

// readRuntimeState reads dir/state.json, never through a symlink. ok is
// false when there is none.
func readRuntimeState(dir string) (st runtimeState, ok bool, err error) {
	path := filepath.Join(dir, "state.json")
	if err := checkRegularFile(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return st, false, nil
		}
		return st, false, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return st, false, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, false, fmt.Errorf("%s: %w", path, err)
	}
	return st, true, nil
}

// runtimeInitAlive says why the runtime's container in state directory
// dir is running, or "": the init its state.json names is alive (and is
// that init: started when the state says).
func runtimeInitAlive(dir string) string {
	st, ok, _ := readRuntimeState(dir)
	if !ok || !initAlive(st.Pid, st.InitStart) {
		return ""
	}
	pid, id := strconv.Itoa(st.Pid), filepath.Base(dir)
	if IsEngineID(id) {
		id = id[:12] // as minibox ps shows it
	}
	return fmt.Sprintf("container %s is running: its init, process %s, is alive; stop it (kill %s), then run minibox cleanup again",
		id, describePIDs([]string{pid}), pid)
}

// initAlive reports whether pid is alive and, when start is known, was
// started at start (clock ticks since boot): the runtime records it so
// that a reused PID is not taken for the init.
func initAlive(pid int, start uint64) bool {
	if pid <= 0 || !processAlive(pid) {
		return false
	}
	if start == 0 {
		return true
	}
	got, err := processStart(pid)
	return err != nil || got == start // unreadable: say alive, the safe side
}

// processStart is field 22 of /proc/PID/stat, the start time.
func processStart(pid int) (uint64, error) {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')') // comm may hold spaces and parentheses
	if i < 0 {
		return 0, errors.New("bad /proc/PID/stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, errors.New("short /proc/PID/stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}
