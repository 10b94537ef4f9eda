package build_test

// The builder's tests build real Dockerfiles as root: RUN runs containers
// of final/runtime (this test binary is their init, see TestMain), every
// step mounts an overlay. Each test has a data root of its own with a
// busybox image made by the store (image.Store.AddLayer, WriteImage) and
// checks afterwards that no mount, cgroup, process or scratch directory
// is left (testenv.CheckLeaks and assertClean).

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/final/build"
	"github.com/minibox-lab/minibox/final/image"
	"github.com/minibox-lab/minibox/final/runtime"
	"github.com/minibox-lab/minibox/internal/rootfs"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// The container's init runs on its main thread (see cmd/minibox).
func init() {
	if runtime.IsInit() {
		goruntime.LockOSThread()
	}
}

// busyboxDir is the busybox rootfs the fixture images are made of (built
// once per run).
var busyboxDir string

func TestMain(m *testing.M) {
	if runtime.IsInit() { // RUN's container init: this binary
		runtime.Init()
	}
	code := m.Run()
	if busyboxDir != "" {
		os.RemoveAll(filepath.Dir(busyboxDir))
	}
	os.Exit(code)
}

// base is the fixture image's name in every test's data root.
const base = "minibox/busybox:fixture"

// newBuilder is the start of every test: root, a data root of its own
// with the busybox image, and checks at the end that nothing is left.
func newBuilder(t *testing.T) *build.Builder {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.CheckLeaks(t)
	if busyboxDir == "" {
		busybox, err := rootfs.FindStaticBusybox()
		testenv.Require(t, err == nil, fmt.Sprint(err))
		dir, err := os.MkdirTemp("", "minibox-build-test-")
		require.NoError(t, err)
		require.NoError(t, os.Chmod(dir, 0o755))
		require.NoError(t, rootfs.Build(filepath.Join(dir, "rootfs"), busybox))
		busyboxDir = filepath.Join(dir, "rootfs")
	}
	root := t.TempDir()
	b, err := build.New(root)
	require.NoError(t, err)
	layer, err := b.Images.AddLayer(context.Background(), busyboxDir)
	require.NoError(t, err)
	cfg := ocispec.Image{
		Config: ocispec.ImageConfig{Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, Cmd: []string{"sh"}},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer.DiffID}},
	}
	_, err = b.Images.WriteImage(cfg, []ocispec.Descriptor{layer.Desc}, base)
	require.NoError(t, err)
	t.Cleanup(func() { assertClean(t, root) })
	return b
}

// assertClean checks that the builds left no scratch overlay, no RUN
// container's state and no mount below the data root.
func assertClean(t *testing.T, root string) {
	for _, dir := range []string{"build/tmp", "build/runtime"} {
		entries, err := os.ReadDir(filepath.Join(root, dir))
		require.NoError(t, err)
		require.Empty(t, entries, "%s is not empty", dir)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	require.NotContains(t, string(mounts), root, "a mount below the data root is left")
}

// context writes a build context: name → content (a name ending in /
// is a directory).
func writeContext(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			require.NoError(t, os.MkdirAll(p, 0o755))
			continue
		}
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	return dir
}

// run builds dir with o and returns the output.
func run(t *testing.T, b *build.Builder, dir string, o build.Options) (*image.Image, string, error) {
	t.Helper()
	var out bytes.Buffer
	o.ContextDir, o.Out = dir, &out
	img, err := b.Build(context.Background(), o)
	return img, out.String(), err
}

// mustBuild builds and fails the test on an error.
func mustBuild(t *testing.T, b *build.Builder, dir string, o build.Options) (*image.Image, string) {
	t.Helper()
	img, out, err := run(t, b, dir, o)
	require.NoError(t, err, out)
	return img, out
}

// file reads path of img as a container would see it: the top-most layer
// that has it, unless a whiteout above deleted it. ok is false if absent.
func file(t *testing.T, b *build.Builder, img *image.Image, path string) (content string, info fs.FileInfo, ok bool) {
	t.Helper()
	dirs, err := b.Images.LayerDirs(img)
	require.NoError(t, err)
	for i := len(dirs) - 1; i >= 0; i-- {
		p := filepath.Join(dirs[i], path)
		info, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if st := info.Sys().(*syscall.Stat_t); info.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0 {
			return "", nil, false // a whiteout
		}
		if info.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			return string(data), info, true
		}
		return "", info, true
	}
	return "", nil, false
}

// layerNames lists the entries of img's layer i (as its tar says).
func layerNames(t *testing.T, b *build.Builder, img *image.Image, i int) []string {
	t.Helper()
	blob := filepath.Join(b.Images.Dir(), "blobs", "sha256", img.Manifest.Layers[i].Digest.Encoded())
	f, err := os.Open(blob)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	var names []string
	for tr := tar.NewReader(zr); ; {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, hdr.Name)
	}
	return names
}

// count is how many times s occurs in out.
func count(out, s string) int { return strings.Count(out, s) }
