package main

// The child's filesystem, step by step. Everything here happens in the
// child's new mount namespace: the host's mount table never changes, and
// every mount made here disappears with the namespace when the container's
// last process exits.

import (
	"errors"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// enterRootfs prepares ROOTFS and makes it the root of the mount namespace.
// The mounts come before pivot_root: in a user namespace the kernel allows
// a new proc or sysfs only where one is already fully visible (so the new
// one reveals nothing more), and the host's go away with the old root.
func enterRootfs(rootfs string) {
	makeMountsPrivate()
	mountLayers(rootfs) // the overlay, made by the parent (layers.go)
	bindOntoItself(rootfs)
	mountProc(filepath.Join(rootfs, "proc"))
	mountDev(filepath.Join(rootfs, "dev"))
	mountSys(filepath.Join(rootfs, "sys"))
	pivotRoot(rootfs)
}

// makeMountsPrivate: no mount made here may reach the host.
//
// The new namespace starts with a copy of the host's mounts, and on systemd
// hosts those are "shared" (mount_namespaces(7)): a mount made under a
// shared mount is propagated to its peers, here the host's. Without this
// step our /proc would appear on the host too, and pivot_root would refuse
// to run (it fails with EINVAL on shared mounts).
func makeMountsPrivate() {
	must(unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""), "mount --make-rprivate /")
}

// bindOntoItself makes ROOTFS a mount point.
//
// pivot_root needs the new root to be a mount point, and a plain directory
// becomes one once something, here the directory itself, is mounted on it.
func bindOntoItself(rootfs string) {
	err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, "")
	if errors.Is(err, unix.EACCES) {
		// Only possible with --userns: root inside is host uid 100000,
		// which needs search (x) permission on every directory above ROOTFS.
		fail(1, "mount --rbind %s %s: %v: container root (host uid %d) cannot reach it; every directory above it needs o+x",
			rootfs, rootfs, err, userNSHostID)
	}
	must(err, "mount --rbind %s %s", rootfs, rootfs)
}

// mountProc gives the container a /proc of its own.
//
// A new procfs lists the processes of the PID namespace of whoever mounts
// it: ours, where this process is PID 1. (The host's /proc, which stage 01
// showed, lists the host's.)
func mountProc(target string) {
	must(unix.Mount("proc", target, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""),
		"mount -t proc -o nosuid,nodev,noexec proc %s", target)
}

// mountDev gives the container a minimal /dev of its own: a small tmpfs with
// the few devices every program expects, instead of the host's /dev with
// every disk and terminal of the machine.
func mountDev(dev string) {
	must(unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k"),
		"mount -t tmpfs -o nosuid,strictatime,mode=755,size=65536k tmpfs %s", dev)
	for _, name := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		bindDevice(dev, name)
	}

	// Pseudo-terminals of our own, numbered from 0, not the host's.
	pts := filepath.Join(dev, "pts")
	must(os.Mkdir(pts, 0o755), "mkdir %s", pts)
	must(unix.Mount("devpts", pts, "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620"),
		"mount -t devpts -o nosuid,noexec,newinstance,ptmxmode=0666,mode=620 devpts %s", pts)

	// /dev/ptmx, and the usual /dev/fd, stdin, stdout, stderr, as symlinks.
	for _, l := range [][2]string{
		{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"},
		{"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
	} {
		must(os.Symlink(l[0], filepath.Join(dev, l[1])), "ln -s %s %s", l[0], filepath.Join(dev, l[1]))
	}
}

// bindDevice puts the host's device NAME into the container's /dev.
//
// It reuses the host's device node. Making a new one with mknod(2) needs
// CAP_MKNOD in the host's user namespace, which container root does not
// have with --userns; a bind mount works either way (rootless podman does
// the same).
func bindDevice(dev, name string) {
	host, target := filepath.Join("/dev", name), filepath.Join(dev, name)
	must(os.WriteFile(target, nil, 0o666), "touch %s", target)
	must(unix.Mount(host, target, "", unix.MS_BIND, ""), "mount --bind %s %s", host, target)
}

// mountSys gives the container a read-only /sys.
//
// A new sysfs shows the network devices of the mounting process's network
// namespace (only lo here). It is read-only: the rest of it describes, and
// could reconfigure, the host's hardware and kernel.
func mountSys(target string) {
	must(unix.Mount("sysfs", target, "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""),
		"mount -t sysfs -o ro,nosuid,nodev,noexec sysfs %s", target)
}

// pivotRoot makes ROOTFS the root mount of the namespace and throws the
// host's root away.
//
// Why not chroot, as in stage 01? chroot changes one pointer in the
// process, its root directory. The host's whole tree stays mounted in the
// namespace, just above ROOTFS, and a root process can chroot again and
// climb out with ".." (the escape in lesson 1). pivot_root(2) changes the
// mount namespace instead: ROOTFS becomes its root mount, the old root is
// moved aside and then unmounted, and there is no host tree left anywhere
// to climb to.
func pivotRoot(rootfs string) {
	// Passing "." for both the new root and the place to put the old one
	// is the trick from pivot_root(2): the old root is stacked on top of
	// the new one, and ROOTFS needs no spare directory to hold it.
	must(unix.Chdir(rootfs), "cd %s", rootfs)
	must(unix.PivotRoot(".", "."), "pivot_root . .")
	// Detach the old root, the host's whole tree, from the namespace.
	must(unix.Unmount(".", unix.MNT_DETACH), "umount -l .")
	// Into the new root, ROOTFS.
	must(unix.Chdir("/"), "cd /")
}
