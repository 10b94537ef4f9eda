package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/cli"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// built builds minibox and its companions side by side, as make build
// does, and returns minibox's path.
func built(t *testing.T) string {
	t.Helper()
	minibox, err := testenv.BuildMinibox("", t.TempDir())
	require.NoError(t, err)
	return minibox
}

// The binary that runs containers pays no start-up for the lesson
// renderer: minibox-lessons has it.
func TestMiniboxLinksNoLessonRenderer(t *testing.T) {
	require.Empty(t, rendererPackages(t, "."), "minibox must not link the lesson renderer")
	require.NotEmpty(t, rendererPackages(t, "../minibox-lessons"), "minibox-lessons renders the lessons")
}

// rendererPackages lists the packages of the lesson renderer that the main
// package dir links.
func rendererPackages(t *testing.T, dir string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	var found []string
	for _, pkg := range strings.Fields(string(out)) {
		if renderer.MatchString(pkg) {
			found = append(found, pkg)
		}
	}
	return found
}

var renderer = regexp.MustCompile(`glamour|chroma|goldmark|bluemonday|minibox/internal/lesson$|minibox/internal/cli/lessoncmd$`)

func run(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "MINIBOX_STATE="+filepath.Join(t.TempDir(), "progress.json"))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); !ok {
		require.NoError(t, err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// minibox lesson and minibox lessons behave as if minibox ran them: its
// help lists them, and their help, output, errors and exit status are
// minibox-lessons'.
func TestLessonCommandsRunInMiniboxLessons(t *testing.T) {
	minibox := built(t)
	out, _, code := run(t, minibox, "--help")
	require.Equal(t, 0, code)
	assert.Regexp(t, `(?m)^  lesson\s+`+cli.LessonShort+`$`, out)
	assert.Regexp(t, `(?m)^  lessons\s+`+cli.LessonsShort+`$`, out)
	assert.Regexp(t, `(?m)^  run\s+`, out)

	for _, help := range [][]string{{"lesson", "--help"}, {"help", "lesson"}, {"--rootfs", "/x", "lesson", "-h"}} {
		out, stderr, code := run(t, minibox, help...)
		require.Equal(t, 0, code, "%v: %s", help, stderr)
		assert.Contains(t, out, "Usage:\n  minibox lesson N [flags]", help)
		assert.Contains(t, out, "--timeout-scale F", "%v: the lesson command's own flags", help)
		assert.Contains(t, out, "--rootfs DIR", "%v: and minibox's", help)
	}

	out, stderr, code := run(t, minibox, "lessons", "--lang", "en")
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, `^#\s+TITLE\s+STAGE\s+DONE\n1\s+chroot`, out)

	_, stderr, code = run(t, minibox, "lesson", "one")
	assert.Equal(t, 1, code)
	assert.Equal(t, "minibox: lesson: expected a lesson number, got \"one\" (minibox lessons lists them)\n", stderr)
	_, stderr, code = run(t, minibox, "lessons", "extra")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, `unknown command "extra"`)
}

// Without minibox-lessons next to it, or with one of another build,
// minibox says so and how to fix it, and runs nothing.
func TestLessonsBinaryMissingOrOfAnotherBuild(t *testing.T) {
	minibox := built(t)
	dir := t.TempDir()
	alone := filepath.Join(dir, "minibox")
	data, err := os.ReadFile(minibox)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(alone, data, 0o755))
	for _, args := range [][]string{{"lesson", "1", "--read"}, {"lessons"}} {
		out, stderr, code := run(t, alone, args...)
		assert.Equal(t, 1, code, args)
		assert.Empty(t, out)
		assert.Contains(t, stderr, "minibox: the lessons are run by minibox-lessons, and there is none next to minibox", args)
		assert.Contains(t, stderr, "make build", args)
		assert.Contains(t, stderr, filepath.Join(dir, "minibox-lessons"), args)
	}

	build := exec.Command("go", "build", "-ldflags=-X github.com/minibox-lab/minibox/final/runtime.SourceID=other",
		"-o", filepath.Join(dir, cli.LessonsBinary), "../minibox-lessons")
	build.Env = append(os.Environ(), testenv.StaticBuild) // only SourceID differs
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	_, stderr, code := run(t, alone, "lessons")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "is not the same build as")
	assert.True(t, strings.HasPrefix(stderr, "minibox: the lessons are run by minibox-lessons: "), stderr)
}
