package runtime

// Paths inside the container's root, resolved and created without ever
// leaving it, and mounts made on the files those paths resolved to, held
// by file descriptor.
//
// Checking a path and then mounting onto it by path is a race: the image,
// or a container sharing a volume, can swap a directory on the way for a
// symlink between the check and the mount(2), which then follows the
// symlink onto the host (CVE-2021-30465, runc's "symlink-exchange" bug).
// So every mount target is opened once, with every symlink resolved inside
// the root, and the mount goes onto that open file: whatever is renamed
// afterwards, the descriptor still names the same directory. runc does the
// same (filepath-securejoin's OpenInRoot and MkdirAllInRoot, then mount on
// /proc/thread-self/fd/N or move_mount(2)).

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// maxSymlinks is the kernel's limit on symlinks in one lookup
// (path_resolution(7)).
const maxSymlinks = 40

// openat2Retries bounds the retries of openat2 when it answers EAGAIN: it
// does so when a rename or a mount raced a ".." in the lookup (openat2(2));
// runc's filepath-securejoin allows 128.
const openat2Retries = 128

// noOpenat2 is set once openat2 was unavailable (Linux before 5.6, or a
// seccomp filter that refuses it): the walk below is used from then on.
var noOpenat2 atomic.Bool

// openInRoot opens path below root (an O_PATH descriptor of a directory)
// as an O_PATH descriptor, every symlink resolved as if root were "/":
// absolute targets and ".." never climb above root. Magic links
// (/proc/PID/fd/N, /proc/PID/root…), which jump anywhere, are refused.
func openInRoot(root int, path string) (int, error) {
	if !noOpenat2.Load() {
		how := unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		}
		for i := 0; i < openat2Retries; i++ {
			// openat2(2): RESOLVE_IN_ROOT scopes the whole lookup to root.
			fd, err := unix.Openat2(root, path, &how)
			switch {
			case err == nil:
				return fd, nil
			case errors.Is(err, unix.EAGAIN):
				continue
			case unavailable(err):
				noOpenat2.Store(true)
			default:
				return -1, &os.PathError{Op: "openat2 (in the container's root)", Path: path, Err: err}
			}
			break
		}
	}
	// No openat2, or EAGAIN every time: the walk is as safe, only slower.
	return walkInRoot(root, path, createNothing)
}

// create says what walkInRoot makes of the components that do not exist.
type create int

const (
	createNothing create = iota // fail with ENOENT
	createDirs                  // directories, all the way (mkdir -p)
	createFile                  // directories, and an empty file last
)

// openOrCreateInRoot opens path below root (see openInRoot), creating what
// is missing on the way: directories, and a directory or an empty file
// last. A dangling symlink on the way is followed, inside root, and what
// it names is created (a rootfs's /var/run -> /run without /run).
func openOrCreateInRoot(root int, path string, dir bool) (int, error) {
	fd, err := openInRoot(root, path)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	mode := createFile
	if dir {
		mode = createDirs
	}
	return walkInRoot(root, path, mode)
}

// walkInRoot resolves path below root one component at a time, each
// opened with openat(2) O_PATH|O_NOFOLLOW relative to the descriptor of
// the one before: a symlink is read (readlinkat(2) on its own descriptor)
// and its target walked the same way, from root when it is absolute; ".."
// goes back to the descriptor before, never above root. Nothing is looked
// up twice by name, so renaming things meanwhile cannot make the walk
// leave root. Missing components are made as mode says.
func walkInRoot(root int, path string, mode create) (int, error) {
	var stack []int // the directories walked so far, root excluded
	defer func() {
		for _, fd := range stack {
			unix.Close(fd)
		}
	}()
	top := func() int {
		if len(stack) == 0 {
			return root
		}
		return stack[len(stack)-1]
	}
	rest := strings.Split(path, "/")
	for links := 0; len(rest) > 0; {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			if len(stack) > 0 {
				unix.Close(stack[len(stack)-1])
				stack = stack[:len(stack)-1]
			}
			continue
		}
		last := isLast(rest)
		fd, err := openNoFollow(top(), name)
		if errors.Is(err, unix.ENOENT) && mode != createNothing {
			if err = makeEntry(top(), name, last && mode == createFile); err == nil {
				fd, err = openNoFollow(top(), name)
			}
		}
		if err != nil {
			return -1, &os.PathError{Op: "open (in the container's root)", Path: path, Err: err}
		}
		var st unix.Stat_t
		// fstat(2): what did we open (O_PATH|O_NOFOLLOW opens a symlink itself)?
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, &os.PathError{Op: "fstat", Path: path, Err: err}
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			target, err := readlinkFd(fd)
			unix.Close(fd)
			if err != nil {
				return -1, &os.PathError{Op: "readlink", Path: path, Err: err}
			}
			if links++; links > maxSymlinks {
				return -1, &os.PathError{Op: "open (in the container's root)", Path: path, Err: unix.ELOOP}
			}
			if strings.HasPrefix(target, "/") {
				for _, d := range stack {
					unix.Close(d)
				}
				stack = nil
			}
			rest = append(strings.Split(target, "/"), rest...)
			continue
		case unix.S_IFDIR:
		default:
			if !last {
				unix.Close(fd)
				return -1, &os.PathError{Op: "open (in the container's root)", Path: path, Err: unix.ENOTDIR}
			}
		}
		stack = append(stack, fd)
	}
	if len(stack) == 0 {
		// path is root itself: a descriptor of its own for the caller.
		return openNoFollow(root, ".")
	}
	fd := stack[len(stack)-1]
	stack = stack[:len(stack)-1]
	return fd, nil
}

