package stagetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/registrytest"
)

// Stage 06's pull against the real docker-registry on 127.0.0.1, with
// images put there by umoci and skopeo (internal/registrytest).

// runHostNet runs a stage like run, but in the machine's own network
// namespace, not in a throw-away one (inThrowawayNetns): the registries of
// these tests listen on the machine's 127.0.0.1, which a new network
// namespace does not reach. Only for commands that change no network
// (pull, images, save, load): TestMain's check that the machine's network
// is unchanged still holds them to it. `run` keeps going through run().
func runHostNet(t *testing.T, bin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = stageEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start(), "start %s", bin)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s %s: no exit after a minute\nstdout: %s\nstderr: %s", bin, strings.Join(args, " "), &stdout, &stderr)
	}
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("wait %s: %v", bin, err)
	}
	return res
}

// pullOK pulls ref (in the machine's network namespace) and fails the test
// unless the pull succeeds.
func pullOK(t *testing.T, stage string, args ...string) result {
	t.Helper()
	res := runHostNet(t, stage, append([]string{"pull"}, args...)...)
	require.Equal(t, 0, res.code, "pull %v\nstdout: %s\nstderr: %s", args, res.stdout, res.stderr)
	return res
}

// pullFails pulls ref and fails the test unless the pull fails, cleanly:
// exit status 1, an error on stderr, no Go panic.
func pullFails(t *testing.T, stage string, args ...string) result {
	t.Helper()
	res := runHostNet(t, stage, append([]string{"pull"}, args...)...)
	require.Equal(t, 1, res.code, "pull %v should fail\nstdout: %s\nstderr: %s", args, res.stdout, res.stderr)
	assert.NotContains(t, res.stderr, "goroutine ", "a panic is not an error message")
	return res
}

// imageRow is one line of `stage06 images`.
type imageRow struct{ repository, tag, id, size string }

// listImages runs `images` and returns its rows, checking the header.
func listImages(t *testing.T, stage string, args ...string) []imageRow {
	t.Helper()
	res := runHostNet(t, stage, append([]string{"images"}, args...)...)
	require.Equal(t, 0, res.code, "images: %s", res.stderr)
	lines := strings.Split(strings.TrimRight(res.stdout, "\n"), "\n")
	require.NotEmpty(t, lines)
	assert.Equal(t, []string{"REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"}, strings.Fields(lines[0]))
	var rows []imageRow
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		require.GreaterOrEqual(t, len(f), 5, "an images line: %q", l)
		// CREATED has spaces ("Less than a minute ago"): SIZE is last.
		rows = append(rows, imageRow{repository: f[0], tag: f[1], id: f[2], size: f[len(f)-1]})
	}
	return rows
}

// findImage is the row of repository:tag, or nil.
func findImage(rows []imageRow, repository, tag string) *imageRow {
	for i := range rows {
		if rows[i].repository == repository && rows[i].tag == tag {
			return &rows[i]
		}
	}
	return nil
}

// repositoryOf is ADDR/NAME, an image's REPOSITORY column.
func repositoryOf(img registrytest.Image) string {
	return strings.TrimSuffix(img.Ref, ":"+img.Tag)
}

// imageID is docker's image id: 12 hex digits of the config's digest.
func imageID(img registrytest.Image) string {
	return strings.TrimPrefix(img.Config.Digest, "sha256:")[:12]
}

// dockerSize is docker's size (powers of 1000, 3 significant digits) of
// what a pull of img downloads: its config and layers.
func dockerSize(img registrytest.Image) string {
	n := img.Config.Size
	for _, l := range img.Layers {
		n += l.Size
	}
	switch {
	case n >= 1e6:
		return fmt.Sprintf("%.3gMB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.3gkB", float64(n)/1e3)
	}
	return fmt.Sprintf("%dB", n)
}

// assertImageListed checks that `images` lists img with its tag, id and size.
func assertImageListed(t *testing.T, stage string, img registrytest.Image) {
	t.Helper()
	rows := listImages(t, stage)
	row := findImage(rows, repositoryOf(img), img.Tag)
	require.NotNil(t, row, "images does not list %s: %+v", img.Ref, rows)
	assert.Equal(t, imageID(img), row.id)
	assert.Equal(t, dockerSize(img), row.size)
}

