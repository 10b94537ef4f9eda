// Package rootfs builds the demo root filesystem every lesson runs in: the
// host's static busybox, a symlink for each of its applets, and the few
// directories and files a Unix userland expects.
//
// A static busybox matters: the rootfs has no /lib, so a dynamically linked
// binary would fail inside it with a baffling "not found".
package rootfs

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DefaultDir is where `minibox rootfs` builds the demo root filesystem when
// neither --rootfs, $MINIBOX_ROOTFS nor $MINIBOX_ROOT says otherwise.
const DefaultDir = "/var/lib/minibox/rootfs"

// BusyboxPackage is the Debian/Ubuntu package that ships a static busybox.
const BusyboxPackage = "busybox-static"

// Dir returns the rootfs directory to use: the flag's value, else
// $MINIBOX_ROOTFS, else rootfs/ in the data root $MINIBOX_ROOT, else
// DefaultDir.
func Dir(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if env := os.Getenv("MINIBOX_ROOTFS"); env != "" {
		return env
	}
	if root := os.Getenv("MINIBOX_ROOT"); root != "" {
		return filepath.Join(root, "rootfs")
	}
	return DefaultDir
}

// ErrNoStaticBusybox says why no rootfs can be built and how to fix it.
var ErrNoStaticBusybox = errors.New("no static busybox found: install it with `apt-get install " + BusyboxPackage + "`")

// FindStaticBusybox returns the path of a statically linked busybox on this
// host, or an error naming the package to install.
func FindStaticBusybox() (string, error) {
	candidates := []string{"/bin/busybox", "/usr/bin/busybox"}
	if p, err := exec.LookPath("busybox"); err == nil {
		candidates = append([]string{p}, candidates...)
	}
	var dynamic string
	for _, p := range candidates {
		static, err := IsStatic(p)
		if err != nil {
			continue
		}
		if static {
			return p, nil
		}
		dynamic = p
	}
	if dynamic != "" {
		return "", fmt.Errorf("%s is dynamically linked and cannot run inside a rootfs without /lib: %w", dynamic, ErrNoStaticBusybox)
	}
	return "", ErrNoStaticBusybox
}

// IsStatic reports whether the ELF binary at path has no program interpreter
// (PT_INTERP), i.e. needs no dynamic loader.
func IsStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, fmt.Errorf("read ELF %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

// Files written into /etc. Root's home is /root; nobody exists so that
// demos can drop privileges.
var etcFiles = map[string]string{
	"etc/passwd":   "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
	"etc/group":    "root:x:0:\nnogroup:x:65534:\n",
	"etc/hostname": "minibox\n",
}

// Build makes (or refreshes) a busybox root filesystem in dir. It is
// idempotent: running it again on a built rootfs changes nothing.
func Build(dir, busybox string) error {
	static, err := IsStatic(busybox)
	if err != nil {
		return err
	}
	if !static {
		return fmt.Errorf("%s is dynamically linked: %w", busybox, ErrNoStaticBusybox)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create rootfs directory: %w", err)
	}
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "proc", "sys", "dev", "etc", "root", "tmp", "var", "var/tmp"} {
		path := filepath.Join(dir, d)
		// A container may have replaced a directory of its rootfs with a
		// symlink to a host path; building through it would write (and
		// delete) host files.
		if info, err := os.Lstat(path); err == nil && !info.IsDir() {
			return fmt.Errorf("rootfs %s: %s is not a plain directory (a symlink?): remove the rootfs and build it again", dir, d)
		}
		if err := os.Mkdir(path, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create rootfs directory: %w", err)
		}
	}
	// /tmp is world-writable with the sticky bit, as on any Unix.
	for _, d := range []string{"tmp", "var/tmp"} {
		if err := os.Chmod(filepath.Join(dir, d), 0o777|os.ModeSticky); err != nil {
			return fmt.Errorf("chmod %s: %w", d, err)
		}
	}
	if err := copyIfChanged(busybox, filepath.Join(dir, "bin/busybox"), 0o755); err != nil {
		return err
	}
	applets, err := listApplets(busybox)
	if err != nil {
		return err
	}
	for _, a := range applets {
		if err := ensureSymlink("/bin/busybox", filepath.Join(dir, a)); err != nil {
			return err
		}
	}
	for name, content := range etcFiles {
		if err := writeIfChanged(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// IsBuilt reports whether dir looks like a built demo rootfs. It does not
// follow the symlinks: bin/sh points to /bin/busybox inside the rootfs, which
// the host itself may not have.
func IsBuilt(dir string) bool {
	for _, p := range []string{"bin/busybox", "bin/sh", "etc/passwd"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); err != nil {
			return false
		}
	}
	return true
}

// listApplets asks busybox for its applets with their install paths
// (`busybox --list-full` prints e.g. "bin/ls", "usr/bin/env").
func listApplets(busybox string) ([]string, error) {
	out, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", busybox, err)
	}
	var applets []string
	for _, line := range strings.Fields(string(out)) {
		// linuxrc is busybox's init for initrds: noise at the top of "/".
		if line == "bin/busybox" || line == "linuxrc" || strings.Contains(line, "..") {
			continue
		}
		applets = append(applets, line)
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("%s --list-full listed no applets", busybox)
	}
	return applets, nil
}

func ensureSymlink(target, link string) error {
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(link), err)
	}
	_ = os.Remove(link)
	if err := os.Symlink(target, link); err != nil {
		return fmt.Errorf("symlink %s -> %s: %w", link, target, err)
	}
	return nil
}

func copyIfChanged(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	return writeIfChanged(dst, data, mode)
}

// writeIfChanged writes through a temporary file and a rename, so that a
// rootfs in use is never seen half-written.
func writeIfChanged(path string, data []byte, mode os.FileMode) error {
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
		return os.Chmod(path, mode)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".minibox-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, bytes.NewReader(data)); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
