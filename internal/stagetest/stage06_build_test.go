package stagetest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Stage 06's build: a Dockerfile read by the stage's own reader, each step
// a new image (COPY, ADD and RUN a layer), and a cache that a rebuild
// hits. Every test starts from a base image built FROM scratch with the
// test rootfs ADDed as a tar: no registry needed, and scratch and ADD of a
// plain tar are tested on the way.

// buildStage is stage 06 with a data root of the test's own and a base
// image "base:1" in it; no container directory may be left at the end.
func buildStage(t *testing.T) (stage, root string) {
	t.Helper()
	root = useTempDataRoot(t)
	stage = needStage(t, "06")
	checkNoContainerDirsAtEnd(t)
	ctx := buildContext(t, map[string]string{"Dockerfile": "FROM scratch\nADD rootfs.tar /\n"})
	out, err := exec.Command("tar", "-C", rootfsDir, "-cf", filepath.Join(ctx, "rootfs.tar"), ".").CombinedOutput()
	require.NoError(t, err, "tar the test rootfs: %s", out)
	res := buildOK(t, stage, "-t", "base:1", ctx)
	assert.Contains(t, res.stdout, "Step 1/2 : FROM scratch")
	return stage, root
}

// buildContext makes a build context with files (name → content; a name
// may have directories).
func buildContext(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	}
	return dir
}

func buildOK(t *testing.T, stage string, args ...string) result {
	t.Helper()
	res := run(t, stage, append([]string{"build"}, args...)...)
	require.Equal(t, 0, res.code, "build %v\nstdout: %s\nstderr: %s", args, res.stdout, res.stderr)
	require.Regexp(t, `Successfully built [0-9a-f]{12}\nSuccessfully tagged `, res.stdout)
	return res
}

// buildFails builds and wants a clean failure: status 1, no panic, and
// nothing left behind: no container directory, no blob being written.
func buildFails(t *testing.T, stage, root string, args ...string) result {
	t.Helper()
	res := run(t, stage, append([]string{"build"}, args...)...)
	require.Equal(t, 1, res.code, "build %v should fail\nstdout: %s\nstderr: %s", args, res.stdout, res.stderr)
	assert.NotContains(t, res.stderr, "goroutine ", "a panic is not an error message")
	assert.NotContains(t, res.stdout, "Successfully")
	assert.Empty(t, containerDirs(t, root), "a failed build leaves no container")
	ingest, _ := filepath.Glob(filepath.Join(root, "images", "ingest", "*"))
	assert.Empty(t, ingest, "a failed build leaves no half blob")
	return res
}

// runImage runs IMAGE [CMD...] with --net none and returns its stdout.
func runImage(t *testing.T, stage string, args ...string) string {
	t.Helper()
	res := run(t, stage, append([]string{"run", "--net", "none"}, args...)...)
	require.Equal(t, 0, res.code, "run %v\nstdout: %s\nstderr: %s", args, res.stdout, res.stderr)
	return res.stdout
}

