package main

// Layers, what stage 04 adds: the root file system is a stack of read-only
// layers that any number of containers share, plus a writable layer per
// container, joined by overlayfs (Linux 3.18; Docker first used AUFS, which
// never entered mainline Linux). A file the container changes is first
// copied up into its own layer: the shared layers never change. The parent
// prepares the layers and the overlay; the child attaches the overlay in
// its own mount namespace; after the exit the parent removes the
// container's directories, or keeps them for `commit`. Lesson 4 explains it.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// dataRoot holds the layer store and the containers: --root, else
// $MINIBOX_ROOT, else /var/lib/minibox.
func dataRoot(flag string) string {
	if flag == "" {
		flag = os.Getenv("MINIBOX_ROOT")
	}
	if flag == "" {
		flag = "/var/lib/minibox"
	}
	abs, err := filepath.Abs(flag) // the overlay's options are read from lower/
	if err != nil {
		fail(1, "data root %s: %v", flag, err)
	}
	return abs
}

// A container's directory, $ROOT/containers/<id>, holds upper (its own
// writable layer), work (overlay's scratch space), merged (where its root
// is mounted) and lower/0, lower/1… (links to the read-only layers,
// bottom first), and pid (ours, so `minibox cleanup` knows it is in use).
type container struct {
	dir     string
	overlay *os.File // the overlay, a detached mount, for the child
	keep    bool     // --keep: leave upper for `commit`
}

// prepareLayers resolves the layers (unpacking tars), makes the
// container's directories and creates its overlay; on an error it
// removes what it made.
func prepareLayers(root, id string, layers []string, keep bool) (*container, error) {
	c := &container{dir: filepath.Join(root, "containers", id)}
	err := os.MkdirAll(filepath.Join(c.dir, "lower"), 0o755)
	for _, d := range []string{"upper", "work", "merged"} {
		if err == nil {
			err = os.Mkdir(filepath.Join(c.dir, d), 0o755) // upper's mode is the container's /
		}
	}
	// The container's directory is closed to other host users (what the
	// container writes in upper, a set-user-ID program say, is out of their
	// reach) but open to container root under --userns, host gid 100000,
	// which walks to merged: docker does the same.
	if err == nil {
		err = os.Chmod(c.dir, 0o710)
	}
	if err == nil {
		err = os.Chown(c.dir, 0, userNSHostID)
	}
	if err == nil {
		narrate("mkdir -p %s/{upper,work,merged,lower}", c.dir)
		err = os.WriteFile(filepath.Join(c.dir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o644)
	}
	for i := 0; err == nil && i < len(layers); i++ {
		var dir string
		if dir, err = layerDir(root, layers[i]); err == nil {
			err = os.Symlink(dir, filepath.Join(c.dir, "lower", strconv.Itoa(i)))
			narrate("ln -s %s %s/lower/%d", dir, c.dir, i)
		}
	}
	if err == nil {
		err = c.mountOverlay(len(layers))
	}
	if err != nil {
		c.remove()
		return nil, err
	}
	c.keep = keep
	return c, nil
}

// layerDir returns a layer's directory: a directory is used in place; a
// tar is unpacked once into $ROOT/layers/<its sha256>, then shared.
func layerDir(root, layer string) (string, error) {
	f, err := os.Open(layer)
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", layer, err)
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.IsDir() {
		return filepath.Abs(layer)
	}
	h := sha256.New() // sha256sum FILE: the layer's name in the store
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("layer %s: %w", layer, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	dir := filepath.Join(root, "layers", sum)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil { // the same open file: no swap by name
		return "", err
	}
	return dir, unpackLayer(f, sum, dir) // unpack.go
}

// mountOverlay creates the overlay with the new mount API (fsopen(2),
// fsconfig(2), fsmount(2)): a mount in no mount table, not even the
// host's, until the child attaches it in its own namespace, where it
// stays. Made by host root, the overlay copies files up with host root's
// credentials: that works for container root under --userns too.
func (c *container) mountOverlay(layers int) error {
	var lower []string // top first: a higher layer hides the ones below
	for i := layers - 1; i >= 0; i-- {
		lower = append(lower, strconv.Itoa(i))
	}
	opts := [][2]string{{"lowerdir", strings.Join(lower, ":")}, {"upperdir", c.dir + "/upper"}, {"workdir", c.dir + "/work"}}
	// The kernel reads lowerdir relative to our working directory, and
	// fsconfig takes at most 255 bytes: hence the short names in lower/.
	if len(opts[0][1]) > 255 {
		return fmt.Errorf("%d layers: lowerdir is %d bytes, and fsconfig(2) takes at most 255", layers, len(opts[0][1]))
	}
	back, _ := os.Getwd()
	defer os.Chdir(back)
	fs, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err == nil {
		defer unix.Close(fs)
		err = os.Chdir(c.dir + "/lower")
	}
	for i := 0; err == nil && i < len(opts); i++ {
		err = unix.FsconfigSetString(fs, opts[i][0], opts[i][1])
	}
	if err == nil {
		err = unix.FsconfigCreate(fs)
	}
	mnt := -1
	if err == nil {
		mnt, err = unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, 0)
	}
	if err != nil {
		msg := make([]byte, 256) // the kernel's reason, if any, is on fs
		n, _ := unix.Read(fs, msg)
		return fmt.Errorf("mount the overlay of %d layers: %w %s (overlayfs, Linux 5.2: minibox doctor)", layers, err, msg[:max(n, 0)])
	}
	c.overlay = os.NewFile(uintptr(mnt), "overlay")
	narrate("mount -t overlay overlay -o lowerdir=%s,upperdir=%s,workdir=%s   # fsopen/fsmount: detached", opts[0][1], opts[1][1], opts[2][1])
	return nil
}

func (c *container) merged() string { return c.dir + "/merged" }

// overlayFDEnv names the child's file descriptor that holds the overlay.
const overlayFDEnv = "MINIBOX_OVERLAY_FD"

// passTo hands the overlay to the child cmd before it starts.
func (c *container) passTo(cmd *exec.Cmd) {
	cmd.ExtraFiles = append(cmd.ExtraFiles, c.overlay)
	cmd.Env = append(cmd.Env, overlayFDEnv+"="+strconv.Itoa(2+len(cmd.ExtraFiles)))
}

// mountLayers is the child's step right after its mounts became private:
// the overlay goes onto merged, in this mount namespace only.
func mountLayers(merged string) {
	fd, err := strconv.Atoi(os.Getenv(overlayFDEnv))
	if err != nil {
		fail(1, "no overlay from the parent: start me with `%s run`", stage)
	}
	must(unix.MoveMount(fd, "", unix.AT_FDCWD, merged, unix.MOVE_MOUNT_F_EMPTY_PATH), "mount --move OVERLAY %s   # move_mount(2)", merged)
	unix.Close(fd)
}

// remove deletes the container's directories, or with --keep says where
// its layer is.
func (c *container) remove() {
	if c == nil {
		return
	}
	c.overlay.Close() // nil-safe
	if c.keep {
		_ = os.WriteFile(filepath.Join(c.dir, "kept"), nil, 0o644)
		fmt.Fprintf(os.Stderr, "%s: kept the container's layer: %s/upper (%s commit %s FILE.tar)\n", stage, c.dir, stage, filepath.Base(c.dir))
	} else if err := os.RemoveAll(c.dir); err != nil {
		fmt.Fprintf(os.Stderr, "%s: warning: cannot remove %s: %v\n", stage, c.dir, err)
	} else {
		narrate("rm -rf %s", c.dir)
	}
}
