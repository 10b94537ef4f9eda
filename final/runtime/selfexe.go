package runtime

// Which binary becomes a container's init, and how it is protected.
//
// # The small binaries
//
// Every container costs two executions of a minibox binary (its
// supervisor, `supervise ID`, and its init, `runtime init`), and each pays
// the Go start-up of everything that binary links, and a supervisor keeps
// its heap for the container's whole life. The minibox CLI links cobra
// and every command: so the supervisor runs from minibox-shim
// (cmd/minibox-shim), a small binary that links only the engine and the
// runtime, and the init from minibox-init (cmd/minibox-init), which links
// only the runtime; make build installs both next to minibox. Shim and
// initBinary find them (Companion: the lesson commands' minibox-lessons
// is found the same way). Without them, or with ones from another build,
// minibox uses itself: slower, never wrong.
//
// # CVE-2019-5736: the container must not reach the host's binary
//
// The init is the runtime's own binary, running inside the container's
// namespaces until it executes the container's program, and
// /proc/PID/exe of a process is a handle on the file it was executed
// from. In runc before 1.0-rc7 that handle was the host's runc binary,
// and a process in the container could use it to overwrite it:
//
//  1. The image's program (or a binary a later `exec` runs) is a script
//     starting with `#!/proc/self/exe`. The kernel resolves the
//     interpreter while the runtime's binary is still the process's exe,
//     so it runs the host's runtime binary again, inside the container.
//     (Or: a process already in the container watches /proc for the
//     runtime's init of a `runc exec`.)
//  2. The container's process opens /proc/PID/exe with O_PATH: a file
//     handle on the host's binary, which survives that process's exit.
//  3. Once no process executes the binary any longer (ETXTBSY until then)
//     it reopens /proc/self/fd/N for writing and replaces the host's
//     binary: the next `runc` anyone runs on the host is the attacker's,
//     as root.
//
// The defence (runc's libcontainer/exeseal) is never to execute the
// host's file in a container: the init is executed from a copy the
// container cannot write. sealedExe makes one:
//
//   - zero-copy first: a private overlayfs mount (fsopen/fsconfig/fsmount,
//     never attached to any directory) whose only layers are read-only
//     lower directories, the binary's own directory on top. Opening the
//     binary through it gives a file that no process can ever write
//     (EROFS: an overlay without an upper directory cannot copy up), on a
//     mount the container cannot see or remount, and it costs a few system
//     calls;
//   - else a memfd copy with all write seals (F_SEAL_WRITE, SHRINK, GROW,
//     SEAL): writes fail with EPERM, and the copy vanishes with the
//     init's execve. It costs a copy of the binary per container, which is
//     why the binary being small matters here too.
//
// Create executes the init as /proc/self/fd/N of that file (see
// initBinary). The init's /proc/self/exe is then the sealed file, and so
// is the interpreter of a `#!/proc/self/exe` script. (`minibox exec` does
// not execute a minibox binary in the container: it forks from a thread of
// the calling process, see exec.go; see docs/benchmarks.md for that gap.)

import (
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ShimName is the small binary's name, looked for next to the running one.
const ShimName = "minibox-shim"

// InitName is the smallest one's, the container's init alone
// (cmd/minibox-init): it links only this package.
const InitName = "minibox-init"

// SourceID identifies the source tree the binary was built from. The
// Makefile sets it at link time (-X) to a hash of every Go file, go.mod
// and go.sum, so that two binaries built by `make build` from different
// working trees differ even when their commits and dependencies are the
// same (their -ldflags, recorded in the build information, differ).
var SourceID string

var (
	shimOnce sync.Once
	shimPath string
	shimErr  error
)

// ErrNoCompanion says that a companion binary (minibox-shim,
// minibox-lessons) is not next to the running binary.
var ErrNoCompanion = errors.New("not next to the running binary")

// Shim returns the minibox-shim next to the running binary, if it exists
// and is the same build; otherwise an error saying why not, and the
// caller runs itself instead.
func Shim() (string, error) {
	shimOnce.Do(func() { shimPath, shimErr = Companion(ShimName) })
	return shimPath, shimErr
}

// Companion returns the binary called name next to the running binary
// (minibox's companions are installed side by side with it: make build
// puts them all in bin/), if it exists and is the same build; otherwise
// an error saying why not (ErrNoCompanion, or which part of the build
// differs). A companion of another build is never used: it would read
// and write the engine's records, or speak the init's protocol, of
// another version.
func Companion(name string) (string, error) {
	path, self, err := companionPath(name)
	if err != nil || path == self {
		return path, err
	}
	theirs, err := buildinfo.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read the build information of %s: %w", path, err)
	}
	return path, checkCompanion(path, self, theirs)
}

