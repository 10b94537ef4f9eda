package stagetest

// Stage 04 adds layers: the container's root is an overlay of read-only
// layers (ROOTFS at the bottom, then each --layer, a directory or a tar
// unpacked once into $ROOT/layers/<sha256>) and a writable upper layer of
// its own, $ROOT/containers/<id>/upper. These tests mount real overlays
// (as root) and read what the kernel did from both sides: inside, through
// the command's output or /proc/PID/root, and on the host, in the layer
// directories (a container run with --keep leaves its upper there). Each
// runs on stage 04 and every later stage, with a data root of its own
// (forEachStage), which must hold no container directory at the end.
//
// The unpacking of hostile tars is tested in unpack_test.go.

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/internal/stages"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// --- Copy-on-write -------------------------------------------------------------

// A file changed inside is copied up, whole, into the container's upper
// layer first; the lower layer's copy never changes. The upper holds what
// the container changed and nothing else: a container that writes nothing
// (the stage's own set-up included) leaves it empty.
func TestStage04CopyOnWrite(t *testing.T) {
	forEachStage(t, "04", func(t *testing.T, stage string) {
		res := run(t, stage, "run", "--keep", rootfsDir, "--", "true")
		require.Equal(t, 0, res.code, res.stderr)
		assert.Empty(t, treeOf(t, keptFrom(t, res).upper()), "a container that writes nothing has an empty upper layer")

		cow := addToRootfs(t, "etc/stage04-cow", "from the lower layer\n")
		big := addToRootfs(t, "tmp/stage04-big", strings.Repeat("x", 1<<20))
		res = run(t, stage, "run", "--keep", rootfsDir, "--", "sh", "-c",
			`echo changed >/etc/stage04-cow && cat /etc/stage04-cow && echo more >>/tmp/stage04-big && echo new >/tmp/stage04-new`)
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, "changed\n", res.stdout, "the container reads its own change")
		upper := keptFrom(t, res).upper()

		assertFileHolds(t, cow, "from the lower layer\n", "the lower layer changed")
		info, err := os.Stat(big)
		require.NoError(t, err)
		assert.EqualValues(t, 1<<20, info.Size(), "the lower layer's big file changed")
		assert.NoFileExists(t, filepath.Join(rootfsDir, "tmp", "stage04-new"), "a new file landed in the lower layer")

		assertFileHolds(t, filepath.Join(upper, "etc", "stage04-cow"), "changed\n", "the change is in the upper layer")
		assertFileHolds(t, filepath.Join(upper, "tmp", "stage04-new"), "new\n", "the new file is in the upper layer")
		// Appending 5 bytes copied up the whole MiB first.
		info, err = os.Stat(filepath.Join(upper, "tmp", "stage04-big"))
		require.NoError(t, err)
		assert.EqualValues(t, 1<<20+5, info.Size(), "the copy-up is of the whole file")
		assert.Equal(t, []string{"etc", "etc/stage04-cow", "tmp", "tmp/stage04-big", "tmp/stage04-new"}, treeOf(t, upper),
			"the upper layer holds what changed, and the directories it is in")
	})
}

// A file deleted inside is hidden by a whiteout in the upper layer (a 0/0
// character device of the same name); the lower layer keeps it, and the
// next container sees it again.
func TestStage04DeleteLeavesAWhiteout(t *testing.T) {
	forEachStage(t, "04", func(t *testing.T, stage string) {
		doomed := addToRootfs(t, "etc/stage04-doomed", "doomed\n")
		res := run(t, stage, "run", "--keep", rootfsDir, "--", "sh", "-c",
			`rm /etc/stage04-doomed && if [ -e /etc/stage04-doomed ]; then echo still there; else echo gone; fi; ls /etc`)
		require.Equal(t, 0, res.code, res.stderr)
		assert.True(t, strings.HasPrefix(res.stdout, "gone\n"), "inside, the file is still there:\n%s", res.stdout)
		assert.NotContains(t, res.stdout, "stage04-doomed", "ls lists the deleted file")
		upper := keptFrom(t, res).upper()

		assertWhiteoutAt(t, filepath.Join(upper, "etc", "stage04-doomed"))
		assertFileHolds(t, doomed, "doomed\n", "the lower layer lost the file")
		res = run(t, stage, "run", rootfsDir, "--", "cat", "/etc/stage04-doomed")
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, "doomed\n", res.stdout, "a new container sees the lower layer's file")
	})
}

// A directory removed and made again inside hides the lower layer's
// directory entirely: the upper's is opaque (trusted.overlay.opaque=y).
func TestStage04OpaqueDirectory(t *testing.T) {
	forEachStage(t, "04", func(t *testing.T, stage string) {
		addDirToRootfs(t, "stage04-dir", map[string]string{"a": "a\n", "b": "b\n"})
		res := run(t, stage, "run", "--keep", rootfsDir, "--", "sh", "-c",
			`rm -rf /stage04-dir && mkdir /stage04-dir && echo c >/stage04-dir/c && ls /stage04-dir`)
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, "c\n", res.stdout, "inside, the new directory shows only its own file")
		upper := keptFrom(t, res).upper()

		assert.Equal(t, "y", opaqueXattr(t, filepath.Join(upper, "stage04-dir")), "the upper's directory is not opaque")
		assert.Equal(t, []string{"stage04-dir", "stage04-dir/c"}, treeOf(t, upper))
		assert.Equal(t, "a\nb\n", listDir(t, filepath.Join(rootfsDir, "stage04-dir")), "the lower layer's directory changed")
	})
}

