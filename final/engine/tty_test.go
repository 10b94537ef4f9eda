package engine_test

import (
	"bytes"
	"os"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/internal/testenv"
)

// terminal is the test's side of a pseudo-terminal that minibox runs on,
// as a user's terminal emulator: what minibox prints is collected, keys
// are typed on the master.
type terminal struct {
	t      *testing.T
	master *os.File
	mu     sync.Mutex
	out    bytes.Buffer
}

// startOnTerminal starts `minibox ARGS` on a new pseudo-terminal (40 rows,
// 80 columns) that is its controlling terminal, as in a login shell.
func (e *env) startOnTerminal(args ...string) (*terminal, *os.Process) {
	e.t.Helper()
	master, slave := testenv.OpenPTY(e.t, 80)
	cmd := e.command(args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	// A session of its own whose controlling terminal is the pty: the
	// terminal's SIGWINCH goes to its foreground process group, minibox.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	require.NoError(e.t, cmd.Start())
	slave.Close()
	term := &terminal{t: e.t, master: master}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			term.mu.Lock()
			term.out.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return term, cmd.Process
}

// expect waits until the output matches re and returns the first match's
// groups; the output up to the match is consumed.
func (term *terminal) expect(re string) []string {
	term.t.Helper()
	rx := regexp.MustCompile(re)
	var m []string
	ok := assert.Eventually(term.t, func() bool {
		term.mu.Lock()
		defer term.mu.Unlock()
		loc := rx.FindSubmatchIndex(term.out.Bytes())
		if loc == nil {
			return false
		}
		for i := 0; i < len(loc); i += 2 {
			if loc[i] >= 0 {
				m = append(m, string(term.out.Bytes()[loc[i]:loc[i+1]]))
			}
		}
		term.out.Next(loc[1])
		return true
	}, 10*time.Second, 20*time.Millisecond, "the terminal never showed %s", re)
	if !ok {
		term.mu.Lock()
		term.t.Logf("the terminal shows:\n%q", term.out.String())
		term.mu.Unlock()
		term.t.FailNow()
	}
	return m
}

func (term *terminal) typeKeys(s string) {
	term.t.Helper()
	_, err := term.master.WriteString(s)
	require.NoError(term.t, err)
}

// resize is what a terminal emulator does when its window changes.
func (term *terminal) resize(rows, cols uint16) {
	term.t.Helper()
	require.NoError(term.t, unix.IoctlSetWinsize(int(term.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}))
}

// run -it on a real pseudo-terminal: the container's stdin is a terminal,
// its size is the user's and follows it, Ctrl-C interrupts the
// container's foreground job (not minibox), Ctrl-Z stops it (job
// control), and run exits with the shell's status.
func TestRunInteractiveTerminal(t *testing.T) {
	e := newEnv(t)
	term, proc := e.startOnTerminal("run", "-it", "--rm", "--network", "none", e.ref, "sh")
	term.typeKeys(`[ -t 0 ] && echo "IS""TTY $(tty)"` + "\r")
	term.expect(`ISTTY /dev/pts/\d+`)
	term.typeKeys(`echo "SIZE=$(stty size)"` + "\r")
	assert.Equal(t, "40 80", term.expect(`SIZE=(\d+ \d+)`)[1], "the container's terminal has the user's size")

	term.resize(50, 132)
	// The new size travels SIGWINCH → minibox → supervisor → the pty.
	var size string
	assert.Eventually(t, func() bool {
		term.typeKeys(`echo "SIZE=$(stty size)"` + "\r")
		size = term.expect(`SIZE=(\d+ \d+)`)[1]
		return size == "50 132"
	}, 5*time.Second, 200*time.Millisecond, "the size did not follow the window: %s", size)

	term.typeKeys("sleep 100\r")
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	term.typeKeys("\x03") // Ctrl-C: SIGINT to the container's foreground job
	term.typeKeys(`echo "RC=$?"` + "\r")
	assert.Equal(t, "130", term.expect(`RC=(\d+)`)[1], "Ctrl-C interrupted sleep (128+SIGINT)")
	assert.Less(t, time.Since(start), 5*time.Second)
	term.typeKeys("echo still\"\"-here\r")
	term.expect(`still-here`)

	// Job control: Ctrl-Z stops the foreground job, fg continues it.
	term.typeKeys("sleep 100\r")
	time.Sleep(300 * time.Millisecond)
	term.typeKeys("\x1a")
	term.expect(`Stopped`)
	term.typeKeys("fg\r")
	time.Sleep(300 * time.Millisecond)
	term.typeKeys("\x03")
	term.typeKeys(`echo "RC=$?"` + "\r")
	assert.Equal(t, "130", term.expect(`RC=(\d+)`)[1], "fg brought the stopped job back to the foreground")

	term.typeKeys("exit 3\r")
	assert.Equal(t, 3, waitProcess(t, proc, 15*time.Second), "run -it exits with the shell's status")
	assert.Empty(t, e.ids())
}

// waitProcess waits for a process the test started, at most limit (then
// it is killed and the test fails), and returns its exit status.
func waitProcess(t *testing.T, proc *os.Process, limit time.Duration) int {
	t.Helper()
	timer := time.AfterFunc(limit, func() { _ = proc.Kill() })
	defer timer.Stop()
	state, err := proc.Wait()
	require.NoError(t, err)
	require.True(t, timer.Stop(), "minibox did not exit within %v: killed", limit)
	return state.ExitCode()
}
