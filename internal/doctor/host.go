package doctor

import (
	"io/fs"
	"os"
	"os/exec"
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
}

// Real is the Host this process runs on.
type Real struct {
	RootfsDir string
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

func (Real) IsCgroup2(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

func (Real) Mode(path string) (fs.FileMode, error) {
	info, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return info.Mode(), nil
}

func (r Real) Leftovers() ([]cleanup.Object, error) {
	return cleanup.Find(cleanup.DefaultEnv(r.RootfsDir))
}
