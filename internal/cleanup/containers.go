package cleanup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ContainerDirs are the per-container directories of stage 04 and later,
// $ROOT/containers/<id>/ (upper, work, merged, lower/): a stage removes its
// own when its container exits, so one that is still there was kept for
// commit (--keep writes a file "kept" in it) or belongs to a stage that was
// killed. While the stage runs, the file "pid" in it holds the stage's
// PID: a directory whose process is alive is in use, reported busy and
// left alone. Only directories named by a container ID (12 hex digits)
// directly in $ROOT/containers are minibox's; symlinks are never followed,
// and nothing else in the data root (layers/, the demo rootfs) is touched.
var ContainerDirs = Kind{Name: containerKind, Find: findContainerDirs, Remove: removeContainerDir}

const (
	containerKind = "container dir"
	keptDetail    = "kept by --keep"
	// settingUp is how long a directory without a pid file counts as one a
	// stage is still setting up: it makes the directories, then writes pid.
	settingUp = time.Minute
)

var containerDirs = dataDir{sub: "containers", match: IsContainerID}

// IsContainerID reports whether name is a container ID: 12 lower-case hex
// digits, as the stages make them.
func IsContainerID(name string) bool {
	if len(name) != 12 {
		return false
	}
	for _, c := range name {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func findContainerDirs(env Env) ([]Object, error) {
	dirs, err := containerDirs.list(env)
	out := make([]Object, 0, len(dirs))
	for _, dir := range dirs {
		o := Object{Kind: containerKind, Name: dir, Busy: containerInUse(dir)}
		if isKept(dir) {
			o.Detail = keptDetail
		}
		out = append(out, o)
	}
	return out, err
}

func isKept(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, "kept"))
	return err == nil
}

// containerInUse says why the container directory dir is in use, or "":
// its stage is alive, or, without a pid file and not kept, a stage made it
// moments ago and is still setting it up.
func containerInUse(dir string) string {
	if pid := liveStage(dir); pid != "" {
		return fmt.Sprintf("in use by process %s: a container still running? Stop it (kill %s), then run minibox cleanup again",
			describePIDs([]string{pid}), pid)
	}
	if _, err := os.Lstat(filepath.Join(dir, "pid")); err == nil || isKept(dir) {
		return ""
	}
	if age, ok := youngerThan(dir, settingUp); ok {
		return fmt.Sprintf("no pid file yet, made %s ago: a stage may be setting it up; run minibox cleanup again in a minute", age)
	}
	return ""
}

// youngerThan reports whether path was modified less than limit ago, and
// how long ago.
func youngerThan(path string, limit time.Duration) (time.Duration, bool) {
	info, err := os.Lstat(path)
	if err != nil {
		return 0, false
	}
	age := time.Since(info.ModTime())
	return age.Round(time.Second), age < limit
}

// liveStage returns the PID in dir's pid file if that process is alive,
// else "". Any live process counts, whatever its name: a student's stage
// may be called anything (stage04, 04-layers, a.out), and a stale
// directory kept a little longer (until a process that reused the PID
// ends) is harmless, where a running container's upper removed is not.
func liveStage(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		return ""
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 || !processAlive(pid) {
		return ""
	}
	return strconv.Itoa(pid)
}

// processAlive reports whether pid is a live process: present in /proc and
// not a zombie (a killed stage its parent has not reaped yet is dead).
func processAlive(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// "PID (comm) STATE …": comm may hold spaces and parentheses.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return false
	}
	rest := strings.Fields(s[i+1:])
	return len(rest) > 0 && rest[0] != "Z" && rest[0] != "X"
}

// removeContainerDir removes one container directory with everything in
// it. It checks again what Find checked, because the leak check removes
// what it found without asking: the exact form <root>/containers/<12 hex>,
// no symlinks, no live process in its pid file, nothing mounted in it.
func removeContainerDir(o Object) error {
	dir := o.Name
	if err := containerDirs.check(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // gone already: removed
		}
		return err
	}
	if pid := liveStage(dir); pid != "" {
		return fmt.Errorf("refusing to remove %s: process %s, named in its pid file, is alive", dir, describePIDs([]string{pid}))
	}
	return removeTree(dir)
}
