package engine_test

// Fixes from a review of the engine, each with the input that showed the
// defect.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rm -v removes the anonymous volumes only: a named volume whose name is
// 64 characters long is the user's and stays.
func TestRmVolumesKeepsLongNamedVolumes(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("a", 64)
	e.ok("run", "--name", "v", "--network", "none", "-v", long+":/named", "-v", "/anon", e.ref, "true")
	e.ok("rm", "-v", "v")
	assert.DirExists(t, filepath.Join(e.root, "volumes", long), "rm -v removed a named volume")
	entries, err := os.ReadDir(filepath.Join(e.root, "volumes"))
	require.NoError(t, err)
	assert.Len(t, entries, 1, "the anonymous volume stayed: %v", entries)
	e.ok("volume", "rm", long)
}

// A user's -v …:/etc/hosts wins over the engine's file, as in docker.
func TestUserMountOverEtcHosts(t *testing.T) {
	e := newEnv(t)
	hosts := filepath.Join(t.TempDir(), "hosts")
	require.NoError(t, os.WriteFile(hosts, []byte("10.1.2.3 mine\n"), 0o644))
	assert.Equal(t, "10.1.2.3 mine\n", e.ok("run", "--rm", "--network", "none", "-v", hosts+":/etc/hosts:ro", e.ref, "cat", "/etc/hosts"))
}

// A container reference is a name or an id, never a path: names/<ref>
// cannot leave names/, and a record must name its own directory.
func TestReferencesAreNeverPaths(t *testing.T) {
	e := newEnv(t)
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "x"), []byte(strings.Repeat("0", 64)), 0o644))
	rel, err := filepath.Rel(filepath.Join(e.root, "engine", "names"), filepath.Join(outside, "x"))
	require.NoError(t, err)
	_, stderr, code := e.mb("rm", rel)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "no such container")
	assert.FileExists(t, filepath.Join(outside, "x"))
}

// ps and inspect show published ports as docker does, the host port the
// engine chose for -p 80 included.
func TestPublishedPortsAsDockerShowsThem(t *testing.T) {
	e := newEnv(t)
	e.ok("run", "-d", "--name", "any", "-p", "80", "-p", "127.0.0.1:18094:81/udp", e.ref, "sleep", "1000")
	ports := e.inspect("any").Network.Ports
	require.Len(t, ports, 2)
	assert.Regexp(t, `^0\.0\.0\.0:[1-9][0-9]*->80/tcp$`, ports[0])
	assert.NotEqual(t, "0.0.0.0:0->80/tcp", ports[0], "no host port chosen")
	assert.Equal(t, "127.0.0.1:18094->81/udp", ports[1])
	assert.Contains(t, e.ok("ps"), ports[0]+", 127.0.0.1:18094->81/udp")
	e.ok("rm", "-f", "any")
}

// wait returns the exit status of a --rm container, whose record is gone
// by then, as docker's does.
func TestWaitOnAnAutoRemovedContainer(t *testing.T) {
	e := newEnv(t)
	id := strings.TrimSpace(e.ok("run", "-d", "--rm", "--network", "none", e.ref, "sh", "-c", "sleep 1; exit 3"))
	assert.Equal(t, "3\n", e.ok("wait", id))
	assert.NotContains(t, e.ok("ps", "-a", "-q"), id[:12], "--rm kept it")
}