// OpenCompanion is Companion's check made on the open file, which it
// returns: executed as /proc/self/fd/N, the binary that runs is the one
// checked, even if make build replaces the file in between.
func OpenCompanion(name string) (*os.File, error) {
	path, self, err := companionPath(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	theirs, err := buildinfo.Read(f)
	if err != nil {
		err = fmt.Errorf("read the build information of %s: %w", path, err)
	} else {
		err = checkCompanion(path, self, theirs)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// companionPath is the path of the companion called name, an executable
// file next to the running binary (self), or why not.
func companionPath(name string) (path, self string, err error) {
	if self, err = os.Executable(); err != nil {
		return "", "", fmt.Errorf("find the running binary: %w", err)
	}
	path = filepath.Join(filepath.Dir(self), name)
	if path == self {
		return self, self, nil // the companion itself
	}
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", "", fmt.Errorf("%s: %w", path, ErrNoCompanion)
	case err != nil:
		return "", "", err
	case !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0:
		return "", "", fmt.Errorf("%s is not an executable file", path)
	}
	return path, self, nil
}

// checkCompanion compares the companion's build with the running binary's.
func checkCompanion(path, self string, theirs *debug.BuildInfo) error {
	mine, ok := debug.ReadBuildInfo()
	if !ok {
		return fmt.Errorf("%s has no build information to compare %s with", self, path)
	}
	if err := sameBuild(mine, theirs); err != nil {
		return fmt.Errorf("%s is not the same build as %s: %w (rebuild both: make build)", path, self, err)
	}
	return nil
}

// BuildInfo is the running binary's build information as text
// (debug.BuildInfo.String), "" if it has none: a companion already running
// tells its starter this, which SameBuild checks without reading the
// companion's file.
func BuildInfo() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.String()
	}
	return ""
}

// SameBuild reports how the build described by info (BuildInfo of
// another binary) differs from the running binary's, as Companion does.
func SameBuild(info string) error {
	mine, ok := debug.ReadBuildInfo()
	if !ok {
		return errors.New("the running binary has no build information")
	}
	theirs, err := debug.ParseBuildInfo(info)
	if err != nil {
		return fmt.Errorf("its build information: %w", err)
	}
	// The one line ParseBuildInfo leaves out (String writes it first).
	first, _, _ := strings.Cut(info, "\n")
	theirs.GoVersion, _ = strings.CutPrefix(first, "go\t")
	return sameBuild(mine, theirs)
}

// sameBuild reports the first difference between the running binary's
// build and its companion's: toolchain, module, build settings (flags, the
// -X SourceID of the Makefile, the VCS revision and whether the tree was
// modified), and the version of every module both link (minibox-lessons
// links the lesson renderer's modules, which minibox does not; go.sum,
// and so SourceID, covers those). What it cannot see: two plain `go
// build`s of one dirty tree at different moments (use make build, whose
// SourceID covers that).
func sameBuild(mine, other *debug.BuildInfo) error {
	if mine.GoVersion != other.GoVersion {
		return fmt.Errorf("built by %s, not %s", other.GoVersion, mine.GoVersion)
	}
	if mine.Main.Path != other.Main.Path || mine.Main.Version != other.Main.Version || mine.Main.Sum != other.Main.Sum {
		return fmt.Errorf("module %s %s, not %s %s", other.Main.Path, other.Main.Version, mine.Main.Path, mine.Main.Version)
	}
	if a, b := settings(mine), settings(other); a != b {
		return fmt.Errorf("build settings [%s], not [%s]", b, a)
	}
	deps := map[string]string{}
	for _, d := range mine.Deps {
		deps[d.Path] = moduleVersion(d)
	}
	for _, d := range other.Deps {
		if v, mineToo := deps[d.Path]; mineToo && moduleVersion(d) != v {
			return fmt.Errorf("module %s %s, not %s", d.Path, moduleVersion(d), v)
		}
	}
	return nil
}

func settings(bi *debug.BuildInfo) string {
	var s []string
	for _, kv := range bi.Settings {
		s = append(s, kv.Key+"="+kv.Value)
	}
	return strings.Join(s, " ")
}

func moduleVersion(m *debug.Module) string {
	if m.Replace != nil {
		return m.Version + "=>" + m.Replace.Path + "@" + m.Replace.Version + " " + m.Replace.Sum
	}
	return m.Version + " " + m.Sum
}

