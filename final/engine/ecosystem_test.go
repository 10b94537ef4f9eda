package engine_test

// Images travel both ways between minibox and the rest of the ecosystem
// (issue 13's interoperability list): built by minibox, run by podman
// (through a registry and through a file); built by buildah, run by
// minibox; archives written by skopeo, loaded by minibox; what minibox
// pushes and saves read by skopeo and umoci.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/podmantest"
	"github.com/minibox-lab/minibox/internal/registrytest"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// tool runs a command and fails the test with its output if it fails.
func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	_, err := exec.LookPath(name)
	testenv.Require(t, err == nil, name+" is not installed")
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s\n%s", name, strings.Join(args, " "), out)
	return string(out)
}

// buildImage builds, in e's data root, an image FROM the fixture with a
// layer of its own (RUN) and a Cmd that prints it.
func buildImage(t *testing.T, e *env, name string) {
	t.Helper()
	dir := t.TempDir()
	dockerfile := "FROM " + e.ref + "\n" +
		"RUN echo built by minibox > /built\n" +
		`CMD ["cat", "/built"]` + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644))
	e.ok("build", "-q", "-t", name, dir)
}

// An image minibox built and pushed runs on podman, pulled from the
// registry; the same image saved to a file runs on podman after load.
func TestMiniboxImageRunsOnPodman(t *testing.T) {
	e := newEnv(t)
	p := podmantest.New(t)
	r := registrytest.Start(t)
	buildImage(t, e, "eco/built:1")
	ref := r.Addr + "/eco/built:1"
	e.ok("tag", "eco/built:1", ref)
	e.ok("push", ref)

	// skopeo reads what minibox pushed: a valid OCI (or Docker) manifest
	// with the fixture's layers and ours.
	var inspect struct {
		Layers []string
		Config struct{ Cmd []string } `json:"-"`
	}
	out := tool(t, "skopeo", "inspect", "--tls-verify=false", "docker://"+ref)
	require.NoError(t, json.Unmarshal([]byte(out), &inspect), out)
	assert.Len(t, inspect.Layers, 3, "the fixture's two layers and RUN's")

	p.Output(t, p.Cmd("pull", "--quiet", "--tls-verify=false", ref))
	got := p.Output(t, p.Run("--rm", "--network", "none", ref))
	assert.Equal(t, "built by minibox\n", got)

	archive := filepath.Join(t.TempDir(), "built.tar")
	e.ok("save", "-o", archive, "eco/built:1")
	loaded := p.Output(t, p.Cmd("load", "-i", archive))
	t.Logf("podman load: %s", loaded)
	got = p.Output(t, p.Run("--rm", "--network", "none", "eco/built:1"))
	assert.Equal(t, "built by minibox\n", got)
}

// An image buildah made (from scratch: the busybox files and a Cmd) and
// pushed runs on minibox.
func TestBuildahImageRunsOnMinibox(t *testing.T) {
	e := newEnv(t)
	r := registrytest.Start(t)
	_, err := exec.LookPath("buildah")
	testenv.Require(t, err == nil, "buildah is not installed (Debian package buildah)")
	dir := t.TempDir()
	// vfs: buildah's containers are plain directories, no mounts to leak.
	base := []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"), "--storage-driver", "vfs"}
	buildah := func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(tool(t, "buildah", append(append([]string{}, base...), args...)...))
	}
	t.Cleanup(func() { _ = exec.Command("buildah", append(base, "rm", "-a")...).Run() })
	ctr := buildah("from", "scratch")
	buildah("copy", ctr, fixture.bbfs+"/", "/")
	buildah("config", "--cmd", `["sh", "-c", "echo built by buildah; hostname"]`, "--env", "FROM=buildah", ctr)
	ref := r.Addr + "/eco/buildah:1"
	buildah("commit", "-q", "--format", "oci", ctr, "eco-buildah")
	buildah("push", "-q", "--tls-verify=false", "eco-buildah", "docker://"+ref)

	e.ok("pull", ref)
	out := e.ok("run", "--rm", "--network", "none", ref)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, out)
	assert.Equal(t, "built by buildah", lines[0])
	assert.Regexp(t, `^[0-9a-f]{12}$`, lines[1], "minibox's hostname: the container's short id")
	assert.Equal(t, "buildah\n", e.ok("run", "--rm", "--network", "none", ref, "sh", "-c", "echo $FROM"))
}

// skopeo's oci-archive and docker-archive of an image load into minibox
// and run; umoci unpacks what minibox saved.
func TestSkopeoArchivesLoadIntoMinibox(t *testing.T) {
	e := newEnv(t)
	buildImage(t, e, "eco/archived:1")
	saved := filepath.Join(t.TempDir(), "saved.tar")
	e.ok("save", "-o", saved, "eco/archived:1")

	// umoci reads minibox's OCI layout (untarred) and unpacks the image.
	layout := filepath.Join(t.TempDir(), "layout")
	require.NoError(t, os.Mkdir(layout, 0o755))
	tool(t, "tar", "-xf", saved, "-C", layout)
	bundle := filepath.Join(t.TempDir(), "bundle")
	var index struct {
		Manifests []struct {
			Annotations map[string]string
		}
	}
	data, err := os.ReadFile(filepath.Join(layout, "index.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &index))
	require.NotEmpty(t, index.Manifests)
	tag := index.Manifests[0].Annotations["org.opencontainers.image.ref.name"]
	require.NotEmpty(t, tag, "minibox save names the image in the layout")
	tool(t, "umoci", "unpack", "--image", layout+":"+tag, bundle)
	built, err := os.ReadFile(filepath.Join(bundle, "rootfs", "built"))
	require.NoError(t, err)
	assert.Equal(t, "built by minibox\n", string(built))

	// skopeo copies it into its two archive formats; each loads into a
	// data root of its own and runs.
	for _, format := range []string{"oci-archive", "docker-archive"} {
		archive := filepath.Join(t.TempDir(), format+".tar")
		tool(t, "skopeo", "copy", "-q", "oci:"+layout+":"+tag, format+":"+archive+":eco/archived:1")
		other := &env{t: t, root: t.TempDir(), ref: e.ref}
		t.Cleanup(other.removeAllAndCheck)
		out := other.ok("load", "-i", archive)
		assert.Contains(t, out, "Loaded image", format)
		assert.Equal(t, "built by minibox\n", other.ok("run", "--rm", "--network", "none", "eco/archived:1"), format)
	}
}
