package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// timeOne runs cmd, timed from fork to exit. A failing command fails b
// with its output.
func timeOne(b *testing.B, cmd *exec.Cmd) time.Duration {
	b.Helper()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return d
}

// settle waits until the engines' processes that outlived their command
// are gone (at most 5 s), and returns how long that took. TestMain makes
// the benchmark a child subreaper (prctl(2) PR_SET_CHILD_SUBREAPER), so
// that they are its children once their parents have exited: podman's
// conmon and `podman container cleanup`, minibox's supervisor. Children
// that were there before (base: the registry) do not count.
func settle(b *testing.B, base map[int]bool) time.Duration {
	b.Helper()
	start := time.Now()
	for time.Since(start) < 5*time.Second {
		busy := false
		for pid, zombie := range children() {
			_, before := base[pid]
			switch {
			case before:
			case zombie:
				var ws unix.WaitStatus
				_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil) // an orphan that has ended
			default:
				busy = true
			}
		}
		if !busy {
			return time.Since(start)
		}
		time.Sleep(time.Millisecond)
	}
	var left []string
	for pid, zombie := range children() {
		if _, before := base[pid]; !before && !zombie {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			left = append(left, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(cmdline), "\x00", " ")))
		}
	}
	b.Logf("settle: still running after 5 s: %s", strings.Join(left, "; "))
	return time.Since(start)
}

// children are this process's children, and whether each is a zombie.
func children() map[int]bool {
	out := map[int]bool{}
	self := os.Getpid()
	for _, p := range procStats() {
		if p.ppid == self {
			out[p.pid] = p.zombie
		}
	}
	return out
}

// median of durations (the mean of the middle two for an even count).
func median(durations []time.Duration) time.Duration {
	if len(durations) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), durations...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// medianOf is median for plain numbers.
func medianOf(values []float64) float64 {
	if len(values) == 0 {
		return 0
	}
	s := append([]float64(nil), values...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// reportRatio reports podman's value over minibox's, when minibox's line
// ran (with -bench podman alone it did not).
func reportRatio(b *testing.B, unit string, podman, minibox float64) {
	if minibox > 0 {
		b.ReportMetric(podman/minibox, unit)
	}
}

// pssKiB is a process's proportional set size in KiB: its private pages
// plus its share of the pages it shares (Pss in smaps_rollup).
func pssKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "Pss:" {
			return strconv.ParseInt(fields[1], 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/proc/%d/smaps_rollup: no Pss line", pid)
}

// processTree maps each PID to its children's.
func processTree() map[int][]int {
	tree := map[int][]int{}
	for _, p := range procStats() {
		tree[p.ppid] = append(tree[p.ppid], p.pid)
	}
	return tree
}

// procStat is what the benchmarks read of a process's /proc/PID/stat.
type procStat struct {
	pid, ppid int
	zombie    bool
}

// procStats are the processes running now (one that exits meanwhile is
// left out).
func procStats() []procStat {
	entries, _ := os.ReadDir("/proc")
	var out []procStat
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces and parentheses.
		fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		if len(fields) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(fields[1]); err == nil {
			out = append(out, procStat{pid: pid, ppid: ppid, zombie: fields[0] == "Z"})
		}
	}
	return out
}

// descendants are pid's children, their children, and so on.
func descendants(tree map[int][]int, pid int) []int {
	var out []int
	for _, c := range tree[pid] {
		out = append(out, c)
		out = append(out, descendants(tree, c)...)
	}
	return out
}

// memoryPerContainer is, averaged over the containers whose supervisors
// (conmon for podman) are monitors, the PSS in KiB of the supervisor and
// of the container's processes (the supervisor's descendants).
func memoryPerContainer(monitors []int) (supervisor, processes float64, err error) {
	tree := processTree()
	var sup, procs int64
	for _, m := range monitors {
		kib, err := pssKiB(m)
		if err != nil {
			return 0, 0, fmt.Errorf("supervisor %d: %w", m, err)
		}
		sup += kib
		inside := descendants(tree, m)
		if len(inside) == 0 {
			return 0, 0, fmt.Errorf("supervisor %d has no container process", m)
		}
		for _, pid := range inside {
			kib, err := pssKiB(pid)
			if err != nil {
				return 0, 0, fmt.Errorf("container process %d: %w", pid, err)
			}
			procs += kib
		}
	}
	n := float64(len(monitors))
	return float64(sup) / n, float64(procs) / n, nil
}

// diskUsage is what du -x would say of dirs, in bytes: the blocks of every
// file once (hard links counted once), not crossing into other file
// systems (a running container's rootfs is an overlay mount over the
// image's layers: its files are the image's, counted there). A file that
// vanishes during the walk is skipped.
func diskUsage(dirs ...string) (int64, error) {
	seen := map[[2]uint64]bool{}
	var total int64
	for _, dir := range dirs {
		var top unix.Stat_t
		if err := unix.Lstat(dir, &top); err != nil {
			return 0, fmt.Errorf("du %s: %w", dir, err)
		}
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			var st unix.Stat_t
			if err := unix.Lstat(path, &st); err != nil {
				if errors.Is(err, unix.ENOENT) {
					return nil
				}
				return err
			}
			if st.Dev != top.Dev {
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			key := [2]uint64{st.Dev, st.Ino}
			if seen[key] {
				return nil
			}
			seen[key] = true
			total += st.Blocks * 512
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("du %s: %w", dir, err)
		}
	}
	return total, nil
}

// mountInfo is /proc/self/mountinfo's mount points and file system types.
func mountInfo() (points, types []string, err error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, nil, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		points = append(points, unescapeMountinfo(fields[4]))
		types = append(types, fields[sep+1])
	}
	return points, types, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountsUnder are the mount points below dir, in mount order.
func mountsUnder(dir string) ([]string, error) {
	points, _, err := mountInfo()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range points {
		if strings.HasPrefix(p, dir+string(filepath.Separator)) {
			out = append(out, p)
		}
	}
	return out, nil
}

// unmountDetach unmounts path lazily; already gone is fine.
func unmountDetach(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}
