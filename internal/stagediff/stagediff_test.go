package stagediff_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/stagediff"
)

// writeTree writes files (relative path → content) under a new temp dir.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		full := filepath.Join(dir, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(content), 0o644))
	}
	return dir
}

const mainOld = `package main

import "fmt"

func main() {
	fmt.Println("chroot")
}
`

const mainNew = `package main

import "fmt"

func main() {
	fmt.Println("namespaces")
	fmt.Println("uts, pid, mount")
}
`

// stages is an old and a new stage folder: main.go changed, README.md the
// same, old.go removed, ns/ns.go new.
func stages(t *testing.T) (oldDir, newDir string) {
	oldDir = writeTree(t, map[string]string{
		"main.go":   mainOld,
		"README.md": "# a stage\n",
		"old.go":    "package main\n\n// gone\n",
	})
	newDir = writeTree(t, map[string]string{
		"main.go":   mainNew,
		"README.md": "# a stage\n",
		"ns/ns.go":  "package ns\n\nconst A = 1\nconst B = 2\n",
	})
	return oldDir, newDir
}

func byPath(diffs []stagediff.FileDiff) map[string]stagediff.FileDiff {
	m := map[string]stagediff.FileDiff{}
	for _, d := range diffs {
		m[d.Path] = d
	}
	return m
}

func TestDiff(t *testing.T) {
	oldDir, newDir := stages(t)
	diffs, err := stagediff.Diff(oldDir, newDir, "01-chroot", "02-namespaces")
	require.NoError(t, err)

	var paths []string
	for _, d := range diffs {
		paths = append(paths, d.Path)
	}
	assert.Equal(t, []string{"main.go", "ns/ns.go", "old.go"}, paths, "sorted; the identical README.md is not listed")

	m := byPath(diffs)

	changed := m["main.go"]
	assert.False(t, changed.New)
	assert.False(t, changed.Gone)
	assert.Equal(t, 2, changed.Added)
	assert.Equal(t, 1, changed.Removed)
	assert.True(t, strings.HasPrefix(changed.Unified, "--- 01-chroot/main.go\n+++ 02-namespaces/main.go\n@@ "), changed.Unified)
	assert.Contains(t, changed.Unified, "\n-\tfmt.Println(\"chroot\")\n")
	assert.Contains(t, changed.Unified, "\n+\tfmt.Println(\"namespaces\")\n")
	assert.Contains(t, changed.Unified, "\n+\tfmt.Println(\"uts, pid, mount\")\n")
	assert.Contains(t, changed.Unified, "\n func main() {\n", "context lines")

	added := m["ns/ns.go"]
	assert.True(t, added.New)
	assert.False(t, added.Gone)
	assert.Equal(t, 4, added.Added)
	assert.Equal(t, 0, added.Removed)
	assert.Contains(t, added.Unified, "+++ 02-namespaces/ns/ns.go\n")
	assert.Contains(t, added.Unified, "\n+const B = 2\n")

	removed := m["old.go"]
	assert.True(t, removed.Gone)
	assert.False(t, removed.New)
	assert.Equal(t, 0, removed.Added)
	assert.Equal(t, 3, removed.Removed)
	assert.Contains(t, removed.Unified, "--- 01-chroot/old.go\n")
	assert.Contains(t, removed.Unified, "\n-// gone\n")
}

func TestDiffIdenticalFolders(t *testing.T) {
	files := map[string]string{"main.go": mainOld, "sub/x.txt": "x\n"}
	diffs, err := stagediff.Diff(writeTree(t, files), writeTree(t, files), "a", "b")
	require.NoError(t, err)
	assert.Empty(t, diffs)
	assert.Equal(t, "0 file(s) changed, 0 line(s) added, 0 removed", stagediff.Summarize(diffs).String())
}

// TestDiffCountsLinesThatLookLikeHeaders: a removed "-- x" line is printed
// as "--- x", an added "++i" as "+++i"; they are still changed lines, not
// file headers.
func TestDiffCountsLinesThatLookLikeHeaders(t *testing.T) {
	oldDir := writeTree(t, map[string]string{"notes.md": "---\ntitle: old\n---\n-- a SQL comment\nkeep\n"})
	newDir := writeTree(t, map[string]string{"notes.md": "keep\n++counter\n"})
	diffs, err := stagediff.Diff(oldDir, newDir, "a", "b")
	require.NoError(t, err)
	require.Len(t, diffs, 1)
	assert.Equal(t, 4, diffs[0].Removed, diffs[0].Unified)
	assert.Equal(t, 1, diffs[0].Added, diffs[0].Unified)

	var out bytes.Buffer
	stagediff.Print(&out, diffs, true)
	assert.Contains(t, out.String(), "\x1b[31m----\x1b[0m\n", "a removed --- line is red, not a bold header")
	assert.Contains(t, out.String(), "\x1b[31m--- a SQL comment\x1b[0m\n")
	assert.Contains(t, out.String(), "\x1b[32m+++counter\x1b[0m\n")
	assert.Contains(t, out.String(), "\x1b[1m--- a/notes.md\x1b[0m\n", "the real header is still bold")
}

