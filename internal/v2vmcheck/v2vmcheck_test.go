// Package v2vmcheck is the self-test of scripts/cgroupv2-vm/run.sh, the
// harness that runs a test package inside a throw-away cgroup-v2-only VM.
//
// It only means something inside that VM, so outside it (MINIBOX_IN_V2VM
// unset) it skips:
//
//	scripts/cgroupv2-vm/run.sh ./internal/v2vmcheck -test.v
package v2vmcheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

const cgroupRoot = "/sys/fs/cgroup"

func requireVM(t *testing.T) {
	t.Helper()
	if os.Getenv("MINIBOX_IN_V2VM") != "1" {
		t.Skip("only meaningful inside the cgroup v2 VM (scripts/cgroupv2-vm/run.sh)")
	}
}

// readWords returns the space-separated words of a cgroup interface file.
func readWords(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return strings.Fields(string(b))
}

// TestUnifiedHierarchyOnly checks that /sys/fs/cgroup is cgroup2 itself (not a
// tmpfs of v1 hierarchies, as on a v1 or hybrid host) and that the memory,
// cpu and pids controllers are there and enabled for child groups.
func TestUnifiedHierarchyOnly(t *testing.T) {
	requireVM(t)

	var st unix.Statfs_t
	require.NoError(t, unix.Statfs(cgroupRoot, &st))
	require.EqualValues(t, unix.CGROUP2_SUPER_MAGIC, st.Type,
		"%s is not a cgroup2 mount (statfs type %#x)", cgroupRoot, st.Type)

	controllers := readWords(t, filepath.Join(cgroupRoot, "cgroup.controllers"))
	enabled := readWords(t, filepath.Join(cgroupRoot, "cgroup.subtree_control"))
	for _, c := range []string{"memory", "cpu", "pids"} {
		require.Contains(t, controllers, c, "controller %s missing from cgroup.controllers", c)
		require.Contains(t, enabled, c, "controller %s not enabled in the root's cgroup.subtree_control", c)
	}

	// No cgroup v1 hierarchy may be mounted anywhere.
	mounts, err := os.ReadFile("/proc/self/mounts")
	require.NoError(t, err)
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		require.False(t, len(f) > 2 && f[2] == "cgroup", "cgroup v1 mount found: %s", line)
	}
}

// TestChildCgroupMemoryMax creates a child group, sets a memory limit,
// reads it back, and removes the group again.
func TestChildCgroupMemoryMax(t *testing.T) {
	requireVM(t)

	dir := filepath.Join(cgroupRoot, "minibox-selftest")
	require.NoError(t, os.Mkdir(dir, 0o755))
	t.Cleanup(func() {
		// A cgroup directory is removed with rmdir, never RemoveAll: its
		// interface files cannot be deleted.
		if err := unix.Rmdir(dir); err != nil && !os.IsNotExist(err) {
			t.Errorf("remove %s: %v", dir, err)
		}
	})

	// The controllers enabled in the root appear in the child.
	require.Contains(t, readWords(t, filepath.Join(dir, "cgroup.controllers")), "memory")

	const limit = "33554432" // 32 MiB, page aligned so the kernel keeps it as is
	require.NoError(t, os.WriteFile(filepath.Join(dir, "memory.max"), []byte(limit), 0o644))
	require.Equal(t, []string{limit}, readWords(t, filepath.Join(dir, "memory.max")))

	require.NoError(t, unix.Rmdir(dir))
	require.NoDirExists(t, dir)
}

// TestHarnessEnvironment checks what the harness promises the tests besides
// cgroup v2: root, the prebuilt stage programs, busybox on PATH, the kernel
// modules, and a root file system that pivot_root accepts (an initramfs as
// such is not one).
func TestHarnessEnvironment(t *testing.T) {
	requireVM(t)

	require.Equal(t, 0, os.Geteuid(), "tests in the VM run as root")
	require.Equal(t, "1", os.Getenv("MINIBOX_REQUIRE_ROOT"))
	require.DirExists(t, os.Getenv("MINIBOX_STAGE_BIN"))
	// A process whose root is an unprivileged uid (a user namespace) must
	// still reach the stage programs and temporary directories.
	for _, dir := range []string{"/", os.Getenv("MINIBOX_STAGE_BIN"), os.TempDir()} {
		fi, err := os.Stat(dir)
		require.NoError(t, err)
		require.NotZero(t, fi.Mode().Perm()&0o001, "%s is not searchable by others (mode %v)", dir, fi.Mode())
	}

	_, err := exec.LookPath("busybox")
	require.NoError(t, err, "busybox must be on PATH")

	mods, err := os.ReadFile("/proc/modules")
	require.NoError(t, err)
	for _, m := range []string{"overlay", "veth", "llc", "stp", "bridge"} {
		require.Regexp(t, "(?m)^"+m+" ", string(mods), "module %s not loaded", m)
	}

	// In a mount namespace of its own (gone when the shell exits): an
	// overlay on tmpfs, then pivot_root into it.
	script := `set -e
d=$(mktemp -d)
mount -t tmpfs tmpfs "$d"
mkdir "$d/lower" "$d/upper" "$d/work" "$d/merged"
echo lower >"$d/lower/f"
mount -t overlay overlay -o "lowerdir=$d/lower,upperdir=$d/upper,workdir=$d/work" "$d/merged"
echo upper >"$d/merged/f"
test "$(cat "$d/upper/f")" = upper
mkdir "$d/merged/old"
cd "$d/merged"
pivot_root . old
echo pivoted`
	out, err := exec.Command("unshare", "-m", "sh", "-c", script).CombinedOutput()
	require.NoError(t, err, "overlay + pivot_root failed: %s", out)
	require.Contains(t, string(out), "pivoted")
}
