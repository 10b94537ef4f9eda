// Package flock is how minibox's commands exclude each other: flock(2) on
// a lock file. A lock lives as long as its open file, and dies with its
// process, so a command killed with SIGKILL never leaves a lock taken,
// and "is it held?" can tell a live owner from a dead one without PIDs.
package flock

import (
	"errors"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// Lock opens path (made, mode 0600, if missing) and takes the lock how
// on it: unix.LOCK_EX or unix.LOCK_SH, with unix.LOCK_NB not to wait
// (EWOULDBLOCK when it is held). Closing the file releases the lock.
func Lock(path string, how int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		if err = unix.Flock(int(f.Fd()), how); err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Held reports whether a process holds a lock on path (tried with a
// shared lock, without waiting, and let go at once), and whether path
// exists. It never follows a symlink, and a fifo put there cannot hang
// it.
func Held(path string) (held, exists bool) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, !errors.Is(err, fs.ErrNotExist)
	}
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB) != nil, true
}
