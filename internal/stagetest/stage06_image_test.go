package stagetest

// Stage 06 runs images: their layers under the container, their config's
// Entrypoint, Cmd, Env, WorkingDir and User for its command; commit makes
// an image of a container; save and load carry one as an OCI layout tar.
// The images come from the real tools (umoci makes the layout, skopeo
// writes and reads oci-archive files): minibox must read what they write,
// and they must read what minibox writes. Pulling from a registry is in
// stage06_pull_test.go, building in stage06_build_test.go.

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/testenv"
)

// umociImage makes an OCI layout with one image, NAME:latest, of the test
// rootfs, configured by umoci config's flags, and returns the layout's
// directory.
func umociImage(t *testing.T, config ...string) string {
	t.Helper()
	_, err := exec.LookPath("umoci")
	testenv.Require(t, err == nil, "needs umoci (Debian package umoci: scripts/install-prereqs.sh)")
	layout := filepath.Join(t.TempDir(), "layout")
	for _, args := range [][]string{
		{"init", "--layout", layout},
		{"new", "--image", layout + ":latest"},
		{"insert", "--image", layout + ":latest", rootfsDir, "/"},
		append([]string{"config", "--image", layout + ":latest"}, config...),
	} {
		out, err := exec.Command("umoci", args...).CombinedOutput()
		require.NoError(t, err, "umoci %v: %s", args, out)
	}
	return layout
}

// skopeo runs skopeo with args and returns its standard output.
func skopeo(t *testing.T, args ...string) string {
	t.Helper()
	_, err := exec.LookPath("skopeo")
	testenv.Require(t, err == nil, "needs skopeo (Debian package skopeo: scripts/install-prereqs.sh)")
	out, err := exec.Command("skopeo", args...).Output()
	var stderr []byte
	if exit, ok := err.(*exec.ExitError); ok {
		stderr = exit.Stderr
	}
	require.NoError(t, err, "skopeo %v: %s", args, stderr)
	return string(out)
}

// loadedImage puts an image made by umoci with config into a fresh data
// root through an oci-archive that skopeo wrote, and returns the stage.
func loadedImage(t *testing.T, name string, config ...string) (stage, root string) {
	t.Helper()
	root = useTempDataRoot(t)
	stage = needStage(t, "06")
	checkNoContainerDirsAtEnd(t)
	archive := filepath.Join(t.TempDir(), "image.tar")
	skopeo(t, "copy", "-q", "oci:"+umociImage(t, config...)+":latest", "oci-archive:"+archive+":"+name)
	res := run(t, stage, "load", archive)
	require.Equal(t, 0, res.code, res.stderr)
	full := name
	if !strings.Contains(name, "/") {
		full = "docker.io/library/" + name
	}
	require.Equal(t, "Loaded image: "+full+"\n", res.stdout)
	return stage, root
}

// The config decides the command, its environment, directory and user;
// arguments after the image replace Cmd, -e adds to Env and wins, -w and
// -u win, --entrypoint replaces Entrypoint and drops Cmd.
func TestStage06RunUsesTheImageConfig(t *testing.T) {
	stage, _ := loadedImage(t, "conf:1",
		"--config.entrypoint", "/bin/sh", "--config.entrypoint", "-c",
		"--config.cmd", `echo "cmd ran as $(id -u):$(id -g) in $(pwd) with GREETING=$GREETING HOME=$HOME"`,
		"--config.env", "GREETING=from-the-image", "--config.env", "PATH=/bin:/image-path",
		"--config.workingdir", "/srv/app", "--config.user", "nobody")
	run := func(args ...string) result {
		res := run(t, stage, append([]string{"run", "--net", "none"}, args...)...)
		require.Equal(t, 0, res.code, "run %v: %s", args, res.stderr)
		return res
	}
	res := run("conf:1")
	assert.Equal(t, "cmd ran as 65534:65534 in /srv/app with GREETING=from-the-image HOME=/nonexistent\n", res.stdout,
		"Entrypoint + Cmd, User from /etc/passwd, WorkingDir made, Env")

	res = run("-e", "GREETING=from-e", "-w", "/tmp", "-u", "0:0", "conf:1", "echo $(id -u) $PWD $GREETING $PATH")
	assert.Equal(t, "0 /tmp from-e /bin:/image-path\n", res.stdout, "arguments replace Cmd; -e, -w, -u win; the image's PATH is kept")

	res = run("--entrypoint", "/bin/echo", "conf:1", "only", "these")
	assert.Equal(t, "only these\n", res.stdout, "--entrypoint replaces the entrypoint and drops Cmd")

	res = run("-u", "1234:4321", "conf:1", "id")
	assert.Equal(t, "uid=1234 gid=4321 groups=4321\n", res.stdout, "a numeric user needs no /etc/passwd entry, and has no other groups")

	bad := runEnv(t, stageEnv(), stage, "run", "--net", "none", "-u", "no-such-user", "conf:1")
	assert.Equal(t, 1, bad.code)
	assert.Contains(t, bad.stderr, "user no-such-user: not a number, and no valid entry in the image's /etc/passwd")

	bad = runEnv(t, stageEnv(), stage, "run", "--net", "none", "no-such-image:1")
	assert.Equal(t, 1, bad.code)
	assert.Contains(t, bad.stderr, "no image no-such-image:1")
	assert.Contains(t, bad.stderr, "pull")
}

