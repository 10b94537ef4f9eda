package stagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

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
	code := m.Run()
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
// property on stage 03), with the checks of needNamespaceStage and the
// clean-up of any shared cgroup parent the run made.
func forEachStage(t *testing.T, nn string, test func(t *testing.T, stage string)) {
	t.Helper()
	for _, s := range stagesFrom(t, nn) {
		t.Run("stage"+s.nn, func(t *testing.T) {
			stage := needNamespaceStage(t, s.nn)
			removeNewCgroupParentsAtEnd(t)
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

// runEnv is run with the environment env.
func runEnv(t *testing.T, env []string, bin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
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
