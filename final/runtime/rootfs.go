package runtime

// The container's file system, made by the init in its new mount
// namespace: config.json's mounts below root.path, the default devices,
// pivot_root, then masked and read-only paths and a read-only root.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// mountFlags are the mount options that are flags (mount(8)); set=false
// clears the flag. Other options go to the file system as data.
var mountFlags = map[string]struct {
	set  bool
	flag uintptr
}{
	"ro": {true, unix.MS_RDONLY}, "rw": {false, unix.MS_RDONLY},
	"nosuid": {true, unix.MS_NOSUID}, "suid": {false, unix.MS_NOSUID},
	"nodev": {true, unix.MS_NODEV}, "dev": {false, unix.MS_NODEV},
	"noexec": {true, unix.MS_NOEXEC}, "exec": {false, unix.MS_NOEXEC},
	"sync": {true, unix.MS_SYNCHRONOUS}, "async": {false, unix.MS_SYNCHRONOUS},
	"dirsync": {true, unix.MS_DIRSYNC}, "remount": {true, unix.MS_REMOUNT},
	"mand": {true, unix.MS_MANDLOCK}, "nomand": {false, unix.MS_MANDLOCK},
	"atime": {false, unix.MS_NOATIME}, "noatime": {true, unix.MS_NOATIME},
	"diratime": {false, unix.MS_NODIRATIME}, "nodiratime": {true, unix.MS_NODIRATIME},
	"relatime": {true, unix.MS_RELATIME}, "norelatime": {false, unix.MS_RELATIME},
	"strictatime": {true, unix.MS_STRICTATIME}, "nostrictatime": {false, unix.MS_STRICTATIME},
	"bind": {true, unix.MS_BIND}, "rbind": {true, unix.MS_BIND | unix.MS_REC},
}

// propagationFlags are the options that change a mount's propagation.
var propagationFlags = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// parseMountOptions splits options into flags, propagation changes and data.
func parseMountOptions(opts []string) (flags uintptr, prop []uintptr, data string) {
	var extra []string
	for _, o := range opts {
		if f, ok := mountFlags[o]; ok {
			if f.set {
				flags |= f.flag
			} else {
				flags &^= f.flag
			}
		} else if p, ok := propagationFlags[o]; ok {
			prop = append(prop, p)
		} else {
			extra = append(extra, o)
		}
	}
	return flags, prop, strings.Join(extra, ",")
}

// rootDir is the container's root before pivot_root: an O_PATH descriptor
// of root.path (after it was bound onto itself, so that it names the bind
// mount everything is mounted below) and the kernel's name for it.
type rootDir struct {
	fd   int
	path string
}

// target opens (creating it if missing: a directory, or an empty file for
// a file) the mount point dest inside the root, and checks where it landed.
func (r rootDir) target(dest string, dir bool) (int, error) {
	return r.inside(openOrCreateInRoot(r.fd, dest, dir))
}

// mountRoot opens what dest names now that something is mounted there:
// the root of that mount, which a remount or a change of propagation needs
// (the descriptor target returned still names the directory below).
func (r rootDir) mountRoot(dest string) (int, error) {
	return r.inside(openInRoot(r.fd, dest))
}

// inside passes on what was opened if it lies inside the root, and
// closes it otherwise.
func (r rootDir) inside(fd int, err error) (int, error) {
	if err != nil {
		return -1, err
	}
	if err := checkInside(fd, r.path); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// setupRootfs mounts everything below the rootfs and pivots into it.
// Every mount target is resolved inside the rootfs and held open, and the
// mount is made on that descriptor (see openat2.go): the image's symlinks,
// however they are swapped meanwhile, cannot send a mount to the host.
func setupRootfs(b *bootstrap) error {
	s, rootfs := b.Spec, b.Rootfs
	// Nothing mounted here may propagate to the host (mount_namespaces(7)).
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("mount --make-rprivate /: %w", err)
	}
	// pivot_root needs the new root to be a mount point. root.path is the
	// bundle's (the host's, not the image's) path: mount(2) by name is fine.
	if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("config.json: root.path: mount --rbind %s %s: %w", rootfs, rootfs, err)
	}
	// open(2) O_PATH, after the bind: the descriptor names the new mount.
	fd, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("config.json: root.path: open %s: %w", rootfs, err)
	}
	defer unix.Close(fd)
	name, err := os.Readlink(fdPath(fd))
	if err != nil {
		return fmt.Errorf("config.json: root.path: %w", err)
	}
	root := rootDir{fd: fd, path: name}
	userNS := hasNamespace(s, specs.UserNamespace)
	for i, m := range s.Mounts {
		if err := mountOne(b, root, m, userNS); err != nil {
			return fmt.Errorf("config.json: mounts[%d] (%s on %s): %w", i, m.Type, m.Destination, err)
		}
	}
	if err := makeDevices(root, s, userNS); err != nil {
		return err
	}
	return pivotRoot(root)
}

