package engine_test

import (
	"archive/tar"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/final/image"
)

// topLayerNames lists the entries of the top layer of image ref in the
// test's data root.
func topLayerNames(t *testing.T, e *env, ref string) []string {
	t.Helper()
	s, err := image.Open(e.root)
	require.NoError(t, err)
	img, err := s.Lookup(ref)
	require.NoError(t, err)
	top := img.Manifest.Layers[len(img.Manifest.Layers)-1]
	f, err := os.Open(filepath.Join(s.Dir(), "blobs", "sha256", top.Digest.Encoded()))
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

// TestCommitExited: an exited container's changes (a new file, a changed
// one, a deleted one) become an image; -c CMD and ENV change its config;
// the engine's own files and mount points stay out; the image runs.
func TestCommitExited(t *testing.T) {
	e := newEnv(t)
	e.ok("run", "--name", "changer", "--network", "none", "-v", "/vol", "-e", "FROM_RUN=1", e.ref,
		"sh", "-c", "echo changed > /srv/motd && rm /bin/ls && mkdir /made && echo new > /made/file")
	out := e.ok("commit", "-c", `CMD ["cat", "/srv/motd", "/made/file"]`, "-c", "ENV FOO=bar", "-m", "a message", "-a", "tester", "changer", "committed:1")
	assert.Regexp(t, `^sha256:[0-9a-f]{64}\n$`, out)

	assert.Equal(t, "changed\nnew\n", e.ok("run", "--rm", "--network", "none", "committed:1"))
	got := e.ok("run", "--rm", "--network", "none", "committed:1", "sh", "-c", `echo "$FOO $FROM_RUN $GREETING"; test -e /bin/ls || echo ls-gone`)
	assert.Equal(t, "bar 1 hello\nls-gone\n", got, "ENV from -c, the container's env, the image's")

	names := topLayerNames(t, e, "committed:1")
	assert.Contains(t, names, "bin/.wh.ls")
	assert.Contains(t, names, "made/file")
	for _, n := range names {
		assert.NotRegexp(t, `^(vol|proc|sys|dev)/?$|^etc/(hostname|hosts|resolv\.conf)$`, n, "the engine's own files are not committed")
	}

	s, err := image.Open(e.root)
	require.NoError(t, err)
	img, err := s.Lookup("committed:1")
	require.NoError(t, err)
	last := img.Config.History[len(img.Config.History)-1]
	assert.Equal(t, "a message", last.Comment)
	assert.Equal(t, "tester", img.Config.Author)
	assert.Equal(t, strings.TrimSpace(out), img.FullID().String(), "commit prints the image id")

	_, stderr, code := e.mb("commit", "-c", "RUN true", "changer", "bad:1")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "RUN is not a change docker allows")
	e.ok("rm", "changer")
}

// TestCommitRunning: a running container is committed as it is now.
func TestCommitRunning(t *testing.T) {
	e := newEnv(t)
	e.ok("run", "-d", "--name", "live", "--network", "none", e.ref, "sh", "-c", "echo alive > /srv/state; sleep 1000")
	e.waitStatus("live", "running", 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _, _ := e.mb("exec", "live", "cat", "/srv/state")
		if out == "alive\n" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	id := strings.TrimSpace(e.ok("commit", "live"))
	assert.Regexp(t, `^sha256:[0-9a-f]{64}$`, id)
	assert.Equal(t, "alive\n", e.ok("run", "--rm", "--network", "none", id, "cat", "/srv/state"), "the unnamed image runs by its id")
	e.ok("rm", "-f", "live")
}