// assertNoImage checks that neither `images` nor the store's index.json
// name an image of repository.
func assertNoImage(t *testing.T, stage, root, repository string) {
	t.Helper()
	for _, row := range listImages(t, stage) {
		assert.NotEqual(t, repository, row.repository, "images lists %s after a failed pull", repository)
	}
	index, err := os.ReadFile(filepath.Join(root, "images", "index.json"))
	if err == nil {
		assert.NotContains(t, string(index), repository)
	} else {
		assert.ErrorIs(t, err, fs.ErrNotExist)
	}
}

// assertBlobsTrue checks that every blob in the store at root holds what
// its name says: no pull, however it ended, may leave a blob whose bytes
// do not have its digest. It returns the digests present.
func assertBlobsTrue(t *testing.T, root string) map[string]bool {
	t.Helper()
	dir := filepath.Join(root, "images", "blobs", "sha256")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	present := map[string]bool{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		sum := sha256.Sum256(data)
		assert.Equal(t, e.Name(), hex.EncodeToString(sum[:]), "blob %s holds other bytes", e.Name())
		present["sha256:"+e.Name()] = true
	}
	return present
}

// pushTestImage pushes the demo rootfs as NAME:TAG with a layer of its own
// on top (/etc/pulled, holding marker) and a Cmd that prints it and $GREETING.
func pushTestImage(t *testing.T, r *registrytest.Registry, name, tag, marker string, docker bool) registrytest.Image {
	t.Helper()
	return registrytest.PushRootfs(t, r, rootfsDir, name, registrytest.ImageOptions{
		Tag:    tag,
		Docker: docker,
		Config: registrytest.Config{
			Cmd:        []string{"/bin/sh", "-c", `echo "$GREETING from $(pwd)"; cat /etc/pulled`},
			Env:        []string{"GREETING=hello from the image"},
			WorkingDir: "/tmp",
		},
		Files: map[string]string{"/etc/pulled": marker + "\n"},
	})
}

// assertRunsPulled runs the pulled image ref (wrapped as every run, with
// --net none) and checks that its config and its top layer were used.
func assertRunsPulled(t *testing.T, stage, ref, marker string) {
	t.Helper()
	res := run(t, stage, "run", "--net", "none", ref)
	require.Equal(t, 0, res.code, "run %s\nstdout: %s\nstderr: %s", ref, res.stdout, res.stderr)
	assert.Contains(t, res.stdout, "hello from the image from /tmp")
	assert.Contains(t, res.stdout, marker)
}

// assertPullPrintsDigests checks that pull's output names the manifest
// and every blob by digest (the lesson reads them off it).
func assertPullPrintsDigests(t *testing.T, res result, img registrytest.Image) {
	t.Helper()
	assert.Contains(t, res.stdout, img.Manifest.Digest)
	assert.Contains(t, res.stdout, img.Config.Digest)
	for _, l := range img.Layers {
		assert.Contains(t, res.stdout, l.Digest)
	}
}

