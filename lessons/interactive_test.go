package lessons_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/testenv"
)

// In a terminal, minibox pauses before each demo: Enter runs it, s skips
// it, q quits. Driven through a real pseudo-terminal, as a student's
// terminal would.
func TestInteractiveLessonPausesBeforeEachDemo(t *testing.T) {
	testenv.RequireRoot(t)
	tmp := searchableTempDir(t)
	minibox := buildMinibox(t, tmp)
	master, slave := testenv.OpenPTY(t, 100)

	cmd := exec.Command(minibox, "lesson", "1", "--lang", "en")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(),
		"MINIBOX_ROOTFS="+filepath.Join(tmp, "rootfs"),
		"MINIBOX_STATE="+filepath.Join(tmp, "progress.json"),
		"GLAMOUR_STYLE=dark", // "auto" would ask the terminal for its background, and nobody answers here
		"TERM=xterm",
	)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	require.NoError(t, cmd.Start())
	slave.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	screen := &syncBuffer{}
	go func() { _, _ = screen.ReadFrom(master) }()

	const prompt = "Enter: run · s: skip · q: quit"
	waitFor(t, screen, prompt, 1)
	assert.False(t, strings.Contains(screen.String(), "│ "), "nothing runs before the student says so")

	master.Write([]byte("\r")) // run the first demo
	waitFor(t, screen, prompt, 2)
	assert.True(t, strings.Contains(screen.String(), "│ the demo root filesystem"), "the first demo ran")
	assert.True(t, strings.Contains(screen.String(), "✓"), "its expectations were checked")

	master.Write([]byte("s")) // skip the second
	waitFor(t, screen, prompt, 3)
	assert.True(t, strings.Contains(screen.String(), "(skipped)"), "the second demo was skipped")

	master.Write([]byte("q"))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("minibox did not quit on q:\n%s", screen.String())
	}
	waitFor(t, screen, "left before the end", 1)
	_, err := os.Stat(filepath.Join(tmp, "progress.json"))
	assert.True(t, os.IsNotExist(err), "a lesson left early is not marked done")
}

// waitFor waits until text has appeared at least n times on the screen.
func waitFor(t *testing.T, screen *syncBuffer, text string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(screen.String(), text) < n {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %q (×%d); the screen shows:\n%s", text, n, tail(screen.String(), 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) ReadFrom(f *os.File) (int64, error) {
	chunk := make([]byte, 4096)
	var total int64
	for {
		n, err := f.Read(chunk)
		b.mu.Lock()
		b.buf.Write(chunk[:n])
		b.mu.Unlock()
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
}

// String is what the screen shows, without colour escape codes.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return ansi.ReplaceAllString(b.buf.String(), "")
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)