// mountOne makes one of config.json's mounts.
func mountOne(b *bootstrap, root rootDir, m specs.Mount, userNS bool) error {
	flags, prop, data := parseMountOptions(m.Options)
	var err error
	switch {
	case m.Type == "bind" || flags&unix.MS_BIND != 0:
		source := m.Source
		if !filepath.IsAbs(source) {
			source = filepath.Join(b.Bundle, source)
		}
		err = mountBind(root, source, m.Destination, flags, userNS)
	case m.Type == "cgroup":
		err = mountCgroup(root, m.Destination, flags, b.Cgroup)
	default:
		err = mountNew(root, m, flags, data)
		if m.Type == "sysfs" && errors.Is(err, unix.EPERM) {
			// A user namespace without its own network namespace may not
			// mount sysfs; bind the host's read-only, as runc does.
			err = mountBind(root, "/sys", m.Destination, unix.MS_BIND|unix.MS_REC|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, userNS)
		}
	}
	if err != nil || len(prop) == 0 {
		return err
	}
	fd, err := root.mountRoot(m.Destination)
	if err != nil {
		return fmt.Errorf("propagation: %w", err)
	}
	defer unix.Close(fd)
	for _, p := range prop {
		// mount(2) MS_SHARED/MS_PRIVATE/…: the mount's root, by descriptor.
		if err := unix.Mount("", fdPath(fd), "", p, ""); err != nil {
			return fmt.Errorf("propagation: %w", err)
		}
	}
	return nil
}

// mountNew mounts a new file system (proc, tmpfs, devpts…) on its
// directory, made if missing.
func mountNew(root rootDir, m specs.Mount, flags uintptr, data string) error {
	fd, err := root.target(m.Destination, true)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return mountOnFd(m.Source, fd, m.Type, flags, data)
}

// mountBind binds source (a path of the host) onto dest in the container,
// then applies the flags a bind mount ignores the first time (ro,
// nosuid…) with a remount. The source is opened once: a symlink in it is
// resolved then, and what it resolved to is what gets bound.
func mountBind(root rootDir, source, dest string, flags uintptr, userNS bool) error {
	src, err := openPath(source)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer unix.Close(src)
	dir, err := fdIsDir(src)
	if err != nil {
		return fmt.Errorf("source %s: %w", source, err)
	}
	dst, err := root.target(dest, dir)
	if err != nil {
		return err
	}
	err = bindFd(src, dst, flags&unix.MS_REC != 0)
	unix.Close(dst)
	if err != nil {
		return fmt.Errorf("bind %s: %w", source, err)
	}
	if flags&^(unix.MS_BIND|unix.MS_REC) == 0 {
		return nil
	}
	fd, err := root.mountRoot(dest)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return remount(fd, flags&^unix.MS_REC, userNS)
}

// remount changes the flags of the bind mount whose root fd is open on. In
// a user namespace the flags the mount had (nosuid, nodev, noexec, atime)
// are locked and must be kept.
func remount(fd int, flags uintptr, userNS bool) error {
	if userNS {
		var st unix.Statfs_t
		// fstatfs(2): the mount's flags now.
		if err := unix.Fstatfs(fd, &st); err == nil {
			flags |= uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME | unix.MS_RDONLY)
		}
	}
	if err := mountOnFd("", fd, "", flags|unix.MS_BIND|unix.MS_REMOUNT, ""); err != nil {
		return fmt.Errorf("mount -o remount,bind: %w", err)
	}
	return nil
}

