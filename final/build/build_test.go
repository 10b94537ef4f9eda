package build_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/final/build"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// tarGz is a tar.gz archive of name → content.
func tarGz(t *testing.T, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, content := range files {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o640, Size: int64(len(content)), Typeflag: tar.TypeReg, Uid: 7, Gid: 8}))
		_, err := tw.Write([]byte(content))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	return buf.String()
}

// everyInstruction uses every instruction minibox builds.
const everyInstruction = `# a comment
ARG BASE=none
FROM ${BASE} AS only
ARG GREETING=hi
ARG FROM_CLI
ENV APP=/app \
    MSG="$GREETING there"
LABEL org.example.name="demo app" version=1
WORKDIR $APP
WORKDIR sub
COPY a.txt b.txt ./
COPY --chown=1234:5678 *.md $APP/docs/
ADD bundle.tar.gz /opt/
ADD plain.txt /opt/plain.txt
RUN echo "run:$MSG:$FROM_CLI:$(pwd)" && echo built > /app/built
RUN ["/bin/sh", "-c", "echo exec-form > /app/exec"]
RUN <<EOT
echo heredoc-line-1 > /app/heredoc
echo heredoc-line-2 >> /app/heredoc
EOT
RUN rm /opt/plain.txt
SHELL ["/bin/sh", "-ec"]
USER 4321:4322
RUN id -u > /tmp/uid; id -g >> /tmp/uid
EXPOSE 8080 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGQUIT
WORKDIR /final/dir
ENTRYPOINT ["/bin/echo"]
CMD echo "$MSG"
MAINTAINER someone
`

// TestEveryInstruction builds one Dockerfile with every instruction and
// checks what each one did to the image.
func TestEveryInstruction(t *testing.T) {
	b := newBuilder(t)
	dir := writeContext(t, map[string]string{
		"Dockerfile":    everyInstruction,
		"a.txt":         "A",
		"b.txt":         "B",
		"one.md":        "doc one",
		"two.md":        "doc two",
		"plain.txt":     "just a file",
		"bundle.tar.gz": tarGz(t, map[string]string{"bundle/inside.txt": "from the archive"}),
	})
	img, out := mustBuild(t, b, dir, build.Options{Tags: []string{"demo:1"}, BuildArgs: map[string]string{"BASE": base, "FROM_CLI": "cli"}})

	// Output: docker's classic lines, RUN's output streamed.
	assert.Contains(t, out, "Step 1/25 : FROM ${BASE} AS only\n")
	assert.Contains(t, out, "run:hi there:cli:/app/sub\n")
	assert.Contains(t, out, "Successfully built "+img.ID+"\n")
	assert.Contains(t, out, "Successfully tagged demo:1\n")
	assert.Equal(t, 25, count(out, "Step "), out)
	assert.Equal(t, "docker.io/library/demo:1", img.Name)

	// The config.
	c := img.Config.Config
	assert.Contains(t, c.Env, "APP=/app")
	assert.Contains(t, c.Env, "MSG=hi there")
	assert.Equal(t, map[string]string{"org.example.name": "demo app", "version": "1"}, c.Labels)
	assert.Equal(t, "/final/dir", c.WorkingDir)
	assert.Equal(t, "4321:4322", c.User)
	assert.Contains(t, c.ExposedPorts, "8080/tcp")
	assert.Contains(t, c.ExposedPorts, "53/udp")
	assert.Contains(t, c.Volumes, "/data")
	assert.Equal(t, "SIGQUIT", c.StopSignal)
	assert.Equal(t, []string{"/bin/echo"}, c.Entrypoint)
	assert.Equal(t, []string{"/bin/sh", "-ec", `echo "$MSG"`}, c.Cmd, "CMD's shell form uses SHELL")
	assert.Equal(t, "someone", img.Config.Author)

	// Layers: the base, WORKDIR ×3 (each makes its directory), COPY ×2,
	// ADD ×2, RUN ×5; the rest only history.
	require.Len(t, img.Manifest.Layers, 13)
	empty := 0
	for _, h := range img.Config.History {
		if h.EmptyLayer {
			empty++
		}
	}
	assert.Equal(t, 12, empty, "metadata instructions are empty_layer history entries")

	// The files.
	for path, want := range map[string]string{
		"app/sub/a.txt":         "A",
		"app/sub/b.txt":         "B",
		"app/docs/one.md":       "doc one",
		"opt/bundle/inside.txt": "from the archive",
		"app/built":             "built\n",
		"app/exec":              "exec-form\n",
		"app/heredoc":           "heredoc-line-1\nheredoc-line-2\n",
		"tmp/uid":               "4321\n4322\n",
	} {
		got, _, ok := file(t, b, img, path)
		if assert.True(t, ok, path) {
			assert.Equal(t, want, got, path)
		}
	}
	_, info, _ := file(t, b, img, "app/docs/two.md")
	require.NotNil(t, info)
	st := info.Sys().(*syscall.Stat_t)
	assert.Equal(t, [2]uint32{1234, 5678}, [2]uint32{st.Uid, st.Gid}, "COPY --chown")
	_, info, _ = file(t, b, img, "opt/bundle/inside.txt")
	require.NotNil(t, info)
	st = info.Sys().(*syscall.Stat_t)
	assert.Equal(t, [2]uint32{7, 8}, [2]uint32{st.Uid, st.Gid}, "ADD keeps the archive's owners")
	_, _, ok := file(t, b, img, "opt/plain.txt")
	assert.False(t, ok, "RUN rm: a whiteout hides the file")
	assert.Contains(t, layerNames(t, b, img, 10), "opt/.wh.plain.txt")
	_, info, ok = file(t, b, img, "final/dir")
	require.True(t, ok, "WORKDIR makes its directory")
	st = info.Sys().(*syscall.Stat_t)
	assert.True(t, info.IsDir() && st.Uid == 4321 && st.Gid == 4322, "owned by USER")
	for i := 1; i < 13; i++ {
		for _, name := range layerNames(t, b, img, i) {
			assert.NotRegexp(t, `^(proc|sys|dev)/?$`, name, "layer %d holds a mount point the runtime made", i)
		}
	}
}