// storedImage is what the store's blobs say of image name: its manifest's
// layers and its config.
type storedImage struct {
	Layers []struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
	} `json:"layers"`
	Config struct {
		Config struct {
			Env          []string
			Cmd          []string
			Entrypoint   []string
			WorkingDir   string
			User         string
			Labels       map[string]string
			ExposedPorts map[string]struct{}
		} `json:"config"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
		History []struct {
			CreatedBy  string `json:"created_by"`
			EmptyLayer bool   `json:"empty_layer"`
		} `json:"history"`
	}
}

func readStoredImage(t *testing.T, root, name string) storedImage {
	t.Helper()
	blob := func(digest string, v any) {
		data, err := os.ReadFile(filepath.Join(root, "images", "blobs", "sha256", strings.TrimPrefix(digest, "sha256:")))
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(data, v))
	}
	var index struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	data, err := os.ReadFile(filepath.Join(root, "images", "index.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &index))
	for _, m := range index.Manifests {
		if m.Annotations["io.containerd.image.name"] == name {
			var img storedImage
			var manifest struct {
				Config struct{ Digest string } `json:"config"`
			}
			blob(m.Digest, &img)
			blob(m.Digest, &manifest)
			blob(manifest.Config.Digest, &img.Config)
			return img
		}
	}
	t.Fatalf("no image %s in %s/images/index.json:\n%s", name, root, data)
	return storedImage{}
}

// steps splits build's output into its steps, "Step 2/6 : …" to the next.
func steps(t *testing.T, stdout string) []string {
	t.Helper()
	parts := regexp.MustCompile(`(?m)^Step `).Split(stdout, -1)
	require.Greater(t, len(parts), 1, "no steps in:\n%s", stdout)
	return parts[1:]
}

func builtID(t *testing.T, stdout string) string {
	t.Helper()
	m := regexp.MustCompile(`Successfully built ([0-9a-f]{12})`).FindStringSubmatch(stdout)
	require.NotNil(t, m, stdout)
	return m[1]
}

func TestStage06BuildEveryInstruction(t *testing.T) {
	stage, root := buildStage(t)
	ctx := buildContext(t, map[string]string{
		"Dockerfile": `# escape=\
FROM base:1
# a comment, then a continued line
ENV GREETING="hello world" \
    DIR=/srv
WORKDIR $DIR
ADD files.tar.gz ${DIR}/
ADD plain.gz.txt /srv/
COPY dir ./copied
COPY one.txt /tmp
RUN echo made > /made.txt && rm /bin/ls && echo run-output
RUN ["/bin/sh", "-c", "cat /made.txt > /made2.txt"]
label version="1.0" maintainer=me
EXPOSE 80 53/udp
USER 1000:1000
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo $GREETING; pwd; id -u"]
`,
		"plain.gz.txt":  "not an archive\n",
		"dir/a.txt":     "a\n",
		"dir/sub/b.txt": "b\n",
		"one.txt":       "one\n",
	})
	require.NoError(t, os.Symlink("a.txt", filepath.Join(ctx, "dir", "link")))
	require.NoError(t, os.Chown(filepath.Join(ctx, "dir", "a.txt"), 1234, 1234))
	copyFile(t, writeLayerTar(t, true, layerFile{"x/", ""}, layerFile{"x/f", "inside\n"}), filepath.Join(ctx, "files.tar.gz"))

	res := buildOK(t, stage, "-t", "every:1", ctx)
	all := steps(t, res.stdout)
	require.Len(t, all, 14, res.stdout)
	assert.True(t, strings.HasPrefix(all[7], "8/14 : RUN echo made > /made.txt"), all[7])
	assert.Contains(t, all[7], "run-output\n", "RUN's output is streamed")

	// The config, by running the image (ENTRYPOINT + CMD, ENV, WORKDIR, USER)…
	assert.Equal(t, "hello world\n/srv\n1000\n", runImage(t, stage, "every:1"))
	// … and in the store.
	img := readStoredImage(t, root, "docker.io/library/every:1")
	cfg := img.Config.Config
	assert.Contains(t, cfg.Env, "GREETING=hello world")
	assert.Contains(t, cfg.Env, "DIR=/srv")
	assert.Equal(t, "/srv", cfg.WorkingDir)
	assert.Equal(t, "1000:1000", cfg.User)
	assert.Equal(t, map[string]string{"version": "1.0", "maintainer": "me"}, cfg.Labels)
	assert.Equal(t, map[string]struct{}{"80/tcp": {}, "53/udp": {}}, cfg.ExposedPorts)
	assert.Equal(t, []string{"/bin/sh", "-c"}, cfg.Entrypoint)
	assert.Equal(t, []string{"echo $GREETING; pwd; id -u"}, cfg.Cmd)
	// base's ADD, then 4 ADD/COPY and 2 RUN layers; a diff_id per layer.
	require.Len(t, img.Layers, 7)
	require.Len(t, img.Config.RootFS.DiffIDs, 7)
	for i, l := range img.Layers {
		assert.Equal(t, "application/vnd.oci.image.layer.v1.tar", l.MediaType)
		assert.Equal(t, l.Digest, img.Config.RootFS.DiffIDs[i], "uncompressed: diff_id is the blob's digest")
	}
	require.Len(t, img.Config.History, 14, "a history entry per step after FROM, base's included")
	empty := 0
	for _, h := range img.Config.History {
		if h.EmptyLayer {
			empty++
		}
	}
	assert.Equal(t, 14-7, empty, "config-only steps are empty_layer")
	assert.Equal(t, "/bin/sh -c echo made > /made.txt && rm /bin/ls && echo run-output", img.Config.History[7].CreatedBy)
	assert.Contains(t, img.Config.History[len(img.Config.History)-1].CreatedBy, `#(nop)  CMD ["echo $GREETING; pwd; id -u"]`)

	// The files: ADD extracted the tar.gz and copied the other file as it is;
	// COPY of a directory copied its contents, owned by root, symlinks as
	// symlinks; COPY of a file to /tmp, a directory, put it in there and
	// left /tmp's mode; RUN's file is seen by the next RUN and by the image;
	// RUN's rm is a whiteout over base's /bin/ls.
	out := runImage(t, stage, "-u", "0", "--entrypoint", "/bin/sh", "every:1", "-c",
		`cat /srv/x/f /srv/plain.gz.txt; ls /srv; cat /srv/copied/a.txt /srv/copied/sub/b.txt; readlink /srv/copied/link
stat -c '%u %a' /srv/copied/a.txt /tmp; cat /tmp/one.txt /made.txt /made2.txt; ls /bin/ls || echo ls-gone`)
	assert.Equal(t, "inside\nnot an archive\ncopied\nplain.gz.txt\nx\na\nb\na.txt\n0 644\n0 1777\none\nmade\nmade\nls-gone\n", strings.ReplaceAll(out, "ls: /bin/ls: No such file or directory\n", ""))
	assert.Contains(t, runImage(t, stage, "base:1", "ls", "/bin/ls"), "/bin/ls", "the base image keeps its file")
	assert.Empty(t, containerDirs(t, root), "RUN's containers are removed")

	// ENTRYPOINT drops the base image's CMD, but keeps one set before it in
	// the same Dockerfile (docker's rule).
	buildOK(t, stage, "-t", "ep:1", buildContext(t, map[string]string{"Dockerfile": "FROM every:1\nENTRYPOINT [\"/bin/echo\"]\n"}))
	assert.Equal(t, "\n", runImage(t, stage, "ep:1"))
	buildOK(t, stage, "-t", "ep:2", buildContext(t, map[string]string{"Dockerfile": "FROM every:1\nCMD [\"kept\"]\nENTRYPOINT [\"/bin/echo\"]\n"}))
	assert.Equal(t, "kept\n", runImage(t, stage, "ep:2"))
}