func TestStage06PullByTagAndByDigest(t *testing.T) {
	root := useTempDataRoot(t)
	stage := needStage(t, "06")
	checkNoContainerDirsAtEnd(t)
	r := registrytest.Start(t)
	img := pushTestImage(t, r, "minibox/busybox", "v1", "layer by umoci", false)
	require.Equal(t, registrytest.MediaTypeOCIManifest, img.Manifest.MediaType)

	start := time.Now()
	res := pullOK(t, stage, img.Ref)
	t.Logf("pull of %s (%s) took %v", img.Ref, dockerSize(img), time.Since(start).Round(time.Millisecond))
	assertPullPrintsDigests(t, res, img)
	assertImageListed(t, stage, img)
	present := assertBlobsTrue(t, root)
	for _, d := range append([]registrytest.Descriptor{img.Manifest, img.Config}, img.Layers...) {
		assert.True(t, present[d.Digest], "%s not in the store", d.Digest)
	}
	for _, l := range img.Layers {
		assert.DirExists(t, filepath.Join(root, "layers", strings.TrimPrefix(l.Digest, "sha256:")), "layer unpacked once, named after its blob")
	}
	assertRunsPulled(t, stage, img.Ref, "layer by umoci")

	// A second pull of the same image fetches no blob again.
	res = pullOK(t, stage, img.Ref)
	assert.Contains(t, res.stdout, "already in the store")

	// By digest, into another data root (the "second machine").
	other := filepath.Join(t.TempDir(), "other-root")
	res = pullOK(t, stage, "--root", other, img.ByDigest())
	assertPullPrintsDigests(t, res, img)
	assert.NotContains(t, res.stdout, "already in the store")
	present = assertBlobsTrue(t, other)
	assert.True(t, present[img.Manifest.Digest])
	for _, l := range img.Layers {
		assert.True(t, present[l.Digest], "%s not in the store", l.Digest)
	}
	rows := listImages(t, stage, "--root", other)
	require.Len(t, rows, 1, "%+v", rows)
	assert.Equal(t, repositoryOf(img), rows[0].repository)
	assert.Equal(t, imageID(img), rows[0].id)

	// A digest the registry does not have.
	res = pullFails(t, stage, "--root", other, repositoryOf(img)+"@sha256:"+strings.Repeat("0", 64))
	assert.Contains(t, res.stderr, "404")
}

func TestStage06PullDockerSchema2(t *testing.T) {
	useTempDataRoot(t)
	stage := needStage(t, "06")
	checkNoContainerDirsAtEnd(t)
	r := registrytest.Start(t)
	img := pushTestImage(t, r, "minibox/docker", "v2s2", "a docker schema 2 image", true)
	require.Equal(t, registrytest.MediaTypeDockerManifest, img.Manifest.MediaType)

	res := pullOK(t, stage, img.Ref)
	assertPullPrintsDigests(t, res, img)
	assertImageListed(t, stage, img)
	assertRunsPulled(t, stage, img.Ref, "a docker schema 2 image")
}

// An index lists an image per platform: pull takes linux/GOARCH's and
// fetches nothing of the other (listed first), which a request log of a
// proxy in front of the registry shows.
func TestStage06PullPicksTheHostPlatform(t *testing.T) {
	for _, docker := range []bool{false, true} {
		name := map[bool]string{false: "oci-index", true: "docker-manifest-list"}[docker]
		t.Run(name, func(t *testing.T) {
			useTempDataRoot(t)
			stage := needStage(t, "06")
			checkNoContainerDirsAtEnd(t)
			r := registrytest.Start(t)
			p := registrytest.StartProxy(t, r, registrytest.ProxyOptions{})
			ix := registrytest.PushIndex(t, p, rootfsDir, "minibox/multi", registrytest.ImageOptions{
				Tag: "multi", Docker: docker,
				Config: registrytest.Config{Cmd: []string{"/bin/echo", "the host's platform"}},
			})

			res := pullOK(t, stage, ix.Ref)
			assert.Contains(t, res.stdout, ix.Index.Digest)
			assertPullPrintsDigests(t, res, ix.Host)
			assert.True(t, p.Fetched(ix.Host.Manifest.Digest), "the host's manifest was not fetched: %+v", p.Requests())
			assert.True(t, p.Fetched(ix.Host.Config.Digest))
			assert.False(t, p.Fetched(ix.Other.Manifest.Digest), "the other platform's manifest was fetched")
			assert.False(t, p.Fetched(ix.Other.Config.Digest), "the other platform's config was fetched")
			assert.False(t, p.Fetched(ix.Other.Layers[len(ix.Other.Layers)-1].Digest), "the other platform's layer was fetched")

			// The name points at the host's image, not at the index.
			host := ix.Host
			host.Ref, host.Tag = ix.Ref, "multi"
			assertImageListed(t, stage, host)
			res = run(t, stage, "run", "--net", "none", ix.Ref)
			require.Equal(t, 0, res.code, "stdout: %s\nstderr: %s", res.stdout, res.stderr)
			assert.Equal(t, "the host's platform\n", res.stdout)
		})
	}
}

