package bench

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/minibox-lab/minibox/internal/podmantest"
	"github.com/minibox-lab/minibox/internal/registrytest"
	"github.com/minibox-lab/minibox/internal/rootfs"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// fixture is what every benchmark compares on: the minibox binary with a
// data root of its own holding the busybox image, and podman (if
// installed) with storage of its own holding the same image, both pulled
// from one registry on 127.0.0.1.
type fixture struct {
	minibox string // the binary
	root    string // minibox's data root
	image   string // 127.0.0.1:PORT/bench:latest
	podman  *podmantest.Podman
	// noPodman says why podman's lines are skipped, when podman is nil.
	noPodman string
}

// newFixture builds the fixture in a temporary directory of b. Everything
// in it is removed when b ends: the containers of both engines first, then
// what they left mounted, then the directory (and the registry).
func newFixture(b *testing.B) *fixture {
	b.Helper()
	f, _ := newMiniboxFixture(b)
	f.podman, f.noPodman = newPodman(b, f.image)
	return f
}

// newMiniboxFixture is the fixture without podman: minibox, its data root
// with the image, and the registry. It also returns the fixture's
// temporary directory.
func newMiniboxFixture(b *testing.B) (*fixture, string) {
	b.Helper()
	testenv.RequireRoot(b)
	dir := b.TempDir()
	b.Cleanup(func() { unmountUnder(b, dir) }) // runs after the engines' removals, before dir goes
	f := &fixture{minibox: miniboxBinary(b), root: filepath.Join(dir, "minibox-root")}
	busybox, err := rootfs.FindStaticBusybox()
	if err != nil {
		b.Fatal(err)
	}
	rootfsDir := filepath.Join(dir, "rootfs")
	if err := rootfs.Build(rootfsDir, busybox); err != nil {
		b.Fatal(err)
	}
	reg := registrytest.Start(b)
	f.image = registrytest.PushRootfs(b, reg, rootfsDir, "bench", registrytest.ImageOptions{}).Ref
	b.Cleanup(func() { f.removeMiniboxContainers(b) })
	if out, err := f.mb("pull", f.image).CombinedOutput(); err != nil {
		b.Fatalf("minibox pull: %v\n%s", err, out)
	}
	f.noPodman = "podman is not part of this benchmark"
	return f, dir
}

// mb is a minibox command on the fixture's data root.
func (f *fixture) mb(args ...string) *exec.Cmd {
	cmd := exec.Command(f.minibox, args...)
	cmd.Env = append(os.Environ(), "MINIBOX_ROOT="+f.root)
	return cmd
}

// podmanOrSkip is podman, or skips b (podman is optional: CI has none).
func (f *fixture) podmanOrSkip(b *testing.B) *podmantest.Podman {
	b.Helper()
	if f.podman == nil {
		b.Skip(f.noPodman)
	}
	return f.podman
}

// removeMiniboxContainers removes every container of the data root, the
// ones a failed benchmark left running too.
func (f *fixture) removeMiniboxContainers(b *testing.B) {
	out, err := f.mb("ps", "-a", "-q").Output()
	if err != nil {
		b.Errorf("minibox ps -a -q: %v", err)
		return
	}
	ids := strings.Fields(string(out))
	if len(ids) == 0 {
		return
	}
	if out, err := f.mb(append([]string{"rm", "-f"}, ids...)...).CombinedOutput(); err != nil {
		b.Errorf("minibox rm -f: %v\n%s", err, out)
	}
}

// The binary is built once for all benchmarks, into buildDir (removed by
// TestMain).
var (
	buildOnce sync.Once
	buildDir  string
	built     string
	buildErr  error
)

// miniboxBinary is the real minibox binary (go build ./cmd/minibox).
func miniboxBinary(b *testing.B) string {
	b.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "minibox-bench-")
		if buildErr != nil {
			return
		}
		// With minibox-shim next to it, as make build installs them: the
		// supervisors and inits run the small binary.
		built, buildErr = testenv.BuildMinibox("", buildDir)
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return built
}

// removeBuild removes the binary's directory; TestMain calls it at the end.
func removeBuild() {
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
}

// unmountUnder detaches whatever is still mounted under dir (deepest
// first), so that the directory can go: podman's overlay driver keeps
// its storage mounted, and a minibox container that was not removed
// leaves its rootfs. A minibox mount left there is a leak worth telling.
func unmountUnder(b *testing.B, dir string) {
	points, err := mountsUnder(dir)
	if err != nil {
		b.Error(err)
		return
	}
	for i := len(points) - 1; i >= 0; i-- {
		if err := unmountDetach(points[i]); err != nil {
			b.Errorf("unmount %s: %v", points[i], err)
		}
		if !strings.Contains(points[i], "podman") && !strings.Contains(points[i], "/mbp-") {
			b.Errorf("minibox left %s mounted", points[i])
		}
	}
}

// run runs cmd and fails b with its output if it fails; it returns its
// standard output.
func run(b *testing.B, cmd *exec.Cmd) string {
	b.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s: %v\n%s%s", strings.Join(cmd.Args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}
