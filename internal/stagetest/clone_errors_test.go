package stagetest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// When the kernel refuses to make the namespaces, the stage names the
// flags it refuses and points to minibox doctor, instead of a bare
// "fork/exec /proc/self/exe: operation not permitted". An unprivileged
// user is the simplest such case: it may make a user namespace, but no
// other namespace without one.
func TestStage02CloneRefusalNamesTheFlags(t *testing.T) {
	forEachStage(t, "02", func(t *testing.T, stage string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if atLeast(stage, "04") {
			// From stage 04 on, host root's overlay comes before the clone
			// (layers.go): give the user a data root it may write, so that
			// it gets that far and is stopped there, by name.
			require.NoError(t, os.Chown(os.Getenv("MINIBOX_ROOT"), 65534, 65534))
		}
		args := []string{"run", rootfsDir, "--", "true"}
		if networkStage(stage) { // no bridge: the user could not make one, nor should it try here
			args = append([]string{"run", "--net", "none"}, args[1:]...)
		}
		cmd := exec.CommandContext(ctx, stage, args...)
		cmd.Env = stageEnv()
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if assert.ErrorAs(t, err, &exit, stderr.String()) {
			assert.Equal(t, 1, exit.ExitCode(), stderr.String())
		}
		if atLeast(stage, "04") {
			// Stopped where the layers need root, naming what was refused.
			assert.Contains(t, stderr.String(), "operation not permitted")
			assert.Contains(t, stderr.String(), "/containers/")
			return
		}
		assert.Contains(t, stderr.String(), "minibox doctor")
		assert.Contains(t, stderr.String(), "CLONE_NEWUTS", "the refused flags are named")
		assert.Contains(t, stderr.String(), "CLONE_NEWNET")
	})
}
