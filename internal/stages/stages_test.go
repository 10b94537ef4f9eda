package stages_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/rootfs"
	"github.com/minibox-lab/minibox/internal/stages"
)

const goMod = "module github.com/minibox-lab/minibox\n\ngo 1.22\n"

func write(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

// tree is a temporary source tree with the given go.mod and a nested
// subdirectory; it returns the root and the subdirectory.
func tree(t *testing.T, mod string) (root, nested string) {
	t.Helper()
	root = t.TempDir()
	if mod != "" {
		write(t, filepath.Join(root, "go.mod"), mod)
	}
	nested = filepath.Join(root, "lessons", "en", "deep")
	require.NoError(t, os.MkdirAll(nested, 0o755))
	return root, nested
}

func TestFindSourceFromNestedDir(t *testing.T) {
	t.Setenv("MINIBOX_SRC", "")
	root, nested := tree(t, goMod)
	got, err := stages.FindSource(nested)
	require.NoError(t, err)
	assert.Equal(t, root, got)

	got, err = stages.FindSource(root)
	require.NoError(t, err)
	assert.Equal(t, root, got, "the root itself")
}

func TestFindSourceGoModVariants(t *testing.T) {
	t.Setenv("MINIBOX_SRC", "")
	for name, mod := range map[string]string{
		"only the module line":    "module github.com/minibox-lab/minibox\n",
		"no newline at all":       "module github.com/minibox-lab/minibox",
		"comment before module":   "// minibox teaches container internals.\nmodule github.com/minibox-lab/minibox\n\ngo 1.22\n",
		"comment after the path":  "module github.com/minibox-lab/minibox // the engine\n\ngo 1.22\n",
		"quoted path":             "module \"github.com/minibox-lab/minibox\"\n\ngo 1.22\n",
		"CRLF line endings":       "module github.com/minibox-lab/minibox\r\n\r\ngo 1.22\r\n",
		"indented with a tab gap": "  module\tgithub.com/minibox-lab/minibox\n",
	} {
		t.Run(name, func(t *testing.T) {
			root, nested := tree(t, mod)
			got, err := stages.FindSource(nested)
			require.NoError(t, err)
			assert.Equal(t, root, got)
		})
	}
}

func TestFindSourceOtherModuleIsNoMatch(t *testing.T) {
	t.Setenv("MINIBOX_SRC", "")
	for name, mod := range map[string]string{
		"another module":       "module github.com/someone/else\n\ngo 1.22\n",
		"a longer module path": "module github.com/minibox-lab/minibox-extras\n\ngo 1.22\n",
		"a major version":      "module github.com/minibox-lab/minibox/v2\n\ngo 1.22\n",
		"minibox as a require": "module example.com/student\n\nrequire github.com/minibox-lab/minibox v0.1.0\n",
		"commented-out module": "// module github.com/minibox-lab/minibox\nmodule example.com/x\n",
		"no go.mod at all":     "",
	} {
		t.Run(name, func(t *testing.T) {
			// go test builds the test binary in its own temporary work
			// directory, outside any source tree: the fallback finds nothing.
			_, nested := tree(t, mod)
			_, err := stages.FindSource(nested)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "cannot find the minibox source tree")
			assert.Contains(t, err.Error(), "MINIBOX_SRC")
		})
	}
}

func TestFindSourcePassesNestedModules(t *testing.T) {
	// A module of its own inside the checkout (a student's experiment) is
	// passed over on the way up to minibox's go.mod.
	t.Setenv("MINIBOX_SRC", "")
	root, _ := tree(t, goMod)
	inner := filepath.Join(root, "experiments", "mine")
	write(t, filepath.Join(inner, "go.mod"), "module example.com/mine\n\ngo 1.22\n")
	got, err := stages.FindSource(inner)
	require.NoError(t, err)
	assert.Equal(t, root, got)
}

func TestFindSourceEnv(t *testing.T) {
	root, _ := tree(t, goMod)
	elsewhere := t.TempDir()

	t.Setenv("MINIBOX_SRC", root)
	got, err := stages.FindSource(elsewhere)
	require.NoError(t, err)
	assert.Equal(t, root, got, "$MINIBOX_SRC wins over the start directory")

	other, _ := tree(t, "module github.com/someone/else\n")
	t.Setenv("MINIBOX_SRC", other)
	_, err = stages.FindSource(root)
	require.Error(t, err, "an invalid $MINIBOX_SRC is an error, not a fallback")
	assert.Equal(t, "MINIBOX_SRC="+other+": no go.mod for github.com/minibox-lab/minibox there", err.Error())

	missing := filepath.Join(elsewhere, "missing")
	t.Setenv("MINIBOX_SRC", missing)
	_, err = stages.FindSource(root)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "MINIBOX_SRC="+missing)
}

// stageTree makes a source tree with stage folders and some distractors.
func stageTree(t *testing.T) string {
	t.Helper()
	root, _ := tree(t, goMod)
	for _, d := range []string{"10-images", "02-namespaces", "01-chroot", "notastage", "1-short", "cmd"} {
		require.NoError(t, os.Mkdir(filepath.Join(root, d), 0o755))
	}
	write(t, filepath.Join(root, "03-x"), "a file, not a stage folder\n")
	require.NoError(t, os.Symlink("/nonexistent", filepath.Join(root, "04-dangling")))
	return root
}