// TestMultiStage: COPY --from an earlier stage and an image, --target,
// --build-arg reaching a stage's ARG.
func TestMultiStage(t *testing.T) {
	b := newBuilder(t)
	dir := writeContext(t, map[string]string{"Dockerfile": `FROM ` + base + ` AS builder
ARG VERSION=0
RUN mkdir /out && echo "version $VERSION" > /out/app && echo scratch-file > /out/other

FROM scratch AS final
COPY --from=builder /out/app /app
COPY --from=` + base + ` /bin/busybox /bin/busybox
CMD ["/bin/busybox", "cat", "/app"]

FROM final
LABEL last=1
`})
	img, out := mustBuild(t, b, dir, build.Options{Tags: []string{"multi:final"}, Target: "final", BuildArgs: map[string]string{"VERSION": "42"}})
	assert.Equal(t, 7, count(out, "Step "), "--target final builds the first two stages: %s", out)
	assert.NotContains(t, out, "last=1")
	require.Len(t, img.Manifest.Layers, 2, "scratch + two COPY layers")
	got, _, ok := file(t, b, img, "app")
	require.True(t, ok)
	assert.Equal(t, "version 42\n", got)
	_, _, ok = file(t, b, img, "out/other")
	assert.False(t, ok, "only what COPY --from names comes over")
	_, info, ok := file(t, b, img, "bin/busybox")
	require.True(t, ok)
	assert.True(t, info.Mode().IsRegular() && info.Mode().Perm()&0o111 != 0, "COPY --from=image copies the file, executable")

	builder, out := mustBuild(t, b, dir, build.Options{Tags: []string{"multi:builder"}, Target: "builder"})
	assert.Equal(t, 3, count(out, "Step "), out)
	got, _, _ = file(t, b, builder, "out/app")
	assert.Equal(t, "version 0\n", got, "the ARG's default without --build-arg")

	_, _, err := run(t, b, dir, build.Options{Target: "nope"})
	assert.ErrorContains(t, err, `target stage "nope" could not be found`)
}

