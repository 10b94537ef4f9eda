package bench

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/minibox-lab/minibox/internal/registrytest"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// The image BenchmarkPullPush moves: multiLayers layers of layerBytes of
// random data each (incompressible: gzip keeps their size), so that the
// time is the transfer's and the storing's, not gzip's.
const (
	multiLayers = 4
	layerBytes  = 5 << 20
)

// transferGoal is issue 13's goal: at least 0.8 of skopeo's throughput.
const transferGoal = 0.8

// imageFixture is what BenchmarkPullPush compares on: the image in
// registry src; the same image in an OCI layout (for skopeo's push) and
// in a minibox data root (for minibox's); registry dst, empty, for the
// pushes.
type imageFixture struct {
	*fixture
	dir      string                 // the benchmark's temporary directory
	src, dst *registrytest.Registry // pulls from src, pushes to dst
	ref      string                 // src/multi:latest
	layout   string                 // the OCI layout, tag "latest"
	blobs    []string               // the config's and layers' digests
	bytes    int64                  // what one pull or push moves: manifest, config, layers
}

// BenchmarkPullPush times a pull and a push of a 4-layer, 20 MiB image
// from and to a docker-registry on 127.0.0.1, by minibox and by `skopeo
// copy`, alternating them in each iteration so that both see the same
// machine load:
//
//	pull  minibox pull into a new data root (download, verify, unpack)
//	      against skopeo copy docker://… oci:NEW_DIR (download, verify)
//	push  minibox push to a new repository against skopeo copy
//	      oci:DIR docker://… to another new repository
//
// A push goes to a repository that has never held the image, in a
// registry that never held it anywhere else reachable: after each push
// the repository's blob links are deleted, so that neither tool can mount
// a blob from an earlier push (skopeo remembers where it pushed blobs and
// tries that; minibox mounts from the store's other names in the same
// registry, and the store holds none). Each push must report every layer
// as uploaded. Metrics: MB/s (10^6 bytes per second, of the medians) for
// each, and x-skopeo, minibox's throughput over skopeo's.
func BenchmarkPullPush(b *testing.B) {
	f, dir := newMiniboxFixture(b)
	requireCommands(b, "skopeo", "umoci")
	fx := newImageFixture(b, f, dir)
	b.Run("pull", func(b *testing.B) {
		mb, sk := fx.alternate(b, fx.miniboxPull, fx.skopeoPull)
		fx.report(b, "pull", mb, sk)
	})
	b.Run("push", func(b *testing.B) {
		mb, sk := fx.alternate(b, fx.miniboxPush, fx.skopeoPush)
		fx.report(b, "push", mb, sk)
	})
}

// requireCommands skips b (fails it under MINIBOX_REQUIRE_ROOT=1) when a
// tool is missing, naming its Debian package (the same name here).
func requireCommands(b *testing.B, names ...string) {
	b.Helper()
	for _, n := range names {
		_, err := exec.LookPath(n)
		testenv.Require(b, err == nil, fmt.Sprintf("needs %s (Debian package %s)", n, n))
	}
}

// newImageFixture makes the image with umoci, pushes it to a new registry
// with skopeo, copies it back into an OCI layout (skopeo) and into the
// fixture's data root (minibox pull), and starts the empty registry
// the pushes go to.
func newImageFixture(b *testing.B, f *fixture, dir string) *imageFixture {
	b.Helper()
	fx := &imageFixture{fixture: f, dir: dir, src: registrytest.Start(b), dst: registrytest.Start(b)}
	built := filepath.Join(dir, "built")
	tool(b, "umoci", "init", "--layout", built)
	tool(b, "umoci", "new", "--image", built+":latest")
	for i := 0; i < multiLayers; i++ {
		content := filepath.Join(dir, fmt.Sprintf("layer%d", i))
		writeRandomFile(b, filepath.Join(content, fmt.Sprintf("data%d.bin", i)), layerBytes)
		tool(b, "umoci", "insert", "--image", built+":latest", content, "/")
	}
	tool(b, "umoci", "config", "--image", built+":latest", "--os", "linux", "--architecture", runtime.GOARCH)
	tool(b, "umoci", "gc", "--layout", built)
	fx.ref = fx.src.Ref("multi", "latest")
	tool(b, "skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci:"+built+":latest", "docker://"+fx.ref)

	fx.layout = filepath.Join(dir, "layout")
	tool(b, "skopeo", "copy", "--quiet", "--src-tls-verify=false", "docker://"+fx.ref, "oci:"+fx.layout+":latest")
	fx.readLayout(b)
	if out, err := f.mb("pull", fx.ref).CombinedOutput(); err != nil {
		b.Fatalf("minibox pull %s: %v\n%s", fx.ref, err, out)
	}
	return fx
}

