package engine

// The overlay mount of many layers. mount(2) takes its options in one
// page (4096 bytes): with each layer named by its full path,
// $ROOT/layers/<64 hex>, an image of ~40 layers no longer fits. So, as
// docker's overlay2 driver does, each layer gets a short name, a symlink
// $ROOT/engine/l/<16 hex> → ../../layers/<64 hex>, and the mount names the
// layers relative to that directory (overlayfs resolves a relative
// lowerdir from the mounting thread's working directory): 17 bytes a
// layer, room for some 220 layers (docker allows 125).

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// shortLinks is where the layers' short names live, below the data root.
const shortLinks = "engine/l"

// MountOverlay mounts on target the overlay of the layer directories
// lower (bottom first, as image.Store.LayerDirs returns them) under the
// writable directory upper, with overlayfs's work directory work.
//
// A volatile overlay (the "volatile" option, Linux 5.10) never syncs its
// upper directory: not on fsync(2), and not at unmount, where an overlay
// otherwise syncs the whole file system under upper (syncfs(2)), 0.4-4 ms
// measured here and more on a busy disk. It is for a writable layer that
// does not outlive the host's next crash anyway: a run --rm container's,
// whose layer is deleted when it exits (podman does the same for --rm),
// and a build step's, which becomes a layer before the build ends.
func MountOverlay(root string, lower []string, upper, work, target string, volatile bool) error {
	links := filepath.Join(root, shortLinks)
	names, err := shortNames(links, lower)
	if err != nil {
		return err
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(names, ":"), upper, work)
	if volatile {
		if err := clearVolatileMark(work); err != nil {
			return fmt.Errorf("mount the overlay on %s: %w", target, err)
		}
		opts += ",volatile"
	}
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("mount the overlay of %d layers on %s: too many layers for one mount (%d bytes of options)", len(lower), target, len(opts))
	}
	// The working directory is the process's, shared by all its threads:
	// the mount runs on a thread of its own that first unshares its
	// file-system attributes (unshare(2) CLONE_FS), then changes into the
	// links. The thread is never given back to Go (it ends with the
	// goroutine, still locked), so no other code runs with that cwd.
	done := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		done <- mountFrom(links, target, opts)
	}()
	if err := <-done; err != nil {
		return fmt.Errorf("mount the overlay of %d layers on %s: %w", len(lower), target, err)
	}
	return nil
}

// clearVolatileMark readies work for another volatile mount. A volatile
// mount leaves work/work/incompat/volatile behind, and overlayfs refuses
// to mount over it: the upper directory was never synced, and if the host
// crashed since, what it holds may be torn. Within one boot of the host
// (WORK.boot_id, written at the mount, is this boot's: /proc/sys/kernel/random/boot_id)
// nothing was lost and the mark goes, so that a --rm container whose
// supervisor was killed starts again; after a restart the mount is
// refused, as overlayfs would.
func clearVolatileMark(work string) error {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return err
	}
	mark := work + ".boot_id" // beside work: overlayfs wants work empty
	incompat := filepath.Join(work, "work", "incompat")
	if _, err := os.Stat(incompat); err == nil {
		if last, _ := os.ReadFile(mark); !bytes.Equal(last, boot) {
			return errors.New("its writable layer was mounted without syncs (volatile: run --rm) before the host restarted, and may be torn: remove the container")
		}
		if err := os.RemoveAll(incompat); err != nil {
			return err
		}
	}
	return os.WriteFile(mark, boot, 0o644)
}

// mountFrom is `cd dir && mount -t overlay overlay -o opts target`, on
// the calling thread only.
func mountFrom(dir, target, opts string) error {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare(CLONE_FS): %w", err)
	}
	if err := unix.Chdir(dir); err != nil {
		return err
	}
	err := unix.Mount("overlay", target, "overlay", 0, opts)
	if without, volatile := strings.CutSuffix(opts, ",volatile"); volatile && err == unix.EINVAL {
		err = unix.Mount("overlay", target, "overlay", 0, without) // before Linux 5.10
	}
	return err
}

// shortNames returns each layer's short name (top first, as lowerdir=
// wants them), making its link in links if missing. The name is the
// first 16 hex digits of the layer directory's name (its digest); a
// layer directory named otherwise keeps its full path.
func shortNames(links string, lower []string) ([]string, error) {
	if err := os.MkdirAll(links, 0o700); err != nil {
		return nil, err
	}
	if len(lower) == 0 { // an image without layers (FROM scratch): an empty one
		return []string{"empty"}, os.MkdirAll(filepath.Join(links, "empty"), 0o755)
	}
	names := make([]string, len(lower))
	for i, dir := range lower {
		name, err := shortName(links, dir)
		if err != nil {
			return nil, err
		}
		names[len(lower)-1-i] = name
	}
	return names, nil
}

func shortName(links, dir string) (string, error) {
	base := filepath.Base(dir)
	if len(base) < 16 || strings.Trim(base, "0123456789abcdef") != "" || strings.ContainsAny(dir, ":,") {
		return "", fmt.Errorf("layer %s: not a layer directory of the store", dir)
	}
	link := filepath.Join(links, base[:16])
	switch target, err := os.Readlink(link); {
	case err == nil && target == dir:
		return base[:16], nil
	case err == nil: // a stale link (another data root's path): replace it
		os.Remove(link)
	}
	// ln -s $ROOT/layers/<hex> $ROOT/engine/l/<16 hex>; a link made
	// meanwhile by another container's start is as good as ours.
	if err := os.Symlink(dir, link); err != nil && !os.IsExist(err) {
		return "", err
	}
	return base[:16], nil
}