// --- Layer order ---------------------------------------------------------------

// Layers stack bottom first, ROOTFS lowest: of two layers with the same
// file the later --layer wins, and each layer's other files show through.
// Without ROOTFS the layers alone are the root.
func TestStage04LayerOrder(t *testing.T) {
	forEachStage(t, "04", func(t *testing.T, stage string) {
		addToRootfs(t, "stage04-f", "rootfs\n")
		one := makeLayerDir(t, map[string]string{"stage04-f": "one\n", "stage04-only-one": "1\n"})
		two := makeLayerDir(t, map[string]string{"stage04-f": "two\n", "stage04-only-two": "2\n"})
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{rootfsDir}, "rootfs\n"},
			{[]string{"--layer", one, rootfsDir}, "one\n"},
			{[]string{"--layer", one, "--layer", two, rootfsDir}, "two\n"},
			{[]string{"--layer", two, "--layer", one, rootfsDir}, "one\n"},
			{[]string{"--layer", rootfsDir, "--layer", two}, "two\n"}, // no ROOTFS
		} {
			res := run(t, stage, append(append([]string{"run"}, c.args...), "--", "cat", "/stage04-f")...)
			require.Equal(t, 0, res.code, "%v: %s", c.args, res.stderr)
			assert.Equal(t, c.want, res.stdout, "run %v", c.args)
		}
		res := run(t, stage, "run", "--layer", one, "--layer", two, rootfsDir, "--", "cat", "/stage04-only-one", "/stage04-only-two")
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, "1\n2\n", res.stdout, "a layer's other files show through the one above it")
	})
}

// A tar layer's whiteouts apply to the layers below it: `.wh.NAME` hides
// NAME, `.wh..wh..opq` hides everything a directory held below; the lower
// layer itself keeps its files. Plain and gzip tars mean the same.
func TestStage04TarLayerWhiteouts(t *testing.T) {
	forEachStage(t, "04", func(t *testing.T, stage string) {
		hidden := addToRootfs(t, "etc/stage04-hidden", "hidden\n")
		addDirToRootfs(t, "stage04-dir", map[string]string{"a": "a\n"})
		entries := []layerFile{
			{name: "etc/"}, {name: "etc/.wh.stage04-hidden"},
			{name: "stage04-dir/"}, {name: "stage04-dir/.wh..wh..opq"}, {name: "stage04-dir/b", body: "b\n"},
			{name: "stage04-tarfile", body: "from the tar\n"},
		}
		script := `ls /etc | grep stage04; ls /stage04-dir; cat /stage04-tarfile`
		for _, gz := range []bool{false, true} {
			layer := writeLayerTar(t, gz, entries...)
			res := run(t, stage, "run", "--layer", layer, rootfsDir, "--", "sh", "-c", script)
			require.Equal(t, 0, res.code, "gzip %v: %s", gz, res.stderr)
			assert.Equal(t, "b\nfrom the tar\n", res.stdout, "gzip %v: the tar's whiteouts do not hide the lower files", gz)

			store := filepath.Join(os.Getenv("MINIBOX_ROOT"), "layers", fileSHA256(t, layer))
			assertWhiteoutAt(t, filepath.Join(store, "etc", "stage04-hidden"))
			assert.Equal(t, "y", opaqueXattr(t, filepath.Join(store, "stage04-dir")))
		}
		assertFileHolds(t, hidden, "hidden\n", "the lower layer lost the hidden file")
		assert.Equal(t, "a\n", listDir(t, filepath.Join(rootfsDir, "stage04-dir")), "the lower layer's directory changed")
	})
}

// A tar may name the layer's own root "/" (umoci does) or "./": that is
// the layer itself, not an absolute name; every other absolute name stays
// refused (unpack_test.go).
func TestStage04TarRootEntryIsTheLayer(t *testing.T) {
	forEachStage(t, "04", func(t *testing.T, stage string) {
		for _, root := range []string{"/", "./"} {
			layer := writeLayerTar(t, true, layerFile{name: root}, layerFile{name: "stage04-rooted", body: "rooted\n"})
			res := run(t, stage, "run", "--layer", layer, rootfsDir, "--", "cat", "/stage04-rooted")
			require.Equal(t, 0, res.code, "root entry %q: %s", root, res.stderr)
			assert.Equal(t, "rooted\n", res.stdout)
		}
	})
}

// Overlay's lowerdir option goes through fsconfig(2), which takes at most
// 255 bytes: layers at long paths must still stack (the stage names them
// by short links, lower/0, lower/1, …), in order.
func TestStage04ManyLayersAtLongPaths(t *testing.T) {
	forEachStage(t, "04", func(t *testing.T, stage string) {
		base := filepath.Join(t.TempDir(), strings.Repeat("long-directory-name-", 8))
		const n = 40
		args := []string{"run"}
		for i := 0; i < n; i++ {
			dir := filepath.Join(base, fmt.Sprintf("layer-%02d-%s", i, strings.Repeat("x", 60)))
			require.NoError(t, os.MkdirAll(dir, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "stage04-top"), []byte(fmt.Sprintln(i)), 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("stage04-layer-%02d", i)), nil, 0o644))
			args = append(args, "--layer", dir)
		}
		t.Logf("%d layers, %d bytes of paths", n, n*len(args[len(args)-1]))
		res := run(t, stage, append(args, rootfsDir, "--", "sh", "-c", "cat /stage04-top; ls / | grep -c stage04-layer-")...)
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, fmt.Sprintf("%d\n%d\n", n-1, n), res.stdout, "the top layer wins, and every layer shows")
	})
}

