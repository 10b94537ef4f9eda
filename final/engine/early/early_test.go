package early

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestOnlyRunWithoutRootOrHelp(t *testing.T) {
	for args, want := range map[string]bool{
		"minibox run IMAGE true":                true,
		"minibox run -d --rm -e A=1 IMAGE":      true,
		"minibox run IMAGE sh -c --rooted":      true,
		"minibox":                               false,
		"minibox ps":                            false,
		"minibox start -a NAME":                 false,
		"minibox --rootfs DIR run IMAGE":        false,
		"minibox run --root /tmp/r IMAGE":       false,
		"minibox run --root=/tmp/r IMAGE":       false,
		"minibox run --help":                    false,
		"minibox run -h":                        false,
		"minibox run IMAGE prog --root ignored": false, // the command's flag: no harm, only slower
	} {
		assert.Equal(t, want, wanted(strings.Fields(args)), args)
	}
}

func TestDataRoot(t *testing.T) {
	t.Setenv("MINIBOX_ROOT", "")
	assert.Equal(t, DefaultRoot, dataRoot())
	t.Setenv("MINIBOX_ROOT", "/srv/mb")
	assert.Equal(t, "/srv/mb", dataRoot())
	t.Setenv("MINIBOX_ROOT", "relative/root") // engine.New would make it absolute
	assert.Equal(t, "", dataRoot())
}

// Start runs the binary as a supervisor of root with a new id, its two
// pipes on descriptors 3 and 4 and nothing else of ours: a descriptor
// our caller left open (here: one without close-on-exec) does not reach
// it, and the word written on GoAhead does.
func TestStartPassesTheWordAndNothingElse(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	leak, err := os.Open(dir)
	require.NoError(t, err)
	defer leak.Close()
	_, err = unix.FcntlInt(leak.Fd(), unix.F_SETFD, 0) // inheritable, as a caller's would be
	require.NoError(t, err)
	shim := filepath.Join(dir, ShimName)
	script := "#!/bin/sh\n{\n echo \"$@\"\n read word <&4\n echo \"$word\"\n" +
		" if [ -e /proc/$$/fd/" + strconv.Itoa(int(leak.Fd())) + " ]; then echo leaked; fi\n} > " + out + "\necho ok >&3\n"
	require.NoError(t, os.WriteFile(shim, []byte(script), 0o755))

	s, err := Start(shim, "/srv/mb")
	require.NoError(t, err)
	assert.Regexp(t, regexp.MustCompile(`^[0-9a-f]{64}$`), s.ID)
	assert.Equal(t, shim, s.Binary)
	_, err = s.GoAhead.WriteString("run\n")
	require.NoError(t, err)
	s.GoAhead.Close()
	line, err := bufio.NewReader(s.Ready).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "ok\n", line)
	s.Ready.Close()
	var ws syscall.WaitStatus
	_, err = syscall.Wait4(s.Pid, &ws, 0, nil)
	require.NoError(t, err)
	require.True(t, ws.Exited() && ws.ExitStatus() == 0, "the stand-in supervisor: %v", ws)
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, "supervise --root /srv/mb "+s.ID+"\nrun\n", string(got))

	other, err := Start(shim, "/srv/mb")
	require.NoError(t, err)
	other.GoAhead.Close() // no word: it ends
	other.Ready.Close()
	_, _ = syscall.Wait4(other.Pid, nil, 0, nil)
	assert.NotEqual(t, s.ID, other.ID, "two containers, one id")
}

func TestStartRefusesNoBinaryOrNoRoot(t *testing.T) {
	_, err := Start(filepath.Join(t.TempDir(), ShimName), "/srv/mb")
	assert.Error(t, err)
	_, err = Start("/bin/true", "")
	assert.Error(t, err)
}