func TestStage06BuildCache(t *testing.T) {
	stage, _ := buildStage(t)
	ctx := buildContext(t, map[string]string{
		"Dockerfile": "FROM base:1\nCOPY a.txt /a.txt\nRUN echo ran-a && cat /a.txt > /b.txt\nCOPY c.txt /c.txt\nRUN echo ran-c\nCMD [\"cat\", \"/b.txt\", \"/c.txt\"]\n",
		"a.txt":      "a1\n",
		"c.txt":      "c1\n",
	})
	first := buildOK(t, stage, "-t", "cached:1", ctx)
	assert.NotContains(t, first.stdout, "Using cache")
	assert.Contains(t, first.stdout, "\nran-a\n")
	cached := func(stdout string) []bool {
		var hits []bool
		for _, s := range steps(t, stdout)[1:] { // FROM is no cache step
			hits = append(hits, strings.Contains(s, " ---> Using cache\n"))
		}
		return hits
	}

	// Unchanged (a touched file is unchanged): every step from the cache,
	// nothing run, the same image.
	later := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(ctx, "a.txt"), later, later))
	again := buildOK(t, stage, "-t", "cached:1", ctx)
	assert.Equal(t, []bool{true, true, true, true, true}, cached(again.stdout), again.stdout)
	assert.NotRegexp(t, `(?m)^ran-`, again.stdout, "no RUN ran")
	assert.Equal(t, builtID(t, first.stdout), builtID(t, again.stdout))

	// c.txt changed: its step and the ones after it run again.
	require.NoError(t, os.WriteFile(filepath.Join(ctx, "c.txt"), []byte("c2\n"), 0o644))
	changed := buildOK(t, stage, "-t", "cached:2", ctx)
	assert.Equal(t, []bool{true, true, false, false, false}, cached(changed.stdout), changed.stdout)
	assert.Contains(t, changed.stdout, "\nran-c\n")
	assert.NotContains(t, changed.stdout, "\nran-a\n")
	assert.NotEqual(t, builtID(t, first.stdout), builtID(t, changed.stdout))
	assert.Equal(t, "a1\nc2\n", runImage(t, stage, "cached:2"))
	assert.Equal(t, "a1\nc1\n", runImage(t, stage, "cached:1"), "the old image is unchanged")

	// a.txt's mode changed: from the first step on.
	require.NoError(t, os.Chmod(filepath.Join(ctx, "a.txt"), 0o600))
	mode := buildOK(t, stage, "-t", "cached:3", ctx)
	assert.Equal(t, []bool{false, false, false, false, false}, cached(mode.stdout), mode.stdout)
}

