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

// setupRootfs mounts everything below the rootfs and pivots into it.
func setupRootfs(b *bootstrap) error {
	s, rootfs := b.Spec, b.Rootfs
	// Nothing mounted here may propagate to the host (mount_namespaces(7)).
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("mount --make-rprivate /: %w", err)
	}
	// pivot_root needs the new root to be a mount point.
	if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("config.json: root.path: mount --rbind %s %s: %w", rootfs, rootfs, err)
	}
	userNS := hasNamespace(s, specs.UserNamespace)
	for i, m := range s.Mounts {
		if err := mountOne(b, m, userNS); err != nil {
			return fmt.Errorf("config.json: mounts[%d] (%s on %s): %w", i, m.Type, m.Destination, err)
		}
	}
	if err := makeDevices(rootfs, s, userNS); err != nil {
		return err
	}
	return pivotRoot(rootfs)
}

// mountOne makes one of config.json's mounts.
func mountOne(b *bootstrap, m specs.Mount, userNS bool) error {
	dest, err := secureJoin(b.Rootfs, m.Destination)
	if err != nil {
		return err
	}
	flags, prop, data := parseMountOptions(m.Options)
	switch {
	case m.Type == "bind" || flags&unix.MS_BIND != 0:
		err = mountBind(b.Bundle, m.Source, dest, flags, userNS)
	case m.Type == "cgroup":
		err = mountCgroup(dest, flags, b.Cgroup)
	default:
		if err = os.MkdirAll(dest, 0o755); err != nil {
			return err
		}
		err = unix.Mount(m.Source, dest, m.Type, flags, data)
		if m.Type == "sysfs" && errors.Is(err, unix.EPERM) {
			// A user namespace without its own network namespace may not
			// mount sysfs; bind the host's read-only, as runc does.
			err = mountBind("", "/sys", dest, unix.MS_BIND|unix.MS_REC|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, userNS)
		}
	}
	if err != nil {
		return err
	}
	for _, p := range prop {
		if err := unix.Mount("", dest, "", p, ""); err != nil {
			return fmt.Errorf("propagation: %w", err)
		}
	}
	return nil
}

// mountBind binds source (relative to the bundle) onto dest, then applies
// the flags a bind mount ignores the first time (ro, nosuid…) with a
// remount.
func mountBind(bundle, source, dest string, flags uintptr, userNS bool) error {
	if !filepath.IsAbs(source) {
		source = filepath.Join(bundle, source)
	}
	fi, err := os.Stat(source)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if err := makeTarget(dest, fi.IsDir()); err != nil {
		return err
	}
	if err := unix.Mount(source, dest, "", unix.MS_BIND|flags&unix.MS_REC, ""); err != nil {
		return fmt.Errorf("mount --bind %s %s: %w", source, dest, err)
	}
	if flags&^(unix.MS_BIND|unix.MS_REC) == 0 {
		return nil
	}
	return remount(dest, flags&^unix.MS_REC, userNS)
}

// remount changes a bind mount's flags. In a user namespace the flags the
// mount had (nosuid, nodev, noexec, atime) are locked and must be kept.
func remount(dest string, flags uintptr, userNS bool) error {
	if userNS {
		var st unix.Statfs_t
		if err := unix.Statfs(dest, &st); err == nil {
			flags |= uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME | unix.MS_RDONLY)
		}
	}
	if err := unix.Mount("", dest, "", flags|unix.MS_BIND|unix.MS_REMOUNT, ""); err != nil {
		return fmt.Errorf("mount -o remount,bind %s: %w", dest, err)
	}
	return nil
}