// writeRandomFile writes n random bytes to path (making its directory).
func writeRandomFile(b *testing.B, path string, n int64) {
	b.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.Fatal(err)
	}
	out, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(out, rand.Reader, n); err != nil {
		out.Close()
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
}

// tool runs a command that must succeed.
func tool(b *testing.B, name string, args ...string) string {
	b.Helper()
	return run(b, exec.Command(name, args...))
}

// readLayout reads the layout's manifest: the blobs and the bytes a
// transfer moves.
func (fx *imageFixture) readLayout(b *testing.B) {
	b.Helper()
	var index struct {
		Manifests []struct {
			Digest string `json:"digest"`
			Size   int64  `json:"size"`
		} `json:"manifests"`
	}
	readJSON(b, filepath.Join(fx.layout, "index.json"), &index)
	if len(index.Manifests) != 1 {
		b.Fatalf("the layout %s holds %d manifests, expected 1", fx.layout, len(index.Manifests))
	}
	var manifest struct {
		Config struct {
			Digest string `json:"digest"`
			Size   int64  `json:"size"`
		} `json:"config"`
		Layers []struct {
			Digest string `json:"digest"`
			Size   int64  `json:"size"`
		} `json:"layers"`
	}
	readJSON(b, fx.layoutBlob(index.Manifests[0].Digest), &manifest)
	if len(manifest.Layers) != multiLayers {
		b.Fatalf("the image has %d layers, expected %d", len(manifest.Layers), multiLayers)
	}
	fx.bytes = index.Manifests[0].Size + manifest.Config.Size
	fx.blobs = []string{manifest.Config.Digest}
	for _, l := range manifest.Layers {
		fx.bytes += l.Size
		fx.blobs = append(fx.blobs, l.Digest)
	}
}

// layoutBlob is the file of a blob "sha256:HEX" in the layout.
func (fx *imageFixture) layoutBlob(digest string) string {
	return filepath.Join(fx.layout, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

func readJSON(b *testing.B, path string, v any) {
	b.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		b.Fatalf("%s: %v", path, err)
	}
}

// transfer is one timed pull or push of iteration i; it does its own
// untimed preparation and cleanup and returns the timed part.
type transfer func(b *testing.B, i int) time.Duration

// alternate runs minibox's and skopeo's transfer b.N times each, in
// turns (which goes first alternates too), and returns their durations.
func (fx *imageFixture) alternate(b *testing.B, minibox, skopeo transfer) (mb, sk []time.Duration) {
	b.Helper()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			mb = append(mb, minibox(b, i))
			sk = append(sk, skopeo(b, i))
		} else {
			sk = append(sk, skopeo(b, i))
			mb = append(mb, minibox(b, i))
		}
	}
	return mb, sk
}

// report gives both medians as MB/s and their ratio, and says whether
// the goal is met (never failing b).
func (fx *imageFixture) report(b *testing.B, what string, mb, sk []time.Duration) {
	mbRate := float64(fx.bytes) / median(mb).Seconds() / 1e6
	skRate := float64(fx.bytes) / median(sk).Seconds() / 1e6
	b.ReportMetric(ms(median(mb)), "ms-minibox")
	b.ReportMetric(ms(median(sk)), "ms-skopeo")
	b.ReportMetric(mbRate, "MB/s-minibox")
	b.ReportMetric(skRate, "MB/s-skopeo")
	b.ReportMetric(mbRate/skRate, "x-skopeo")
	verdict := "met"
	if mbRate/skRate < transferGoal {
		verdict = "NOT met"
	}
	b.Logf("goal: %s throughput ≥ %.1f× skopeo's: %s (%.2f×: %.1f against %.1f MB/s, %d bytes, medians of %d)",
		what, transferGoal, verdict, mbRate/skRate, mbRate, skRate, fx.bytes, b.N)
}