// --- The layer store -------------------------------------------------------------

// A tar layer is unpacked once, into $ROOT/layers/<sha256 of the tar>, and
// reused from there by the next container, also when the same tar comes
// under another name. A container writing to a file of it changes its own
// upper layer, never the store.
func TestStage04TarLayerUnpackedOnce(t *testing.T) {
	forEachStage(t, "04", func(t *testing.T, stage string) {
		layer := writeLayerTar(t, false, layerFile{name: "stage04-tarfile", body: "from the tar\n"})
		store := filepath.Join(os.Getenv("MINIBOX_ROOT"), "layers", fileSHA256(t, layer))
		unpack := regexp.MustCompile(`^\+ tar -xf `)

		res := run(t, stage, "run", "-v", "--layer", layer, rootfsDir, "--", "sh", "-c", "echo changed >/stage04-tarfile; cat /stage04-tarfile")
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, "changed\n", res.stdout)
		assert.Contains(t, narration(res.stderr), "+ tar -xf "+layer+" -C "+store, "the first run unpacks the tar:\n%s", res.stderr)
		assertFileHolds(t, filepath.Join(store, "stage04-tarfile"), "from the tar\n", "the container changed the layer store")
		before := inodeAndMtime(t, store, "stage04-tarfile")

		renamed := filepath.Join(t.TempDir(), "renamed.tar")
		copyFile(t, layer, renamed)
		for _, l := range []string{layer, renamed} {
			res = run(t, stage, "run", "-v", "--layer", l, rootfsDir, "--", "cat", "/stage04-tarfile")
			require.Equal(t, 0, res.code, res.stderr)
			assert.Equal(t, "from the tar\n", res.stdout)
			for _, s := range narration(res.stderr) {
				assert.False(t, unpack.MatchString(s), "--layer %s: unpacked again: %q", l, s)
			}
			assert.Equal(t, before, inodeAndMtime(t, store, "stage04-tarfile"), "--layer %s: the store's copy was made again", l)
		}
		entries, err := os.ReadDir(filepath.Dir(store))
		require.NoError(t, err)
		assert.Len(t, entries, 1, "one layer in the store, nothing else: %v", entries)
	})
}

// --- Commit ----------------------------------------------------------------------

// `commit` saves a kept container's upper layer as a layer tar: stacked on
// the same ROOTFS in a fresh container, it gives the same tree the first
// container ended with (changed, new, deleted files, an opaque directory,
// links, modes). The same upper gives the same bytes every time.
func TestStage04CommitRoundTrip(t *testing.T) {
	forEachStage(t, "04", func(t *testing.T, stage string) {
		addToRootfs(t, "etc/stage04-cow", "from the lower layer\n")
		addToRootfs(t, "etc/stage04-doomed", "doomed\n")
		addDirToRootfs(t, "stage04-dir", map[string]string{"a": "a\n", "b": "b\n"})
		changes := `set -e
echo changed >/etc/stage04-cow
chmod 600 /etc/stage04-cow
echo new >/etc/stage04-new
ln /etc/stage04-new /tmp/stage04-hard
ln -s /etc/stage04-new /stage04-link
rm /etc/stage04-doomed
rm -rf /stage04-dir
mkdir /stage04-dir
echo c >/stage04-dir/c
mkdir -p /stage04-deep/a/b
echo deep >/stage04-deep/a/b/f
`
		// One hostname for both runs: from stage 05 on, /etc/hostname and
		// /etc/hosts name it (the init layer, which commit leaves out).
		res := run(t, stage, "run", "--hostname", "stage04-commit", "--keep", rootfsDir, "--", "sh", "-c", changes+treeScript)
		require.Equal(t, 0, res.code, res.stderr)
		first := res.stdout
		require.Contains(t, first, "/stage04-deep/a/b/f", "the tree listing works")
		kept := keptFrom(t, res)

		out := filepath.Join(t.TempDir(), "layer.tar")
		res = run(t, stage, "commit", kept.id, out)
		require.Equal(t, 0, res.code, res.stderr)
		digest := fileSHA256(t, out)
		assert.Equal(t, "sha256:"+digest+"  "+out+"\n", res.stdout, "commit prints the tar's digest")
		assert.DirExists(t, kept.upper(), "commit removed the kept container")

		again := filepath.Join(t.TempDir(), "again.tar")
		res = run(t, stage, "commit", kept.id, again)
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, digest, fileSHA256(t, again), "two commits of the same upper differ")

		assertCommittedLayer(t, out)

		res = run(t, stage, "run", "--hostname", "stage04-commit", "--layer", out, rootfsDir, "--", "sh", "-c", treeScript)
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, first, res.stdout, "ROOTFS + the committed layer is not the tree the container left")
	})
}

// treeScript lists, inside a container, its root file system (-xdev: not
// /proc, /dev, /sys): each directory's mode and owner, each other file's
// mode, owner, link count, size and symlink target, and each regular
// file's content digest. Not times: unpacking a layer sets its own.
const treeScript = `find / -xdev -type d -exec stat -c '%n %A %u:%g' {} + | sort
find / -xdev ! -type d -exec stat -c '%n %A %u:%g %h %s %N' {} + | sort
find / -xdev -type f -exec md5sum {} + | sort
`