// makeTarget makes the mount point: a directory, or an empty file for a
// file.
func makeTarget(dest string, dir bool) error {
	if dir {
		return os.MkdirAll(dest, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dest, os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// mountCgroup gives the container its own cgroup directories: cgroup2 on
// v2; on v1 a tmpfs with a bind of the container's own group of each
// controller (the host's hierarchy above it stays hidden).
func mountCgroup(dest string, flags uintptr, g *cgroup) error {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	if g == nil || g.V2 {
		return unix.Mount("cgroup2", dest, "cgroup2", flags, "")
	}
	if err := unix.Mount("tmpfs", dest, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755"); err != nil {
		return err
	}
	for _, d := range g.Dirs {
		rel, _ := filepath.Rel(cgroupRoot, d)
		target := filepath.Join(dest, strings.SplitN(rel, "/", 2)[0])
		if err := mountBind("", d, target, unix.MS_BIND|flags, false); err != nil {
			return err
		}
	}
	if flags&unix.MS_RDONLY != 0 {
		return unix.Mount("", dest, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755")
	}
	return nil
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
func makeDevices(rootfs string, s *specs.Spec, userNS bool) error {
	devs := append(append([]specs.LinuxDevice{}, defaultDevices...), s.Linux.Devices...)
	for i, d := range devs {
		if err := makeDevice(rootfs, d, userNS); err != nil {
			return fmt.Errorf("device %s (linux.devices[%d] or a default one): %w", d.Path, i-len(defaultDevices), err)
		}
	}
	links := [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}}
	pts := filepath.Join(rootfs, "dev/pts/ptmx")
	if exists(pts) {
		// The container's own pseudo-terminals, not the host's.
		_ = os.Remove(filepath.Join(rootfs, "dev/ptmx"))
		links = append(links, [2]string{"pts/ptmx", "ptmx"})
	}
	for _, l := range links {
		err := os.Symlink(l[0], filepath.Join(rootfs, "dev", l[1]))
		if err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("ln -s %s /dev/%s: %w", l[0], l[1], err)
		}
	}
	return nil
}

// makeDevice makes one device node with mknod, or, where mknod is not
// allowed (a user namespace), binds the host's.
func makeDevice(rootfs string, d specs.LinuxDevice, userNS bool) error {
	dest, err := secureJoin(rootfs, d.Path)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	mode := uint32(0o666)
	if d.FileMode != nil {
		mode = uint32(*d.FileMode)
	}
	kind := map[string]uint32{"c": unix.S_IFCHR, "u": unix.S_IFCHR, "b": unix.S_IFBLK, "p": unix.S_IFIFO}[d.Type]
	if kind == 0 {
		return fmt.Errorf("type %q: use c, b, u or p", d.Type)
	}
	if !userNS {
		err = unix.Mknod(dest, kind|mode, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor))))
		if err == nil {
			_ = unix.Chmod(dest, mode) // mknod obeys the umask
			if d.UID != nil || d.GID != nil {
				uid, gid := -1, -1
				if d.UID != nil {
					uid = int(*d.UID)
				}
				if d.GID != nil {
					gid = int(*d.GID)
				}
				return os.Lchown(dest, uid, gid)
			}
			return nil
		}
		if !errors.Is(err, unix.EEXIST) && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("mknod: %w", err)
		}
	}
	if err := makeTarget(dest, false); err != nil {
		return err
	}
	return unix.Mount(d.Path, dest, "", unix.MS_BIND, "")
}

// pivotRoot makes rootfs the root of the mount namespace and detaches the
// host's tree (pivot_root(2)'s "." "." idiom: no spare directory needed).
func pivotRoot(rootfs string) error {
	if err := unix.Chdir(rootfs); err != nil {
		return fmt.Errorf("cd %s: %w", rootfs, err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root %s: %w", rootfs, err)
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

// finishRootfs applies, after pivot_root, linux.maskedPaths,
// linux.readonlyPaths, root.readonly and linux.rootfsPropagation.
func finishRootfs(s *specs.Spec) error {
	userNS := hasNamespace(s, specs.UserNamespace)
	for i, p := range s.Linux.MaskedPaths {
		if err := maskPath(p); err != nil {
			return fmt.Errorf("config.json: linux.maskedPaths[%d] %s: %w", i, p, err)
		}
	}
	for i, p := range s.Linux.ReadonlyPaths {
		if err := readonlyPath(p, userNS); err != nil {
			return fmt.Errorf("config.json: linux.readonlyPaths[%d] %s: %w", i, p, err)
		}
	}
	if s.Root.Readonly {
		if err := remount("/", unix.MS_RDONLY, userNS); err != nil {
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

// maskPath hides a file behind /dev/null, a directory behind an empty
// read-only tmpfs; a path that does not exist needs no mask.
func maskPath(p string) error {
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "size=0")
	}
	return unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
}

// readonlyPath binds p onto itself and makes that read-only.
func readonlyPath(p string, userNS bool) error {
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	return remount(p, unix.MS_RDONLY|unix.MS_REC|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, userNS)
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