// mountCgroup gives the container its own cgroup directories: cgroup2 on
// v2; on v1 a tmpfs with a bind of the container's own group of each
// controller (the host's hierarchy above it stays hidden).
func mountCgroup(root rootDir, dest string, flags uintptr, g *cgroup) error {
	fd, err := root.target(dest, true)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if g == nil || g.V2 {
		return mountOnFd("cgroup2", fd, "cgroup2", flags, "")
	}
	if err := mountOnFd("tmpfs", fd, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755"); err != nil {
		return err
	}
	for _, d := range g.Dirs {
		rel, _ := filepath.Rel(cgroupRoot, d)
		target := filepath.Join(dest, strings.SplitN(rel, "/", 2)[0])
		if err := mountBind(root, d, target, unix.MS_BIND|flags, false); err != nil {
			return err
		}
	}
	if flags&unix.MS_RDONLY == 0 {
		return nil
	}
	tmpfs, err := root.mountRoot(dest)
	if err != nil {
		return err
	}
	defer unix.Close(tmpfs)
	return mountOnFd("", tmpfs, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755")
}

// defaultDevices are the devices every container gets (the runtime spec's
// list).
var defaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0},
}

// makeDevices creates the default devices and linux.devices, and the
// usual /dev symlinks.
func makeDevices(root rootDir, s *specs.Spec, userNS bool) error {
	devs := append(append([]specs.LinuxDevice{}, defaultDevices...), s.Linux.Devices...)
	for i, d := range devs {
		if err := makeDevice(root, d, userNS); err != nil {
			return fmt.Errorf("device %s (linux.devices[%d] or a default one): %w", d.Path, i-len(defaultDevices), err)
		}
	}
	dev, err := root.target("/dev", true)
	if err != nil {
		return fmt.Errorf("/dev: %w", err)
	}
	defer unix.Close(dev)
	links := [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}}
	if pts, err := openInRoot(root.fd, "/dev/pts/ptmx"); err == nil {
		unix.Close(pts)
		// The container's own pseudo-terminals, not the host's.
		_ = unix.Unlinkat(dev, "ptmx", 0) // unlinkat(2): never follows
		links = append(links, [2]string{"pts/ptmx", "ptmx"})
	}
	for _, l := range links {
		// symlinkat(2): made in the /dev we hold, not by name.
		err := unix.Symlinkat(l[0], dev, l[1])
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("ln -s %s /dev/%s: %w", l[0], l[1], err)
		}
	}
	return nil
}

// deviceKinds are linux.devices' types as file types.
var deviceKinds = map[string]uint32{"c": unix.S_IFCHR, "u": unix.S_IFCHR, "b": unix.S_IFBLK, "p": unix.S_IFIFO}

// makeDevice makes one device node with mknod, or, where mknod is not
// allowed (a user namespace), binds the host's.
func makeDevice(root rootDir, d specs.LinuxDevice, userNS bool) error {
	kind := deviceKinds[d.Type]
	if kind == 0 {
		return fmt.Errorf("type %q: use c, b, u or p", d.Type)
	}
	path := filepath.Clean("/" + d.Path)
	if !userNS {
		err := mknodInRoot(root, path, kind, d)
		if err == nil || (!errors.Is(err, unix.EEXIST) && !errors.Is(err, unix.EPERM)) {
			return err
		}
	}
	// The host's device, bound; its path is the host's own (/dev/…).
	return mountBind(root, path, path, unix.MS_BIND, userNS)
}

