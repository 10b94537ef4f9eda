package runtime

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/testenv"
)

// A Create killed after it made the cgroup but before its state named it
// (the state still says creating): Delete removes the cgroup all the same,
// and one killed before it made it deletes cleanly.
func TestDeleteRemovesTheCgroupOfAKilledCreate(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.CheckLeaks(t)
	for _, made := range []bool{true, false} {
		r := &Runtime{Root: t.TempDir()}
		id := "killed-create-test"
		spec := &specs.Spec{Version: specs.Version, Linux: &specs.Linux{}}
		dir, err := r.dir(id)
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(dir, 0o711))
		require.NoError(t, writeState(dir, &containerState{
			State: specs.State{Version: specs.Version, ID: id, Status: specs.StateCreating}, Created: time.Now(), Spec: spec}))
		planned := plannedCgroup(id, spec)
		require.NotNil(t, planned)
		if made { // what the killed Create had made
			g, err := createCgroup(id, spec.Linux)
			require.NoError(t, err)
			t.Cleanup(func() { _ = g.remove(0) })
			require.DirExists(t, planned.Dirs[0])
		}
		require.NoError(t, r.Delete(id, true))
		for _, d := range planned.Dirs {
			assert.NoDirExists(t, d, "the cgroup of a killed create")
		}
		assert.NoDirExists(t, dir)
	}
	for _, d := range plannedCgroup("x", nil).Dirs { // the default: minibox/<id> in each hierarchy
		assert.Equal(t, filepath.Join("minibox", "x"), filepath.Join(filepath.Base(filepath.Dir(d)), filepath.Base(d)))
	}
}