// assertCommittedLayer checks the tar commit wrote: what TestStage04CommitRoundTrip
// changed and nothing else, whiteouts as .wh. files (no device nodes),
// numeric owners without names, and each directory before what is in it.
func assertCommittedLayer(t *testing.T, file string) {
	t.Helper()
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	tr := tar.NewReader(f)
	var got []string
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		name := strings.TrimSuffix(strings.TrimPrefix(hdr.Name, "./"), "/")
		got = append(got, name)
		assert.NotContains(t, []byte{tar.TypeChar, tar.TypeBlock}, hdr.Typeflag, "%s: a device node in a layer tar", name)
		assert.Empty(t, hdr.Uname+hdr.Gname, "%s: owner names", name)
		if parent := filepath.Dir(name); parent != "." {
			assert.True(t, seen[parent], "%s comes before its directory %s", name, parent)
		}
		seen[name] = true
		switch name {
		case "tmp/stage04-hard":
			assert.Equal(t, byte(tar.TypeLink), hdr.Typeflag, "the hard link is not a link")
			assert.Equal(t, "etc/stage04-new", strings.TrimPrefix(hdr.Linkname, "./"))
		case "etc/stage04-cow":
			assert.EqualValues(t, 0o600, hdr.Mode&0o7777)
		}
	}
	assert.ElementsMatch(t, []string{
		"etc", "etc/stage04-cow", "etc/stage04-new", "etc/.wh.stage04-doomed",
		"tmp", "tmp/stage04-hard", "stage04-link",
		"stage04-dir", "stage04-dir/.wh..wh..opq", "stage04-dir/c",
		"stage04-deep", "stage04-deep/a", "stage04-deep/a/b", "stage04-deep/a/b/f",
	}, got, "the layer tar's entries")
}

// --- Sharing ---------------------------------------------------------------------

// Many containers run on one lower layer at once: each sees its own
// changes only, its upper layer holds them and nothing else, and all their
// upper layers together take less disk than one copy of the lower would.
func TestStage04ContainersShareTheLowerLayer(t *testing.T) {
	forEachStage(t, "04", func(t *testing.T, stage string) {
		const n = 20
		root := os.Getenv("MINIBOX_ROOT")
		var cs []*container
		for i := 0; i < n; i++ {
			cs = append(cs, startContainer(t, stage, "run", rootfsDir, "--", "sh", "-c",
				`hostname >/etc/stage04-$(hostname) && echo ready && exec sleep 60`))
		}
		for _, c := range cs {
			c.waitFor(t, "ready")
		}
		// All are running, each has written: each sees one file of its own.
		ids := map[string]bool{}
		for _, c := range cs {
			id := containerOfStage(t, root, c.cmd.Process.Pid)
			ids[id] = true
			etc := fmt.Sprintf("/proc/%d/root/etc", c.pid(t))
			var mine []string
			entries, err := os.ReadDir(etc)
			require.NoError(t, err)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), "stage04-") {
					mine = append(mine, e.Name())
				}
			}
			assert.Equal(t, []string{"stage04-" + id}, mine, "container %s sees these files", id)
			upper := filepath.Join(root, "containers", id, "upper")
			assertFileHolds(t, filepath.Join(upper, "etc", "stage04-"+id), id+"\n", "")
			assert.Equal(t, []string{"etc", "etc/stage04-" + id}, treeOf(t, upper), "container %s's upper layer", id)
		}
		assert.Len(t, ids, n, "each container has a directory of its own")
		assert.Empty(t, globNames(t, filepath.Join(rootfsDir, "etc", "stage04-*")), "a container wrote into the lower layer")

		lower := diskUsage(t, rootfsDir)
		var uppers int64
		for id := range ids {
			uppers += diskUsage(t, filepath.Join(root, "containers", id, "upper"))
		}
		t.Logf("%d containers: their upper layers use %d KiB; the lower layer they share, %d KiB", n, uppers/1024, lower/1024)
		// Copies of the lower would take n times its size.
		assert.Less(t, uppers, lower, "%d upper layers take more than one copy of the lower layer", n)

		for _, c := range cs {
			c.kill(t)
		}
		assert.Empty(t, containerDirs(t, root), "container directories left after the exits")
	})
}

// --- Where the overlay is mounted ---------------------------------------------

// The overlay is the container's root, and lives in its mount namespace
// only: never in the host's mount table, not while the container starts,
// runs or ends.
func TestStage04OverlayNeverInTheHostMountTable(t *testing.T) {
	forEachStage(t, "04", func(t *testing.T, stage string) {
		root := os.Getenv("MINIBOX_ROOT")
		before := readMountinfo(t)
		seen := make(chan []string, 1)
		stop := make(chan struct{})
		var stopOnce sync.Once
		stopPolling := func() { stopOnce.Do(func() { close(stop) }) }
		t.Cleanup(stopPolling) // also when the test fails half-way
		go func() { seen <- pollNewMounts(before, root, stop) }()

		c := startContainer(t, stage, "run", rootfsDir, "--", "sh", "-c", "echo ready && exec sleep 60")
		c.waitFor(t, "ready")
		id := containerOfStage(t, root, c.cmd.Process.Pid)
		inside, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", c.pid(t)))
		require.NoError(t, err)
		assert.Regexp(t, `(?m)^\S+ \S+ \S+ \S+ / .* - overlay \S+ \S*upperdir=`+regexp.QuoteMeta(filepath.Join(root, "containers", id, "upper"))+`[,\n]`,
			string(inside), "the container's root is not its overlay")
		c.kill(t)
		stopPolling()
		assert.Empty(t, <-seen, "the overlay showed in the host's mount table")
		assert.Equal(t, before, readMountinfo(t), "the host's mount table changed")
	})
}

