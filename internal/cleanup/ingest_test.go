package cleanup_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/cleanup"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// cacheKey is a build cache entry's name: a sha256 in hex.
const cacheKey = "5e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f"

// writeAged writes a file at path (and its directories) and dates it age ago.
func writeAged(t *testing.T, path string, age time.Duration) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o700))
	require.NoError(t, os.WriteFile(path, []byte("part of a blob"), 0o600))
	past := time.Now().Add(-age)
	require.NoError(t, os.Chtimes(path, past, past))
	return path
}

// holdOpen starts `sleep 60` with path open as its standard input, as a
// stage writing a blob holds its temporary file, and stops it when the
// test ends.
func holdOpen(t *testing.T, path string) *exec.Cmd {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close() // the child has its own descriptor
	cmd := exec.Command("sleep", "60")
	cmd.Stdin = f
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func TestImageTemps(t *testing.T) {
	testenv.CheckLeaks(t)
	root := t.TempDir()
	images := filepath.Join(root, "images")
	const old = 2 * time.Minute

	// What a killed pull, build, commit or load leaves: gone once nothing
	// holds them.
	blob := writeAged(t, filepath.Join(images, "ingest", "tmp-1234567"), old)
	index := writeAged(t, filepath.Join(images, ".tmp-index.json2345678"), old)
	layout := writeAged(t, filepath.Join(images, ".tmp-oci-layout3456789"), old)
	cache := writeAged(t, filepath.Join(images, "cache", ".tmp-"+cacheKey+"4567890"), old)
	// A pull still writing its blob, and a small file closed just before
	// its rename: in use.
	pulling := writeAged(t, filepath.Join(images, "ingest", "tmp-5678901"), old)
	holder := holdOpen(t, pulling)
	renaming := writeAged(t, filepath.Join(images, ".tmp-index.json6789012"), 0)

	// The store itself, and what is not a temporary file the store makes
	// there: all left alone.
	outside := t.TempDir()
	canary := writeAged(t, filepath.Join(outside, "canary"), old)
	require.NoError(t, os.Symlink(canary, filepath.Join(images, "ingest", "tmp-7890123")))
	untouched := []string{
		filepath.Join(images, "ingest", "tmp-7890123"),
		writeAged(t, filepath.Join(images, "index.json"), old),
		writeAged(t, filepath.Join(images, "oci-layout"), old),
		writeAged(t, filepath.Join(images, "lock"), old),
		writeAged(t, filepath.Join(images, "blobs", "sha256", cacheKey), old),
		writeAged(t, filepath.Join(images, "cache", cacheKey), old),
	}
	for _, name := range []string{
		"ingest/tmp-", "ingest/tmp-12ab", "ingest/xtmp-123", "ingest/.tmp-index.json123",
		".tmp-index.json", ".tmp-index.jsonx1", ".tmp-config.json123", "tmp-123", ".tmp-" + cacheKey + "1",
		"cache/.tmp-" + cacheKey, "cache/.tmp-" + cacheKey[1:] + "1", "cache/.tmp-" + strings.ToUpper(cacheKey) + "1",
		"cache/tmp-123", "cache/.tmp-index.json123",
		"blobs/sha256/tmp-123",
	} {
		untouched = append(untouched, writeAged(t, filepath.Join(images, name), old))
	}
	dir := filepath.Join(images, "ingest", "tmp-8901234") // a directory: not a blob's file
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "x"), 0o700))
	untouched = append(untouched, dir)
	// save's temporary file is next to the user's output: not the store's.
	untouched = append(untouched, writeAged(t, filepath.Join(root, ".tmp-out.tar123"), old))

	env := dataEnv(t, root)
	objs, err := cleanup.Find(env)
	require.NoError(t, err)
	found := byName(objs)
	assert.Len(t, found, 6, "%v", objs)
	assert.Equal(t, "image tmp file "+blob+" (an interrupted blob write)", found[blob].String())
	assert.Equal(t, "image tmp file "+index+" (an interrupted index.json or oci-layout write)", found[index].String())
	assert.Equal(t, "image tmp file "+layout+" (an interrupted index.json or oci-layout write)", found[layout].String())
	assert.Equal(t, "image tmp file "+cache+" (an interrupted build cache write)", found[cache].String())
	holderPID := strconv.Itoa(holder.Process.Pid)
	assert.Contains(t, found[pulling].Busy, "process "+holderPID+" (sleep) has it open")
	assert.Contains(t, found[pulling].Busy, "kill "+holderPID)
	assert.Contains(t, found[renaming].Busy, "a write may be finishing")

	rep, err := cleanup.Clean(env, true)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{blob, index, layout, cache}, names(rep.Removed))
	assert.FileExists(t, blob, "a dry run removes nothing")

	rep, err = cleanup.Clean(env, false)
	require.NoError(t, err)
	assert.Empty(t, rep.Failed)
	assert.ElementsMatch(t, []string{blob, index, layout, cache}, names(rep.Removed))
	assert.ElementsMatch(t, []string{pulling, renaming}, names(rep.Busy))
	for _, path := range names(rep.Removed) {
		assert.NoFileExists(t, path)
	}
	for _, path := range append(names(rep.Busy), untouched...) {
		_, err := os.Lstat(path)
		assert.NoError(t, err, "left alone")
	}
	assert.FileExists(t, canary, "a symlink in ingest/ is not followed")

	// Remove checks again: the leak check removes without asking Find.
	err = cleanup.ImageTemps.Remove(cleanup.Object{Kind: "image tmp file", Name: pulling})
	assert.ErrorContains(t, err, "process "+holderPID+" (sleep) has it open")
	assert.FileExists(t, pulling)
	require.NoError(t, holder.Process.Kill())
	_ = holder.Wait()
	assert.NoError(t, cleanup.ImageTemps.Remove(cleanup.Object{Kind: "image tmp file", Name: pulling}))
	assert.NoFileExists(t, pulling)
	assert.NoError(t, cleanup.ImageTemps.Remove(cleanup.Object{Kind: "image tmp file", Name: blob}), "gone already: removed")
}

