package mutate_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/mutate"
)

func write(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), perm))
}

// files lists the regular files and links under root, relative to it.
func files(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, path)
		out = append(out, filepath.ToSlash(rel))
		return err
	}))
	sort.Strings(out)
	return out
}

func TestCopyTakesWhatTheLessonsNeed(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "copy")
	for _, f := range []string{
		"go.mod", "go.sum",
		"01-chroot/main.go", "02-namespaces/rootfs.go",
		"cmd/minibox/main.go", "internal/stages/stages.go", "lessons/en/01-chroot.md",
		// never copied: version control, build output, anything else at the top
		".git/HEAD", "bin/minibox", "internal/x/bin/tool", "README.md", "docs/a.md", "scripts/run.sh",
	} {
		write(t, filepath.Join(src, f), "content of "+f, 0o644)
	}
	write(t, filepath.Join(src, "internal/x/testdata/run.sh"), "#!/bin/sh\n", 0o755)
	require.NoError(t, os.Symlink("main.go", filepath.Join(src, "cmd/minibox/link.go")))

	require.NoError(t, mutate.Copy(src, dst))
	assert.Equal(t, []string{
		"01-chroot/main.go", "02-namespaces/rootfs.go",
		"cmd/minibox/link.go", "cmd/minibox/main.go",
		"go.mod", "go.sum",
		"internal/stages/stages.go", "internal/x/testdata/run.sh",
		"lessons/en/01-chroot.md",
	}, files(t, dst))

	data, err := os.ReadFile(filepath.Join(dst, "02-namespaces/rootfs.go"))
	require.NoError(t, err)
	assert.Equal(t, "content of 02-namespaces/rootfs.go", string(data))
	info, err := os.Stat(filepath.Join(dst, "internal/x/testdata/run.sh"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), info.Mode().Perm(), "modes are kept")
	target, err := os.Readlink(filepath.Join(dst, "cmd/minibox/link.go"))
	require.NoError(t, err)
	assert.Equal(t, "main.go", target, "links stay links")
}

func TestCopyOfAMissingTreeFails(t *testing.T) {
	err := mutate.Copy(filepath.Join(t.TempDir(), "none"), t.TempDir())
	assert.ErrorContains(t, err, "read the source tree")
}

const stageMain = `package main

func child() {
	must(unix.Chroot(rootfs), "chroot %s", rootfs)
	must(unix.Chdir("/"), "chdir /")
	must(unix.Chdir("/"), "chdir / again")
}
`

func TestApplyReplacesTheOneOccurrence(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "01-chroot/main.go"), stageMain, 0o640)
	m := mutate.Mutation{
		Name: "no-chroot", File: "01-chroot/main.go",
		Old: `must(unix.Chroot(rootfs), "chroot %s", rootfs)`, New: `// chroot removed`,
	}
	require.NoError(t, m.Apply(root))
	data, err := os.ReadFile(filepath.Join(root, "01-chroot/main.go"))
	require.NoError(t, err)
	assert.Equal(t, strings.Replace(stageMain, m.Old, m.New, 1), string(data))
	info, err := os.Stat(filepath.Join(root, "01-chroot/main.go"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), info.Mode().Perm())

	// Applied once, the text is gone: a second application fails.
	assert.ErrorContains(t, m.Apply(root), "occurs 0 times")
}