// pollNewMounts reads the mount table until stop is closed and returns the
// lines that were not in before and are overlays or name root.
func pollNewMounts(before, root string, stop chan struct{}) []string {
	old := map[string]bool{}
	for _, line := range strings.Split(before, "\n") {
		old[line] = true
	}
	var found []string
	for {
		data, _ := os.ReadFile("/proc/self/mountinfo")
		for _, line := range strings.Split(string(data), "\n") {
			if !old[line] && (strings.Contains(line, " - overlay ") || strings.Contains(line, root)) {
				old[line] = true
				found = append(found, line)
			}
		}
		select {
		case <-stop:
			return found
		default:
			time.Sleep(time.Millisecond)
		}
	}
}

// --- Clean-up --------------------------------------------------------------------

// The container's directory goes when the container ends, however it
// ends; only a killed stage (SIGKILL: no clean-up possible) leaves it,
// without the `kept` mark, and `minibox cleanup` removes it, as it removes
// a kept one, but never one whose stage still runs.
func TestStage04RemovesTheContainerDirectory(t *testing.T) {
	forEachStage(t, "04", func(t *testing.T, stage string) {
		root := os.Getenv("MINIBOX_ROOT")
		before := readMountinfo(t)
		res := run(t, stage, "run", rootfsDir, "--", "true")
		assert.Equal(t, 0, res.code, res.stderr)
		assert.Empty(t, containerDirs(t, root), "after an exit")
		res = run(t, stage, "run", rootfsDir, "--", "no-such-command")
		assert.Equal(t, 127, res.code, res.stderr)
		assert.Empty(t, containerDirs(t, root), "after a command that cannot start")
		res = run(t, stage, "run", t.TempDir(), "--", "true") // no /proc to mount on
		assert.Equal(t, 1, res.code, res.stderr)
		assert.Empty(t, containerDirs(t, root), "after the child failed")

		c := startContainer(t, stage, "run", rootfsDir, "--", "sh", "-c", "echo ready && exec sleep 60")
		c.waitFor(t, "ready")
		require.Len(t, containerDirs(t, root), 1, "while it runs")
		require.NoError(t, c.cmd.Process.Signal(unix.SIGTERM))
		assert.Equal(t, 137, c.wait(t).code, c.stderr.String())
		assert.Empty(t, containerDirs(t, root), "after SIGTERM to the stage")
		assert.Equal(t, before, readMountinfo(t), "the host's mount table changed")

		// SIGKILL: the stage cannot clean up; its container dies with it
		// (its death signal; from stage 05 on with the bridge too).
		c = startContainer(t, stage, "run", rootfsDir, "--", "sh", "-c", "echo ready && exec sleep 60")
		c.waitFor(t, "ready")
		killed := filepath.Join(root, "containers", containerOfStage(t, root, c.cmd.Process.Pid))
		pid1 := c.pid(t)
		require.NoError(t, c.cmd.Process.Kill())
		c.wait(t)
		require.Eventually(t, func() bool { return !running(pid1) }, 10*time.Second, 20*time.Millisecond, "the container outlived its killed stage")
		assert.DirExists(t, filepath.Join(killed, "upper"), "a killed stage's container directory")
		assert.NoFileExists(t, filepath.Join(killed, "kept"), "a killed stage's container is not kept")
		assert.Equal(t, before, readMountinfo(t), "a killed stage left a mount")
		t.Cleanup(func() { os.RemoveAll(killed) })

		res = run(t, stage, "run", "--keep", rootfsDir, "--", "true")
		require.Equal(t, 0, res.code, res.stderr)
		kept := keptFrom(t, res)
		alive := startContainer(t, stage, "run", rootfsDir, "--", "sh", "-c", "echo ready && exec sleep 60")
		alive.waitFor(t, "ready")
		live := filepath.Join(root, "containers", containerOfStage(t, root, alive.cmd.Process.Pid))

		res = runMiniboxCleanup(t, stage, root)
		assert.Contains(t, res.stdout, "removed container dir "+killed, res.stderr)
		assert.Contains(t, res.stdout, "removed container dir "+kept.dir, res.stderr)
		assert.Contains(t, res.stdout, "left container dir "+live, res.stderr)
		assert.Equal(t, 1, res.code, "a running container is left: status 1\n%s%s", res.stdout, res.stderr)
		assert.NoDirExists(t, killed)
		assert.NoDirExists(t, kept.dir)
		assert.DirExists(t, live, "cleanup removed a running container's directory")
		assertRunsAfterCleanup(t, alive, live)
	})
}

// assertRunsAfterCleanup checks that the container whose directory cleanup
// left alone still works, writes included, and then ends it.
func assertRunsAfterCleanup(t *testing.T, c *container, dir string) {
	t.Helper()
	assert.FileExists(t, filepath.Join(dir, "pid"))
	require.NoError(t, os.WriteFile(fmt.Sprintf("/proc/%d/root/tmp/stage04-after-cleanup", c.pid(t)), []byte("ok\n"), 0o644))
	assertFileHolds(t, filepath.Join(dir, "upper", "tmp", "stage04-after-cleanup"), "ok\n", "")
	c.kill(t)
}

// runMiniboxCleanup runs `minibox cleanup --root ROOT` after a run of
// stage. From stage 05 on, in a network namespace of its own, like the
// stage's runs (inThrowawayNetns): the networks they made went with those
// namespaces, and cleanup would otherwise judge and remove minibox's
// bridges and rules in the machine's own.
func runMiniboxCleanup(t *testing.T, stage, root string) result {
	t.Helper()
	argv := inThrowawayNetns(t, stage, []string{miniboxCLI(t), "cleanup", "--root", root})
	return run(t, argv[0], argv[1:]...)
}