var (
	initOnce sync.Once
	initPath string
)

// FindInit finds the init's binary (initBinary) now, which Create would
// do on its way: a supervisor has it done while it waits for its word
// (reading a companion's build information takes ~0.3 ms in a fresh
// process).
func FindInit() { initBinary() }

// initBinary is the binary a container's init is executed from: the
// first of minibox-init, minibox-shim (both looked for next to the
// running binary, and only of this build) and the running binary itself.
// The smaller the binary, the sooner the init runs: each start pays the
// inits of every package the binary links.
func initBinary() string {
	initOnce.Do(func() {
		if path, err := Companion(InitName); err == nil {
			initPath = path
		} else if shim, err := Shim(); err == nil {
			initPath = shim
		} else {
			initPath = "/proc/self/exe"
		}
	})
	return initPath
}

// minSealedFD keeps the sealed binary's descriptor out of the range that
// Go's fork shuffles while it places the child's files at 0..n (it moves
// them to n, n+1, …): the child must still hold it when it calls execve
// on /proc/self/fd/N. It is close-on-exec: the init never has it.
const minSealedFD = 100

// sealedExe opens binary as a file the container cannot write (see the
// comment at the top) and returns it with a descriptor ≥ minSealedFD.
// scratch is an existing directory of ours, the overlay's empty lower
// layer (its entries never hide the binary: the binary's layer is on top).
func sealedExe(binary, scratch string) (*os.File, error) {
	if real, err := os.Readlink(binary); err == nil && filepath.IsAbs(real) {
		binary = real // /proc/self/exe: overlay wants the real directory
	}
	f, err := overlayExe(binary, scratch)
	if err != nil {
		var err2 error
		if f, err2 = memfdExe(binary); err2 != nil {
			return nil, fmt.Errorf("seal %s for the init: read-only overlay: %v; memfd copy: %w", binary, err, err2)
		}
	}
	defer f.Close()
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, minSealedFD)
	if err != nil {
		return nil, fmt.Errorf("dup the sealed binary: %w", err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// overlayExe opens binary through a detached overlayfs mount made of two
// read-only lower layers (one layer alone would be a bind mount with
// extra steps; overlayfs refuses a lower-only mount of one layer).
func overlayExe(binary, scratch string) (*os.File, error) {
	ctx, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(ctx)
	dir, name := filepath.Split(binary)
	lower := escapeLowerDir(filepath.Clean(dir)) + ":" + escapeLowerDir(scratch)
	if err := unix.FsconfigSetString(ctx, "lowerdir", lower); err != nil {
		return nil, fmt.Errorf("overlay lowerdir=%s: %w", lower, err)
	}
	// xino would only log warnings when the layers are on different file
	// systems; nothing here needs inode numbers that are unique.
	_ = unix.FsconfigSetString(ctx, "xino", "off")
	if err := unix.FsconfigCreate(ctx); err != nil {
		return nil, fmt.Errorf("overlay lowerdir=%s: create: %w", lower, err)
	}
	mnt, err := unix.Fsmount(ctx, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOSUID)
	if err != nil {
		return nil, fmt.Errorf("fsmount overlay: %w", err)
	}
	// Closing the mount's descriptor leaves the file as the only reference
	// to the (never attached) mount: it goes away with the file.
	defer unix.Close(mnt)
	fd, err := unix.Openat(mnt, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s through the overlay: %w", name, err)
	}
	return os.NewFile(uintptr(fd), binary), nil
}

// escapeLowerDir escapes what overlayfs's lowerdir option treats as
// syntax: ':' separates layers, '\' escapes.
func escapeLowerDir(path string) string {
	return strings.ReplaceAll(strings.ReplaceAll(path, `\`, `\\`), `:`, `\:`)
}

// memfdBaseSeals forbid every change of the copy, and further seal changes.
const memfdBaseSeals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// memfdExe copies binary into a sealed memfd.
func memfdExe(binary string) (*os.File, error) {
	src, err := os.Open(binary)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	// MFD_EXEC (Linux 6.3): executable even where vm.memfd_noexec makes
	// memfds non-executable by default; older kernels refuse the flag.
	fd, err := unix.MemfdCreate("minibox-init", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.MemfdCreate("minibox-init", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:minibox-init")
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return nil, fmt.Errorf("copy %s: %w", binary, err)
	}
	if err := f.Chmod(0o511); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, memfdBaseSeals); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal the memfd: %w", err)
	}
	return f, nil
}
