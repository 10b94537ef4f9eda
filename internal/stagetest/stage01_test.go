package stagetest

// The properties of stage 01. All but the escape hold in every later stage
// too, so they run against every stage (forEachStage from "01").

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestStage01RunsCommandInRootfs(t *testing.T) {
	forEachStage(t, "01", func(t *testing.T, stage string) {
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

		// So is "../..": the command starts in "/", not in the directory the
		// stage was started from (this package's, outside the rootfs), which
		// a chroot without a chdir("/") would leave it in, and from where
		// ".." walks up the host's tree.
		res = run(t, stage, "run", rootfsDir, "--", "ls", "-1", "../..")
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, listDir(t, rootfsDir), res.stdout, "the command's working directory is outside the rootfs")
	})
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
	forEachStage(t, "01", func(t *testing.T, stage string) {
		res := run(t, stage, "run", rootfsDir, "--", "sh", "-c", "exit 7")
		assert.Equal(t, 7, res.code)

		// Killed by SIGKILL (9): the shell convention is 128+9. From the
		// host, since from stage 02 on the command is a PID 1, which
		// ignores even SIGKILL when it comes from inside its namespace.
		c := startContainer(t, stage, "run", rootfsDir, "--", "sh", "-c", "echo ready && exec sleep 60")
		c.waitFor(t, "ready")
		require.NoError(t, unix.Kill(c.pid(t), unix.SIGKILL))
		assert.Equal(t, 137, c.wait(t).code)

		// An executable file the kernel cannot run: 126, as in a shell.
		junk := filepath.Join(rootfsDir, "tmp", "minibox-not-a-program")
		require.NoError(t, os.WriteFile(junk, []byte{0, 1, 2, 3}, 0o755))
		t.Cleanup(func() { os.Remove(junk) })
		res = run(t, stage, "run", rootfsDir, "--", "/tmp/minibox-not-a-program")
		assert.Equal(t, 126, res.code, res.stderr)
	})
}

// Stage 01 on its own: the command kills itself, and the stage reports the
// signal as 128+9. (In later stages the command is a PID 1, which cannot.)
func TestStage01SelfKilledCommandIs137(t *testing.T) {
	stage := needStage(t, "01")
	res := run(t, stage, "run", rootfsDir, "--", "sh", "-c", "kill -9 $$")
	assert.Equal(t, 137, res.code)
}

// Bad input, on every stage: a missing rootfs is named (exit 1), a missing
// command is named (127), a command that is not executable is named (126,
// as in a shell), and a short command line or an unknown flag gets the
// usage (2).
func TestStage01BadInputIsAClearError(t *testing.T) {
	forEachStage(t, "01", func(t *testing.T, stage string) {
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

		res = run(t, stage, "run", "--no-such-flag", rootfsDir, "--", "true")
		assert.Equal(t, 2, res.code)
		assert.Contains(t, res.stderr, "no-such-flag")
	})
}

// The chroot escape: a root process inside the chroot reads a file that
// exists only on the host, outside the rootfs. Stage 01 only: from stage 02
// on it fails (TestStage02EscapeFails).
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

// The command's environment is built, not inherited: exactly PATH,
// HOSTNAME, HOME, and TERM if the caller has one. Nothing else of the
// host's (USER, SUDO_*, MINIBOX_*) reaches it.
func TestStage01ContainerEnvironment(t *testing.T) {
	forEachStage(t, "01", func(t *testing.T, stage string) {
		args := []string{"run", rootfsDir, "--", "env"}
		hostname, err := os.Hostname() // stage 01 has the host's
		require.NoError(t, err)
		if atLeast(stage, "02") {
			args = []string{"run", "--hostname", "box", rootfsDir, "--", "env"}
			hostname = "box"
		}
		want := []string{
			"HOME=/root",
			"HOSTNAME=" + hostname,
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		}
		host := []string{"USER=minibox-test-user", "SUDO_USER=minibox-test-sudo", "MINIBOX_TEST_SECRET=host-only"}

		res := runEnv(t, append(withoutVar(stageEnv(host...), "TERM"), "TERM=minibox-test-term"), stage, args...)
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, sorted(append(want, "TERM=minibox-test-term")), sorted(lines(res.stdout)), "with TERM set")

		res = runEnv(t, withoutVar(stageEnv(host...), "TERM"), stage, args...)
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, want, sorted(lines(res.stdout)), "without TERM")
	})
}