// miniboxPull pulls the image into a new data root, removed afterwards.
func (fx *imageFixture) miniboxPull(b *testing.B, i int) time.Duration {
	b.Helper()
	root := filepath.Join(fx.dir, fmt.Sprintf("pull-root-%d", i))
	defer removeAll(b, root)
	cmd := exec.Command(fx.minibox, "pull", fx.ref)
	cmd.Env = append(os.Environ(), "MINIBOX_ROOT="+root)
	return timeCommand(b, cmd)
}

// skopeoPull copies the image into a new OCI layout, removed afterwards.
func (fx *imageFixture) skopeoPull(b *testing.B, i int) time.Duration {
	b.Helper()
	layout := filepath.Join(fx.dir, fmt.Sprintf("pull-layout-%d", i))
	defer removeAll(b, layout)
	return timeCommand(b, exec.Command("skopeo", "copy", "--src-tls-verify=false",
		"docker://"+fx.ref, "oci:"+layout+":latest"))
}

// miniboxPush pushes the image, named for the occasion, to a new
// repository of dst; the name goes afterwards (a name of dst in the
// store would be a source of blob mounts for the next push).
func (fx *imageFixture) miniboxPush(b *testing.B, i int) time.Duration {
	b.Helper()
	repo := fmt.Sprintf("minibox-%d", nextRepo())
	target := fx.dst.Ref(repo, "latest")
	run(b, fx.mb("tag", fx.ref, target))
	cmd := fx.mb("push", target)
	d, out := timeCommandOutput(b, cmd)
	run(b, fx.mb("rmi", target))
	fx.forget(b, repo)
	if n := strings.Count(out, ": Pushed\n"); n != multiLayers || strings.Contains(out, "Mounted from") || strings.Contains(out, "already exists") {
		b.Fatalf("minibox push uploaded %d layers, expected all %d:\n%s", n, multiLayers, out)
	}
	return d
}

// skopeoPush copies the layout to a new repository of dst.
func (fx *imageFixture) skopeoPush(b *testing.B, i int) time.Duration {
	b.Helper()
	repo := fmt.Sprintf("skopeo-%d", nextRepo())
	d, out := timeCommandOutput(b, exec.Command("skopeo", "copy", "--dest-tls-verify=false",
		"oci:"+fx.layout+":latest", "docker://"+fx.dst.Ref(repo, "latest")))
	fx.forget(b, repo)
	if strings.Contains(out, "skipped") {
		b.Fatalf("skopeo copy skipped blobs:\n%s", out)
	}
	return d
}

// repoCount numbers the pushes' repositories: each is new.
var repoCount int

func nextRepo() int {
	repoCount++
	return repoCount
}

// forget deletes repo's links to the image's blobs in dst (the registry
// keeps the data, unreachable from there): no later push can mount them
// from repo.
func (fx *imageFixture) forget(b *testing.B, repo string) {
	b.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	for _, d := range fx.blobs {
		url := "http://" + fx.dst.Addr + "/v2/" + repo + "/blobs/" + d
		req, err := http.NewRequest(http.MethodDelete, url, nil)
		if err != nil {
			b.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			b.Fatalf("DELETE %s: %v", url, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("DELETE %s: %s, expected 202 Accepted", url, resp.Status)
		}
	}
}

// timeCommand runs cmd, which must succeed, and returns how long it took.
func timeCommand(b *testing.B, cmd *exec.Cmd) time.Duration {
	b.Helper()
	d, _ := timeCommandOutput(b, cmd)
	return d
}

// timeCommandOutput runs cmd, which must succeed, and returns how long it
// took and its output.
func timeCommandOutput(b *testing.B, cmd *exec.Cmd) (time.Duration, string) {
	b.Helper()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return d, string(out)
}

// removeAll removes a directory a transfer made.
func removeAll(b *testing.B, dir string) {
	if err := os.RemoveAll(dir); err != nil {
		b.Errorf("remove %s: %v", dir, err)
	}
}
