package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// podmanCgroupParent keeps podman's cgroups (the containers' and conmon's)
// in the minibox sub-tree, the only one the benchmarks may write: podman's
// default is /libpod_parent.
const podmanCgroupParent = "/minibox/bench-podman"

// podman runs the podman binary with storage, configuration and a tmpdir
// of its own under one directory, so the machine's podman (if any) and
// its images are never touched.
type podman struct {
	dir     string
	runroot string   // short: podman refuses a runroot of more than 50 characters
	global  []string // the same for every command: storage, cgroups, runtime
	env     []string
	// madeMinibox are the cgroup hierarchies where podman made the
	// minibox directory (it did not exist before): removed at the end.
	madeMinibox []string
}

// newPodman pulls image into a podman of its own under dir, or says why
// podman is left out: not installed, or it fails to run a container here.
func newPodman(b *testing.B, dir, image string) (*podman, string) {
	b.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		return nil, "podman is not installed (Debian package podman): its lines are skipped"
	}
	conf, err := writePodmanConf(dir)
	if err != nil {
		b.Fatal(err)
	}
	runroot, err := os.MkdirTemp("", "mbp-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { // after removeAll, below
		unmountUnder(b, runroot)
		if err := os.RemoveAll(runroot); err != nil {
			b.Error(err)
		}
	})
	p := &podman{
		dir:     dir,
		runroot: runroot,
		global: []string{"--root", filepath.Join(dir, "root"), "--runroot", runroot,
			"--tmpdir", filepath.Join(dir, "tmp"), "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs"},
		env: append(os.Environ(), "CONTAINERS_CONF="+conf),
	}
	hierarchies, err := cgroupHierarchies()
	if err != nil {
		b.Fatal(err)
	}
	for _, h := range hierarchies {
		if _, err := os.Stat(filepath.Join(h, "minibox")); errors.Is(err, os.ErrNotExist) {
			p.madeMinibox = append(p.madeMinibox, h)
		}
	}
	b.Cleanup(func() { p.removeAll(b) })
	if out, err := p.cmd("pull", "--quiet", "--tls-verify=false", image).CombinedOutput(); err != nil {
		b.Fatalf("podman pull: %v\n%s", err, out)
	}
	// crun, podman's default runtime, refuses hybrid cgroup hosts; runc
	// works everywhere.
	if err := p.try(image); err != nil {
		p.global = append(p.global, "--runtime", "runc")
		if err2 := p.try(image); err2 != nil {
			return nil, fmt.Sprintf("podman fails here, its lines are skipped: %v; with --runtime runc: %v", err, err2)
		}
	}
	return p, ""
}

// writePodmanConf writes podman's containers.conf: the cgroupfs manager
// (no systemd here), events in a file of its own, and ulimits podman can
// set. root lacks CAP_SYS_RESOURCE here, so a container's rlimits must
// stay within podman's own hard limits, and podman lowers its own
// RLIMIT_NPROC to 32768 at start (it raises NOFILE, if it may).
func writePodmanConf(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
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

// cmd is a podman command on this podman's storage.
func (p *podman) cmd(args ...string) *exec.Cmd {
	cmd := exec.Command("podman", append(append([]string{}, p.global...), args...)...)
	cmd.Env = p.env
	return cmd
}

// run is `podman run ARGS…` with the cgroups in the minibox sub-tree.
func (p *podman) run(args ...string) *exec.Cmd {
	return p.cmd(append([]string{"run", "--cgroup-parent", podmanCgroupParent}, args...)...)
}

// try runs one container, to see that podman works here.
func (p *podman) try(image string) error {
	if out, err := p.run("--rm", "--network", "none", image, "true").CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// removeAll removes podman's containers and images, then its cgroups (the
// minibox directories it made too). Its storage mounts go with
// unmountUnder, its files with the temporary directory.
func (p *podman) removeAll(b *testing.B) {
	for _, args := range [][]string{{"rm", "-f", "-a", "-t", "0"}, {"rmi", "-a", "-f"}} {
		if out, err := p.cmd(args...).CombinedOutput(); err != nil {
			b.Errorf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	hierarchies, err := cgroupHierarchies()
	if err != nil {
		b.Error(err)
		return
	}
	for _, h := range hierarchies {
		if err := removeCgroupTree(filepath.Join(h, podmanCgroupParent)); err != nil {
			b.Error(err)
		}
	}
	for _, h := range p.madeMinibox {
		// Not empty: a minibox container of another run lives there now.
		if err := unix.Rmdir(filepath.Join(h, "minibox")); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOTEMPTY) {
			b.Errorf("rmdir %s: %v", filepath.Join(h, "minibox"), err)
		}
	}
}