// TestDockerignore: docker's pattern rules decide what COPY sees.
func TestDockerignore(t *testing.T) {
	b := newBuilder(t)
	dir := writeContext(t, map[string]string{
		"Dockerfile":      "FROM " + base + "\nCOPY . /ctx/\n",
		".dockerignore":   "# comment\n*.log\n!keep.log\nsecret/\n**/tmp*\nDockerfile\n",
		"a.txt":           "a",
		"x.log":           "log",
		"keep.log":        "kept",
		"secret/key":      "k",
		"deep/er/tmpfile": "t",
		"deep/er/visible": "v",
		"sub/x.log":       "not top-level: kept",
	})
	img, _ := mustBuild(t, b, dir, build.Options{})
	for path, want := range map[string]bool{
		"ctx/a.txt": true, "ctx/x.log": false, "ctx/keep.log": true, "ctx/secret/key": false, "ctx/secret": false,
		"ctx/deep/er/tmpfile": false, "ctx/deep/er/visible": true, "ctx/sub/x.log": true,
		"ctx/Dockerfile": false, "ctx/.dockerignore": true,
	} {
		_, _, ok := file(t, b, img, path)
		assert.Equal(t, want, ok, path)
	}
	// An ignored file is not in the context for COPY either.
	dir2 := writeContext(t, map[string]string{"Dockerfile": "FROM " + base + "\nCOPY x.log /\n", ".dockerignore": "*.log\n", "x.log": "l"})
	_, _, err := run(t, b, dir2, build.Options{})
	assert.EqualError(t, err, "Dockerfile:2: COPY x.log: no such file in the build context")
}

// TestCache: an unchanged rebuild takes every step from the cache and
// gives the same image; a changed file invalidates its step and those
// after it; --no-cache does every step.
func TestCache(t *testing.T) {
	b := newBuilder(t)
	files := map[string]string{
		"Dockerfile": "FROM " + base + "\nENV A=1\nRUN echo one > /one\nCOPY f.txt /f.txt\nRUN cat /f.txt > /g\nCMD [\"cat\", \"/g\"]\n",
		"f.txt":      "v1",
	}
	dir := writeContext(t, files)
	first, out := mustBuild(t, b, dir, build.Options{Tags: []string{"cache:1"}})
	assert.Equal(t, 0, count(out, "Using cache"))
	again, out := mustBuild(t, b, dir, build.Options{Tags: []string{"cache:1"}})
	assert.Equal(t, 5, count(out, " ---> Using cache\n"), out)
	assert.NotContains(t, out, "Running in")
	assert.Equal(t, first.FullID(), again.FullID(), "an unchanged rebuild is the same image")

	// rmi of the image leaves the cache working, as in docker: the
	// cached steps' blobs are not freed.
	require.NoError(t, b.Images.Remove("cache:1", false, nil))
	_, out = mustBuild(t, b, dir, build.Options{Tags: []string{"cache:1"}})
	assert.Equal(t, 5, count(out, " ---> Using cache\n"), "after rmi: %s", out)

	// The same bytes under a new time are no change; new bytes are.
	require.NoError(t, os.Chtimes(filepath.Join(dir, "f.txt"), first.Created(), first.Created()))
	_, out = mustBuild(t, b, dir, build.Options{})
	assert.Equal(t, 5, count(out, "Using cache"), "a touched file is no change: %s", out)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "f.txt"), []byte("v2"), 0o644))
	changed, out := mustBuild(t, b, dir, build.Options{})
	steps := regexp.MustCompile(`Step (\d)/6 : [^\n]*\n( ---> Using cache\n)?`).FindAllStringSubmatch(out, -1)
	require.Len(t, steps, 6, out)
	for i, s := range steps[1:] { // steps 2…6
		assert.Equal(t, i+2 < 4, s[2] != "", "step %d cached: %s", i+2, out)
	}
	got, _, _ := file(t, b, changed, "g")
	assert.Equal(t, "v2", got)

	// A mode change is a change too.
	require.NoError(t, os.Chmod(filepath.Join(dir, "f.txt"), 0o600))
	_, out = mustBuild(t, b, dir, build.Options{})
	assert.Equal(t, 2, count(out, "Using cache"), out)

	_, out = mustBuild(t, b, dir, build.Options{NoCache: true})
	assert.Equal(t, 0, count(out, "Using cache"), out)
	assert.Equal(t, 2, count(out, "Running in"), out)

	// A build argument a RUN sees is part of its key.
	dir3 := writeContext(t, map[string]string{"Dockerfile": "FROM " + base + "\nARG V\nRUN echo $V > /v\n"})
	mustBuild(t, b, dir3, build.Options{BuildArgs: map[string]string{"V": "1"}})
	_, out = mustBuild(t, b, dir3, build.Options{BuildArgs: map[string]string{"V": "2"}})
	assert.Equal(t, 0, count(out, "Using cache"), out)
}

