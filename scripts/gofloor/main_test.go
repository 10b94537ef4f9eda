package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

// module makes a main module requiring example.com/dep, replaced by a local
// directory whose go line is depGo: no network needed.
func moduleWithDep(t *testing.T, mainGo, extra, depGo string) string {
	t.Helper()
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "dep", "go.mod"), "module example.com/dep\n\ngo "+depGo+"\n")
	writeFile(t, filepath.Join(root, "dep", "dep.go"), "package dep\n")
	writeFile(t, filepath.Join(root, "main", "go.mod"), "module example.com/main\n\ngo "+mainGo+"\n"+extra+
		"\nrequire example.com/dep v1.0.0\n\nreplace example.com/dep => ../dep\n")
	writeFile(t, filepath.Join(root, "main", "main.go"), "package main\n\nimport _ \"example.com/dep\"\n\nfunc main() {}\n")
	return filepath.Join(root, "main")
}

func runCheck(t *testing.T, dir string) (string, error) {
	t.Helper()
	// A developer's GOFLAGS (say -mod=vendor) must not change the answer;
	// GOTOOLCHAIN=local: a go line above the installed Go must be reported,
	// not downloaded.
	t.Setenv("GOFLAGS", "-mod=mod")
	t.Setenv("GOTOOLCHAIN", "local")
	var out bytes.Buffer
	err := check(dir, "1.22", &out)
	return out.String(), err
}

func TestFloorHolds(t *testing.T) {
	for _, mainGo := range []string{"1.22.0", "1.22", "1.22.5"} {
		out, err := runCheck(t, moduleWithDep(t, mainGo, "", "1.21"))
		require.NoError(t, err, mainGo)
		assert.Equal(t, "go floor 1.22: go.mod and 1 dependencies ok\n", out)
	}
	_, err := runCheck(t, moduleWithDep(t, "1.22.0", "", "1.22.9"))
	assert.NoError(t, err, "a dependency at 1.22.x is at the floor, not above it")
}

func TestMainGoLineOffTheFloor(t *testing.T) {
	for _, mainGo := range []string{"1.21", "1.23.0", "1.24"} {
		_, err := runCheck(t, moduleWithDep(t, mainGo, "", "1.21"))
		require.Error(t, err, mainGo)
		assert.Contains(t, err.Error(), `go.mod says go "`+mainGo+`"; the floor is go 1.22.x`)
	}
}

func TestToolchainLine(t *testing.T) {
	_, err := runCheck(t, moduleWithDep(t, "1.22.0", "\ntoolchain go1.22.5\n", "1.21"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "go.mod has a toolchain line (go1.22.5)")
}

func TestDependencyAboveTheFloor(t *testing.T) {
	for _, depGo := range []string{"1.23", "1.23.0", "1.24rc1", "9.0"} {
		_, err := runCheck(t, moduleWithDep(t, "1.22.0", "", depGo))
		require.Error(t, err, depGo)
		// A go newer than depGo lists the module and gofloor names it; an
		// older one refuses to list it at all (GOTOOLCHAIN=local): lint
		// fails either way.
		assert.Regexp(t, `example.com/dep v1.0.0 needs go `+depGo+` \(above the floor 1.22\)|example.com/dep@v1.0.0: module ../dep requires go >= `+depGo, err.Error())
	}
}

// The real go.mod: what make lint guards.
func TestMiniboxModule(t *testing.T) {
	out, err := runCheck(t, "../..")
	require.NoError(t, err)
	assert.Contains(t, out, "go floor 1.22: go.mod and ")
}

func TestParseGoVersion(t *testing.T) {
	for in, want := range map[string]goVersion{
		"1.22": {1, 22}, "1.22.0": {1, 22}, "1.23rc1": {1, 23}, "1.9": {1, 9}, "": {1, 0},
	} {
		got, err := parseGoVersion(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"1", "x.2", "1.x", "go1.22"} {
		_, err := parseGoVersion(bad)
		assert.Error(t, err, bad)
	}
	assert.True(t, goVersion{1, 23}.after(goVersion{1, 22}))
	assert.False(t, goVersion{1, 9}.after(goVersion{1, 22}), "numeric, not string, comparison")
	assert.False(t, goVersion{1, 22}.after(goVersion{1, 22}))
}

// make lint changes nothing: not go.mod, not go.sum, even where the go
// command would want to update them.
func TestCheckLeavesTheTreeAlone(t *testing.T) {
	dir := moduleWithDep(t, "1.22.0", "", "1.23")
	before, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	require.NoError(t, err)
	_, err = runCheck(t, dir)
	require.Error(t, err)
	after, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	require.NoError(t, err)
	assert.Equal(t, string(before), string(after))
	assert.NoFileExists(t, filepath.Join(dir, "go.sum"))
}