// An image with neither Entrypoint nor Cmd needs a command after its name.
func TestStage06RunWithoutACommandIsAClearError(t *testing.T) {
	stage, _ := loadedImage(t, "nocmd:1", "--clear=config.cmd", "--clear=config.entrypoint")
	res := run(t, stage, "run", "--net", "none", "nocmd:1")
	assert.Equal(t, 1, res.code, res.stderr)
	assert.Contains(t, res.stderr, "no command")
	res = run(t, stage, "run", "--net", "none", "nocmd:1", "echo", "given")
	assert.Equal(t, "given\n", res.stdout, res.stderr)
}

// commit ID NAME: the container's changes (a new file, a deleted one) as
// one more layer over its image's; the config and history carried on.
func TestStage06CommitMakesAnImage(t *testing.T) {
	stage, root := loadedImage(t, "base:1", "--config.env", "FROM_BASE=yes", "--config.cmd", "sh")
	res := run(t, stage, "run", "--keep", "--net", "none", "base:1", "sh", "-c", "echo committed > /etc/motd && rm /bin/vi")
	require.Equal(t, 0, res.code, res.stderr)
	kept := keptFrom(t, res)

	res = run(t, stage, "commit", kept.id, "derived:2")
	require.Equal(t, 0, res.code, res.stderr)
	require.Regexp(t, `^sha256:[0-9a-f]{64}\n$`, res.stdout)
	id := res.stdout[7:19]

	res = run(t, stage, "run", "--net", "none", "derived:2", "sh", "-c", `cat /etc/motd; ls /bin/vi 2>&1; echo "FROM_BASE=$FROM_BASE"`)
	assert.Equal(t, "committed\nls: /bin/vi: No such file or directory\nFROM_BASE=yes\n", res.stdout, res.stderr)

	res = run(t, stage, "images")
	assert.Regexp(t, `(?m)^derived\s+2\s+`+id+`\s`, res.stdout)
	assert.Regexp(t, `(?m)^base\s+1\s+[0-9a-f]{12}\s`, res.stdout)

	// The new image has one more layer, whose blob is the committed tar.
	var idx struct{ Manifests []struct{ Digest string } }
	readJSONFile(t, filepath.Join(root, "images", "index.json"), &idx)
	layers := map[int]int{}
	for _, m := range idx.Manifests {
		var manifest struct{ Layers []struct{ MediaType string } }
		readJSONFile(t, blobFile(root, m.Digest), &manifest)
		layers[len(manifest.Layers)]++
	}
	assert.Equal(t, map[int]int{1: 1, 2: 1}, layers, "base has one layer, derived two")

	// A container that did not run from an image alone cannot be one.
	res = run(t, stage, "run", "--keep", "--net", "none", rootfsDir, "--", "true")
	require.Equal(t, 0, res.code, res.stderr)
	other := keptFrom(t, res)
	res = run(t, stage, "commit", other.id, "nope:1")
	assert.Equal(t, 1, res.code)
	assert.Contains(t, res.stderr, "did not run from an image")
	assert.NotContains(t, run(t, stage, "images").stdout, "nope")
}

