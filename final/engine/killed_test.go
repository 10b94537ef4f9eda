package engine_test

// kill -9 of build, pull and push at random points (issue 13): the next
// command sees a consistent store (an image is listed whole or not at
// all), minibox cleanup removes what the killed command left, and the
// same command run again completes.

import (
	"crypto/md5"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/registrytest"
)

// killAt runs `minibox ARGS` and SIGKILLs it after delay (if it is still
// running then). It reports whether the kill came first.
func (e *env) killAt(delay time.Duration, args ...string) bool {
	e.t.Helper()
	cmd := e.command(args...)
	require.NoError(e.t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
		return false
	case <-time.After(delay):
	}
	_ = cmd.Process.Kill()
	<-done
	return true
}

// timed is how long `minibox ARGS` takes, run to completion.
func (e *env) timed(args ...string) time.Duration {
	e.t.Helper()
	start := time.Now()
	e.ok(args...)
	return time.Since(start)
}

// consistent checks that every image `images` lists runs, and that
// cleanup leaves nothing in use behind.
func (e *env) consistent(what string) {
	e.t.Helper()
	// cleanup leaves a temporary file or directory younger than a minute
	// (its writer may be between close and rename): the killed command's
	// are made older, as if that minute had passed.
	old := time.Now().Add(-2 * time.Minute)
	_ = filepath.WalkDir(e.root, func(path string, d fs.DirEntry, err error) error {
		temporary := strings.HasPrefix(d.Name(), "tmp-") || strings.HasPrefix(d.Name(), ".tmp-")
		if err == nil && (temporary || filepath.Base(filepath.Dir(path)) == "runtime") { // and the runtime's states
			_ = os.Chtimes(path, old, old)
		}
		return nil
	})
	out, stderr, code := e.mb("cleanup", "--root", e.root)
	require.Equal(e.t, 0, code, "cleanup after a killed %s:\n%s%s", what, out, stderr)
	dec := json.NewDecoder(strings.NewReader(e.ok("images", "--format", "json")))
	for dec.More() {
		var img struct{ ID string }
		require.NoError(e.t, dec.Decode(&img))
		e.ok("run", "--rm", "--network", "none", img.ID, "true") // every layer there and whole
	}
}

const killRounds = 6

// noise is n random bytes: a layer gzip cannot shrink, so that pulls,
// builds and pushes take long enough to be killed midway.
func noise(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := crand.Read(b)
	require.NoError(t, err)
	return b
}

// md5 is md5sum's output for data at path /big.
func md5sum(data []byte) string {
	return fmt.Sprintf("%x  /big\n", md5.Sum(data))
}

func TestPullKilled(t *testing.T) {
	e := newEnv(t)
	r := registrytest.Start(t)
	ref := r.Addr + "/killed/pull:1"
	registrytest.PushRootfs(t, r, fixture.bbfs, "killed/pull", registrytest.ImageOptions{Tag: "1",
		Files: map[string]string{"big": string(noise(t, 16<<20))}}) // 16 MiB more to pull
	full := e.timed("pull", ref)
	e.ok("rmi", ref)
	killed := 0
	for i := 0; i < killRounds; i++ {
		if e.killAt(time.Duration(rand.Int63n(int64(full))), "pull", ref) {
			killed++
		}
		e.consistent("pull")
		e.ok("pull", ref)
		e.ok("run", "--rm", "--network", "none", ref, "test", "-s", "/big")
		e.ok("rmi", ref)
	}
	t.Logf("%d of %d pulls killed midway (a pull takes %v)", killed, killRounds, full)
	assert.Positive(t, killed)
}

func TestBuildKilled(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	dockerfile := "FROM " + e.ref + "\n" +
		"COPY big /big\n" +
		"RUN sleep 0.3; cp /big /copy\n" +
		"RUN echo done > /done\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "big"), noise(t, 16<<20), 0o644))
	full := e.timed("build", "--no-cache", "-t", "killed/build:1", dir)
	e.ok("rmi", "killed/build:1")
	killed := 0
	for i := 0; i < killRounds; i++ {
		if e.killAt(time.Duration(rand.Int63n(int64(full))), "build", "--no-cache", "-t", "killed/build:1", dir) {
			killed++
		}
		e.consistent("build")
		steps, _ := filepath.Glob(filepath.Join(e.root, "build", "tmp", "step-*"))
		assert.Empty(t, steps, "cleanup removed the killed build's step directories")
		mountinfo, err := os.ReadFile("/proc/self/mountinfo")
		require.NoError(t, err)
		assert.NotContains(t, string(mountinfo), " "+e.root+"/", "cleanup unmounted the killed build's overlays")
		e.ok("build", "-t", "killed/build:1", dir)
		assert.Equal(t, "done\n", e.ok("run", "--rm", "--network", "none", "killed/build:1", "cat", "/done"))
		e.ok("rmi", "killed/build:1")
	}
	t.Logf("%d of %d builds killed midway (a build takes %v)", killed, killRounds, full)
	assert.Positive(t, killed)
}

func TestPushKilled(t *testing.T) {
	e := newEnv(t)
	r := registrytest.Start(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+e.ref+"\nCOPY big /big\n"), 0o644))
	killed := 0
	var full time.Duration
	for i := 0; i < killRounds; i++ {
		// A new layer each round, so that each push has a blob to upload.
		big := noise(t, 16<<20)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "big"), big, 0o644))
		ref := r.Addr + "/killed/push:" + string(rune('a'+i))
		e.ok("build", "-q", "-t", ref, dir)
		if i == 0 {
			full = e.timed("push", ref)
			continue
		}
		if e.killAt(time.Duration(rand.Int63n(int64(full))), "push", ref) {
			killed++
		}
		e.consistent("push")
		e.ok("push", ref)
		out, err := exec.Command("skopeo", "inspect", "--tls-verify=false", "docker://"+ref).CombinedOutput()
		require.NoError(t, err, "%s", out)
		other := &env{t: t, root: t.TempDir(), ref: e.ref}
		t.Cleanup(other.removeAllAndCheck)
		other.ok("pull", ref)
		assert.Equal(t, md5sum(big), other.ok("run", "--rm", "--network", "none", ref, "md5sum", "/big"))
	}
	t.Logf("%d of %d pushes killed midway", killed, killRounds-1)
	assert.Positive(t, killed)
}
