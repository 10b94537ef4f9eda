package stagetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/mutate"
	"github.com/minibox-lab/minibox/internal/stages"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// The fail-closed guard (issue 7 §1). A student who deletes a clone flag
// (lesson 2's exercise) must get a stage that refuses, never one that
// renames, remounts or pivot_roots the host. These tests build that broken
// stage, for every flag and every stage from 02 on, and run it.
//
// The guard is what is under test, so it cannot be trusted to protect the
// host while it runs: each mutated stage runs inside a throw-away
// `unshare --mount --uts --ipc --net --propagation private`, so a broken
// guard could only rename and remount namespaces that vanish with it. The
// test compares the hostname and mount table inside that wrapper before and
// after (what a broken guard would have changed), and the host's too.

// guardFlags are the clone flags whose namespace the child must own, with
// the namespace's name in /proc/self/ns, which the refusal names.
var guardFlags = []struct{ flag, ns string }{
	{"CLONE_NEWUTS", "uts"},
	{"CLONE_NEWNS", "mnt"},
	{"CLONE_NEWPID", "pid"},
	{"CLONE_NEWNET", "net"},
	{"CLONE_NEWIPC", "ipc"},
}

func TestGuardRefusesWithoutANamespaceFlag(t *testing.T) {
	testenv.RequireRoot(t)
	// The cgroup-v2 VM runs prebuilt stage programs and has no Go to build
	// mutated ones; the guard does not depend on the cgroup version, so the
	// Makefile leaves this test out there (-test.skip), and `make test-go`
	// runs it natively. Anywhere else, no Go is a failure in CI.
	testenv.Require(t, os.Getenv("MINIBOX_STAGE_BIN") == "",
		"MINIBOX_STAGE_BIN is set: prebuilt stages, and no Go to build mutated copies")
	src, err := filepath.Abs("../..")
	require.NoError(t, err)
	list, err := stages.List(src)
	require.NoError(t, err)
	mutants := newMutantBuilds(src, t.TempDir())
	if _, err := os.ReadFile("/proc/1/ns/uts"); err != nil {
		// Where the old guard failed open (issue 7 §1): say so in -v output.
		t.Logf("note: /proc/1/ns is not readable here (%v): the guard must not depend on it", err)
	}

	tested := 0
	for _, st := range list {
		if st.Number < 2 {
			continue
		}
		tested++
		for _, f := range guardFlags {
			t.Run(fmt.Sprintf("%s/without-%s", st.Binary(), f.flag), func(t *testing.T) {
				needNamespaceStage(t, fmt.Sprintf("%02d", st.Number)) // root, rootfs, leak check
				bin, err := mutants.build(st, f.flag)
				require.NoError(t, err)
				res := runGuarded(t, bin, "run", rootfsDir, "--", "true")
				assertRefused(t, res, f.ns)
			})
		}
	}
	require.NotZero(t, tested, "no stage from 02 on in %s: nothing to test", src)
}

// `stageNN child …` run by hand gets no namespace ids from a parent: it must
// refuse, whatever namespaces it happens to be in.
func TestGuardRefusesChildRunByHand(t *testing.T) {
	testenv.RequireRoot(t)
	for _, bin := range guardStagePrograms(t) {
		t.Run(filepath.Base(bin), func(t *testing.T) {
			needNamespaceStage(t, strings.TrimPrefix(filepath.Base(bin), "stage"))
			res := runGuarded(t, bin, "child", "minibox-guard-test", rootfsDir, "true")
			assertRefused(t, res, "")
		})
	}
}

// guardStagePrograms lists the built stage programs from stage02 on.
func guardStagePrograms(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(binDir, "stage[0-9][0-9]"))
	require.NoError(t, err)
	var out []string
	for _, p := range paths {
		if strings.TrimPrefix(filepath.Base(p), "stage") >= "02" {
			out = append(out, p)
		}
	}
	require.NotEmpty(t, out, "no stage program from stage02 on in %s", binDir)
	return out
}

