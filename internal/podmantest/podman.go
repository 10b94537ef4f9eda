// Package podmantest runs podman, the reference engine, for tests and
// benchmarks: with storage, configuration and cgroups of its own, so the
// machine's podman (if any) and its images are never touched, and
// everything it made removed at the end (containers, images, mounts,
// cgroups).
package podmantest

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/internal/testenv"
)

// CgroupParent keeps podman's cgroups (the containers' and conmon's) in
// the minibox sub-tree, the only one tests may write: podman's default is
// /libpod_parent.
const CgroupParent = "/minibox/podman"

// Podman is one podman with everything of its own under a directory.
type Podman struct {
	dir     string
	runroot string   // short: podman refuses a runroot of more than 50 characters
	global  []string // the same for every command: storage, cgroups, runtime
	env     []string
	// madeMinibox are the cgroup hierarchies where podman made the
	// minibox directory (it did not exist before): removed at the end.
	madeMinibox []string
}

// New makes a podman under a temporary directory of tb, removed with
// everything it made when tb ends. Without podman, tb fails (with
// MINIBOX_REQUIRE_ROOT=1) or is skipped (testenv.Require).
func New(tb testing.TB) *Podman {
	tb.Helper()
	_, err := exec.LookPath("podman")
	testenv.Require(tb, err == nil, "podman is not installed (Debian package podman)")
	dir := tb.TempDir()
	conf, err := writeConf(dir)
	if err != nil {
		tb.Fatal(err)
	}
	runroot, err := os.MkdirTemp("", "mbp-")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Podman{
		dir:     dir,
		runroot: runroot,
		global: []string{"--root", filepath.Join(dir, "root"), "--runroot", runroot,
			"--tmpdir", filepath.Join(dir, "tmp"), "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs"},
		env: append(os.Environ(), "CONTAINERS_CONF="+conf),
	}
	// crun, podman's default runtime, refuses hybrid cgroup hosts; runc
	// works everywhere.
	if !unifiedCgroups() {
		p.global = append(p.global, "--runtime", "runc")
	}
	hierarchies, err := CgroupHierarchies()
	if err != nil {
		tb.Fatal(err)
	}
	for _, h := range hierarchies {
		if _, err := os.Stat(filepath.Join(h, "minibox")); errors.Is(err, fs.ErrNotExist) {
			p.madeMinibox = append(p.madeMinibox, h)
		}
	}
	tb.Cleanup(func() {
		p.removeAll(tb)
		UnmountUnder(tb, dir)
		UnmountUnder(tb, runroot)
		if err := os.RemoveAll(runroot); err != nil {
			tb.Error(err)
		}
	})
	return p
}

// Dirs are where podman keeps its images and containers (its --root) and
// its run-time state (--runroot): what its containers cost on disk.
func (p *Podman) Dirs() []string { return []string{filepath.Join(p.dir, "root"), p.runroot} }

// Cmd is a podman command on this podman's storage.
func (p *Podman) Cmd(args ...string) *exec.Cmd {
	cmd := exec.Command("podman", append(append([]string{}, p.global...), args...)...)
	cmd.Env = p.env
	return cmd
}

// Run is `podman run ARGS…` with the cgroups in the minibox sub-tree.
func (p *Podman) Run(args ...string) *exec.Cmd {
	return p.Cmd(append([]string{"run", "--cgroup-parent", CgroupParent}, args...)...)
}

// Output runs a podman command and fails tb with its output if it fails;
// it returns the combined output.
func (p *Podman) Output(tb testing.TB, cmd *exec.Cmd) string {
	tb.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return string(out)
}

// writeConf writes podman's containers.conf: the cgroupfs manager (no
// systemd here), events in a file of its own, and ulimits podman can set.
// root lacks CAP_SYS_RESOURCE here, so a container's rlimits must stay
// within podman's own hard limits, and podman lowers its own RLIMIT_NPROC
// to 32768 at start (it raises NOFILE, if it may).
func writeConf(dir string) (string, error) {
	nofile, err := hardLimit(unix.RLIMIT_NOFILE, 1<<20)
	if err != nil {
		return "", err
	}
	nproc, err := hardLimit(unix.RLIMIT_NPROC, 32768)
	if err != nil {
		return "", err
	}
	conf := fmt.Sprintf(`[containers]
default_ulimits = ["nofile=%d:%d", "nproc=%d:%d"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
`, nofile, nofile, nproc, nproc, filepath.Join(dir, "events.log"))
	path := filepath.Join(dir, "containers.conf")
	return path, os.WriteFile(path, []byte(conf), 0o600)
}