// save writes an OCI layout tar that skopeo reads; load puts it into
// another data root (a second machine), where it runs; a damaged archive
// is refused, naming the blob, and leaves no image.
func TestStage06SaveAndLoad(t *testing.T) {
	stage, _ := loadedImage(t, "127.0.0.1:5000/travel:3", "--config.cmd", "cat", "--config.cmd", "/etc/passwd")
	file := filepath.Join(t.TempDir(), "travel.tar")
	res := run(t, stage, "save", "127.0.0.1:5000/travel:3", file)
	require.Equal(t, 0, res.code, res.stderr)

	var inspect struct {
		Layers []string
		Os     string
	}
	require.NoError(t, json.Unmarshal([]byte(skopeo(t, "inspect", "oci-archive:"+file)), &inspect))
	assert.Len(t, inspect.Layers, 1)
	assert.Equal(t, "linux", inspect.Os)

	second := filepath.Join(t.TempDir(), "machine2")
	res = run(t, stage, "load", "--root", second, file)
	require.Equal(t, 0, res.code, res.stderr)
	assert.Equal(t, "Loaded image: 127.0.0.1:5000/travel:3\n", res.stdout)
	res = run(t, stage, "run", "--root", second, "--net", "none", "127.0.0.1:5000/travel:3")
	assert.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, "root:x:0:0:root:/root:/bin/sh")
	assert.Empty(t, globNames(t, filepath.Join(second, "containers", "*")))

	// One byte of the layer changed: its digest no longer matches.
	damaged := filepath.Join(t.TempDir(), "damaged.tar")
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	i := strings.Index(string(data), "\x1f\x8b") // the gzip layer's magic
	require.Positive(t, i, "no gzip layer in the saved tar")
	data[i+100] ^= 0xff
	require.NoError(t, os.WriteFile(damaged, data, 0o644))
	third := filepath.Join(t.TempDir(), "machine3")
	res = run(t, stage, "load", "--root", third, damaged)
	assert.Equal(t, 1, res.code)
	assert.Regexp(t, `blobs/sha256/[0-9a-f]{64}: digest mismatch`, res.stderr)
	res = run(t, stage, "images", "--root", third)
	assert.Equal(t, "REPOSITORY   TAG   IMAGE ID   CREATED   SIZE\n", res.stdout, "a damaged load named an image")
	assert.Empty(t, globNames(t, filepath.Join(third, "images", "ingest", "*")), "a half-written blob was left")
	assert.NoFileExists(t, blobFile(third, inspect.Layers[0]), "the damaged layer entered the store")
}

func readJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, v), path)
}

// blobFile is the file of blob digest ("sha256:HEX") in root's store.
func blobFile(root, digest string) string {
	return filepath.Join(root, "images", "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

// Digests become file names (blobs/sha256/HEX, layers/HEX): one that is
// not sha256:<64 hex> is refused before it is used, so an image cannot
// name a host directory as its layer. The evil archive is otherwise a
// valid OCI layout whose blobs all match their names.
func TestStage06BadDigestsAreRefused(t *testing.T) {
	root := useTempDataRoot(t)
	stage := needStage(t, "06")
	checkNoContainerDirsAtEnd(t)
	for _, evil := range []string{"sha256:../../../../../../../../../../etc", "nocolon", "md5:d41d8cd98f00b204e9800998ecf8427e"} {
		config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["` + evil + `"]}}`)
		manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + sha256Digest(config) + `","size":` + fmt.Sprint(len(config)) + `},` +
			`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + evil + `","size":1}]}`)
		index := []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + sha256Digest(manifest) +
			`","size":` + fmt.Sprint(len(manifest)) + `,"annotations":{"org.opencontainers.image.ref.name":"evil:1"}}]}`)
		archive := tarOf(t, map[string][]byte{
			"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`), "index.json": index,
			"blobs/sha256/" + strings.TrimPrefix(sha256Digest(config), "sha256:"):   config,
			"blobs/sha256/" + strings.TrimPrefix(sha256Digest(manifest), "sha256:"): manifest,
		})
		res := run(t, stage, "load", archive)
		assert.Equal(t, 1, res.code, "%s: %s", evil, res.stdout)
		assert.Contains(t, res.stderr, "bad digest", evil)
		assert.NotContains(t, run(t, stage, "images").stdout, "evil", "an image with digest %s was named", evil)
		res = run(t, stage, "run", "--net", "none", "evil:1", "ls", "/shadow")
		assert.NotEqual(t, 0, res.code, "%s: the host's /etc became a layer", evil)
	}
	assert.Empty(t, globNames(t, filepath.Join(root, "layers", "*")), "a layer directory was made")
}