// assertRefused checks a refusal: status 1, "refusing" and, if ns is given,
// "not in a new NS namespace" on stderr, and nothing changed, neither in the
// throw-away wrapper nor on the host.
func assertRefused(t *testing.T, res guardedResult, ns string) {
	t.Helper()
	assert.Equal(t, 1, res.code, "the stage must refuse with status 1; stderr: %s", res.stderr)
	assert.Contains(t, res.stderr, "refusing")
	if ns != "" {
		assert.Contains(t, res.stderr, "not in a new "+ns+" namespace")
	}
	assert.Equal(t, res.wrapperBefore, res.wrapperAfter,
		"the stage changed the hostname or the mounts of the namespaces it was started in")
	assert.Equal(t, res.hostBefore, res.hostAfter, "the stage changed the host's hostname or mounts")
}

// guardedResult is a run inside the throw-away wrapper: the stage's output
// and status, and the state (hostname, then mountinfo) of the wrapper's and
// the host's namespaces before and after.
type guardedResult struct {
	result
	wrapperBefore, wrapperAfter string
	hostBefore, hostAfter       string
}

// guardWrapper prints its namespaces' state, runs the stage (its output on
// stderr, so stdout holds only the states), prints the state again, and
// exits with the stage's status. /proc is the host's, so mountinfo is the
// wrapper's own mount table.
const guardWrapper = `state() { uname -n; cat /proc/self/mountinfo; }
state; echo "--- after"
"$@" >&2
status=$?
state
exit $status`

func runGuarded(t *testing.T, bin string, args ...string) guardedResult {
	t.Helper()
	unshare, err := exec.LookPath("unshare")
	testenv.Require(t, err == nil, "needs unshare(1) from util-linux")

	var g guardedResult
	g.hostBefore = guardHostState(t)
	wrapped := append([]string{"--mount", "--uts", "--ipc", "--net", "--propagation", "private",
		"sh", "-c", guardWrapper, "sh", bin}, args...)
	g.result = run(t, unshare, wrapped...)
	g.hostAfter = guardHostState(t)

	var ok bool
	g.wrapperBefore, g.wrapperAfter, ok = strings.Cut(g.stdout, "--- after\n")
	require.True(t, ok, "the wrapper did not run: %s", g.stderr)
	require.NotEmpty(t, g.wrapperBefore)
	return g
}

// guardHostState is this process's (the host's) hostname and mount table.
func guardHostState(t *testing.T) string {
	t.Helper()
	host, err := os.Hostname()
	require.NoError(t, err)
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	return host + "\n" + string(mounts)
}

// mutantBuilds builds each mutated stage once per test run: a copy of the
// source tree with one clone flag deleted, and that stage built from it.
type mutantBuilds struct {
	src, dir string
	mu       sync.Mutex
	built    map[string]string // "stage02 CLONE_NEWUTS" → binary
}

func newMutantBuilds(src, dir string) *mutantBuilds {
	return &mutantBuilds{src: src, dir: dir, built: map[string]string{}}
}

// build returns stage st built without flag.
func (b *mutantBuilds) build(st stages.Stage, flag string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	key := st.Binary() + " " + flag
	if bin, ok := b.built[key]; ok {
		return bin, nil
	}
	m, err := mutate.WithoutCloneFlag(b.src, st.Name+"/main.go", flag)
	if err != nil {
		return "", err
	}
	tree := filepath.Join(b.dir, st.Binary()+"-without-"+flag)
	if err := mutate.Tree(b.src, tree, m); err != nil {
		return "", err
	}
	copied, err := stages.Find(tree, st.Number)
	if err != nil {
		return "", err
	}
	out := filepath.Join(tree, "bin")
	if err := stages.Build(context.Background(), tree, out, []stages.Stage{copied}, nil); err != nil {
		return "", fmt.Errorf("build %s without %s: %w", st.Name, flag, err)
	}
	bin := filepath.Join(out, st.Binary())
	b.built[key] = bin
	return bin, nil
}
