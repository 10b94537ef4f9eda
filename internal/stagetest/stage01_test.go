package stagetest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStage01RunsCommandInRootfs(t *testing.T) {
	stage := needStage(t, "01")
	// A file that exists only in the rootfs proves which "/" the command saw.
	marker := filepath.Join(rootfsDir, "etc", "stage01-marker")
	require.NoError(t, os.WriteFile(marker, []byte("inside the rootfs\n"), 0o644))
	t.Cleanup(func() { os.Remove(marker) })

	res := run(t, stage, "run", rootfsDir, "--", "cat", "/etc/stage01-marker")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Equal(t, "inside the rootfs\n", res.stdout)

	// "/" inside is exactly the rootfs directory.
	res = run(t, stage, "run", rootfsDir, "--", "ls", "-1", "/")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Equal(t, listDir(t, rootfsDir), res.stdout)
}

// listDir is `ls -1 DIR` done on the host side.
func listDir(t *testing.T, dir string) string {
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out string
	for _, e := range entries {
		out += e.Name() + "\n"
	}
	return out
}

func TestStage01ExitStatusPropagates(t *testing.T) {
	stage := needStage(t, "01")
	res := run(t, stage, "run", rootfsDir, "--", "sh", "-c", "exit 7")
	assert.Equal(t, 7, res.code)

	// Killed by SIGKILL (9): the shell convention is 128+9.
	res = run(t, stage, "run", rootfsDir, "--", "sh", "-c", "kill -9 $$")
	assert.Equal(t, 137, res.code)
}

func TestStage01BadInputIsAClearError(t *testing.T) {
	assertBadInputIsAClearError(t, needStage(t, "01"))
}

// assertBadInputIsAClearError checks what every stage does with bad input:
// a missing rootfs is named (exit 1), a missing command is named (127), a
// command that is not executable is named (126, as in a shell), and a
// short command line gets the usage (2).
func assertBadInputIsAClearError(t *testing.T, stage string) {
	t.Helper()
	res := run(t, stage, "run", "/nonexistent-rootfs", "--", "true")
	assert.Equal(t, 1, res.code)
	assert.Contains(t, res.stderr, "/nonexistent-rootfs")

	res = run(t, stage, "run", rootfsDir, "--", "no-such-command")
	assert.Equal(t, 127, res.code)
	assert.Contains(t, res.stderr, "no-such-command")

	// A script without its x bit: there, but permission denied.
	notExecutable := filepath.Join(rootfsDir, "tmp", "minibox-not-executable")
	require.NoError(t, os.WriteFile(notExecutable, []byte("#!/bin/sh\necho ran\n"), 0o644))
	t.Cleanup(func() { os.Remove(notExecutable) })
	res = run(t, stage, "run", rootfsDir, "--", "/tmp/minibox-not-executable")
	assert.Equal(t, 126, res.code, res.stderr)
	assert.Contains(t, res.stderr, "/tmp/minibox-not-executable: permission denied")
	assert.Empty(t, res.stdout, "the script ran")

	res = run(t, stage, "run", rootfsDir)
	assert.Equal(t, 2, res.code)
	assert.Contains(t, res.stderr, "usage")
}

// The chroot escape: a root process inside the chroot reads a file that
// exists only on the host, outside the rootfs.
func TestStage01EscapeEscapes(t *testing.T) {
	stage := needStage(t, "01")
	secret := filepath.Join(t.TempDir(), "host-secret")
	require.NoError(t, os.WriteFile(secret, []byte("only on the host\n"), 0o600))
	escape := copyIntoRootfs(t, stage, "escape")

	// Inside the chroot the file is invisible...
	res := run(t, stage, "run", rootfsDir, "--", "cat", secret)
	require.NotEqual(t, 0, res.code, "the host file should not be visible in the chroot")

	// ...until the escape.
	res = run(t, stage, "run", rootfsDir, "--", escape, "escape", secret)
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, "only on the host")
	assert.NoDirExists(t, filepath.Join(rootfsDir, ".escape"), "the escape must clean up after itself")
}

// copyIntoRootfs puts a copy of the binary at rootfs /tmp/NAME, removed when
// the test ends, and returns its path inside the rootfs.
func copyIntoRootfs(t *testing.T, bin, name string) string {
	t.Helper()
	data, err := os.ReadFile(bin)
	require.NoError(t, err)
	dst := filepath.Join(rootfsDir, "tmp", name)
	require.NoError(t, os.WriteFile(dst, data, 0o755))
	t.Cleanup(func() { os.Remove(dst) })
	return "/tmp/" + name
}