// A user whose /etc/passwd entry does not parse is no user: never root.
func TestStage06MalformedPasswdEntryIsRefused(t *testing.T) {
	stage, _ := loadedImage(t, "users:1")
	res := run(t, stage, "run", "--keep", "--net", "none", "users:1", "sh", "-c",
		"echo 'app:x:1OOO:1OOO::/home/app:/bin/sh' >> /etc/passwd; echo 'short:x:1001' >> /etc/passwd")
	require.Equal(t, 0, res.code, res.stderr)
	kept := keptFrom(t, res)
	require.Equal(t, 0, run(t, stage, "commit", kept.id, "users:2").code)
	for _, user := range []string{"app", "short"} {
		res = run(t, stage, "run", "--net", "none", "-u", user, "users:2", "id", "-u")
		assert.Equal(t, 1, res.code, "user %s ran as %q", user, res.stdout)
		assert.Contains(t, res.stderr, "user "+user+": not a number, and no valid entry in the image's /etc/passwd")
		assert.Empty(t, res.stdout)
	}
}

// HOME: the user's from /etc/passwd, unless the image or -e set it; -e
// needs NAME=VALUE.
func TestStage06HomeAndEnvFlags(t *testing.T) {
	stage, _ := loadedImage(t, "home:1")
	res := run(t, stage, "run", "--net", "none", "-u", "65534", "home:1", "sh", "-c", "echo $HOME")
	assert.Equal(t, "/nonexistent\n", res.stdout, res.stderr)
	res = run(t, stage, "run", "--net", "none", "-e", "HOME=/x", "-u", "65534", "home:1", "sh", "-c", "echo $HOME")
	assert.Equal(t, "/x\n", res.stdout, res.stderr)
	res = run(t, stage, "run", "--net", "none", "-e", "JUSTANAME", "home:1", "true")
	assert.Equal(t, 2, res.code)
	assert.Contains(t, res.stderr, "-e JUSTANAME: expected NAME=VALUE")
}

// docker.io/NAME is Docker Hub's official NAME: docker.io/library/NAME,
// the same image as NAME; save's file is readable by everyone.
func TestStage06DockerHubNames(t *testing.T) {
	stage, _ := loadedImage(t, "base:1")
	res := run(t, stage, "run", "--keep", "--net", "none", "base:1", "true")
	require.Equal(t, 0, res.code, res.stderr)
	kept := keptFrom(t, res)
	require.Equal(t, 0, run(t, stage, "commit", kept.id, "docker.io/hub:1").code)
	file := filepath.Join(t.TempDir(), "hub.tar")
	res = run(t, stage, "save", "hub:1", file)
	require.Equal(t, 0, res.code, res.stderr)
	assert.Equal(t, "saved docker.io/library/hub:1 (2 layers) to "+file+"\n", res.stdout)
	info, err := os.Stat(file)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), info.Mode().Perm())
	assert.Equal(t, 0, run(t, stage, "run", "--net", "none", "index.docker.io/library/hub:1", "true").code)
}

// sha256Digest is "sha256:" and the hex sha256 of data.
func sha256Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// tarOf writes files (name → bytes) into a tar and returns its path.
func tarOf(t *testing.T, files map[string][]byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "archive.tar")
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	tw := tar.NewWriter(f)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name]))}))
		_, err := tw.Write(files[name])
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	return path
}