// withoutVar returns env without the variable name.
func withoutVar(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

func lines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

func sorted(list []string) []string {
	out := append([]string(nil), list...)
	sort.Strings(out)
	return out
}

// --- Narration ---------------------------------------------------------------------

// With -v each stage narrates its kernel steps on stderr as shell lines
// ("+ chroot ROOTFS"). Stage 01's: the chroot, then into "/", then the exec.
func TestStage01Narrates(t *testing.T) {
	stage := needStage(t, "01")
	res := run(t, stage, "run", "-v", rootfsDir, "--", "echo", "narrated")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Equal(t, "narrated\n", res.stdout)
	steps := narration(res.stderr)
	assertInOrder(t, steps, "+ chroot "+rootfsDir, "+ cd /", "+ exec echo narrated")
	assert.Equal(t, "+ exec echo narrated", steps[len(steps)-1], "the exec is the last step:\n%s", res.stderr)
}

// Narration is asked for (-v, or MINIBOX_TRACE=1), never there by default,
// on every stage: stderr is the command's, and a script reading it must
// not find the stage's lines in it.
func TestStage01NarratesOnlyWhenAsked(t *testing.T) {
	forEachStage(t, "01", func(t *testing.T, stage string) {
		args := append(append([]string{"run"}, limitFlags(stage)...), rootfsDir, "--", "echo", "narrated")

		res := run(t, stage, args...)
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, "narrated\n", res.stdout)
		assert.Empty(t, narration(res.stderr), "narration without -v:\n%s", res.stderr)

		res = runEnv(t, stageEnv("MINIBOX_TRACE=1"), stage, args...)
		require.Equal(t, 0, res.code, res.stderr)
		assert.Contains(t, narration(res.stderr), "+ exec echo narrated", "MINIBOX_TRACE=1 narrates as -v does:\n%s", res.stderr)
	})
}

// limitFlags are the stage's flags that make it do all it can: from stage
// 03 on, the three cgroup limits.
func limitFlags(stage string) []string {
	if atLeast(stage, "03") {
		return []string{"--memory", "64m", "--cpus", "0.5", "--pids-limit", "20"}
	}
	return nil
}

// narration returns the narration lines of a stage's stderr: "+ …",
// without the comment a line may end in ("   # clone(2)"). A step that is
// a comment only ("+ # lease 10.89.0.2 …": no shell command does it) is
// kept whole.
func narration(stderr string) []string {
	var out []string
	for _, line := range strings.Split(stderr, "\n") {
		switch {
		case strings.HasPrefix(line, "+ #"):
			out = append(out, line)
		case strings.HasPrefix(line, "+ "):
			out = append(out, trailingComment.ReplaceAllString(line, ""))
		}
	}
	return out
}

var trailingComment = regexp.MustCompile(`\s+# .*$`)

// assertInOrder checks that steps holds want, in this order (other steps
// may come between), and returns the index of each in steps (-1: missing).
func assertInOrder(t *testing.T, steps []string, want ...string) []int {
	t.Helper()
	at := make([]int, len(want))
	for i := range at {
		at[i] = -1
	}
	next := 0
	for i, w := range want {
		for j := next; j < len(steps); j++ {
			if steps[j] == w {
				at[i], next = j, j+1
				break
			}
		}
		if at[i] < 0 {
			where := "at all"
			if indexOf(steps, w) >= 0 {
				where = fmt.Sprintf("after %q", want[i-1])
			}
			t.Errorf("no step %q %s; the steps were:\n%s", w, where, strings.Join(steps, "\n"))
			return at
		}
	}
	return at
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}
