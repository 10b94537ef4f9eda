package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/internal/cleanup"
)

// Host is what the checks read about the machine. The real one reads the
// kernel; tests give a fake one to check each verdict and fix.
type Host interface {
	Euid() int
	KernelRelease() string
	ReadFile(path string) (string, error) // /proc, /sys, /.dockerenv…
	Exists(path string) bool
	LookPath(cmd string) (string, error)
	// TryNamespace creates namespace flag (a CLONE_NEW* constant) by
	// running a trivial process in it.
	TryNamespace(flag uintptr) error
	RootFstype() string
	// GoVersion asks the go command at path for its version ("go1.22.5").
	GoVersion(path string) (string, error)
	StaticBusybox() (string, error)
	RootfsBuilt() (dir string, ok bool)
	// IsCgroup2 reports whether path is a cgroup2 file system (statfs).
	IsCgroup2(path string) bool
	// Mode returns the permission bits of path (os.Stat).
	Mode(path string) (fs.FileMode, error)
	// Leftovers lists what minibox made that is still there (the cleanup
	// registry, removing nothing).
	Leftovers() ([]cleanup.Object, error)
	// TryFsopen creates a file system context of type fstype with the new
	// mount API (fsopen(2)) and closes it: nothing is mounted.
	TryFsopen(fstype string) error
	// DataRootFS returns the data root ($MINIBOX_ROOT, /var/lib/minibox)
	// and the type of the file system it is (or, not made yet, would be)
	// on: "overlay", "tmpfs", "ext4", …
	DataRootFS() (dir, fstype string, err error)
	// Output runs cmd with args and returns what it wrote, stdout and
	// stderr together (iptables --version, iptables -t nat -S).
	Output(cmd string, args ...string) (string, error)
}

// Real is the Host this process runs on.
type Real struct {
	RootfsDir string
	DataRoot  string // "": $MINIBOX_ROOT, else /var/lib/minibox
	Busybox   func() (string, error)
	IsBuilt   func(string) bool
}

func (Real) Euid() int { return os.Geteuid() }

func (Real) KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func (Real) ReadFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

func (Real) Exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func (Real) LookPath(cmd string) (string, error) { return exec.LookPath(cmd) }

func (Real) TryNamespace(flag uintptr) error {
	// unshare --<ns> true, done as clone(2) with the namespace flag.
	cmd := exec.Command("/proc/self/exe", "--help")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flag}
	if flag == syscall.CLONE_NEWUSER {
		// Map root so the child can still exec in its new user namespace.
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	}
	return cmd.Run()
}

func (Real) RootFstype() string {
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return ""
	}
	if st.Type == unix.OVERLAYFS_SUPER_MAGIC {
		return "overlay"
	}
	return "other"
}

func (Real) GoVersion(path string) (string, error) {
	out, err := exec.Command(path, "env", "GOVERSION").Output()
	return strings.TrimSpace(string(out)), err
}

func (r Real) StaticBusybox() (string, error) { return r.Busybox() }

func (r Real) RootfsBuilt() (string, bool) { return r.RootfsDir, r.IsBuilt(r.RootfsDir) }

func (Real) IsCgroup2(path string) bool { return cleanup.IsCgroup2(path) }

func (Real) Mode(path string) (fs.FileMode, error) {
	info, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return info.Mode(), nil
}

func (r Real) Leftovers() ([]cleanup.Object, error) {
	env := cleanup.DefaultEnv(r.RootfsDir)
	env.DataRoots = []string{cleanup.DataRoot(r.DataRoot)}
	return cleanup.Find(env)
}

func (Real) TryFsopen(fstype string) error {
	fd, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

func (Real) Output(cmd string, args ...string) (string, error) {
	out, err := exec.Command(cmd, args...).CombinedOutput()
	return string(out), err
}

func (r Real) DataRootFS() (string, string, error) {
	dir := cleanup.DataRoot(r.DataRoot)
	// Not made yet: the stages make it in the nearest directory that is.
	path := filepath.Clean(dir)
	for {
		var st unix.Statfs_t
		err := unix.Statfs(path, &st)
		if err == nil {
			return dir, fsName(st.Type), nil
		}
		if !errors.Is(err, unix.ENOENT) || path == filepath.Dir(path) {
			return dir, "", fmt.Errorf("statfs %s: %w", path, err)
		}
		path = filepath.Dir(path)
	}
}

// fsName names a statfs(2) f_type, as stat -f does, for the file systems a
// data root is usually on.
func fsName(magic int64) string {
	switch magic {
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlay"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.EXT4_SUPER_MAGIC:
		return "ext4" // ext2 and ext3 share the magic
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.F2FS_SUPER_MAGIC:
		return "f2fs"
	case unix.NFS_SUPER_MAGIC:
		return "nfs"
	}
	return fmt.Sprintf("0x%x", magic)
}
