package flock

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestLockAndHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	held, exists := Held(path)
	assert.False(t, held)
	assert.False(t, exists)

	f, err := Lock(path, unix.LOCK_EX)
	require.NoError(t, err)
	held, exists = Held(path)
	assert.True(t, held, "another open file sees the lock")
	assert.True(t, exists)
	_, err = Lock(path, unix.LOCK_EX|unix.LOCK_NB)
	assert.ErrorIs(t, err, unix.EWOULDBLOCK)

	require.NoError(t, f.Close())
	held, _ = Held(path)
	assert.False(t, held, "closing releases it")

	link := filepath.Join(filepath.Dir(path), "link")
	require.NoError(t, os.Symlink(path, link))
	f, err = Lock(path, unix.LOCK_EX)
	require.NoError(t, err)
	defer f.Close()
	held, exists = Held(link)
	assert.False(t, held, "a symlink is not followed")
	assert.True(t, exists)
}
