package runtime

// Descriptors a process inherited by accident. Go opens its own files
// close-on-exec, but a descriptor the process was started with (a shell's
// `exec 7<file`, a pipe its caller forgot) is inherited by every child it
// forks, and so would reach a container: a directory of the host held
// open inside the container leads out of it (/proc/self/fd/N/.., the
// "leaky vessels" CVE-2024-21626 of runc, whose init closes every
// descriptor above stderr before it executes the container's process).

import (
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// CloseOnExecFrom marks every descriptor from lowest up close-on-exec:
// close_range(2) CLOSE_RANGE_CLOEXEC (Linux 5.11), or one fcntl(2) each,
// found in /proc/self/fd. Descriptors handed to a child on purpose
// (exec.Cmd's files) are dup'ed for it whatever their flag.
func CloseOnExecFrom(lowest int) {
	if unix.CloseRange(uint(lowest), math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	dir, err := os.Open("/proc/self/fd")
	if err != nil {
		return
	}
	defer dir.Close()
	names, _ := dir.Readdirnames(-1)
	for _, name := range names {
		if fd, err := strconv.Atoi(name); err == nil && fd >= lowest && fd != int(dir.Fd()) {
			unix.CloseOnExec(fd)
		}
	}
}
