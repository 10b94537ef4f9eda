package build

// A scratch overlay: the layers of a stage's image under a fresh upper
// directory, mounted on $ROOT/build/tmp/<dir>/rootfs (engine.MountOverlay,
// the engine's own mount, with short layer names). COPY writes into it,
// RUN runs a container on it, and the upper directory becomes the step's
// layer. COPY --from reads an earlier stage's image through one.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/engine"
	"github.com/minibox-lab/minibox/final/image"
	"github.com/minibox-lab/minibox/internal/flock"
	"github.com/minibox-lab/minibox/internal/stepname"
)

// scratch is one overlay of the build.
type scratch struct {
	dir, rootfs, upper string
	mounted            bool
	lock               *os.File // flock(2)ed while the overlay is in use: recoverStale leaves it alone
	// skip leaves entries of the upper directory out of the layer: the
	// mount points the runtime made for RUN.
	skip func(rel string, info fs.FileInfo) bool
}

// newScratch mounts an overlay of s's image with an empty upper directory.
func (bd *build) newScratch(s *stage) (*scratch, error) {
	var lower []string
	if s.manifest != "" {
		img, err := bd.Images.ImageByManifest(s.manifest)
		if err != nil {
			return nil, err
		}
		if lower, err = bd.Images.LayerDirs(img); err != nil {
			return nil, err
		}
	}
	// Made as new-<pid>-<n>, locked, then renamed step-<n> (the lock goes
	// with the open file): a step-* directory whose lock is free is a
	// killed build's, at any age, and so is a new-* one whose builder is
	// gone (recoverStale, minibox cleanup; internal/stepname).
	fresh, err := os.MkdirTemp(filepath.Join(bd.Root, "build", "tmp"), stepname.Prefix(os.Getpid()))
	if err != nil {
		return nil, err
	}
	lock, err := flock.Lock(filepath.Join(fresh, "lock"), unix.LOCK_EX)
	if err != nil {
		os.RemoveAll(fresh)
		return nil, err
	}
	_, digits, _ := stepname.Parse(filepath.Base(fresh))
	dir := filepath.Join(filepath.Dir(fresh), "step-"+digits)
	if err := os.Rename(fresh, dir); err != nil {
		lock.Close()
		os.RemoveAll(fresh)
		return nil, err
	}
	sc := &scratch{dir: dir, rootfs: filepath.Join(dir, "rootfs"), upper: filepath.Join(dir, "diff"), lock: lock}
	for _, d := range []string{"diff", "work", "rootfs"} {
		if err = os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			break
		}
	}
	if err == nil {
		// Volatile: the step's upper directory becomes a layer before the
		// build ends, and a build cut short by a crash is cleaned up.
		err = engine.MountOverlay(bd.Root, lower, sc.upper, filepath.Join(dir, "work"), sc.rootfs, true)
	}
	if err != nil {
		os.RemoveAll(dir)
		sc.lock.Close()
		return nil, err
	}
	sc.mounted = true
	return sc, nil
}

// unmount unmounts the overlay: the upper directory is then the layer.
func (sc *scratch) unmount() error {
	if !sc.mounted {
		return nil
	}
	err := unix.Unmount(sc.rootfs, 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(sc.rootfs, unix.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("umount %s: %w", sc.rootfs, err)
	}
	sc.mounted = false
	return nil
}

// release unmounts and removes everything of the overlay. A directory
// still mounted is never removed (that would delete through the mount).
func (sc *scratch) release() {
	if sc.unmount() == nil {
		os.RemoveAll(sc.dir)
	}
	sc.lock.Close()
}

// recoverStale undoes what a killed build left (kill -9 has no defer):
// its overlays, whose lock no one holds any more, are unmounted and
// removed; its RUN containers, which died with it (Runtime.DeathSignal),
// are deleted with their cgroups. A concurrent build's own are in use
// (locked, running) and stay.
func (b *Builder) recoverStale() {
	// Killed between mkdir and rename: once its builder is gone (a build
	// beside us may be just there), or a minute has passed.
	fresh, _ := filepath.Glob(filepath.Join(b.Root, "build", "tmp", "new-*"))
	for _, dir := range fresh {
		if info, err := os.Stat(dir); err == nil && (stepname.Abandoned(filepath.Base(dir)) || time.Since(info.ModTime()) > time.Minute) {
			os.RemoveAll(dir)
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(b.Root, "build", "tmp", "step-*"))
	for _, dir := range dirs {
		lock, err := flock.Lock(filepath.Join(dir, "lock"), unix.LOCK_EX|unix.LOCK_NB)
		if err != nil {
			continue // in use
		}
		sc := &scratch{dir: dir, rootfs: filepath.Join(dir, "rootfs"), mounted: true, lock: lock}
		sc.release()
	}
	states, _ := b.Runtime.List()
	for _, st := range states {
		// Stopped, or its build is gone: its bundle, in a step directory
		// whose lock nobody held, has just been removed (or was before).
		// Right after a build's kill -9 its RUN container may still be
		// dying (the death signal is on its way, the PID namespace being
		// emptied): Delete kills it and waits for it.
		if _, err := os.Stat(st.Bundle); st.Status == specs.StateStopped || errors.Is(err, fs.ErrNotExist) {
			_ = b.Runtime.Delete(st.ID, true)
		}
	}
}

func (bd *build) releaseMounts() {
	for _, sc := range bd.mounts {
		sc.release()
	}
	bd.mounts = nil
}

// inScratch does work in an overlay of s's image and stores what it
// wrote as a layer; skip leaves entries of the upper directory out.
func (bd *build) inScratch(ctx context.Context, s *stage, work func(*scratch) error) (image.Layer, error) {
	sc, err := bd.newScratch(s)
	if err != nil {
		return image.Layer{}, err
	}
	defer sc.release()
	if err := work(sc); err != nil {
		return image.Layer{}, err
	}
	if err := sc.unmount(); err != nil {
		return image.Layer{}, err
	}
	return bd.Images.AddLayerFiltered(ctx, sc.upper, sc.skip)
}

// workdir is WORKDIR's step: the directory is made (owned by the stage's
// USER) when the image lacks it, as docker does, so that the image's
// containers can start in it; then the step has a layer, else none.
func (bd *build) workdir(ctx context.Context, s *stage, wd, createdBy string) (stepResult, error) {
	sc, err := bd.newScratch(s)
	if err != nil {
		return stepResult{}, err
	}
	defer sc.release()
	root, err := os.Open(sc.rootfs)
	if err != nil {
		return stepResult{}, err
	}
	defer root.Close()
	if fd, err := openIn(root, wd, unix.O_PATH|unix.O_DIRECTORY); err == nil {
		unix.Close(fd)
		return stepResult{createdBy: createdBy}, nil // there already: no layer
	}
	uid, gid := 0, 0
	if u := s.cfg.Config.User; u != "" {
		user, err := image.LookupUser(root, u, false)
		if err != nil {
			return stepResult{}, fmt.Errorf("USER %s: %w", u, err)
		}
		uid, gid = user.UID, user.GID
	}
	w := &writer{root: root, uid: uid, gid: gid, dirs: map[string]int{}}
	_, err = w.dir(wd)
	w.close()
	if err == nil {
		err = sc.unmount()
	}
	if err != nil {
		return stepResult{}, fmt.Errorf("WORKDIR %s: %w", wd, err)
	}
	layer, err := bd.Images.AddLayer(ctx, sc.upper)
	if err != nil {
		return stepResult{}, err
	}
	return stepResult{createdBy: createdBy, layer: &layer}, nil
}