var (
	miniboxOnce sync.Once
	miniboxPath string
	miniboxErr  error
)

// miniboxCLI returns the minibox command: the one the cgroup v2 VM ships
// beside the stage programs (MINIBOX_STAGE_BIN/minibox), else one built
// once per test run from the working tree.
func miniboxCLI(t *testing.T) string {
	t.Helper()
	miniboxOnce.Do(func() {
		if dir := os.Getenv("MINIBOX_STAGE_BIN"); dir != "" {
			if _, err := os.Stat(filepath.Join(dir, "minibox")); err == nil {
				miniboxPath = filepath.Join(dir, "minibox")
				return
			}
		}
		goTool, err := stages.GoTool()
		if err != nil {
			miniboxErr = fmt.Errorf("no minibox command in MINIBOX_STAGE_BIN, and no Go to build one: %w", err)
			return
		}
		miniboxPath, miniboxErr = testenv.BuildMinibox(goTool, dataRoots) // and minibox-shim
	})
	require.NoError(t, miniboxErr)
	return miniboxPath
}

// --- User namespaces ---------------------------------------------------------------

// With --userns, container root is host uid 100000: what it writes is
// owned by 100000 in the upper layer (the overlay, made by host root,
// copies up with host root's credentials), and a file of host root's in
// a lower layer stays out of its reach.
func TestStage04UserNamespaceAndLayers(t *testing.T) {
	forEachStage(t, "04", func(t *testing.T, stage string) {
		allowContainerRoot(t)
		rootOwned := addToRootfs(t, "etc/stage04-root-owned", "host root's\n")
		res := run(t, stage, "run", "--userns", "--keep", rootfsDir, "--", "sh", "-c",
			`echo mine >/tmp/stage04-userns && echo wrote; echo changed >/etc/stage04-root-owned && echo changed it; true`)
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, "wrote\n", res.stdout)
		assert.Contains(t, res.stderr, "Permission denied", "writing host root's file")
		upper := keptFrom(t, res).upper()

		var st unix.Stat_t
		require.NoError(t, unix.Lstat(filepath.Join(upper, "tmp", "stage04-userns"), &st))
		assert.Equal(t, [2]uint32{100000, 100000}, [2]uint32{st.Uid, st.Gid}, "the owner of container root's file in the upper layer")
		assert.NoFileExists(t, filepath.Join(upper, "etc", "stage04-root-owned"), "host root's file was copied up")
		assertFileHolds(t, rootOwned, "host root's\n", "host root's file changed")
	})
}

// --- Bad input ---------------------------------------------------------------------

// A missing layer, no layer at all, and a commit of a container that was
// not kept are clear errors that name the thing, and leave nothing.
func TestStage04BadInputIsAClearError(t *testing.T) {
	forEachStage(t, "04", func(t *testing.T, stage string) {
		root := os.Getenv("MINIBOX_ROOT")
		res := run(t, stage, "run", "--layer", "/nonexistent-layer", rootfsDir, "--", "echo", "the command ran")
		assert.Contains(t, []int{1, 2}, res.code, res.stderr)
		assert.Contains(t, res.stderr, "/nonexistent-layer")
		assert.NotContains(t, res.stdout, "the command ran")

		res = run(t, stage, "run", "--", "echo", "the command ran")
		assert.Equal(t, 2, res.code, res.stderr)
		assert.Contains(t, res.stderr, "ROOTFS")
		assert.Contains(t, res.stderr, "--layer")
		assert.NotContains(t, res.stdout, "the command ran")

		out := filepath.Join(t.TempDir(), "out.tar")
		res = run(t, stage, "commit", "0123456789ab", out)
		assert.Equal(t, 1, res.code, res.stderr)
		assert.Contains(t, res.stderr, "0123456789ab")
		assert.NoFileExists(t, out)

		res = run(t, stage, "commit", "0123456789ab")
		assert.Equal(t, 2, res.code, res.stderr)
		assert.Contains(t, res.stderr, "usage")

		assert.Empty(t, containerDirs(t, root))
		assert.Empty(t, globNames(t, filepath.Join(root, "layers", "*")), "a layer in the store")
	})
}

// --root DIR names the data root, before $MINIBOX_ROOT.
func TestStage04DataRootFlag(t *testing.T) {
	forEachStage(t, "04", func(t *testing.T, stage string) {
		other := t.TempDir()
		res := run(t, stage, "run", "--root", other, "--keep", rootfsDir, "--", "true")
		require.Equal(t, 0, res.code, res.stderr)
		m := keptLine.FindStringSubmatch(res.stderr)
		require.NotNil(t, m, res.stderr)
		assert.Equal(t, filepath.Join(other, "containers", m[2]), m[1])
		assert.FileExists(t, filepath.Join(other, "containers", m[2], "kept"))
		assert.Empty(t, containerDirs(t, os.Getenv("MINIBOX_ROOT")), "$MINIBOX_ROOT used despite --root")

		out := filepath.Join(t.TempDir(), "layer.tar")
		res = run(t, stage, "commit", "--root", other, m[2], out)
		assert.Equal(t, 0, res.code, res.stderr)
	})
}

// --- Narration -----------------------------------------------------------------------

