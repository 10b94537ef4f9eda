package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildMinibox builds the minibox command and its companions into dir,
// in one go build, as `make build` installs them: minibox-shim (the
// containers' supervisor and init) and minibox-lessons (the lesson
// commands, which minibox hands over to it), side by side and of the same
// build, so that minibox uses them (final/runtime.Companion). Without the
// shim every container ran on minibox itself, which is not what users
// run; without minibox-lessons, minibox lesson fails. goTool "" is "go"
// from $PATH. It returns minibox's path.
func BuildMinibox(goTool, dir string) (string, error) {
	return BuildMiniboxFrom(goTool, "", dir)
}

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
		"github.com/minibox-lab/minibox/cmd/minibox-lessons")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/minibox ./cmd/minibox-shim ./cmd/minibox-lessons: %w\n%s", err, out)
	}
	return filepath.Join(dir, "minibox"), nil
}
