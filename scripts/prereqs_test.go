// Package scripts_test tests the shell scripts of scripts/.
package scripts_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/internal/cleanup"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// prereqs runs install-prereqs.sh --list with args and the cgroup root
// cgroupRoot ("" for the host's), returning the packages it wants.
func prereqs(t *testing.T, cgroupRoot string, args ...string) []string {
	t.Helper()
	cmd := exec.Command("bash", append([]string{"install-prereqs.sh", "--list"}, args...)...)
	cmd.Env = os.Environ()
	if cgroupRoot != "" {
		cmd.Env = append(cmd.Env, "MINIBOX_CGROUP_ROOT="+cgroupRoot)
	}
	out, err := cmd.Output()
	require.NoError(t, err)
	return strings.Fields(string(out))
}

// cgroup2Mount returns where a cgroup2 file system is mounted on this host
// (the root on a pure v2 host, unified/ on a hybrid one), or "".
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	for _, m := range cleanup.ParseMountinfo(string(data)) {
		if m.FSType == "cgroup2" {
			return m.Point
		}
	}
	return ""
}

func TestPrereqsForTheTour(t *testing.T) {
	assert.Equal(t, []string{"busybox-static", "iproute2", "iptables", "docker-registry", "skopeo", "umoci", "curl", "runc", "podman"}, prereqs(t, ""))
}

// QEMU only where make test boots the cgroup v2 VM: not on a pure v2 host.
func TestPrereqsForTheTestsOnAPureV2Host(t *testing.T) {
	v2 := cgroup2Mount(t)
	testenv.Require(t, v2 != "", "a cgroup2 mount to stand in for a pure v2 host's /sys/fs/cgroup")
	assert.Equal(t, []string{"busybox-static", "iproute2", "iptables", "docker-registry", "skopeo", "umoci", "curl", "runc", "podman", "shellcheck", "buildah"}, prereqs(t, v2, "--test"))
}

func TestPrereqsForTheTestsOnAV1OrHybridHost(t *testing.T) {
	// Any directory that is not cgroup2 stands in for a v1 or hybrid root.
	assert.Equal(t, []string{"busybox-static", "iproute2", "iptables", "docker-registry", "skopeo", "umoci", "curl", "runc", "podman", "shellcheck", "buildah", "qemu-system-x86"},
		prereqs(t, t.TempDir(), "--test"))
}

// On this host, the script and make test-v2vm agree: QEMU is wanted exactly
// when /sys/fs/cgroup is not cgroup2.
func TestPrereqsMatchTheVMStep(t *testing.T) {
	var st unix.Statfs_t
	require.NoError(t, unix.Statfs("/sys/fs/cgroup", &st))
	pureV2 := st.Type == unix.CGROUP2_SUPER_MAGIC
	assert.Equal(t, !pureV2, contains(prereqs(t, "", "--test"), "qemu-system-x86"))
}

func TestPrereqsUsage(t *testing.T) {
	out, err := exec.Command("bash", "install-prereqs.sh", "--frobnicate").CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	assert.Equal(t, 2, exit.ExitCode())
	assert.Contains(t, string(out), "usage:")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