// TestErrors: Dockerfile errors name the line; nothing is tagged.
func TestErrors(t *testing.T) {
	b := newBuilder(t)
	for name, c := range map[string]struct{ dockerfile, want string }{
		"unknown":     {"FROM " + base + "\n\nCOPPY a b\n", "Dockerfile:3: unknown instruction: COPPY"},
		"missing":     {"FROM " + base + "\nENV A=1\n\nCOPY missing.txt /\n", "Dockerfile:4: COPY missing.txt: no such file in the build context"},
		"url":         {"FROM " + base + "\nADD https://example.com/x.tar.gz /x\n", "Dockerfile:2: ADD https://example.com/x.tar.gz: remote sources are not supported (minibox builds offline); download the file into the context and ADD it"},
		"healthcheck": {"FROM " + base + "\nHEALTHCHECK CMD true\n", "Dockerfile:2: HEALTHCHECK is not supported"},
		"no from":     {"RUN true\n", "Dockerfile:1:"},
		"two sources": {"FROM " + base + "\nCOPY Dockerfile Dockerfile /x\n", "Dockerfile:2: When using COPY with more than one source file, the destination must be a directory and end with a /"},
		"mount":       {"FROM " + base + "\nRUN --mount=type=cache,target=/x true\n", "Dockerfile:2: RUN --mount is not supported"},
		"continued":   {"FROM " + base + "\nRUN echo a \\\n  && echo b \\\n  && exit 7\n", "Dockerfile:2: the command '/bin/sh -c echo a   && echo b   && exit 7' returned a non-zero code: 7"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := writeContext(t, map[string]string{"Dockerfile": c.dockerfile})
			_, out, err := run(t, b, dir, build.Options{Tags: []string{"broken:1"}})
			require.Error(t, err, out)
			assert.True(t, strings.HasPrefix(err.Error(), c.want), "got %q, want %q…", err, c.want)
			_, err = b.Images.Lookup("broken:1")
			assert.Error(t, err, "a failed build tags nothing")
		})
	}
}

// TestRunFailureLeavesNothing: a failing RUN says its exit code; no image
// is named, and no overlay, container state or cgroup is left
// (assertClean and CheckLeaks at the end).
func TestRunFailureLeavesNothing(t *testing.T) {
	b := newBuilder(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + base + "\nRUN echo before && touch /made\nRUN echo failing; exit 3\n"})
	before, err := os.ReadDir(filepath.Join(b.Root, "layers"))
	require.NoError(t, err)
	_, out, err := run(t, b, dir, build.Options{Tags: []string{"fails:1"}})
	require.EqualError(t, err, "Dockerfile:3: the command '/bin/sh -c echo failing; exit 3' returned a non-zero code: 3")
	assert.Contains(t, out, "failing\n")
	_, err = b.Images.Lookup("fails:1")
	assert.Error(t, err)
	after, err := os.ReadDir(filepath.Join(b.Root, "layers"))
	require.NoError(t, err)
	assert.Len(t, after, len(before)+1, "only the first RUN's layer was stored")
	ingest, err := os.ReadDir(filepath.Join(b.Images.Dir(), "ingest"))
	require.NoError(t, err)
	assert.Empty(t, ingest)
}

