package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/rootfs"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// minibox runs the CLI in-process and returns stdout, stderr, exit status.
func minibox(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Execute(args, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

// fakeTree makes a source tree with two stages for the diff command.
func fakeTree(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(src, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	write("go.mod", "module github.com/minibox-lab/minibox\n\ngo 1.22\n")
	write("01-first/main.go", "package main\n\nfunc main() {\n\tchroot()\n}\n")
	write("02-second/main.go", "package main\n\nfunc main() {\n\tunshare()\n\tchroot()\n}\n")
	write("02-second/mounts.go", "package main\n\nfunc unshare() {}\n")
	t.Setenv("MINIBOX_SRC", src)
	return src
}

func TestDiff(t *testing.T) {
	fakeTree(t)
	out, stderr, code := minibox(t, "diff", "2")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "--- 01-first/main.go")
	assert.Contains(t, out, "+++ 02-second/main.go")
	assert.Contains(t, out, "+\tunshare()")
	assert.Contains(t, out, "+++ 02-second/mounts.go")
	assert.NotContains(t, out, "\x1b[", "no colour when not a terminal")
	assert.Contains(t, out, "2 file(s) changed (1 new, 0 removed), 4 line(s) added, 0 removed")

	out, _, code = minibox(t, "diff", "2", "1")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "-\tunshare()", "diff N M compares N → M")

	// The first stage has nothing before it: it is shown whole.
	out, stderr, code = minibox(t, "diff", "1")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "--- /dev/null\n+++ 01-first/main.go\n@@ -0,0 +1,5 @@\n"+
		"+package main\n+\n+func main() {\n+\tchroot()\n+}\n"+
		"1 file(s) changed (1 new, 0 removed), 5 line(s) added, 0 removed\n", out)

	_, stderr, code = minibox(t, "diff", "7")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "no stage 07")
	assert.Contains(t, stderr, "01-first, 02-second")

	_, stderr, code = minibox(t, "diff", "two")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, `expected stage numbers, got "two"`)
}

func TestRootfsBuildsIntoDir(t *testing.T) {
	_, err := rootfs.FindStaticBusybox()
	testenv.Require(t, err == nil, "needs a static busybox (apt-get install busybox-static)")
	dir := filepath.Join(t.TempDir(), "rootfs")
	out, stderr, code := minibox(t, "rootfs", dir)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "demo rootfs ready in "+dir)
	assert.True(t, rootfs.IsBuilt(dir))
}

func TestDoctorOnThisMachine(t *testing.T) {
	testenv.RequireRoot(t)
	// An unbuilt demo rootfs is only a warning: the first lesson builds it.
	missing := filepath.Join(t.TempDir(), "not-built")
	// Both temporary directories share this parent, which t.TempDir makes
	// 0700: container root (--userns) could not reach a rootfs below it,
	// which doctor rightly reports.
	require.NoError(t, os.Chmod(filepath.Dir(filepath.Dir(missing)), 0o755))
	out, _, code := minibox(t, "doctor", "--rootfs", missing)
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, missing+" is not built")
	assert.Contains(t, out, "fix: sudo minibox rootfs")

	// On a machine set up by `make test` (.ci/run), everything the lessons
	// need is there. (Which failures make the exit status 1 is tested in
	// internal/doctor, with a fake host.)
	built := filepath.Join(t.TempDir(), "rootfs")
	_, _, code = minibox(t, "rootfs", built)
	require.Equal(t, 0, code)
	out, _, code = minibox(t, "doctor", "--rootfs", built)
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "Ready for the lessons")
	assert.NotContains(t, out, "✗")
}

// newRoot makes the command a command line names alone: each entry of
// commands must make the command of its name, and the whole tree must
// hold nothing else (but the lessons' stand-ins, help and completion).
func TestCommandsAreFoundByName(t *testing.T) {
	s := &streams{in: strings.NewReader(""), out: &bytes.Buffer{}, err: &bytes.Buffer{}}
	names := map[string]bool{}
	for _, c := range commands {
		assert.Equal(t, c.name, c.make(s).Name())
		names[c.name] = true
		alone := newRoot(s, []string{c.name, "--help"})
		var made []string
		for _, sub := range alone.Commands() {
			made = append(made, sub.Name())
		}
		assert.ElementsMatch(t, []string{"lesson", LessonsUse, c.name}, made, "minibox %s makes that command alone", c.name)
	}
	for _, c := range newRoot(s, nil).Commands() {
		if c.Name() != LessonsUse && c.Name() != "lesson" && c.Name() != "help" && c.Name() != "completion" {
			assert.True(t, names[c.Name()], "%s is not in commands", c.Name())
		}
	}
	_, _, code := minibox(t, "run", "--no-such-flag", "img")
	assert.Equal(t, 1, code)
}
