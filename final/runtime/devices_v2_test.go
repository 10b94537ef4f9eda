package runtime_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/runtime"
)

// deviceScript tries devices inside the container: "ok" when the open
// worked, "denied" when the kernel said EPERM (the device cgroup), and
// "other: …" for any other error (ENXIO: no such device here, but the
// cgroup let the open through).
const deviceScript = `
try() { # try LABEL REDIRECTION
	if err=$( (eval "exec 3$2") 2>&1 ); then echo "$1: ok"
	else case $err in *"not permitted"*) echo "$1: denied" ;; *) echo "$1: other: $err" ;; esac; fi
}
mknod /tmp/sda b 8 0 && echo "mknod: ok"
mknod /tmp/sdb b 8 16
try sda-read '</tmp/sda'
try sda-write '>/tmp/sda'
try sdb-read '</tmp/sdb'
try null '<>/dev/null'
mknod /tmp/null2 c 1 3
try null2 '<>/tmp/null2'
`

// linux.resources.devices holds inside the container on both cgroup
// versions: a block device the container made itself with mknod (8:0, a
// disk's numbers) opens only as the rules allow (read, not write), one not
// in the rules (8:16) not at all, and the default devices work, also as
// nodes made with mknod. On cgroup v2 the rules are an eBPF program
// attached to the container's cgroup: it is there while the container
// runs and freed by the kernel once delete removes the cgroup.
func TestDeviceAccess(t *testing.T) {
	r := kernelTest(t)
	s := testSpec("sh", "-c", deviceScript)
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs"})
	s.Linux.Resources.Devices = append(s.Linux.Resources.Devices,
		specs.LinuxDeviceCgroup{Allow: true, Type: "b", Major: int64p(8), Minor: int64p(0), Access: "r"})
	out, code := run(t, r, "devices", s)
	require.Equal(t, 0, code, out)
	assert.Equal(t, "ok", field(out, "mknod: "), out)
	assert.NotEqual(t, "denied", field(out, "sda-read: "), "allowed for reading by the rule:\n%s", out)
	assert.Equal(t, "denied", field(out, "sda-write: "), "the rule allows reading only:\n%s", out)
	assert.Equal(t, "denied", field(out, "sdb-read: "), "a device no rule allows:\n%s", out)
	assert.Equal(t, "ok", field(out, "null: "), out)
	assert.Equal(t, "ok", field(out, "null2: "), "the same numbers as /dev/null, made with mknod:\n%s", out)

	if !isCgroup2(t) {
		return // v1: devices.allow/deny, seen above
	}
	// v2: the program, while the container exists, and after delete.
	bundle := writeBundle(t, testSpec("sleep", "100"))
	_, err := r.Create("devprog", bundle, runtime.IO{}, "", "")
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Delete("devprog", true) })
	ids := attachedDevicePrograms(t, "/sys/fs/cgroup/minibox/devprog")
	require.Len(t, ids, 1, "one device program attached to the container's cgroup")
	require.True(t, programExists(t, ids[0]))
	require.NoError(t, r.Delete("devprog", true))
	assert.Eventually(t, func() bool { return !programExists(t, ids[0]) }, 5*time.Second, 10*time.Millisecond,
		"the kernel frees the program (id %d) with the cgroup: no descriptor of ours keeps it", ids[0])
}

// attachedDevicePrograms are the ids of the BPF_CGROUP_DEVICE programs
// attached to the cgroup dir itself (BPF_PROG_QUERY).
func attachedDevicePrograms(t *testing.T, dir string) []uint32 {
	t.Helper()
	f, err := os.Open(filepath.Clean(dir))
	require.NoError(t, err)
	defer f.Close()
	ids := make([]uint32, 16)
	// union bpf_attr's query part: target_fd, attach_type, query_flags,
	// attach_flags, prog_ids, prog_cnt.
	attr := struct {
		targetFd, attachType, queryFlags, attachFlags uint32
		progIDs                                       uint64
		progCnt                                       uint32
		_                                             uint32
	}{targetFd: uint32(f.Fd()), attachType: unix.BPF_CGROUP_DEVICE, progIDs: uint64(uintptr(unsafe.Pointer(&ids[0]))), progCnt: uint32(len(ids))}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_QUERY, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	require.Zero(t, errno, "bpf(BPF_PROG_QUERY) on %s: %v", dir, errno)
	return ids[:attr.progCnt]
}

// programExists reports whether the kernel still has BPF program id.
func programExists(t *testing.T, id uint32) bool {
	t.Helper()
	attr := struct{ id, next, openFlags uint32 }{id: id}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_GET_FD_BY_ID, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno == 0 {
		unix.Close(int(fd))
		return true
	}
	require.True(t, errors.Is(errno, unix.ENOENT), "bpf(BPF_PROG_GET_FD_BY_ID %d): %v", id, errno)
	return false
}
