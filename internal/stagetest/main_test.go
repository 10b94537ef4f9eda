package stagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// result is what a stage run printed and how it ended.
type result struct {
	stdout, stderr string
	code           int
}

// run starts a stage binary with args, waits at most a minute, and returns
// its output and exit status.
func run(t *testing.T, bin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
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