// Docker Hub's anonymous flow: GET /v2/ → 401 and a challenge → a token
// for the repository's pull scope → every request after with it.
func TestStage06PullWithTokenAuth(t *testing.T) {
	useTempDataRoot(t)
	stage := needStage(t, "06")
	checkNoContainerDirsAtEnd(t)
	r := registrytest.Start(t)
	p := registrytest.StartTokenAuth(t, r)
	img := pushTestImage(t, p, "private/app", "v1", "behind a token", false)

	pullOK(t, stage, img.Ref)
	reqs := p.Requests()
	require.GreaterOrEqual(t, len(reqs), 4, "%+v", reqs)
	var tokens int
	for _, req := range reqs {
		switch {
		case req.Path == "/token":
			tokens++
			assert.Contains(t, req.Query, "scope=repository%3Aprivate%2Fapp%3Apull", "the token must be asked for the repository's pull scope")
			assert.Contains(t, req.Query, "service=registrytest", "the challenge's service goes back to the realm")
			assert.Equal(t, http.StatusOK, req.Status)
		case strings.HasPrefix(req.Path, "/v2/private/app/"):
			assert.True(t, req.Authorized, "%s %s without the token", req.Method, req.Path)
			assert.Equal(t, http.StatusOK, req.Status, "%s %s", req.Method, req.Path)
		}
	}
	assert.Equal(t, 1, tokens, "one token for the whole pull: %+v", reqs)
	assert.True(t, p.Fetched(img.Layers[1].Digest))
	assertImageListed(t, stage, img)
	assertRunsPulled(t, stage, img.Ref, "behind a token")
}

// A layer whose bytes do not have its digest (changed in the registry's
// storage after the push) is rejected, and nothing of it stays.
func TestStage06PullRejectsATamperedBlob(t *testing.T) {
	root := useTempDataRoot(t)
	stage := needStage(t, "06")
	r := registrytest.Start(t)
	img := pushTestImage(t, r, "minibox/tampered", "v1", "tampered with", false)
	bad := img.Layers[1].Digest // the image's own layer: no other image shares it
	r.CorruptBlob(t, bad)

	res := pullFails(t, stage, img.Ref)
	assert.Contains(t, res.stderr, "digest")
	assert.Contains(t, res.stderr, bad, "the error names the blob")
	assert.Contains(t, res.stderr, repositoryOf(img), "the error names the image")
	assertNoImage(t, stage, root, repositoryOf(img))
	present := assertBlobsTrue(t, root)
	assert.False(t, present[bad], "the tampered layer is in the store")
	assert.False(t, present[img.Manifest.Digest], "the manifest of an image that failed is in the store")
	assert.NoDirExists(t, filepath.Join(root, "layers", strings.TrimPrefix(bad, "sha256:")))
	assertIngestEmpty(t, root)
}

// assertIngestEmpty checks that no partly written blob is left in ingest/.
func assertIngestEmpty(t *testing.T, root string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "images", "ingest"))
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Empty(t, names, "partial blobs left in ingest/")
}