func TestStage06BuildErrorsNameTheLine(t *testing.T) {
	stage, root := buildStage(t)
	evil := writeLayerTar(t, false, layerFile{"../evil", "x"})
	// Unpacked, an entry named .wh.passwd of any type deletes passwd.
	whSymlink := writeTarHeaders(t, &tar.Header{Typeflag: tar.TypeSymlink, Name: "etc/.wh.passwd", Linkname: "group", Mode: 0o777})
	whLink := writeTarHeaders(t, &tar.Header{Typeflag: tar.TypeReg, Name: "etc/x", Mode: 0o644},
		&tar.Header{Typeflag: tar.TypeLink, Name: "etc/.wh.passwd", Linkname: "etc/x"})
	for _, tc := range []struct {
		name, dockerfile, want string
	}{
		{"unknown instruction", "FROM base:1\nRUN true\n\n# comment\nCOPPY a b\n", `Dockerfile:5: unknown instruction "COPPY"`},
		{"missing file", "FROM base:1\nCOPY nothere.txt /x\n", "Dockerfile:2: nothere.txt: no such file in the build context"},
		{"escaping path", "FROM base:1\nCOPY ../x /x\n", "Dockerfile:2: ../x: outside the build context"},
		{"symlink out", "FROM base:1\nCOPY out /x\n", "Dockerfile:2: out: a symlink out of the build context"},
		{"archive climbing out", "FROM base:1\nADD evil.tar /\n", "Dockerfile:2: ADD evil.tar: entry \"../evil\": the name climbs out"},
		{"failing RUN", "FROM base:1\nENV A=1\nRUN echo before; exit 3\nRUN echo never\n", "Dockerfile:3: RUN exited with status 3"},
		{"missing arguments", "FROM base:1\nCOPY a\n", "Dockerfile:2: COPY needs a source and a destination"},
		{"not FROM first", "\n\nRUN true\n", "Dockerfile:3: the first instruction must be FROM, not RUN"},
		{"empty", "# only a comment\n", "Dockerfile: no instructions"},
		{"multi-stage", "FROM base:1 AS b\n", "Dockerfile:1: FROM base:1 AS b: a named stage (a multi-stage build) is not in stage06"},
		{"whiteout symlink in an archive", "FROM base:1\nADD wh.tar /\n", `Dockerfile:2: ADD wh.tar: entry "etc/.wh.passwd": a whiteout name`},
		{"whiteout hard link in an archive", "FROM base:1\nADD whlink.tar /\n", `Dockerfile:2: ADD whlink.tar: entry "etc/.wh.passwd": a whiteout name`},
		{"whiteout in the context", "FROM base:1\nCOPY .wh.passwd /etc/\n", "Dockerfile:2: /etc/.wh.passwd: a whiteout name"},
		{"no such image", "FROM nosuch:1\n", "Dockerfile:1: FROM nosuch:1: no image nosuch:1"},
		{"bad port", "FROM base:1\nEXPOSE 99999\n", "Dockerfile:2: EXPOSE 99999"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := buildContext(t, map[string]string{"Dockerfile": tc.dockerfile, "a": "a"})
			require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(ctx, "out")))
			copyFile(t, evil, filepath.Join(ctx, "evil.tar"))
			copyFile(t, whSymlink, filepath.Join(ctx, "wh.tar"))
			copyFile(t, whLink, filepath.Join(ctx, "whlink.tar"))
			require.NoError(t, os.WriteFile(filepath.Join(ctx, ".wh.passwd"), nil, 0o644))
			// ../x exists: refused for being outside, not for being missing.
			require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(ctx), "x"), []byte("x"), 0o644))
			res := buildFails(t, stage, root, "-t", "broken:1", ctx)
			assert.Contains(t, res.stderr, "stage06: "+tc.want)
			if tc.name == "failing RUN" {
				assert.Contains(t, res.stdout, "before\n")
				assert.NotContains(t, res.stdout, "Step 4/4")
			}
		})
	}
	// -f names the file as given; nothing failed was tagged.
	ctx := buildContext(t, map[string]string{"other.df": "FROM base:1\nCOPPY a b\n"})
	res := buildFails(t, stage, root, "-t", "broken:1", "-f", filepath.Join(ctx, "other.df"), ctx)
	assert.Contains(t, res.stderr, filepath.Join(ctx, "other.df")+`:2: unknown instruction "COPPY"`)
	index, err := os.ReadFile(filepath.Join(root, "images", "index.json"))
	require.NoError(t, err)
	assert.NotContains(t, string(index), "broken")
}