// isLast reports whether no real component follows.
func isLast(rest []string) bool {
	for _, c := range rest {
		if c != "" && c != "." {
			return false
		}
	}
	return true
}

func openNoFollow(dir int, name string) (int, error) {
	// openat(2): O_PATH|O_NOFOLLOW never follows a symlink in name, and
	// name is one component: nothing but dir's own entry is looked up.
	return unix.Openat(dir, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

// makeEntry makes a missing directory, or an empty file; one that a racer
// made meanwhile is fine (it is opened without following it next).
func makeEntry(dir int, name string, file bool) error {
	var err error
	if file {
		var fd int
		// openat(2): O_CREAT|O_EXCL never follows a symlink in name.
		fd, err = unix.Openat(dir, name, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(fd)
		}
	} else {
		// mkdirat(2)
		err = unix.Mkdirat(dir, name, 0o755)
	}
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

// readlinkFd reads the symlink fd was opened on (readlinkat(2) with an
// empty path: the O_PATH|O_NOFOLLOW descriptor's own link).
func readlinkFd(fd int) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// unavailable reports whether a system call newer than mount(2) and
// openat(2) is missing: ENOSYS from an older kernel, or EPERM from a
// seccomp filter that does not know it (a runtime run inside a container).
// The older calls then do the same work, and fail on their own if it is
// really not permitted.
func unavailable(err error) bool {
	return errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM)
}

// fdPath is the name mount(2), which takes paths, reaches an open file by:
// the kernel follows the magic link /proc/self/fd/N to that very file,
// whatever its name is now (proc(5)). Only used where /proc is a procfs
// nothing in the container can change (see procIsProcfs).
func fdPath(fd int) string {
	return "/proc/self/fd/" + strconv.Itoa(fd)
}

// procIsProcfs checks that /proc/self/fd is on a procfs (statfs(2)): after
// pivot_root, /proc is the container's, and in a rootfs without a proc
// mount it is whatever the image put there.
func procIsProcfs() error {
	var st unix.Statfs_t
	if err := unix.Statfs("/proc/self/fd", &st); err != nil {
		return fmt.Errorf("/proc/self/fd: %w", err)
	}
	if st.Type != unix.PROC_SUPER_MAGIC {
		return errors.New("/proc is not a procfs: cannot mount by file descriptor through /proc/self/fd")
	}
	return nil
}

// isProcfs reports whether fd is on a procfs (fstatfs(2)).
func isProcfs(fd int) bool {
	var st unix.Statfs_t
	return unix.Fstatfs(fd, &st) == nil && st.Type == unix.PROC_SUPER_MAGIC
}

// bindFd bind-mounts the file src is open on onto the file dst is open on:
// open_tree(2) OPEN_TREE_CLONE makes the bind mount detached, move_mount(2)
// attaches it to dst; no path is looked up at all. Where the new mount API
// is missing (Linux before 5.2), mount(2) through /proc/self/fd does it.
func bindFd(src, dst int, recursive bool) error {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC | unix.AT_EMPTY_PATH)
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	// open_tree(2)
	tree, err := unix.OpenTree(src, "", flags)
	if unavailable(err) {
		return bindFdLegacy(src, dst, recursive)
	}
	if err != nil {
		return fmt.Errorf("open_tree: %w", err)
	}
	defer unix.Close(tree)
	// move_mount(2): both ends by descriptor.
	if err := unix.MoveMount(tree, "", dst, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}

func bindFdLegacy(src, dst int, recursive bool) error {
	if err := procIsProcfs(); err != nil {
		return err
	}
	flags := uintptr(unix.MS_BIND)
	if recursive {
		flags |= unix.MS_REC
	}
	// mount(2) MS_BIND, both ends through /proc/self/fd.
	if err := unix.Mount(fdPath(src), fdPath(dst), "", flags, ""); err != nil {
		return fmt.Errorf("mount --bind: %w", err)
	}
	return nil
}

// mountOnFd mounts a new file system of type fstype onto the directory dst
// is open on (mount(2) through /proc/self/fd).
func mountOnFd(source string, dst int, fstype string, flags uintptr, data string) error {
	if err := procIsProcfs(); err != nil {
		return err
	}
	// mount(2)
	return unix.Mount(source, fdPath(dst), fstype, flags, data)
}

// openPath opens a path of the host (a bind source, a cgroup, a device) as
// O_PATH, following its symlinks once, now: the mount uses this
// descriptor, so a source swapped after the check cannot redirect it.
func openPath(path string) (int, error) {
	// open(2) O_PATH
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// fdIsDir reports whether fd is open on a directory (fstat(2)).
func fdIsDir(fd int) (bool, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, err
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}

// checkInside verifies that fd's file is below dir (readlink of
// /proc/self/fd/N, the kernel's own name for it): a last line of defence,
// as runc has, in case a lookup ever went astray.
func checkInside(fd int, dir string) error {
	where, err := os.Readlink(fdPath(fd))
	if err != nil {
		return err
	}
	if where != dir && !strings.HasPrefix(where, dir+"/") && dir != "/" {
		return fmt.Errorf("resolved to %s, outside the container's root %s: refusing to mount there", where, dir)
	}
	return nil
}