// With -v the layer steps are narrated in their order: before the clone
// the parent unpacks the tar (only the first time), makes the container's
// directories, links the layers bottom first, and creates the overlay
// detached; the child moves it onto merged right after making its mounts
// private, before the bind mount of merged onto itself; after the exit the
// parent removes the container's directory.
func TestStage04Narrates(t *testing.T) {
	forEachStage(t, "04", func(t *testing.T, stage string) {
		layer := writeLayerTar(t, false, layerFile{name: "stage04-tarfile", body: "x\n"})
		store := filepath.Join(os.Getenv("MINIBOX_ROOT"), "layers", fileSHA256(t, layer))
		// From stage 05 on the default network adds a layer of its own, on
		// top (TestStage05Narrates): without it, the layers are the ones
		// given.
		args := []string{"run", "-v", "--layer", layer, rootfsDir, "--", "echo", "narrated"}
		if atLeast(stage, "05") {
			args = append([]string{"run", "--net", "none"}, args[1:]...)
		}
		res := run(t, stage, args...)
		require.Equal(t, 0, res.code, res.stderr)
		assert.Equal(t, "narrated\n", res.stdout)
		steps := narration(res.stderr)
		all := strings.Join(steps, "\n")
		clone := unshareStep(t, steps, false)
		merged := narratedRoot(t, stage, steps)
		dir := filepath.Dir(merged)

		parent := steps[:clone]
		mkdir := -1
		for i, s := range parent {
			if strings.HasPrefix(s, "+ mkdir -p "+dir+"/") && mkdir < 0 {
				mkdir = i
			}
		}
		require.GreaterOrEqual(t, mkdir, 0, "no `+ mkdir -p %s/…` before the clone:\n%s", dir, all)
		at := assertInOrder(t, parent,
			"+ tar -xf "+layer+" -C "+store,
			"+ ln -s "+store+" "+dir+"/lower/1",
			"+ mount -t overlay overlay -o lowerdir=1:0,upperdir="+dir+"/upper,workdir="+dir+"/work")
		bottom := assertInOrder(t, parent,
			"+ ln -s "+rootfsDir+" "+dir+"/lower/0",
			"+ mount -t overlay overlay -o lowerdir=1:0,upperdir="+dir+"/upper,workdir="+dir+"/work")
		assert.Less(t, mkdir, min(at[1], bottom[0]), "the directories are made before the links in them:\n%s", all)
		private := indexOf(steps, "+ mount --make-rprivate /")
		require.Greater(t, private, clone, all)
		require.Less(t, private+1, len(steps), all)
		assert.Equal(t, "+ mount --move OVERLAY "+merged, steps[private+1], "the step after the mounts became private:\n%s", all)
		assert.Equal(t, "+ mount --rbind "+merged+" "+merged, steps[private+2], "the step after the move:\n%s", all)
		execAt := indexOf(steps, "+ exec echo narrated")
		require.GreaterOrEqual(t, execAt, 0, all)
		assert.Equal(t, []string{"+ rm -rf " + dir}, withoutNetworkRelease(stage, steps[execAt+1:]), "the steps after the exec:\n%s", all)
	})
}

// --- Helpers for the stages with layers ---------------------------------------------------

// keptLine is the stage's message for --keep: the kept container's upper
// directory, and its ID for commit.
var keptLine = regexp.MustCompile(`kept the container's layer: (\S+)/upper \(\S+ commit ([0-9a-f]{12}) `)

// keptContainer is a container run with --keep.
type keptContainer struct{ id, dir string }

func (k keptContainer) upper() string { return filepath.Join(k.dir, "upper") }

// keptFrom reads the kept container from a --keep run's stderr, checks its
// directory is $MINIBOX_ROOT/containers/<id> and marked kept, and removes
// it when the test ends.
func keptFrom(t *testing.T, res result) keptContainer {
	t.Helper()
	m := keptLine.FindStringSubmatch(res.stderr)
	require.NotNil(t, m, "no \"kept the container's layer\" line on stderr:\n%s", res.stderr)
	k := keptContainer{id: m[2], dir: m[1]}
	require.Equal(t, filepath.Join(os.Getenv("MINIBOX_ROOT"), "containers", k.id), k.dir)
	t.Cleanup(func() { os.RemoveAll(k.dir) })
	require.FileExists(t, filepath.Join(k.dir, "kept"))
	return k
}

// containerOfStage returns the ID of the container that the stage with
// PID pid runs: the directory in root/containers whose pid file names it.
func containerOfStage(t *testing.T, root string, pid int) string {
	t.Helper()
	for _, id := range containerDirs(t, root) {
		data, err := os.ReadFile(filepath.Join(root, "containers", id, "pid"))
		if err == nil && strings.TrimSpace(string(data)) == fmt.Sprint(pid) {
			return id
		}
	}
	t.Fatalf("no container directory in %s/containers has the pid file %d", root, pid)
	return ""
}

// narratedRoot is the directory a stage's child makes its root, as its
// narration names it: ROOTFS up to stage 03; from stage 04 on, the
// container's $MINIBOX_ROOT/containers/<id>/merged.
func narratedRoot(t *testing.T, stage string, steps []string) string {
	t.Helper()
	if !atLeast(stage, "04") {
		return rootfsDir
	}
	merged := regexp.MustCompile(regexp.QuoteMeta(os.Getenv("MINIBOX_ROOT")) + `/containers/[0-9a-f]{12}/merged`)
	for _, s := range steps {
		if m := merged.FindString(s); m != "" {
			return m
		}
	}
	t.Fatalf("no step names $MINIBOX_ROOT/containers/<id>/merged:\n%s", strings.Join(steps, "\n"))
	return ""
}