// TestDiffHunkRanges: the hunk headers count the files' real lines, and no
// blank context line is invented at the end of a file.
func TestDiffHunkRanges(t *testing.T) {
	oldDir, newDir := stages(t)
	diffs, err := stagediff.Diff(oldDir, newDir, "01-chroot", "02-namespaces")
	require.NoError(t, err)
	m := byPath(diffs)
	assert.Equal(t, "--- 01-chroot/ns/ns.go\n+++ 02-namespaces/ns/ns.go\n@@ -0,0 +1,4 @@\n"+
		"+package ns\n+\n+const A = 1\n+const B = 2\n", m["ns/ns.go"].Unified)
	assert.Equal(t, "--- 01-chroot/old.go\n+++ 02-namespaces/old.go\n@@ -1,3 +0,0 @@\n"+
		"-package main\n-\n-// gone\n", m["old.go"].Unified)
	assert.True(t, strings.HasSuffix(m["main.go"].Unified, "\n }\n"), "%q", m["main.go"].Unified)
	assert.Contains(t, m["main.go"].Unified, "@@ -3,5 +3,6 @@\n")

	// A last line without a newline is still a line of its own.
	diffs, err = stagediff.Diff(writeTree(t, map[string]string{"f": "a\nb"}), writeTree(t, map[string]string{"f": "a\nc"}), "x", "y")
	require.NoError(t, err)
	require.Len(t, diffs, 1)
	assert.Equal(t, "--- x/f\n+++ y/f\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n", diffs[0].Unified)
}

func TestDiffMissingFolder(t *testing.T) {
	_, err := stagediff.Diff(filepath.Join(t.TempDir(), "missing"), t.TempDir(), "a", "b")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "read stage folder")
}

func TestDiffIgnoresSymlinksAndDirs(t *testing.T) {
	oldDir := writeTree(t, map[string]string{"main.go": mainOld})
	newDir := writeTree(t, map[string]string{"main.go": mainOld})
	require.NoError(t, os.Symlink("main.go", filepath.Join(newDir, "link.go")))
	require.NoError(t, os.Mkdir(filepath.Join(newDir, "empty"), 0o755))
	diffs, err := stagediff.Diff(oldDir, newDir, "a", "b")
	require.NoError(t, err)
	assert.Empty(t, diffs, "only regular files are compared")
}

func TestSummary(t *testing.T) {
	oldDir, newDir := stages(t)
	diffs, err := stagediff.Diff(oldDir, newDir, "01-chroot", "02-namespaces")
	require.NoError(t, err)
	s := stagediff.Summarize(diffs)
	assert.Equal(t, stagediff.Summary{Files: 3, NewFiles: 1, GoneFiles: 1, Added: 6, Removed: 4}, s)
	assert.Equal(t, "3 file(s) changed (1 new, 1 removed), 6 line(s) added, 4 removed", s.String())

	// Without new or removed files, no parenthesis.
	assert.Equal(t, "1 file(s) changed, 2 line(s) added, 1 removed",
		stagediff.Summary{Files: 1, Added: 2, Removed: 1}.String())
}

func TestPrint(t *testing.T) {
	oldDir, newDir := stages(t)
	diffs, err := stagediff.Diff(oldDir, newDir, "01-chroot", "02-namespaces")
	require.NoError(t, err)

	t.Run("plain", func(t *testing.T) {
		var b bytes.Buffer
		stagediff.Print(&b, diffs, false)
		out := b.String()
		assert.NotContains(t, out, "\x1b")
		var want strings.Builder
		for _, d := range diffs {
			want.WriteString(d.Unified)
		}
		want.WriteString("3 file(s) changed (1 new, 1 removed), 6 line(s) added, 4 removed\n")
		assert.Equal(t, want.String(), out, "the diffs in order, then the summary")
		for _, h := range []string{"--- 01-chroot/main.go\n", "+++ 02-namespaces/main.go\n",
			"+++ 02-namespaces/ns/ns.go\n", "--- 01-chroot/old.go\n"} {
			assert.Contains(t, out, h)
		}
	})

	t.Run("colour", func(t *testing.T) {
		var b bytes.Buffer
		stagediff.Print(&b, diffs, true)
		out := b.String()
		assert.Contains(t, out, "\x1b[1m--- 01-chroot/main.go\x1b[0m\n")
		assert.Contains(t, out, "\x1b[1m+++ 02-namespaces/main.go\x1b[0m\n")
		assert.Contains(t, out, "\x1b[31m-\tfmt.Println(\"chroot\")\x1b[0m\n")
		assert.Contains(t, out, "\x1b[32m+\tfmt.Println(\"namespaces\")\x1b[0m\n")
		assert.Regexp(t, "\x1b\\[36m@@ [^\n]* @@\x1b\\[0m\n", out)
		assert.Contains(t, out, "\n func main() {\n", "context lines are not coloured")
		assert.True(t, strings.HasSuffix(out, "\n3 file(s) changed (1 new, 1 removed), 6 line(s) added, 4 removed\n"))
		// Stripped of colour, it is the plain output.
		var plain bytes.Buffer
		stagediff.Print(&plain, diffs, false)
		stripped := strings.NewReplacer("\x1b[1m", "", "\x1b[31m", "", "\x1b[32m", "", "\x1b[36m", "", "\x1b[0m", "").Replace(out)
		assert.Equal(t, plain.String(), stripped)
	})

	t.Run("nothing changed", func(t *testing.T) {
		var b bytes.Buffer
		stagediff.Print(&b, nil, true)
		assert.Equal(t, "0 file(s) changed, 0 line(s) added, 0 removed\n", b.String())
	})
}

// With no older folder (the first stage), every file is new and whole.
func TestDiffAgainstNothing(t *testing.T) {
	newDir := writeTree(t, map[string]string{"main.go": "package main\n", "sub/x.go": "a\nb\n"})
	diffs, err := stagediff.Diff("", newDir, "", "01-chroot")
	require.NoError(t, err)
	require.Len(t, diffs, 2)
	assert.Equal(t, "--- /dev/null\n+++ 01-chroot/main.go\n@@ -0,0 +1 @@\n+package main\n", diffs[0].Unified)
	assert.True(t, diffs[1].New)
	assert.Equal(t, stagediff.Summary{Files: 2, NewFiles: 2, Added: 3}, stagediff.Summarize(diffs))
}
