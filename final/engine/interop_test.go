package engine_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The bundle the engine writes for a container (bundle/config.json: its
// overlay root, its /etc files and volumes, docker's defaults) runs on
// runc as it is, but for the command and the cgroup, which the running
// container has: runc runs it on the same root file system.
func TestEngineBundleRunsOnRunc(t *testing.T) {
	e := newEnv(t)
	id := strings.TrimSpace(e.ok("run", "-d", "--name", "src", "--hostname", "enginehost", "--network", "none",
		"-v", "vol:/data", "-m", "64m", e.ref, "sh", "-c", "echo from-engine > /data/f; echo upper > /made; exec sleep 1000"))
	require.Eventually(t, func() bool { out, _, _ := e.mb("exec", "src", "cat", "/made"); return out == "upper\n" }, 5e9, 5e7)
	data, err := os.ReadFile(filepath.Join(e.root, "engine", "containers", id, "bundle", "config.json"))
	require.NoError(t, err)
	var spec specs.Spec
	require.NoError(t, json.Unmarshal(data, &spec))
	assert.Equal(t, filepath.Join(e.root, "engine", "containers", id, "rootfs"), spec.Root.Path)

	spec.Process.Args = []string{"sh", "-c", `echo "$(hostname) $(cat /etc/hostname) $GREETING $(cat /data/f) $(cat /made) $(id -u) $(pwd)"`}
	spec.Linux.CgroupsPath = "/minibox/" + randomHex(t, 6) // the container has its own
	bundle := t.TempDir()
	data, err = json.Marshal(spec)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600))
	runc := exec.Command("runc", "--root", t.TempDir(), "run", "--bundle", bundle, "engine-bundle-"+id[:12])
	out, err := runc.CombinedOutput()
	require.NoError(t, err, "runc run on the engine's bundle:\n%s", out)
	assert.Equal(t, "enginehost enginehost hello from-engine upper 0 "+imageWorkdir+"\n", string(out))
}

// A bundle made by `runc spec` runs on `minibox runtime run`.
func TestRuncSpecBundleRunsOnMiniboxRuntime(t *testing.T) {
	e := newEnv(t)
	bundle := t.TempDir()
	out, err := exec.Command("runc", "spec", "--bundle", bundle).CombinedOutput()
	require.NoError(t, err, "%s", out)
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	require.NoError(t, err)
	var spec specs.Spec
	require.NoError(t, json.Unmarshal(data, &spec))
	spec.Root.Path = fixture.bbfs // read-only, as runc spec says
	spec.Process.Terminal = false
	spec.Process.Args = []string{"sh", "-c", "echo from-runc-spec $(hostname) $(id -u); touch /x 2>/dev/null || echo read-only; exit 6"}
	data, err = json.Marshal(spec)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600))

	cmd := e.command("runtime", "--root", t.TempDir(), "run", "--bundle", bundle, "runc-spec-"+randomHex(t, 4))
	got, err := cmd.CombinedOutput()
	require.Error(t, err, "%s", got)
	assert.Equal(t, 6, cmd.ProcessState.ExitCode(), "%s", got)
	assert.Equal(t, "from-runc-spec runc 0\nread-only\n", string(got))
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}
