package engine

import (
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/final/engine/keeper"
)

// The finish a keeper hands a container's end to refuses another build's
// container (a binary overwritten in place while the container ran): it
// stops before it opens the engine. Of its own build, it goes on.
func TestFinishRefusesAnotherBuild(t *testing.T) {
	for _, build := range []string{"another", buildDigest()} {
		root := filepath.Join(t.TempDir(), "root")
		// A descriptor of the test's own as the lock: the finish closes it.
		lock, err := os.Create(filepath.Join(t.TempDir(), "supervisor.lock"))
		require.NoError(t, err)
		defer lock.Close()
		fd, err := syscall.Dup(int(lock.Fd()))
		require.NoError(t, err)
		data, err := json.Marshal(keeper.Finish{Root: root, ID: "0123456789ab", Status: 3, Lock: fd, Listener: -1, Build: build})
		require.NoError(t, err)
		t.Setenv(keeper.FinishEnv, string(data))
		assert.Equal(t, 1, finishKept(), "no such container, in either case")
		_, err = os.Stat(root)
		if build == "another" {
			assert.ErrorIs(t, err, os.ErrNotExist, "the finish of another build opened the engine")
			syscall.Close(fd) // refused before it took the lock
		} else {
			assert.NoError(t, err, "the finish of its own build did not open the engine")
		}
	}
}
