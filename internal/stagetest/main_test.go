package stagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/rootfs"
	"github.com/minibox-lab/minibox/internal/stages"
	"github.com/minibox-lab/minibox/internal/testenv"
)

var (
	binDir    string // where stage01, stage02, … are
	rootfsDir string // a demo rootfs built for this test run ("" if none)
	setupErr  error  // why binDir or rootfsDir could not be made
)

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "minibox-stagetest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// With --userns, container root is host uid 100000: it must be able to
	// walk to the rootfs kept in here.
	if err := os.Chmod(tmp, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	setupErr = setup(tmp)
	if err := useDataRoot(tmp); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(tmp)
		os.Exit(1)
	}
	before := testenv.HostNetwork()
	code := m.Run()
	if changed := testenv.DiffLines(before, testenv.HostNetwork()); changed != "" {
		fmt.Fprintf(os.Stderr, "\nFAIL: the tests changed the network of the machine's own namespace "+
			"(a stage from 05 on was run outside a throw-away one?); lines gone (-) and new (+):\n%s\n", changed)
		code = 1
	}
	os.RemoveAll(tmp)
	os.Exit(code)
}

func setup(tmp string) error {
	binDir = os.Getenv("MINIBOX_STAGE_BIN")
	if binDir == "" {
		binDir = filepath.Join(tmp, "bin")
		if err := buildStages(binDir); err != nil {
			// A stage that does not compile is a failure, never a skip:
			// a student's broken edit must not read as "ok".
			fmt.Fprintln(os.Stderr, "stagetest:", err)
			os.RemoveAll(tmp)
			os.Exit(1)
		}
	}
	if os.Geteuid() != 0 {
		return nil
	}
	busybox, err := rootfs.FindStaticBusybox()
	if err != nil {
		return err
	}
	rootfsDir = filepath.Join(tmp, "rootfs")
	return rootfs.Build(rootfsDir, busybox)
}

// dataRoots is where the data roots of this test run go (TestMain's
// temporary directory).
var dataRoots string

// useDataRoot points MINIBOX_ROOT, where the stages from 04 on keep their
// layers and containers, into tmp for the whole run, so that no stage run
// of the tests (the guard's, a benchmark's, a test's) reads or writes
// the host's /var/lib/minibox or the developer's own $MINIBOX_ROOT. Each
// test of a stage from 04 on gets one of its own besides
// (useTempDataRoot). On the host tmp is on the root file system; in the
// cgroup v2 VM it is a tmpfs: either is one that overlayfs takes as upper.
func useDataRoot(tmp string) error {
	dataRoots = tmp
	dir := filepath.Join(tmp, "data")
	// 0755: with --userns, container root must reach the container's merged
	// directory in there.
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	return os.Setenv("MINIBOX_ROOT", dir)
}

// useTempDataRoot gives the test a data root of its own, $MINIBOX_ROOT
// (for the stages it starts), removed when the test ends. Call it before
// needStage, so that the leak check looks in it too.
func useTempDataRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp(dataRoots, "data-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755)) // see useDataRoot
	t.Cleanup(func() { removeDataRoot(t, dir) })
	t.Setenv("MINIBOX_ROOT", dir)
	return dir
}

// removeDataRoot removes a test's data root, or says why it cannot (a
// mount left in it, which the leak check reports too).
func removeDataRoot(t *testing.T, dir string) {
	if err := os.RemoveAll(dir); err != nil {
		t.Errorf("remove the test's data root: %v", err)
	}
}

// checkNoContainerDirsAtEnd fails the test if, when it ends, a container
// directory is left in its data root: a stage from 04 on removes its
// container's directory when the container exits, and a test that keeps
// one (--keep, a killed stage) removes it itself. Call it after needStage:
// it then runs before the leak check, which would remove what it finds.
func checkNoContainerDirsAtEnd(t *testing.T) {
	t.Helper()
	root := os.Getenv("MINIBOX_ROOT")
	t.Cleanup(func() {
		if left := containerDirs(t, root); len(left) > 0 {
			t.Errorf("container directories left in %s/containers: %v", root, left)
		}
	})
}

