package engine

// A container's life after create: start (a supervisor takes it), stop,
// kill, wait, rm. Each works from the record and the runtime's state, so
// it works from any minibox process, whichever one started the container.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/runtime"
)

// Start hands a created or exited container to a new supervisor and
// returns once it runs (or failed to). With attach, the container starts
// only once attach (called with the container's id) has connected.
func (e *Engine) Start(ref string, attach func(id string) error) error {
	c, err := e.Get(ref)
	if err != nil {
		return err
	}
	if c.State.Status == "running" { // (Supervisor.Start checks again)
		return fmt.Errorf("container %s is already running", c.Name)
	}
	sup, err := e.Prestart(c.ID)
	if err != nil {
		return err
	}
	return sup.Start(attach)
}

// Kill sends sig to the container's processes.
func (e *Engine) Kill(id string, sig unix.Signal) error {
	c, err := e.Get(id)
	if err != nil {
		return err
	}
	if c.State.Status != "running" {
		return fmt.Errorf("container %s is not running", c.Name)
	}
	return e.Runtime.Kill(c.ID, sig, sig == unix.SIGKILL)
}

// Stop is docker stop: SIGTERM, then SIGKILL after timeout.
func (e *Engine) Stop(id string, timeout time.Duration) error {
	c, err := e.Get(id)
	if err != nil || c.State.Status != "running" {
		return err // stopping a stopped container is fine, as in docker
	}
	// No runtime state: it has ended, and its supervisor is tearing it
	// down (the record says exited in a moment).
	if err := e.Runtime.Kill(c.ID, unix.SIGTERM, false); err != nil && !errors.Is(err, runtime.ErrNotExist) {
		return err
	}
	if e.waitExited(c.ID, timeout) {
		return nil
	}
	if err := e.Runtime.Kill(c.ID, unix.SIGKILL, true); err != nil && !errors.Is(err, runtime.ErrNotExist) {
		return err
	}
	if !e.waitExited(c.ID, 10*time.Second) {
		return fmt.Errorf("container %s did not stop after SIGKILL", c.Name)
	}
	return nil
}

// waitExited polls the record until the supervisor says exited.
func (e *Engine) waitExited(id string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		c, err := e.refresh(id)
		if err != nil || c.State.Status != "running" {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Wait blocks until the container has exited and returns its status.
func (e *Engine) Wait(id string) (int, error) {
	c, err := e.Get(id)
	for err == nil && c.State.Status == "created" { // as docker: until it has run
		time.Sleep(100 * time.Millisecond)
		c, err = e.Get(c.ID)
	}
	if removed := (removedError{}); errors.As(err, &removed) { // a --rm container whose supervisor died
		return removed.status, nil
	}
	if err != nil {
		return 0, err
	}
	if c.State.Status == "running" {
		// The supervisor tells every attached client the exit status, and
		// last of all, after --rm removed the record: so a --rm container's.
		if code, err := e.Attach(c.ID, AttachIO{Stdout: io.Discard, Stderr: io.Discard}, nil); err == nil {
			return code, nil
		}
	}
	for {
		c, err := e.refresh(c.ID)
		var removed removedError
		switch {
		case errors.As(err, &removed): // a --rm container whose supervisor died
			return removed.status, nil
		case errors.Is(err, fs.ErrNotExist):
			return 0, fmt.Errorf("no such container: %s (removed meanwhile)", id)
		case err != nil:
			return 0, err
		case c.State.Status != "running":
			return c.State.ExitCode, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Remove is docker rm: a running container only with force (killed first);
// with volumes, its anonymous volumes too.
func (e *Engine) Remove(id string, force, volumes bool) error {
	c, err := e.Get(id)
	if err != nil {
		return err
	}
	if c.State.Status == "running" || e.supervised(c.ID) { // a supervisor may be starting it
		if !force {
			return fmt.Errorf("container %s is running: stop it first, or rm -f", c.Name)
		}
		if err := e.Runtime.Kill(c.ID, unix.SIGKILL, true); err != nil && !errors.Is(err, runtime.ErrNotExist) {
			return err // (no runtime state: its supervisor is tearing it down)
		}
		if !e.waitExited(c.ID, 10*time.Second) {
			return fmt.Errorf("container %s did not stop after SIGKILL", c.Name)
		}
	}
	if c, err = e.load(c.ID); errors.Is(err, fs.ErrNotExist) {
		return nil // a --rm container: its supervisor removed it meanwhile
	} else if err != nil {
		return err
	}
	return e.remove(c, volumes)
}

// remove deletes a container that no longer runs: its name, its anonymous
// volumes (with volumes), its directory (upper layer, log, record).
func (e *Engine) remove(c *Container, volumes bool) error {
	// What a supervisor killed while starting the container left (its
	// runtime state, cgroup, network), if anything.
	e.recoverOrphan(c)
	return e.removeStopped(c, volumes)
}

// removeStopped is remove once nothing of the container runs or holds a
// network any longer (its supervisor has undone them; the runtime's state
// may still be going, beside).
func (e *Engine) removeStopped(c *Container, volumes bool) error {
	if err := e.unmountRootfs(c); err != nil {
		return fmt.Errorf("rm %s: %w", c.Name, err)
	}
	// Out of sight first, in one rename(2): while its files go, no command
	// finds the record (a --rm container's still says running, and would
	// look like one whose supervisor died) or makes its lock file again.
	// minibox cleanup finishes a removal that was interrupted.
	removing := filepath.Join(e.Root, "engine", "containers", removingPrefix+c.ID)
	if err := os.Rename(e.containerDir(c.ID), removing); errors.Is(err, fs.ErrNotExist) {
		return nil // removed by someone else meanwhile
	} else if err != nil {
		return fmt.Errorf("rm %s: %w", c.Name, err)
	}
	if volumes {
		for _, m := range c.Mounts {
			if m.Type == "volume" && m.Anonymous {
				_ = os.RemoveAll(filepath.Join(e.Root, "volumes", m.Name))
			}
		}
	}
	e.releaseName(c)
	return os.RemoveAll(removing)
}