// A mutation must fail loudly when the code it targets changed, so that a
// mutation list cannot rot into edits that break nothing.
func TestApplyFailsUnlessOldOccursExactlyOnce(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "01-chroot/main.go"), stageMain, 0o644)
	for _, tc := range []struct {
		name string
		m    mutate.Mutation
		want string
	}{
		{"absent", mutate.Mutation{Name: "m", File: "01-chroot/main.go", Old: "unix.PivotRoot", New: "x"}, "occurs 0 times"},
		{"twice", mutate.Mutation{Name: "m", File: "01-chroot/main.go", Old: `must(unix.Chdir("/"), "chdir /`, New: "x"}, "occurs 2 times"},
		{"no file", mutate.Mutation{Name: "m", File: "09-none/main.go", Old: "a", New: "b"}, "no such file"},
		{"empty Old", mutate.Mutation{Name: "m", File: "01-chroot/main.go", Old: "", New: "b"}, "non-empty"},
		{"no change", mutate.Mutation{Name: "m", File: "01-chroot/main.go", Old: "child", New: "child"}, "differ"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.Apply(root)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "mutation m", "the error names the mutation")
		})
	}
	data, err := os.ReadFile(filepath.Join(root, "01-chroot/main.go"))
	require.NoError(t, err)
	assert.Equal(t, stageMain, string(data), "a failed mutation leaves the file as it was")
}

func TestTreeCopiesThenMutates(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "copy")
	write(t, filepath.Join(src, "go.mod"), "module m\n", 0o644)
	write(t, filepath.Join(src, "01-chroot/main.go"), stageMain, 0o644)
	ms := []mutate.Mutation{
		{Name: "a", File: "01-chroot/main.go", Old: "func child()", New: "func kid()"},
		{Name: "b", File: "01-chroot/main.go", Old: "func kid()", New: "func baby()"},
	}
	require.NoError(t, mutate.Tree(src, dst, ms...))
	data, err := os.ReadFile(filepath.Join(dst, "01-chroot/main.go"))
	require.NoError(t, err)
	assert.Contains(t, string(data), "func baby()", "mutations apply in order")
	data, err = os.ReadFile(filepath.Join(src, "01-chroot/main.go"))
	require.NoError(t, err)
	assert.Equal(t, stageMain, string(data), "the source tree is never touched")
}

const stage02Main = `package main

func run() {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWUTS | unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET,
		Pdeathsig:  syscall.SIGKILL,
	}
}
`

func TestWithoutCloneFlag(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "02-namespaces/main.go"), stage02Main, 0o644)
	for flag, want := range map[string]string{
		"CLONE_NEWUTS": "Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET,",
		"CLONE_NEWNS":  "Cloneflags: unix.CLONE_NEWUTS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWNET,",
		"CLONE_NEWNET": "Cloneflags: unix.CLONE_NEWUTS | unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWIPC,",
	} {
		m, err := mutate.WithoutCloneFlag(root, "02-namespaces/main.go", flag)
		require.NoError(t, err, flag)
		assert.Equal(t, want, m.New, flag)
		dst := t.TempDir()
		require.NoError(t, mutate.Tree(root, dst, m), flag)
		data, err := os.ReadFile(filepath.Join(dst, "02-namespaces/main.go"))
		require.NoError(t, err)
		assert.NotContains(t, string(data), "unix."+flag+" ", flag)
		assert.NotContains(t, string(data), "unix."+flag+",", flag)
		assert.Contains(t, string(data), "Pdeathsig:  syscall.SIGKILL,", "the rest of the literal stays")
	}

	_, err := mutate.WithoutCloneFlag(root, "02-namespaces/main.go", "CLONE_NEWUSER")
	assert.ErrorContains(t, err, "not in the Cloneflags")
	_, err = mutate.WithoutCloneFlag(root, "02-namespaces/none.go", "CLONE_NEWUTS")
	assert.Error(t, err)

	write(t, filepath.Join(root, "02-namespaces/two.go"), stage02Main+strings.Replace(stage02Main, "package main", "", 1), 0o644)
	_, err = mutate.WithoutCloneFlag(root, "02-namespaces/two.go", "CLONE_NEWUTS")
	assert.ErrorContains(t, err, "2 Cloneflags expressions")
}

func TestWithoutTheOnlyCloneFlag(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "main.go"), "x := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Setsid: true}\n", 0o644)
	m, err := mutate.WithoutCloneFlag(root, "main.go", "CLONE_NEWNS")
	require.NoError(t, err)
	assert.Equal(t, "Cloneflags: 0,", m.New, "still compiles")
}