// mknodInRoot makes the node in its directory (held open), then sets its
// mode and owner through a descriptor of the node itself.
func mknodInRoot(root rootDir, path string, kind uint32, d specs.LinuxDevice) error {
	dir, err := root.target(filepath.Dir(path), true)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	name := filepath.Base(path)
	mode := uint32(0o666)
	if d.FileMode != nil {
		mode = uint32(*d.FileMode) & 0o7777
	}
	dev := unix.Mkdev(uint32(d.Major), uint32(d.Minor))
	// mknodat(2): never follows a symlink in name (EEXIST instead).
	if err := unix.Mknodat(dir, name, kind|mode, int(dev)); err != nil {
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.EPERM) {
			return err
		}
		return fmt.Errorf("mknod: %w", err)
	}
	fd, err := openNoFollow(dir, name)
	if err != nil {
		return fmt.Errorf("open the new node: %w", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != kind || (kind != unix.S_IFIFO && st.Rdev != dev) {
		return fmt.Errorf("the node made is not the device any more (replaced meanwhile): %v", err)
	}
	// chmod(2) through /proc/self/fd (an O_PATH descriptor has no
	// fchmod): mknod obeys the umask.
	if err := procIsProcfs(); err != nil {
		return err
	}
	if err := unix.Chmod(fdPath(fd), mode); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if d.UID == nil && d.GID == nil {
		return nil
	}
	uid, gid := -1, -1
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	// fchownat(2) AT_EMPTY_PATH: the node fd is open on.
	if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	return nil
}

// pivotRoot makes the root the root of the mount namespace and detaches
// the host's tree (pivot_root(2)'s "." "." idiom: no spare directory
// needed).
func pivotRoot(root rootDir) error {
	// fchdir(2): into the mount we hold, not whatever the name is now.
	if err := unix.Fchdir(root.fd); err != nil {
		return fmt.Errorf("cd %s: %w", root.path, err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root %s: %w", root.path, err)
	}
	// The old root is stacked on the new one: detach it, slave first so
	// the unmount cannot reach the host.
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("mount --make-rslave old root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("umount -l old root: %w", err)
	}
	return unix.Chdir("/")
}

// openRoot is an O_PATH descriptor of "/", after pivot_root the
// container's root, for lookups that stay inside it.
func openRoot() (int, error) {
	// open(2) O_PATH|O_DIRECTORY
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /: %w", err)
	}
	return fd, nil
}

// finishRootfs applies, after pivot_root, linux.maskedPaths,
// linux.readonlyPaths, root.readonly and linux.rootfsPropagation.
//
// The host's tree is gone by now, but by-name mounts are still not safe:
// the container's /proc holds files that act on the host (sysrq-trigger,
// sys/kernel/core_pattern), and a /dev/null or a masked path swapped for a
// symlink to one of them would bind it writable into the container
// (CVE-2025-31133). So these too are resolved inside the root, held open,
// and mounted by descriptor; /dev/null must be the null device.
func finishRootfs(s *specs.Spec) error {
	root, err := openRoot()
	if err != nil {
		return err
	}
	defer unix.Close(root)
	userNS := hasNamespace(s, specs.UserNamespace)
	for i, p := range s.Linux.MaskedPaths {
		if err := maskPath(root, p); err != nil {
			return fmt.Errorf("config.json: linux.maskedPaths[%d] %s: %w", i, p, err)
		}
	}
	for i, p := range s.Linux.ReadonlyPaths {
		if err := readonlyPath(root, p, userNS); err != nil {
			return fmt.Errorf("config.json: linux.readonlyPaths[%d] %s: %w", i, p, err)
		}
	}
	if s.Root.Readonly {
		// "/" is the root itself: there is no name on the way to swap.
		if err := remountRoot(userNS); err != nil {
			return fmt.Errorf("config.json: root.readonly: %w", err)
		}
	}
	if p := s.Linux.RootfsPropagation; p != "" {
		flag, ok := propagationFlags[p]
		if !ok {
			return fmt.Errorf("config.json: linux.rootfsPropagation %q: unknown", p)
		}
		if err := unix.Mount("", "/", "", flag, ""); err != nil {
			return fmt.Errorf("config.json: linux.rootfsPropagation %q: %w", p, err)
		}
	}
	return nil
}

// remountRoot makes "/" read-only, keeping its locked flags in a user
// namespace.
func remountRoot(userNS bool) error {
	flags := uintptr(unix.MS_RDONLY | unix.MS_BIND | unix.MS_REMOUNT)
	if userNS {
		var st unix.Statfs_t
		if err := unix.Statfs("/", &st); err == nil {
			flags |= uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME)
		}
	}
	// mount(2) MS_REMOUNT
	return unix.Mount("", "/", "", flags, "")
}