// withoutContainerRemoval returns steps without the removal of the
// container's directory, "+ rm -rf $MINIBOX_ROOT/containers/<id>", which
// stages from 04 on narrate after the exit (TestStage04Narrates checks it),
// nor the release of its network (withoutNetworkRelease).
func withoutContainerRemoval(stage string, steps []string) []string {
	if !atLeast(stage, "04") {
		return steps
	}
	removal := regexp.MustCompile(`^\+ rm -rf ` + regexp.QuoteMeta(os.Getenv("MINIBOX_ROOT")) + `/containers/[0-9a-f]{12}$`)
	var out []string
	for _, s := range withoutNetworkRelease(stage, steps) {
		if !removal.MatchString(s) {
			out = append(out, s)
		}
	}
	return out
}

// networkRelease matches the steps by which stages from 05 on undo a
// container's network after the exit (TestStage05Narrates checks them):
// its rules deleted, its veth deleted (when its namespace has not taken it
// already) and its address released.
var networkRelease = regexp.MustCompile(`^\+ (iptables .* -D .*minibox:[0-9a-f]{12}|ip link del mbx[0-9a-f]{8}|# release \S+)$`)

// withoutNetworkRelease returns steps without the network's release.
func withoutNetworkRelease(stage string, steps []string) []string {
	if !atLeast(stage, "05") {
		return steps
	}
	var out []string
	for _, s := range steps {
		if !networkRelease.MatchString(s) {
			out = append(out, s)
		}
	}
	return out
}

// addToRootfs writes a file into the test rootfs, the bottom layer, in a
// directory it has, and removes it when the test ends. It returns the
// file's host path.
func addToRootfs(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(rootfsDir, name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	t.Cleanup(func() { os.Remove(path) })
	return path
}

// addDirToRootfs makes the directory name in the test rootfs with files,
// removed when the test ends.
func addDirToRootfs(t *testing.T, name string, files map[string]string) {
	t.Helper()
	dir := filepath.Join(rootfsDir, name)
	require.NoError(t, os.Mkdir(dir, 0o755))
	t.Cleanup(func() { os.RemoveAll(dir) })
	for f, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), []byte(content), 0o644))
	}
}

// makeLayerDir makes a directory layer with files (name → content).
func makeLayerDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	for f, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), []byte(content), 0o644))
	}
	return dir
}

// A layerFile is one entry of a layer tar: a directory if its name ends
// in "/", else a regular file (whiteouts are empty .wh. files).
type layerFile struct{ name, body string }

// writeLayerTar writes a layer tar (gzip-compressed if gz) into a
// temporary directory and returns its path.
func writeLayerTar(t *testing.T, gz bool, files ...layerFile) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "layer.tar")
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	var w io.Writer = f
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(f)
		w = zw
	}
	tw := tar.NewWriter(w)
	mtime := time.Unix(1700000000, 0)
	for _, lf := range files {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: lf.name, Mode: 0o644, Size: int64(len(lf.body)), ModTime: mtime}
		if strings.HasSuffix(lf.name, "/") {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		}
		require.NoError(t, tw.WriteHeader(hdr))
		_, err := tw.Write([]byte(lf.body))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	if zw != nil {
		require.NoError(t, zw.Close())
	}
	require.NoError(t, f.Close())
	return path
}

// fileSHA256 is `sha256sum FILE`: a tar layer's name in the store.
func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, data, 0o644))
}

// inodeAndMtime identifies the files at dir and dir/name as made: their
// inode numbers and modification times.
func inodeAndMtime(t *testing.T, dir, name string) string {
	t.Helper()
	var out string
	for _, p := range []string{dir, filepath.Join(dir, name)} {
		var st unix.Stat_t
		require.NoError(t, unix.Lstat(p, &st))
		out += fmt.Sprintf("%s: inode %d, mtime %d.%09d\n", p, st.Ino, st.Mtim.Sec, st.Mtim.Nsec)
	}
	return out
}

// treeOf lists the paths in dir, relative to it, sorted.
func treeOf(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, rel)
		}
		return nil
	})
	require.NoError(t, err)
	sort.Strings(out)
	return out
}

// diskUsage is `du -s --bytes`-like, in allocated bytes: the blocks of
// every file and directory in dir.
func diskUsage(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		total += st.Blocks * 512
		return nil
	})
	require.NoError(t, err)
	return total
}

func globNames(t *testing.T, pattern string) []string {
	t.Helper()
	matches, err := filepath.Glob(pattern)
	require.NoError(t, err)
	return matches
}

func assertFileHolds(t *testing.T, path, want, msg string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if assert.NoError(t, err, msg) {
		assert.Equal(t, want, string(data), "%s: %s", path, msg)
	}
}

// assertWhiteoutAt checks that path is overlay's whiteout: a character
// device 0/0.
func assertWhiteoutAt(t *testing.T, path string) {
	t.Helper()
	var st unix.Stat_t
	if assert.NoError(t, unix.Lstat(path, &st), "no whiteout") {
		assert.Equal(t, uint32(unix.S_IFCHR), st.Mode&unix.S_IFMT, "%s is not a character device", path)
		assert.Zero(t, st.Rdev, "%s is not the device 0/0", path)
	}
}

// opaqueXattr is the value of dir's trusted.overlay.opaque ("" if none).
func opaqueXattr(t *testing.T, dir string) string {
	t.Helper()
	buf := make([]byte, 16)
	n, err := unix.Lgetxattr(dir, "trusted.overlay.opaque", buf)
	if errors.Is(err, unix.ENODATA) {
		return ""
	}
	require.NoError(t, err, dir)
	return string(buf[:n])
}
