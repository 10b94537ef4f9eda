package runtime_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/runtime"
)

// A descriptor the creating process holds without close-on-exec (a
// shell's `exec 7<file`) reaches neither the container's process nor an
// exec'd one: they have stdin, stdout and stderr, and the directory ls
// reads (CVE-2024-21626's class: a host descriptor inside the container).
func TestNoStrayDescriptorReachesTheContainer(t *testing.T) {
	r := kernelTest(t)
	stray, err := unix.Open("/etc/hostname", unix.O_RDONLY, 0) // no O_CLOEXEC
	require.NoError(t, err)
	defer unix.Close(stray)
	flags, err := unix.FcntlInt(uintptr(stray), unix.F_GETFD, 0)
	require.NoError(t, err)
	require.Zero(t, flags&unix.FD_CLOEXEC, "the test's descriptor must be inheritable")

	rd, wr, err := os.Pipe()
	require.NoError(t, err)
	defer rd.Close()
	s := testSpec("sh", "-c", "ls /proc/self/fd; exec sleep 100")
	_, err = r.Create("fds", writeBundle(t, s), runtime.IO{Stdout: wr, Stderr: wr}, "", "")
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Delete("fds", true) })
	require.NoError(t, r.Start("fds"))
	buf := make([]byte, 256)
	n, _ := rd.Read(buf)
	assert.Equal(t, []string{"0", "1", "2", "3"}, strings.Fields(string(buf[:n])), "the container's process")

	p := *s.Process
	p.Args = []string{"ls", "/proc/self/fd"}
	erd, ewr, err := os.Pipe()
	require.NoError(t, err)
	defer erd.Close()
	proc, err := r.Exec("fds", p, runtime.IO{Stdout: ewr, Stderr: ewr})
	ewr.Close()
	require.NoError(t, err)
	out := readAll(t, erd)
	_, err = proc.Wait()
	require.NoError(t, err)
	assert.Equal(t, []string{"0", "1", "2", "3"}, strings.Fields(out), "an exec'd process")
	wr.Close()
}