func TestImageTempsSymlinksAreRefused(t *testing.T) {
	root, elsewhere := t.TempDir(), t.TempDir()
	victim := writeAged(t, filepath.Join(elsewhere, "images", "ingest", "tmp-1234567"), time.Hour)
	writeAged(t, filepath.Join(elsewhere, "images", ".tmp-index.json1234567"), time.Hour)

	// The whole store a symlink: Lstat of images/ingest alone would go
	// through it.
	require.NoError(t, os.Symlink(filepath.Join(elsewhere, "images"), filepath.Join(root, "images")))
	objs, err := cleanup.Find(dataEnv(t, root))
	assert.ErrorContains(t, err, filepath.Join(root, "images")+" is a symlink")
	assert.Empty(t, objs)
	err = cleanup.ImageTemps.Remove(cleanup.Object{Name: filepath.Join(root, "images", "ingest", "tmp-1234567")})
	assert.ErrorContains(t, err, "is a symlink")
	assert.FileExists(t, victim)

	// ingest/ a symlink.
	require.NoError(t, os.Remove(filepath.Join(root, "images")))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "images"), 0o700))
	require.NoError(t, os.Symlink(filepath.Join(elsewhere, "images", "ingest"), filepath.Join(root, "images", "ingest")))
	objs, err = cleanup.Find(dataEnv(t, root))
	assert.ErrorContains(t, err, filepath.Join(root, "images", "ingest")+" is a symlink")
	assert.Empty(t, objs)
	err = cleanup.ImageTemps.Remove(cleanup.Object{Name: filepath.Join(root, "images", "ingest", "tmp-1234567")})
	assert.ErrorContains(t, err, "is a symlink")
	assert.FileExists(t, victim)

	// The entry itself a symlink: the link is not minibox's either.
	link := filepath.Join(root, "images", ".tmp-index.json7654321")
	require.NoError(t, os.Symlink(victim, link))
	err = cleanup.ImageTemps.Remove(cleanup.Object{Name: link})
	assert.ErrorContains(t, err, "is a symlink")
	assert.FileExists(t, victim)
	_, err = os.Lstat(link)
	assert.NoError(t, err)
}

func TestImageTempsRemoveRefusesOtherPaths(t *testing.T) {
	for _, name := range []string{
		"/var/lib/minibox/images/index.json",
		"/var/lib/minibox/images/oci-layout",
		"/var/lib/minibox/images/lock",
		"/var/lib/minibox/images/blobs/sha256/" + cacheKey,
		"/var/lib/minibox/images/cache/" + cacheKey,
		"/var/lib/minibox/images/ingest",
		"/var/lib/minibox/images/ingest/tmp-x",
		"/var/lib/minibox/images/ingest/tmp-123/",
		"/var/lib/minibox/images/ingest/../ingest/tmp-123",
		"var/lib/minibox/images/ingest/tmp-123",
		"/var/lib/minibox/layers/tmp-123",
		"/var/lib/minibox/images/tmp-123",
		"/var/lib/minibox/images/cache/.tmp-index.json123",
		"/var/lib/minibox/images/.tmp-" + cacheKey + "123",
		"/home/student/.tmp-out.tar123",
		"/",
		"",
	} {
		err := cleanup.ImageTemps.Remove(cleanup.Object{Kind: "image tmp file", Name: name})
		assert.ErrorContains(t, err, "refusing to remove", name)
	}
}

// The tests' leak check sees a temporary file a killed stage left in the
// data root the stage tests give it ($MINIBOX_ROOT), even one just made:
// busy or not, it was not there before.
func TestLeakCheckSeesImageTemps(t *testing.T) {
	root := t.TempDir()
	t.Setenv("MINIBOX_ROOT", root)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "images", "ingest"), 0o700))
	before := testenv.Snapshot()
	blob := writeAged(t, filepath.Join(root, "images", "ingest", "tmp-1234567"), 0)
	leaked := testenv.Diff(before, testenv.Snapshot())
	assert.Contains(t, leaked, "image tmp file: "+blob+" an interrupted blob write")
}
