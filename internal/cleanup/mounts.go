package cleanup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mounts are mounts left by an interrupted lesson or stage: mount points in
// a minibox-* temporary directory (minibox-lesson-*, minibox-stagetest-*)
// or below the demo rootfs (a stage whose mounts escaped its mount
// namespace) or in a data root's containers/ directory (a stage 04 whose
// overlay escaped its mount namespace) or engine/containers/ directory
// (the engine's overlay on engine/containers/<id>/rootfs, left by a
// supervisor that was killed) or build/tmp/ directory (a killed build's
// step overlay), and mounts whose source minibox named
// (minibox, minibox-*). A mount point's path alone is never enough
// elsewhere: /var/lib/minibox may be a volume the user mounted. An engine
// container's mount is busy while its supervisor holds its
// supervisor.lock, or while its init outlives that supervisor.
var Mounts = Kind{Name: mountKind, Find: findMounts, Remove: removeMount}

const mountKind = "mount"

func findMounts(env Env) ([]Object, error) {
	data, err := os.ReadFile(env.Mountinfo)
	if err != nil {
		return nil, err
	}
	all := ParseMountinfo(string(data))
	var ours []Mount
	for _, m := range all {
		if env.madeByMinibox(m) {
			ours = append(ours, m)
		}
	}
	// The deepest first, and of mounts stacked on one point the last
	// (the top one) first: each unmount then uncovers the next.
	for i, j := 0, len(ours)-1; i < j; i, j = i+1, j-1 {
		ours[i], ours[j] = ours[j], ours[i]
	}
	sort.SliceStable(ours, func(i, j int) bool {
		return strings.Count(ours[i].Point, "/") > strings.Count(ours[j].Point, "/")
	})
	users := processesInTempDirs(env.TempDir)
	out := make([]Object, 0, len(ours))
	for _, m := range ours {
		o := Object{Kind: mountKind, Name: m.Point, Detail: m.FSType + " " + m.Source}
		if dir := mintempDir(env.TempDir, m.Point); dir != "" && len(users[dir]) > 0 {
			o.Busy = fmt.Sprintf("a lesson may still be running: process %s works in %s; end the lesson (or kill %s), then run minibox cleanup again",
				strings.Join(users[dir], ", "), dir, strings.Join(users[dir], " "))
		}
		if o.Busy == "" {
			o.Busy = engineMountInUse(m.Point)
		}
		if o.Busy == "" {
			o.Busy = buildMountInUse(m.Point)
		}
		out = append(out, o)
	}
	return out, nil
}

// madeByMinibox reports whether m is a mount minibox (or one of its
// stages, lessons or tests) made.
func (env Env) madeByMinibox(m Mount) bool {
	if m.FSType == "sysfs" && m.Point == "/sys" {
		// ip netns exec NAME mounts a sysfs of that namespace on /sys, with
		// NAME as its source, in a mount namespace of its own: a lesson's
		// or test's namespace may be called minibox-…, but /sys is no
		// leftover.
		return false
	}
	if m.Source == "minibox" || strings.HasPrefix(m.Source, "minibox-") {
		return true
	}
	if mintempDir(env.TempDir, m.Point) != "" {
		return true
	}
	dirs := append([]string{env.Rootfs}, env.Owned...)
	for _, root := range env.DataRoots {
		if root != "" {
			dirs = append(dirs, filepath.Join(root, "containers"), filepath.Join(root, engineContainers), filepath.Join(root, buildTmp))
		}
	}
	for _, dir := range dirs {
		if dir != "" && strings.HasPrefix(m.Point, filepath.Clean(dir)+"/") {
			return true
		}
	}
	return false
}

// mintempDir returns the minibox-* temporary directory that holds point
// (or is point), or "".
func mintempDir(tempDir, point string) string {
	if tempDir == "" {
		return ""
	}
	rest, ok := strings.CutPrefix(point, filepath.Clean(tempDir)+"/")
	if !ok {
		return ""
	}
	first, _, _ := strings.Cut(rest, "/")
	if !strings.HasPrefix(first, "minibox-") {
		return ""
	}
	return filepath.Join(tempDir, first)
}

// processesInTempDirs maps each minibox-* temporary directory to the PIDs
// of the live processes whose working directory is in it: a lesson's demo
// shell works in its lesson's directory, so its mounts are not leftovers
// while it runs.
func processesInTempDirs(tempDir string) map[string][]string {
	out := map[string][]string{}
	entries, _ := os.ReadDir("/proc")
	self := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil || e.Name() == self {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil {
			continue
		}
		if dir := mintempDir(tempDir, cwd); dir != "" {
			out[dir] = append(out[dir], e.Name())
		}
	}
	return out
}

// engineMountInUse says why a mount in an engine container's directory
// is in use, or "" (also for a mount anywhere else).
func engineMountInUse(point string) string {
	root, id, ok := engineContainerOf(point)
	if !ok {
		return ""
	}
	release, busy := engineContainerInUse(root, id)
	if busy == "" {
		release()
	}
	return busy
}

// removeMount detaches the mount (umount -l): it goes at once even if
// something still has a file open in it, as a leftover should. An engine
// container's mount is detached only while cleanup holds the container's
// supervisor lock, after checking again that no supervisor and no init
// runs it: a supervisor starting the container meanwhile fails to take
// its lock rather than lose its root file system.
func removeMount(o Object) error {
	if root, id, ok := engineContainerOf(o.Name); ok {
		release, busy := engineContainerInUse(root, id)
		if busy != "" {
			return fmt.Errorf("refusing to unmount %s: %s", o.Name, busy)
		}
		defer release()
	}
	err := unix.Unmount(o.Name, unix.MNT_DETACH)
	// EINVAL: no longer a mount point; ENOENT: the directory is gone too.
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("umount -l %s: %w", o.Name, err)
}