// An interrupted build (SIGINT while RUN runs) stops, removes the step's
// container and tags nothing.
func TestStage06BuildInterrupted(t *testing.T) {
	stage, root := buildStage(t)
	ctx := buildContext(t, map[string]string{"Dockerfile": "FROM base:1\nRUN echo started; sleep 30\n"})
	argv := inThrowawayNetns(t, stage, []string{stage, "build", "-t", "stopped:1", ctx})
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = stageEnv()
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && lines.Text() != "started" {
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT)) // unshare exec'd: the stage itself
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("build: no exit 20s after SIGINT")
	}
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	assert.Equal(t, 130, exit.ExitCode())
	assert.Empty(t, containerDirs(t, root))
	index, err := os.ReadFile(filepath.Join(root, "images", "index.json"))
	require.NoError(t, err)
	assert.NotContains(t, string(index), "stopped")
}

// writeTarHeaders writes a tar of entries without contents (a symlink, a
// hard link…) into a temporary directory and returns its path.
func writeTarHeaders(t *testing.T, hdrs ...*tar.Header) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, hdr := range hdrs {
		hdr.ModTime = time.Unix(1700000000, 0)
		require.NoError(t, tw.WriteHeader(hdr))
	}
	require.NoError(t, tw.Close())
	path := filepath.Join(t.TempDir(), "headers.tar")
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
	return path
}