func TestStage06PullErrorsAreClear(t *testing.T) {
	root := useTempDataRoot(t)
	stage := needStage(t, "06")
	r := registrytest.Start(t)
	img := pushTestImage(t, r, "minibox/there", "v1", "there", false)

	for _, tc := range []struct {
		name   string
		ref    func() string
		want   []string // in stderr, lower case
		status int      // a status a proxy answers with, 0 for none
	}{
		{name: "no such repository", ref: func() string { return r.Addr + "/minibox/nowhere:v1" },
			want: []string{r.Addr, "minibox/nowhere", "404", "not found"}},
		{name: "no such tag", ref: func() string { return r.Addr + "/minibox/there:v9" },
			want: []string{r.Addr, "minibox/there", "v9", "404", "not found"}},
		{name: "too many requests", status: http.StatusTooManyRequests,
			want: []string{"minibox/there", "429", "too many requests"}},
		{name: "server error", status: http.StatusServiceUnavailable,
			want: []string{"minibox/there", "503"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := img.Ref
			if tc.ref != nil {
				ref = tc.ref()
			} else {
				p := registrytest.StartProxy(t, r, registrytest.ProxyOptions{Status: tc.status})
				ref = p.Ref("minibox/there", "v1")
				tc.want = append(tc.want, p.Addr)
			}
			res := pullFails(t, stage, ref)
			for _, w := range tc.want {
				assert.Contains(t, strings.ToLower(res.stderr), strings.ToLower(w))
			}
		})
	}

	t.Run("unauthorized", func(t *testing.T) {
		p := registrytest.StartProxy(t, r, registrytest.ProxyOptions{Token: true, RefuseTokens: true})
		res := pullFails(t, stage, p.Ref("minibox/there", "v1"))
		for _, w := range []string{p.Addr, "minibox/there", "401"} {
			assert.Contains(t, res.stderr, w)
		}
		// It did ask for a token, and stopped after the refusal.
		assert.Contains(t, fmt.Sprint(p.Requests()), "/token")
		assert.Less(t, len(p.Requests()), 10, "it retried: %+v", p.Requests())
	})

	t.Run("registry down", func(t *testing.T) {
		down := registrytest.DownAddr(t)
		res := pullFails(t, stage, down+"/minibox/there:v1")
		assert.Contains(t, res.stderr, down)
		assert.Contains(t, res.stderr, "minibox/there")
		assert.Contains(t, res.stderr, "connection refused")
	})

	assert.Empty(t, listImagesNamed(t, stage, "minibox/nowhere"))
	assertBlobsTrue(t, root)
	assertIngestEmpty(t, root)
}

// listImagesNamed is the rows of `images` whose repository ends in name.
func listImagesNamed(t *testing.T, stage, name string) []imageRow {
	t.Helper()
	var out []imageRow
	for _, row := range listImages(t, stage) {
		if strings.HasSuffix(row.repository, "/"+name) {
			out = append(out, row)
		}
	}
	return out
}

// A pull killed in the middle of a layer (SIGKILL: no clean-up of its own
// runs) leaves no image and no false blob, only its partial blob in
// ingest/, which `minibox cleanup` removes; the next pull completes.
func TestStage06PullKilledMidLayer(t *testing.T) {
	root := useTempDataRoot(t)
	stage := needStage(t, "06")
	checkNoContainerDirsAtEnd(t)
	r := registrytest.Start(t)
	const stallAfter = 64 << 10
	p := registrytest.StartProxy(t, r, registrytest.ProxyOptions{StallBlobsAfter: stallAfter})
	img := pushTestImage(t, p, "minibox/killed", "v1", "pulled after a kill", false)
	require.Greater(t, img.Layers[0].Size, int64(stallAfter), "the rootfs layer must be bigger than the stall point")

	cmd, done := startHostNet(t, stage, "pull", img.Ref)
	p.WaitStalled(t, 30*time.Second)
	partial := waitIngestBytes(t, root, stallAfter)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	<-done

	assertNoImage(t, stage, root, repositoryOf(img))
	present := assertBlobsTrue(t, root)
	assert.False(t, present[img.Layers[0].Digest], "the layer cut in the middle is in the store")
	assert.False(t, present[img.Manifest.Digest])
	assert.FileExists(t, partial, "the partial blob stays in ingest/ (nobody was left to remove it)")

	// The next pull, through the same proxy now passing everything on,
	// completes, and the image runs.
	p.SetOptions(registrytest.ProxyOptions{})
	pullOK(t, stage, img.Ref)
	assertImageListed(t, stage, img)
	assertBlobsTrue(t, root)
	assertRunsPulled(t, stage, img.Ref, "pulled after a kill")

	// cleanup leaves a temporary file written in the last minute alone (a
	// write may be finishing): make it a minute older, as if the student
	// ran cleanup later.
	old := time.Now().Add(-2 * time.Minute)
	require.NoError(t, os.Chtimes(partial, old, old))
	res := runMiniboxCleanup(t, stage, root)
	require.Equal(t, 0, res.code, "minibox cleanup\nstdout: %s\nstderr: %s", res.stdout, res.stderr)
	assertIngestEmpty(t, root)
	assertImageListed(t, stage, img) // cleanup touches no blob and no name
}