func TestList(t *testing.T) {
	root := stageTree(t)
	list, err := stages.List(root)
	require.NoError(t, err)
	assert.Equal(t, []stages.Stage{
		{Number: 1, Name: "01-chroot", Dir: filepath.Join(root, "01-chroot")},
		{Number: 2, Name: "02-namespaces", Dir: filepath.Join(root, "02-namespaces")},
		{Number: 10, Name: "10-images", Dir: filepath.Join(root, "10-images")},
	}, list)

	list, err = stages.List(t.TempDir())
	require.NoError(t, err)
	assert.Empty(t, list)
}

func TestFind(t *testing.T) {
	root := stageTree(t)
	s, err := stages.Find(root, 2)
	require.NoError(t, err)
	assert.Equal(t, "02-namespaces", s.Name)
	assert.Equal(t, filepath.Join(root, "02-namespaces"), s.Dir)

	s, err = stages.Find(root, 10)
	require.NoError(t, err)
	assert.Equal(t, "10-images", s.Name)

	_, err = stages.Find(root, 3)
	require.Error(t, err, "03-x is a file")
	assert.Equal(t, "no stage 03 in "+root+" (there are: 01-chroot, 02-namespaces, 10-images)", err.Error())
}

func TestBinary(t *testing.T) {
	assert.Equal(t, "stage01", stages.Stage{Number: 1, Name: "01-chroot"}.Binary())
	assert.Equal(t, "stage06", stages.Stage{Number: 6, Name: "06-images"}.Binary())
	assert.Equal(t, "stage12", stages.Stage{Number: 12}.Binary())
}

func TestGoTool(t *testing.T) {
	p, err := stages.GoTool()
	require.NoError(t, err)
	out, err := exec.Command(p, "version").Output()
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(out), "go version go"), string(out))
}

const hello = `package main

import (
	"fmt"
	"net"
)

func main() {
	// net uses cgo when cgo is on: the binary is static only because
	// Build turns cgo off.
	_ = net.ParseIP("127.0.0.1")
	fmt.Println("hello")
}
`

// notUnderSudo makes Build build as this process's user: under sudo make
// test, the temporary trees here are root's and would be built as root
// anyway, with a note in the log (sudo_test.go tests that).
func notUnderSudo(t *testing.T) {
	t.Setenv("SUDO_UID", "")
	t.Setenv("SUDO_GID", "")
}

func TestBuild(t *testing.T) {
	notUnderSudo(t)
	root, _ := tree(t, goMod)
	write(t, filepath.Join(root, "01-hello", "main.go"), hello)
	write(t, filepath.Join(root, "02-bye", "main.go"), "package main\n\nfunc main() { println(\"bye\") }\n")
	list, err := stages.List(root)
	require.NoError(t, err)
	require.Len(t, list, 2)

	// Even with cgo on in the environment, the stages come out static.
	t.Setenv("CGO_ENABLED", "1")
	out := t.TempDir()
	var log bytes.Buffer
	require.NoError(t, stages.Build(context.Background(), root, out, list, &log))
	assert.Equal(t, "building stage01 from 01-hello\nbuilding stage02 from 02-bye\n", log.String())

	bin := filepath.Join(out, "stage01")
	got, err := exec.Command(bin).Output()
	require.NoError(t, err)
	assert.Equal(t, "hello\n", string(got))
	static, err := rootfs.IsStatic(bin)
	require.NoError(t, err)
	assert.True(t, static, "stage binaries must run inside a busybox rootfs without /lib")

	got, err = exec.Command(filepath.Join(out, "stage02")).CombinedOutput()
	require.NoError(t, err)
	assert.Equal(t, "bye\n", string(got))

	// No log is fine.
	require.NoError(t, stages.Build(context.Background(), root, t.TempDir(), list[:1], nil))

	// The output directory is created when missing.
	missing := filepath.Join(t.TempDir(), "a", "bin")
	require.NoError(t, stages.Build(context.Background(), root, missing, list[:1], nil))
	assert.FileExists(t, filepath.Join(missing, "stage01"))
}

func TestBuildCompileError(t *testing.T) {
	notUnderSudo(t)
	root, _ := tree(t, goMod)
	write(t, filepath.Join(root, "01-broken", "main.go"), "package main\n\nfunc main() {\n\tundefinedThing()\n}\n")
	list, err := stages.List(root)
	require.NoError(t, err)
	out := t.TempDir()
	err = stages.Build(context.Background(), root, out, list, nil)
	require.Error(t, err)
	msg := err.Error()
	assert.True(t, strings.HasPrefix(msg, "build 01-broken failed:\n"), msg)
	assert.Contains(t, msg, "main.go:4:2: undefined: undefinedThing", "the compiler's message, naming the file and line")
	assert.NoFileExists(t, filepath.Join(out, "stage01"))
}