// maskPath hides a file behind /dev/null, a directory behind an empty
// read-only tmpfs; a path that does not exist needs no mask.
func maskPath(root int, p string) error {
	fd, err := openInRoot(root, p)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	dir, err := fdIsDir(fd)
	if err != nil {
		return err
	}
	if dir {
		return mountEmptyReadonly(fd)
	}
	null, err := openDevNull(root)
	if err != nil {
		return err
	}
	defer unix.Close(null)
	return bindFd(null, fd, false)
}

// openDevNull opens the container's /dev/null and checks that it is the
// null device (1:3), not something put in its place.
func openDevNull(root int) (int, error) {
	fd, err := openInRoot(root, "/dev/null")
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		unix.Close(fd)
		return -1, fmt.Errorf("/dev/null is not the null device (1:3): refusing to mask with it")
	}
	return fd, nil
}

// mountEmptyReadonly mounts an empty read-only tmpfs on the directory fd
// is open on: fsopen(2), fsconfig(2), fsmount(2) make it detached,
// move_mount(2) attaches it. Without the new mount API (Linux before 5.2),
// mount(2) through /proc/self/fd.
func mountEmptyReadonly(fd int) error {
	// fsopen(2)
	fs, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if unavailable(err) {
		return mountOnFd("tmpfs", fd, "tmpfs", unix.MS_RDONLY, "")
	}
	if err != nil {
		return fmt.Errorf("fsopen tmpfs: %w", err)
	}
	defer unix.Close(fs)
	// fsconfig(2) FSCONFIG_CMD_CREATE
	if err := unix.FsconfigCreate(fs); err != nil {
		return fmt.Errorf("fsconfig tmpfs: %w", err)
	}
	// fsmount(2)
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY)
	if err != nil {
		return fmt.Errorf("fsmount tmpfs: %w", err)
	}
	defer unix.Close(mnt)
	// move_mount(2)
	if err := unix.MoveMount(mnt, "", fd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}

// readonlyPath binds p onto itself and makes that read-only: open_tree(2)
// clones p's mounts detached, mount_setattr(2) sets ro,nosuid,nodev,noexec
// (it only sets: flags locked in a user namespace stay), move_mount(2) puts
// the clone on p. Without mount_setattr (Linux before 5.12), mount(2).
func readonlyPath(root int, p string, userNS bool) error {
	fd, err := openInRoot(root, p)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// open_tree(2)
	tree, err := unix.OpenTree(fd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if unavailable(err) {
		return readonlyPathLegacy(root, p, fd, userNS)
	}
	if err != nil {
		return fmt.Errorf("open_tree: %w", err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC}
	// mount_setattr(2), on the whole detached clone.
	err = unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr)
	if unavailable(err) {
		return readonlyPathLegacy(root, p, fd, userNS)
	}
	if err != nil {
		return fmt.Errorf("mount_setattr: %w", err)
	}
	// move_mount(2)
	if err := unix.MoveMount(tree, "", fd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}

// readonlyPathLegacy is readonlyPath with mount(2) through /proc/self/fd.
func readonlyPathLegacy(root int, p string, fd int, userNS bool) error {
	if err := bindFdLegacy(fd, fd, true); err != nil {
		return err
	}
	top, err := openInRoot(root, p)
	if err != nil {
		return err
	}
	defer unix.Close(top)
	return remount(top, unix.MS_RDONLY|unix.MS_REC|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, userNS)
}

// secureJoin is root/path with every symlink on the way resolved inside
// root: a rootfs whose /proc links to /etc must not make us mount over the
// host's /etc.
func secureJoin(root, path string) (string, error) {
	var resolved string // relative to root, cleaned
	rest := strings.Split(filepath.Clean("/"+path), "/")
	for links := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		if c == "" || c == "." {
			continue
		}
		if c == ".." {
			resolved = filepath.Dir("/" + resolved)[1:]
			continue
		}
		next := filepath.Join(resolved, c)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			resolved = next
			continue
		}
		if links++; links > 255 {
			return "", fmt.Errorf("%s: too many symlinks", path)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			resolved = ""
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return filepath.Join(root, resolved), nil
}
