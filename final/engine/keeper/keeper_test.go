package keeper

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// entries reads a log back, as stream:log pairs.
func entries(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var got []string
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line == "" {
			continue
		}
		var e LogEntry
		require.NoError(t, json.Unmarshal([]byte(line), &e), line)
		require.False(t, e.Time.IsZero(), line)
		got = append(got, e.Stream+":"+e.Log)
	}
	return got
}

// A line is one entry however it arrives; the streams do not mix; a line
// without its newline is written at Close; a handover's unfinished line
// is continued, not written apart.
func TestLogWritesWholeLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "container.log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	l := NewLog(f, map[string][]byte{"stdout": []byte("handed ")})
	l.Write("stdout", []byte("over\nin "))
	l.Write("stderr", []byte("err"))
	l.Write("stdout", []byte("two\nrest"))
	l.Close()
	assert.Equal(t, []string{"stdout:handed over\n", "stdout:in two\n", "stderr:err", "stdout:rest"}, sortedTail(entries(t, path)))
}

// sortedTail keeps the order of the whole lines and sorts the lines
// Close wrote (a map: no order between the streams).
func sortedTail(e []string) []string {
	if len(e) == 4 && e[2] > e[3] {
		e[2], e[3] = e[3], e[2]
	}
	return e
}

// A line that never ends is cut at maxLine: `cat /dev/zero` cannot grow
// the keeper without end.
func TestLogCutsEndlessLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "container.log")
	l, err := OpenLog(path)
	require.NoError(t, err)
	chunk := bytes.Repeat([]byte("x"), 4<<10)
	for range 5 {
		l.Write("stdout", chunk)
	}
	assert.Len(t, l.partial["stdout"], 4<<10, "what is kept after the cut")
	l.Close()
	got := entries(t, path)
	require.Len(t, got, 2)
	assert.Len(t, got[0], len("stdout:")+maxLine)
}

// A frame reads back as it was written; a frame too large is refused.
func TestFrames(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, WriteFrame(&b, FrameStdout, []byte("hello")))
	require.NoError(t, WriteFrame(&b, FrameClose, nil))
	kind, data, err := ReadFrame(&b)
	require.NoError(t, err)
	assert.Equal(t, byte(FrameStdout), kind)
	assert.Equal(t, "hello", string(data))
	kind, data, err = ReadFrame(&b)
	require.NoError(t, err)
	assert.Equal(t, byte(FrameClose), kind)
	assert.Empty(t, data)
	_, _, err = ReadFrame(bytes.NewReader([]byte{FrameStdin, 0x10, 0, 0, 0}))
	assert.ErrorContains(t, err, "a frame of")
}

// The keeper runs with GOMAXPROCS=1 and its handover only; the finish
// with the supervisor's environment and its own handover only.
func TestHandoverEnvironment(t *testing.T) {
	env := []string{"PATH=/bin", "GOMAXPROCS=4", KeepEnv + "=old", "MINIBOX_ROOT=/r"}
	assert.Equal(t, []string{KeepEnv + "=new", "GOMAXPROCS=1", "PATH=/bin", "MINIBOX_ROOT=/r"}, withEnv(env, KeepEnv, "new"))
	keeping := []string{KeepEnv + "=h", "GOMAXPROCS=1", "PATH=/bin"}
	assert.Equal(t, []string{FinishEnv + "=f", "PATH=/bin"}, withEnv(keeping, FinishEnv, "f"))
}

// Clients that connected while nobody accepted (the keeper handing over
// to the finish) are adopted, and hear the exit status.
func TestPendingClientsHearTheStatus(t *testing.T) {
	path := filepath.Join(t.TempDir(), "attach.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	defer l.Close()
	f, err := l.File() // a copy of the descriptor, as the finish inherits it
	require.NoError(t, err)
	defer f.Close()
	var clients []net.Conn
	for range 2 {
		c, err := net.Dial("unix", path)
		require.NoError(t, err)
		defer c.Close()
		clients = append(clients, c)
	}
	s := NewAttachServer()
	s.AdoptPending(int(f.Fd()))
	s.BroadcastExit(137)
	for _, c := range clients {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		kind, data, err := ReadFrame(c)
		require.NoError(t, err)
		assert.Equal(t, byte(FrameExit), kind)
		assert.Equal(t, []byte{0, 0, 0, 137}, data)
	}
}

// A keeper keeps the supervisor's arguments: MINIBOX_KEEP alone, in the
// environment of some other command, does not make it one.
func TestKeeperNeedsTheSupervisorsArguments(t *testing.T) {
	args := os.Args
	defer func() { os.Args = args }()
	t.Setenv(KeepEnv, "{}")
	t.Setenv(FinishEnv, "{}")
	os.Args = []string{"minibox", "ps"}
	assert.False(t, IsKeeper())
	assert.False(t, IsFinish())
	os.Args = []string{"minibox-keeper", "supervise", "--root", "/r", "id"}
	assert.True(t, IsKeeper())
	assert.True(t, IsFinish())
}