// TestOCIToolsReadTheImage: skopeo and umoci read what the build wrote.
func TestOCIToolsReadTheImage(t *testing.T) {
	for _, tool := range []string{"skopeo", "umoci"} {
		_, err := exec.LookPath(tool)
		testenv.Require(t, err == nil, "the interop test needs "+tool+" (Debian packages skopeo, umoci)")
	}
	b := newBuilder(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + base + "\nRUN echo made-by-run > /made && rm /bin/ls\nLABEL tool=check\n"})
	mustBuild(t, b, dir, build.Options{Tags: []string{"interop:oci-tools"}})
	ref := "oci:" + b.Images.Dir() + ":oci-tools"
	out, err := exec.Command("skopeo", "inspect", ref).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), `"tool": "check"`)
	out, err = exec.Command("umoci", "stat", "--image", b.Images.Dir()+":oci-tools").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "echo made-by-run")
	bundle := filepath.Join(t.TempDir(), "bundle")
	out, err = exec.Command("umoci", "unpack", "--image", b.Images.Dir()+":oci-tools", bundle).CombinedOutput()
	require.NoError(t, err, "%s", out)
	made, err := os.ReadFile(filepath.Join(bundle, "rootfs", "made"))
	require.NoError(t, err)
	assert.Equal(t, "made-by-run\n", string(made))
	_, err = os.Lstat(filepath.Join(bundle, "rootfs", "bin", "ls"))
	assert.True(t, os.IsNotExist(err), "umoci applied the whiteout")
}

// TestRunOnScratch: RUN on an image without /proc, /dev and /sys: the
// mount points the runtime makes stay out of the layer, as docker's do.
func TestRunOnScratch(t *testing.T) {
	b := newBuilder(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY --from=" + base + " /bin/busybox /bin/busybox\n" +
		`RUN ["/bin/busybox", "sh", "-c", "/bin/busybox echo ran > /ran"]` + "\n"})
	img, _ := mustBuild(t, b, dir, build.Options{})
	require.Len(t, img.Manifest.Layers, 2)
	assert.Equal(t, []string{"ran"}, layerNames(t, b, img, 1))
}

// killedEnv hands TestKilledBuildHelper its data root and context.
const killedEnv = "MINIBOX_BUILD_TEST_KILLED"

// TestKilledBuildThenRetry: a build killed (SIGKILL) in the middle of a
// RUN leaves its overlay mounted and its container's state behind, and
// no image; the next build undoes all that, takes the steps the killed
// one finished from the cache, and completes (assertClean, CheckLeaks).
func TestKilledBuildThenRetry(t *testing.T) {
	b := newBuilder(t)
	// Many processes in the RUN container: after the kill, its PID 1 dies
	// only once the kernel has killed them all, so the retry finds it
	// still dying.
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + base + "\nRUN echo first > /first\nRUN for i in $(seq 200); do sleep 100 & done; echo started; wait\n"})
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledBuildHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), killedEnv+"="+b.Root+"\n"+dir)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && lines.Text() != "started" {
	}
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	left, err := os.ReadDir(filepath.Join(b.Root, "build", "tmp"))
	require.NoError(t, err)
	require.NotEmpty(t, left, "the killed build left its overlay (nothing for the retry to undo otherwise)")
	_, err = b.Images.Lookup("killed:1")
	require.Error(t, err, "a killed build names no image")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+base+"\nRUN echo first > /first\nRUN echo started\n"), 0o644))
	img, out := mustBuild(t, b, dir, build.Options{Tags: []string{"killed:1"}})
	assert.Equal(t, 1, count(out, "Using cache"), "the first RUN, done before the kill: %s", out)
	got, _, _ := file(t, b, img, "first")
	assert.Equal(t, "first\n", got)
}

// TestKilledBuildHelper is the build TestKilledBuildThenRetry kills; it
// does nothing in a normal run.
func TestKilledBuildHelper(t *testing.T) {
	root, dir, ok := strings.Cut(os.Getenv(killedEnv), "\n")
	if !ok {
		return
	}
	b, err := build.New(root)
	require.NoError(t, err)
	_, err = b.Build(context.Background(), build.Options{ContextDir: dir, Tags: []string{"killed:1"}, Out: os.Stdout})
	require.NoError(t, err)
}