// containerDirs lists the entries of root/containers.
func containerDirs(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "containers"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// buildStages compiles every stage folder of the working tree into dir.
func buildStages(dir string) error {
	src, err := filepath.Abs("../..")
	if err != nil {
		return err
	}
	list, err := stages.List(src)
	if err != nil {
		return err
	}
	return stages.Build(context.Background(), src, dir, list, nil)
}

// A builtStage is one stage program of this test run.
type builtStage struct {
	nn   string // its number, "02"
	path string // binDir/stage02
}

// stagesFrom returns every stage program numbered nn or higher, in order:
// whatever binDir holds, which is every stage folder of the tree (or every
// program the VM harness put in MINIBOX_STAGE_BIN). So a stage added later
// inherits every test of the stages before it just by existing.
func stagesFrom(t testing.TB, nn string) []builtStage {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(binDir, "stage[0-9][0-9]"))
	if err != nil {
		t.Fatalf("list the stage programs in %s: %v", binDir, err)
	}
	sort.Strings(paths)
	var out []builtStage
	for _, p := range paths {
		// Two digits each: comparing the strings compares the numbers.
		if n := strings.TrimPrefix(filepath.Base(p), "stage"); n >= nn {
			out = append(out, builtStage{nn: n, path: p})
		}
	}
	if len(out) == 0 {
		// A property with no stage to check would pass by testing nothing.
		t.Fatalf("no stage program numbered %s or higher in %s", nn, binDir)
	}
	return out
}

// forEachStage runs test on every stage from nn on, each as a subtest named
// after the stage ("stage02", "stage03", …: `-run '/stage03'` checks every
// property on stage 03), with the checks of needNamespaceStage (whose leak
// check also removes any shared cgroup parent the run made). From stage 04 on, each
// subtest has a data root of its own, and no container directory may be
// left in it at the end.
func forEachStage(t *testing.T, nn string, test func(t *testing.T, stage string)) {
	t.Helper()
	for _, s := range stagesFrom(t, nn) {
		t.Run("stage"+s.nn, func(t *testing.T) {
			layered := s.nn >= "04"
			if layered {
				useTempDataRoot(t)
			}
			stage := needNamespaceStage(t, s.nn)
			if layered {
				checkNoContainerDirsAtEnd(t)
			}
			test(t, stage)
		})
	}
}

// needStage returns the path of stageNN, after checking root, the rootfs,
// and that nothing leaks.
func needStage(t *testing.T, nn string) string {
	t.Helper()
	bin := stageBinary(t, nn)
	testenv.CheckLeaks(t)
	return bin
}

// stageBinary returns the path of stageNN, after checking root and the
// rootfs: the prerequisites of tests and benchmarks alike.
func stageBinary(t testing.TB, nn string) string {
	t.Helper()
	testenv.RequireRoot(t)
	if setupErr != nil {
		testenv.Require(t, false, setupErr.Error())
	}
	bin := filepath.Join(binDir, "stage"+nn)
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("stage binary %s missing: %v", bin, err)
	}
	return bin
}

// atLeast reports whether the stage at path is stage nn or a later one.
func atLeast(stage, nn string) bool {
	return strings.TrimPrefix(filepath.Base(stage), "stage") >= nn
}

// stageProgram matches the name of a stage program, stage05.
var stageProgram = regexp.MustCompile(`^stage[0-9]{2}$`)

// networkStage reports whether bin is a stage program from 05 on: one that,
// run with its default --net bridge, makes a bridge, firewall rules and
// turns on forwarding in the network namespace it is started in.
func networkStage(bin string) bool {
	return stageProgram.MatchString(filepath.Base(bin)) && atLeast(bin, "05")
}

// inThrowawayNetns returns argv, a command line that runs stage (itself,
// or a program that execs it), unchanged up to stage 04; from stage 05 on
// prefixed with `unshare --net --`: in a network namespace of its own,
// which vanishes with it, so that no test run of the stage changes the
// machine's own network. unshare execs: the PID stays the stage's.
func inThrowawayNetns(t testing.TB, stage string, argv []string) []string {
	t.Helper()
	if !networkStage(stage) {
		return argv
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("a stage from 05 on runs only in a network namespace of its own, and there is no unshare(1) (util-linux) to make one: %v", err)
	}
	return append([]string{unshare, "--net", "--"}, argv...)
}

// stageEnv is the environment the tests start stages with: the test's own,
// without MINIBOX_TRACE (a test asks for narration when it wants it: set in
// a developer's shell, it would add lines to every stage's stderr), plus
// extra ("NAME=value").
func stageEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MINIBOX_TRACE=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// result is what a stage run printed and how it ended.
type result struct {
	stdout, stderr string
	code           int
}

// run starts a stage binary with args, waits at most a minute, and returns
// its output and exit status.
func run(t *testing.T, bin string, args ...string) result {
	t.Helper()
	return runEnv(t, stageEnv(), bin, args...)
}

// runEnv is run with the environment env. A stage from 05 on runs in a
// network namespace of its own (inThrowawayNetns).
func runEnv(t *testing.T, env []string, bin string, args ...string) result {
	t.Helper()
	argv := inThrowawayNetns(t, bin, append([]string{bin}, args...))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
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