// hardLimit is this process's hard limit of resource, at most max.
func hardLimit(resource int, max uint64) (uint64, error) {
	var l unix.Rlimit
	if err := unix.Getrlimit(resource, &l); err != nil {
		return 0, fmt.Errorf("getrlimit %d: %w", resource, err)
	}
	if l.Max > max {
		return max, nil
	}
	return l.Max, nil
}

// unifiedCgroups reports whether /sys/fs/cgroup is cgroup v2 alone.
func unifiedCgroups() bool {
	var st unix.Statfs_t
	return unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// removeAll removes podman's containers and images, then its cgroups (the
// minibox directories it made too).
func (p *Podman) removeAll(tb testing.TB) {
	for _, args := range [][]string{{"rm", "-f", "-a", "-t", "0"}, {"rmi", "-a", "-f"}} {
		if out, err := p.Cmd(args...).CombinedOutput(); err != nil {
			tb.Errorf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	p.waitForStragglers(tb)
	hierarchies, err := CgroupHierarchies()
	if err != nil {
		tb.Error(err)
		return
	}
	for _, h := range hierarchies {
		if err := RemoveCgroupTree(filepath.Join(h, CgroupParent)); err != nil {
			tb.Error(err)
		}
	}
	for _, h := range p.madeMinibox {
		// Not empty: a minibox container of another test lives there now.
		if err := unix.Rmdir(filepath.Join(h, "minibox")); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOTEMPTY) {
			tb.Errorf("rmdir %s: %v", filepath.Join(h, "minibox"), err)
		}
	}
}

// waitForStragglers waits (at most 10 s) until no process works on this
// podman's storage any longer: a container's conmon runs `podman container
// cleanup` (with our --root) when the container ends, after `podman rm`
// has returned, and it takes the storage's locks again (storage.lock,
// overlay-layers/layers.lock), which would reappear in a directory being
// removed.
func (p *Podman) waitForStragglers(tb testing.TB) {
	root := filepath.Join(p.dir, "root")
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		left := processesNaming(root)
		if len(left) == 0 {
			return
		}
		if time.Since(start) > 10*time.Second {
			tb.Errorf("podman's processes still running after 10 s: %s", strings.Join(left, "; "))
			return
		}
	}
}

// processesNaming lists the processes whose command line holds s, as
// "PID command line".
func processesNaming(s string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), s) {
			out = append(out, e.Name()+" "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return out
}

// CgroupHierarchies are the mount points of the cgroup file systems.
func CgroupHierarchies() ([]string, error) {
	mounts, err := mountInfo()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, m := range mounts {
		if (m.fstype == "cgroup" || m.fstype == "cgroup2") && !seen[m.point] {
			seen[m.point] = true
			out = append(out, m.point)
		}
	}
	return out, nil
}

// RemoveCgroupTree removes the cgroup dir and the ones below it, deepest
// first (a cgroup directory goes with rmdir, its files with it).
func RemoveCgroupTree(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cgroups under %s: %w", dir, err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := unix.Rmdir(dirs[i]); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("rmdir %s: %w", dirs[i], err)
		}
	}
	return nil
}

// UnmountUnder unmounts (lazily, deepest first) every mount at or below
// dir: podman's storage leaves its overlay and shm mounts there.
func UnmountUnder(tb testing.TB, dir string) {
	mounts, err := mountInfo()
	if err != nil {
		tb.Error(err)
		return
	}
	var points []string
	for _, m := range mounts {
		if m.point == dir || strings.HasPrefix(m.point, dir+"/") {
			points = append(points, m.point)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			tb.Errorf("unmount %s: %v", p, err)
		}
	}
}

type mount struct{ point, fstype string }

// mountInfo reads /proc/self/mountinfo: each mount's point and type.
func mountInfo() ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mount
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		before, after, ok := strings.Cut(lines.Text(), " - ")
		fields, tail := strings.Fields(before), strings.Fields(after)
		if !ok || len(fields) < 5 || len(tail) < 1 {
			continue
		}
		out = append(out, mount{point: unescape(fields[4]), fstype: tail[0]})
	}
	return out, lines.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
