package main

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/testenv"
	"github.com/minibox-lab/minibox/lessons"
)

const lessonText = `---
title: a test
stage: 01-chroot
needs: root
---

Some prose.

` + "```demo" + `
h=$(cat /etc/hostname); echo $h
` + "```" + `

` + "```expect" + `
mnt
` + "```" + `
`

func testFS(en, zh string) fstest.MapFS {
	return fstest.MapFS{
		"en/01-test.md": {Data: []byte(en)},
		"zh/01-test.md": {Data: []byte(zh)},
	}
}

func TestScriptKeepsTheLessonsLineNumbers(t *testing.T) {
	out := t.TempDir()
	n, err := writeAll(testFS(lessonText, lessonText), out)
	require.NoError(t, err)
	assert.Equal(t, 2, n, "one demo per language")
	for _, lang := range languages {
		data, err := os.ReadFile(filepath.Join(out, lang, "01-test.md-9.sh"))
		require.NoError(t, err, lang)
		lines := strings.Split(string(data), "\n")
		assert.Equal(t, "# shellcheck shell=sh", lines[0])
		assert.Equal(t, "h=$(cat /etc/hostname); echo $h", lines[9], "line 10, as in the lesson")
	}
}

// Every lesson's every demo, both languages, and each script's lines are
// the lesson's.
func TestRealLessons(t *testing.T) {
	out := t.TempDir()
	n, err := writeAll(lessons.FS, out)
	require.NoError(t, err)
	total := 0
	for _, lang := range languages {
		files, err := fs.Glob(lessons.FS, lang+"/*.md")
		require.NoError(t, err)
		require.NotEmpty(t, files, lang)
		for _, f := range files {
			src, err := fs.ReadFile(lessons.FS, f)
			require.NoError(t, err)
			lessonLines := strings.Split(string(src), "\n")
			scripts, err := filepath.Glob(filepath.Join(out, lang, strings.TrimSuffix(filepath.Base(f), ".md")+".md-*.sh"))
			require.NoError(t, err)
			require.NotEmpty(t, scripts, "%s has demos", f)
			total += len(scripts)
			for _, s := range scripts {
				data, err := os.ReadFile(s)
				require.NoError(t, err)
				for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")[1:] {
					if line != "" {
						assert.Equal(t, lessonLines[i+1], line, "%s line %d", s, i+2)
					}
				}
			}
		}
	}
	assert.Equal(t, total, n)
}

// make lint's pipeline: shellcheck -s sh fails on a finding in a demo and
// names the lesson's line.
func TestShellcheckFindsADemoBug(t *testing.T) {
	_, err := exec.LookPath("shellcheck")
	testenv.Require(t, err == nil, "shellcheck (make lint uses it): apt-get install shellcheck")
	out := t.TempDir()
	_, err = writeAll(testFS(lessonText, lessonText), out)
	require.NoError(t, err)
	cmd := exec.Command("shellcheck", "-s", "sh", filepath.Join("en", "01-test.md-9.sh"))
	cmd.Dir = out
	report, err := cmd.CombinedOutput()
	require.Error(t, err, "an unquoted $h is a finding")
	assert.Contains(t, string(report), "In en/01-test.md-9.sh line 10:")
	assert.Contains(t, string(report), "SC2086")

	good := strings.Replace(lessonText, "echo $h", `echo "$h"`, 1)
	_, err = writeAll(testFS(good, good), out)
	require.NoError(t, err)
	cmd = exec.Command("shellcheck", "-s", "sh", filepath.Join("en", "01-test.md-9.sh"))
	cmd.Dir = out
	report, err = cmd.CombinedOutput()
	assert.NoError(t, err, string(report))
}

func TestNoLessons(t *testing.T) {
	_, err := writeAll(fstest.MapFS{"en/README": {Data: []byte("x")}}, t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no en lessons found")
}
