package testenv

import (
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildMinibox builds the minibox command and its companions into dir,
// in one go build, as `make build` installs them: minibox-shim (the
// containers' supervisor), minibox-init (their init), minibox-keeper (what
// a detached container's supervisor becomes) and minibox-lessons (the
// lesson commands, which minibox hands over to it), side by side and
// of the same build, so that minibox uses them (final/runtime.Companion).
// Without shim and init every container ran on minibox itself, which is
// not what users run; without minibox-lessons, minibox lesson fails. goTool "" is "go"
// from $PATH. It returns minibox's path.
func BuildMinibox(goTool, dir string) (string, error) {
	return BuildMiniboxFrom(goTool, "", dir)
}

// StaticBuild is the environment entry every build of minibox's binaries
// gets, as the Makefile exports it: no cgo, static binaries.
const StaticBuild = "CGO_ENABLED=0"

// BuildMiniboxFrom is BuildMinibox from the module in the directory src
// ("" for the module the caller runs in), such as a mutated copy of the
// tree.
func BuildMiniboxFrom(goTool, src, dir string) (string, error) {
	// The cgroup v2 VM has no Go: its harness (scripts/cgroupv2-vm) built
	// minibox and its companions into MINIBOX_STAGE_BIN, as for the stages.
	if prebuilt := os.Getenv("MINIBOX_STAGE_BIN"); prebuilt != "" {
		if _, err := os.Stat(filepath.Join(prebuilt, "minibox")); err == nil {
			return filepath.Join(prebuilt, "minibox"), nil
		}
	}
	if goTool == "" {
		goTool = "go"
	}
	// Import paths, not ./cmd/…: callers run in different directories of
	// the module. A directory as -o takes one binary per main package.
	cmd := exec.Command(goTool, "build", "-o", dir+"/",
		"github.com/minibox-lab/minibox/cmd/minibox",
		"github.com/minibox-lab/minibox/cmd/minibox-shim",
		"github.com/minibox-lab/minibox/cmd/minibox-init",
		"github.com/minibox-lab/minibox/cmd/minibox-keeper",
		"github.com/minibox-lab/minibox/cmd/minibox-lessons")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), StaticBuild)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/minibox ./cmd/minibox-shim ./cmd/minibox-init ./cmd/minibox-keeper ./cmd/minibox-lessons: %w\n%s", err, out)
	}
	return filepath.Join(dir, "minibox"), nil
}

// RequireStatic fails the test unless the binary at path was built
// without cgo and needs no dynamic loader: no PT_INTERP program header.
func RequireStatic(t testing.TB, path string) {
	t.Helper()
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, s := range info.Settings {
		if s.Key == "CGO_ENABLED" && s.Value != "0" {
			t.Errorf("%s was built with CGO_ENABLED=%s; minibox's binaries are built with %s", path, s.Value, StaticBuild)
		}
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked (it has an ELF interpreter); minibox's binaries are static", path)
		}
	}
}
