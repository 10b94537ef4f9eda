package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minibox-lab/minibox/final/engine"
	"github.com/minibox-lab/minibox/final/engine/early"
	"github.com/minibox-lab/minibox/final/runtime"
	"github.com/minibox-lab/minibox/internal/cleanup"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The supervisor `minibox run` starts from a package init (package early)
// becomes the container's supervisor when it was told this data root and
// runs the supervisors' binary of this build; otherwise it is told
// nothing (it exits) and another is started, and the container runs all
// the same.
func TestEarlySupervisorIsUsedOnlyIfItIsOurs(t *testing.T) {
	e := newEnv(t)
	eng, err := engine.New(e.root)
	require.NoError(t, err)
	// This test binary is a supervisor too (TestMain), of its own build:
	// the supervisors' binary here, as minibox-shim is for minibox.
	self, err := os.Executable()
	require.NoError(t, err)
	eng.Self = self
	for _, tc := range []struct {
		what, binary, root string
		used               bool
	}{
		{"ours", self, e.root, true},
		{"told another data root", self, t.TempDir(), false},
		{"another binary", filepath.Join(t.TempDir(), "minibox-shim"), e.root, false},
		{"another build (minibox's shim)", filepath.Join(filepath.Dir(bin), "minibox-shim"), e.root, false},
		// A shim from before the build line: silent until its word.
		{"silent until its word", filepath.Join(t.TempDir(), "minibox-shim"), e.root, false},
	} {
		eng.Self = self
		if tc.what == "silent until its word" {
			require.NoError(t, os.WriteFile(tc.binary, []byte("#!/bin/sh\nread word <&4\n"), 0o755))
			eng.Self = "" // as in minibox: only the build it tells decides (here: none, within a second)
		}
		if tc.what == "another binary" { // the same build, at another path
			data, err := os.ReadFile(self)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(tc.binary, data, 0o755))
		}
		started, err := early.Start(tc.binary, tc.root)
		require.NoError(t, err, tc.what)
		sup, err := eng.PrestartNew(started)
		require.NoError(t, err, tc.what)
		if tc.used {
			assert.Equal(t, started.ID, sup.ID(), tc.what)
		}
		c, err := eng.Create(context.Background(), engine.Options{ID: sup.ID(), Image: e.ref, Args: []string{"sleep", "1000"}, Network: "none"})
		require.NoError(t, err, tc.what)
		require.NoError(t, sup.Start(nil), tc.what)
		rec := e.inspect(c.ID)
		assert.Equal(t, "running", rec.State.Status, tc.what)
		if tc.used {
			assert.Equal(t, started.Pid, rec.State.SupervisorPid, "%s: the early supervisor runs the container", tc.what)
		} else {
			assert.NotEqual(t, started.Pid, rec.State.SupervisorPid, tc.what)
			assert.Eventually(t, func() bool { return !alive(started.Pid) }, 5*time.Second, 20*time.Millisecond,
				"%s: the early supervisor, told nothing, has not exited", tc.what)
		}
		e.ok("rm", "-f", c.ID)
	}
}

// early cannot import the packages that own these names (it must stay
// first to initialise): they must not drift apart.
func TestEarlyNamesTheShimAndRootAsTheirOwnersDo(t *testing.T) {
	assert.Equal(t, runtime.ShimName, early.ShimName)
	assert.Equal(t, cleanup.DefaultDataRoot, early.DefaultRoot)
}
