package engine_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// -e NAME and an env file's NAME line pass the CLI's own value, as
// docker's do; a NAME the CLI does not have is left out.
func TestEnvFromTheCaller(t *testing.T) {
	e := newEnv(t)
	file := filepath.Join(t.TempDir(), "env")
	require.NoError(t, os.WriteFile(file, []byte("# a comment\nFROMFILE\nPLAIN=1\n"), 0o600))
	cmd := e.command("run", "--rm", "--network", "none", "-e", "FROMFLAG", "-e", "NOTSET_ANYWHERE", "--env-file", file,
		e.ref, "sh", "-c", `echo "$FROMFLAG/$FROMFILE/$PLAIN/${NOTSET_ANYWHERE-unset}"`)
	cmd.Env = append(cmd.Env, "FROMFLAG=flag value", "FROMFILE=file value")
	out, err := cmd.Output()
	require.NoError(t, err)
	assert.Equal(t, "flag value/file value/1/unset\n", string(out))

	_, stderr, code := e.mb("run", "--rm", "-e", "=x", e.ref, "true")
	assert.Equal(t, 125, code)
	assert.Contains(t, stderr, "-e =x: expected NAME=VALUE or NAME")

	// exec -e NAME too.
	e.ok("run", "-d", "--name", "envs", "--network", "none", "-e", "FROMFLAG=image's", e.ref, "sleep", "1000")
	cmd = e.command("exec", "-e", "FROMFLAG", "-e", "NOTSET_ANYWHERE", "envs", "sh", "-c", `echo "$FROMFLAG/${NOTSET_ANYWHERE-unset}"`)
	cmd.Env = append(cmd.Env, "FROMFLAG=exec's")
	out, err = cmd.Output()
	require.NoError(t, err)
	assert.Equal(t, "exec's/unset\n", string(out))
}

// wait on a created container waits until it has run, as docker's does.
func TestWaitOnCreated(t *testing.T) {
	e := newEnv(t)
	id := strings.TrimSpace(e.ok("create", "--network", "none", e.ref, "sh", "-c", "exit 7"))
	wait := e.command("wait", id)
	var out strings.Builder
	wait.Stdout = &out
	require.NoError(t, wait.Start())
	done := make(chan error, 1)
	go func() { done <- wait.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("wait returned before the container ran: %v, %q", err, out.String())
	case <-time.After(500 * time.Millisecond):
	}
	e.ok("start", id)
	select {
	case err := <-done:
		require.NoError(t, err)
		assert.Equal(t, "7\n", out.String())
	case <-time.After(20 * time.Second):
		_ = wait.Process.Kill()
		t.Fatal("wait did not return after the container exited")
	}
}
