package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildMinibox builds the minibox command and its small companion
// minibox-shim (the containers' supervisor and init) into dir, in one go
// build, as `make build` installs them: side by side and of the same
// build, so that minibox uses the shim (final/runtime.Shim). Tests that
// built only minibox still worked, but ran every container on the big
// binary, which is not what users run. goTool "" is "go" from $PATH. It
// returns minibox's path.
func BuildMinibox(goTool, dir string) (string, error) {
	// The cgroup v2 VM has no Go: its harness (scripts/cgroupv2-vm) built
	// minibox and minibox-shim into MINIBOX_STAGE_BIN, as for the stages.
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
		"github.com/minibox-lab/minibox/cmd/minibox", "github.com/minibox-lab/minibox/cmd/minibox-shim")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/minibox ./cmd/minibox-shim: %w\n%s", err, out)
	}
	return filepath.Join(dir, "minibox"), nil
}