// The cache key holds each file's own digest: context 2's one file holds
// what context 1's two files would hash to if names and bytes were simply
// run together, and still its COPY misses the cache and copies its file.
func TestStage06BuildCacheKeyPerFile(t *testing.T) {
	stage, _ := buildStage(t)
	dockerfile := "FROM base:1\nCOPY d /dst/\n"
	one := buildContext(t, map[string]string{"Dockerfile": dockerfile, "d/a": "X", "d/b": "Y"})
	two := buildContext(t, map[string]string{"Dockerfile": dockerfile, "d/a": "X\"dst/b\" 644 0 \"\"\nY"})
	for _, f := range []string{"one/d/a", "one/d/b", "two/d/a"} {
		dir := map[string]string{"one": one, "two": two}[f[:3]]
		require.NoError(t, os.Chmod(filepath.Join(dir, f[4:]), 0o644))
	}
	buildOK(t, stage, "-t", "collide:1", one)
	res := buildOK(t, stage, "-t", "collide:2", two)
	assert.NotContains(t, steps(t, res.stdout)[1], "Using cache", res.stdout)
	assert.Equal(t, "a\nX\"dst/b\" 644 0 \"\"\nY", runImage(t, stage, "collide:2", "sh", "-c", "ls /dst; cat /dst/a"))
	assert.Equal(t, "a\nb\nXY", runImage(t, stage, "collide:1", "sh", "-c", "ls /dst; cat /dst/a /dst/b"))
}

// A context file swapped between the plan (which hashes it for the cache
// key) and the copy into the layer is refused: neither a symlink to a
// root-only file nor other bytes of the same size enter a layer, and no
// blob is left. The test swaps the file as soon as the plan has read it
// (inotify); the copy reaches it only after a 64 MiB file before it.
func TestStage06BuildContextFileSwapped(t *testing.T) {
	stage, root := buildStage(t)
	secret := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secret, []byte("SECRET!!\n"), 0o600)) // as long as z.txt
	for _, tc := range []struct {
		name string
		make func(path string) error // the file swapped in
		why  string                  // the symlink is not even opened: O_NOFOLLOW
	}{
		{"symlink", func(path string) error { return os.Symlink(secret, path) }, "a symlink on the way"},
		{"other bytes", func(path string) error { return os.WriteFile(path, []byte("CHANGED!\n"), 0o644) }, "its bytes are not the ones planned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := buildContext(t, map[string]string{"Dockerfile": "FROM base:1\nCOPY d /d/\n", "d/z.txt": "harmless\n"})
			big, err := os.Create(filepath.Join(ctx, "d", "0big"))
			require.NoError(t, err)
			require.NoError(t, big.Truncate(64<<20)) // sparse, and copied before z.txt
			require.NoError(t, big.Close())
			replacement := filepath.Join(ctx, "new") // not in d: not copied
			require.NoError(t, tc.make(replacement))
			file := filepath.Join(ctx, "d", "z.txt")
			swapped := swapAfterRead(t, file, replacement)

			res := buildFails(t, stage, root, "-t", "swapped:1", ctx)
			select {
			case err := <-swapped:
				require.NoError(t, err, "swap %s", file)
			case <-time.After(5 * time.Second):
				t.Fatalf("the build never read %s\nstderr: %s", file, res.stderr)
			}
			real, err := filepath.EvalSymlinks(ctx)
			require.NoError(t, err)
			assert.Contains(t, res.stderr, "stage06: Dockerfile:2: context file "+filepath.Join(real, "d", "z.txt")+" changed during the build")
			assert.Contains(t, res.stderr, tc.why)
			blobs, err := filepath.Glob(filepath.Join(root, "images", "blobs", "sha256", "*"))
			require.NoError(t, err)
			for _, blob := range blobs {
				data, err := os.ReadFile(blob)
				require.NoError(t, err)
				assert.NotContains(t, string(data), "SECRET!!", blob)
				assert.NotContains(t, string(data), "CHANGED!", blob)
			}
		})
	}
}

// swapAfterRead renames replacement over file as soon as a reader of file
// closes it (inotify's IN_CLOSE_NOWRITE), and sends how that went.
func swapAfterRead(t *testing.T, file, replacement string) <-chan error {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	require.NoError(t, err)
	events := os.NewFile(uintptr(fd), "inotify") // non-blocking: Close ends a Read
	t.Cleanup(func() { events.Close() })
	_, err = syscall.InotifyAddWatch(fd, file, syscall.IN_CLOSE_NOWRITE)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		if _, err := events.Read(make([]byte, 4096)); err != nil {
			done <- err
			return
		}
		done <- os.Rename(replacement, file)
	}()
	return done
}