// waitIngestBytes waits until a blob being written in root's ingest/ holds
// at least n bytes (the pull is in the middle of the layer) and returns
// its path.
func waitIngestBytes(t *testing.T, root string, n int64) string {
	t.Helper()
	dir := filepath.Join(root, "images", "ingest")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if info, err := e.Info(); err == nil && info.Size() >= n {
				return filepath.Join(dir, e.Name())
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no blob of %d bytes or more being written in %s after 10s", n, dir)
	return ""
}

// Ctrl-C (SIGINT) in the middle of a layer: the pull says so, exits 130,
// and removes its partial blob.
func TestStage06PullInterruptedMidLayer(t *testing.T) {
	root := useTempDataRoot(t)
	stage := needStage(t, "06")
	r := registrytest.Start(t)
	p := registrytest.StartProxy(t, r, registrytest.ProxyOptions{StallBlobsAfter: 64 << 10})
	img := pushTestImage(t, p, "minibox/interrupted", "v1", "interrupted", false)

	cmd, done := startHostNet(t, stage, "pull", img.Ref)
	p.WaitStalled(t, 30*time.Second)
	waitIngestBytes(t, root, 64<<10)
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("pull did not end within 10s of SIGINT")
	}
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	assert.Equal(t, 130, exit.ExitCode())
	assert.Contains(t, cmd.Stderr.(*bytes.Buffer).String(), "interrupted")
	assertNoImage(t, stage, root, repositoryOf(img))
	assertBlobsTrue(t, root)
	assertIngestEmpty(t, root)
}

// startHostNet starts a stage in the machine's network namespace (see
// runHostNet) without waiting for it; done gets its Wait's result. It is
// killed at the end of the test if still running.
func startHostNet(t *testing.T, bin string, args ...string) (*exec.Cmd, <-chan error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = stageEnv()
	cmd.Stdout, cmd.Stderr = &bytes.Buffer{}, &bytes.Buffer{}
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		close(exited)
		done <- err
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	return cmd, done
}

// Plain HTTP only to this machine (localhost, 127.0.0.0/8) or with
// --insecure, like docker: any other registry is spoken to over HTTPS.
func TestStage06PullPlainHTTPOnlyForLoopback(t *testing.T) {
	useTempDataRoot(t)
	stage := needStage(t, "06")
	checkNoContainerDirsAtEnd(t)
	r := registrytest.Start(t)
	img := pushTestImage(t, r, "minibox/local", "v1", "by localhost", false)

	// localhost is this machine: plain HTTP.
	port := strings.TrimPrefix(r.Addr, "127.0.0.1:")
	pullOK(t, stage, "localhost:"+port+"/minibox/local:v1")
	rows := listImagesNamed(t, stage, "minibox/local")
	require.Len(t, rows, 1)
	assert.Equal(t, "localhost:"+port+"/minibox/local", rows[0].repository)
	assert.Equal(t, imageID(img), rows[0].id)

	// Another name: not plain HTTP. Run in a throw-away network namespace
	// (run() wraps the stage), where no name resolves and no packet can
	// leave the machine, whatever the stage tries.
	res := run(t, stage, "pull", "registry.invalid:5000/x:v1")
	require.Equal(t, 1, res.code, "stdout: %s\nstderr: %s", res.stdout, res.stderr)
	assert.Contains(t, res.stderr, "registry.invalid:5000")
	assert.Contains(t, res.stderr, "https://registry.invalid:5000", "a registry not on this machine is spoken to over HTTPS")
	assert.NotContains(t, res.stderr, "http://registry.invalid", "plain HTTP to a registry not on this machine without --insecure")

	// --insecure asks for plain HTTP.
	res = run(t, stage, "pull", "--insecure", "registry.invalid:5000/x:v1")
	require.Equal(t, 1, res.code, "stdout: %s\nstderr: %s", res.stdout, res.stderr)
	assert.Contains(t, res.stderr, "http://registry.invalid:5000")
}
