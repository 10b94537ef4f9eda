package engine

// The bundle: what the engine hands the runtime. A root file system (the
// image's layers and the container's own, joined by overlayfs, as stage 04
// taught) and a config.json in the OCI runtime spec's format, docker's
// defaults plus run's flags (limits from stage 03, the network namespace
// of stage 05, volumes as bind mounts).

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/runtime"
)

// mountRootfs mounts the overlay of the image's layers and the
// container's upper directory on containers/<id>/rootfs.
func (e *Engine) mountRootfs(c *Container) (string, error) {
	img, err := e.Images.Lookup(c.ImageDigest)
	if err != nil {
		return "", fmt.Errorf("image of container %s: %w", c.Short(), err)
	}
	layers, err := e.Images.LayerDirs(img)
	if err != nil {
		return "", err
	}
	dir := e.containerDir(c.ID)
	for _, d := range []string{"diff", "work", "rootfs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", err
		}
	}
	rootfs := filepath.Join(dir, "rootfs")
	// mount -t overlay overlay -o lowerdir=…,upperdir=…,workdir=… rootfs
	if err := MountOverlay(e.Root, layers, filepath.Join(dir, "diff"), filepath.Join(dir, "work"), rootfs); err != nil {
		return "", err
	}
	return rootfs, nil
}

// unmountRootfs undoes mountRootfs (umount -l: a process still using it
// only delays the real unmount).
func (e *Engine) unmountRootfs(c *Container) error {
	err := unix.Unmount(filepath.Join(e.containerDir(c.ID), "rootfs"), unix.MNT_DETACH)
	// EINVAL: not mounted; ENOENT: never made (a created container that
	// never started has no rootfs directory: rm must still remove it).
	if err == unix.EINVAL || err == unix.ENOENT {
		return nil
	}
	return err
}

// writeBundle writes containers/<id>/bundle/config.json for rootfs.
func (e *Engine) writeBundle(c *Container, rootfs string, extra []specs.Mount) (string, error) {
	spec := runtime.Spec()
	spec.Root = &specs.Root{Path: rootfs}
	spec.Hostname = c.Config.Hostname
	p := spec.Process
	p.Args, p.Cwd, p.Terminal = c.Config.Cmd, c.Config.WorkingDir, c.Config.Tty
	p.Env = append(append([]string{}, c.Config.Env...), "HOSTNAME="+c.Config.Hostname)
	if c.Config.Tty {
		p.Env = append(p.Env, "TERM=xterm")
	}
	user, err := resolveUser(rootfs, c.Config.User)
	if err != nil {
		return "", err
	}
	p.User = user
	if home := homeOf(rootfs, user.UID); home != "" && !hasEnv(p.Env, "HOME") {
		p.Env = append(p.Env, "HOME="+home)
	}
	spec.Mounts = append(spec.Mounts, extra...)
	// Absolute: under each hierarchy's root, as the stages do (cleanup
	// knows it); runc reads a relative path as below its own cgroup.
	spec.Linux.CgroupsPath = "/minibox/" + c.Short()
	spec.Linux.Resources = resources(c.Config)
	if c.Config.Network == "host" {
		var keep []specs.LinuxNamespace
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type != specs.NetworkNamespace {
				keep = append(keep, ns)
			}
		}
		spec.Linux.Namespaces = keep
	}
	dir := filepath.Join(e.containerDir(c.ID), "bundle")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600)
	}
	return dir, err
}

// resources are -m, --cpus and --pids-limit as the spec's cgroup limits.
func resources(c Config) *specs.LinuxResources {
	r := &specs.LinuxResources{}
	if c.Memory > 0 {
		r.Memory = &specs.LinuxMemory{Limit: &c.Memory}
		if swapAccounting() {
			// docker's -m without --memory-swap: as much swap again, so
			// memory + swap = 2 × -m (v1's memsw); without a swap limit a
			// host with swap lets the container past -m into swap.
			swap := 2 * c.Memory
			r.Memory.Swap = &swap
		}
	}
	if c.NanoCPUs > 0 {
		period := uint64(100000)
		quota := c.NanoCPUs * int64(period) / 1e9
		r.CPU = &specs.LinuxCPU{Period: &period, Quota: &quota}
	}
	if c.PidsLimit > 0 {
		r.Pids = &specs.LinuxPids{Limit: &c.PidsLimit}
	}
	return r
}

// swapAccounting reports whether the kernel accounts swap in cgroups:
// v1's memory.memsw.* files, or v2's memory.swap.max in our own group
// (a kernel booted with swapaccount=0, or without CONFIG_MEMCG_SWAP, has
// neither, and a swap limit cannot be set).
func swapAccounting() bool {
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err == nil {
		return true
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok && path != "/" {
			_, err := os.Stat(filepath.Join("/sys/fs/cgroup", path, "memory.swap.max"))
			return err == nil
		}
	}
	return false
}

// resolveUser turns USER[:GROUP] into ids, looking names up in the
// image's /etc/passwd and /etc/group, as docker does. The files are read
// inside rootfs (openat2 RESOLVE_IN_ROOT): an image's symlink cannot make
// host root read the host's files.
func resolveUser(rootfs, spec string) (specs.User, error) {
	if spec == "" {
		return specs.User{}, nil
	}
	name, group, _ := strings.Cut(spec, ":")
	uid, gid, ok := lookupID(rootfs, "/etc/passwd", name)
	if !ok {
		return specs.User{}, fmt.Errorf("user %s: not a number, and no valid entry in the image's /etc/passwd", name)
	}
	if group != "" {
		if gid, _, ok = lookupID(rootfs, "/etc/group", group); !ok {
			return specs.User{}, fmt.Errorf("group %s: not a number, and no valid entry in the image's /etc/group", group)
		}
	}
	return specs.User{UID: uint32(uid), GID: uint32(gid)}, nil
}

// lookupID finds name (or a number) in the image's passwd or group file.
func lookupID(rootfs, file, name string) (id, gid int, ok bool) {
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		id, ok = n, true
	}
	for _, fields := range entries(rootfs, file) {
		if len(fields) < 3 || (fields[0] != name && fields[2] != name) {
			continue
		}
		var err1, err2 error
		id, err1 = strconv.Atoi(fields[2])
		if strings.HasSuffix(file, "passwd") {
			err2 = fmt.Errorf("short entry")
			if len(fields) >= 7 {
				gid, err2 = strconv.Atoi(fields[3])
			}
		}
		return id, gid, err1 == nil && err2 == nil && id >= 0 && gid >= 0
	}
	return id, 0, ok
}

// homeOf is uid's home in the image's /etc/passwd.
func homeOf(rootfs string, uid uint32) string {
	for _, fields := range entries(rootfs, "/etc/passwd") {
		if len(fields) >= 7 && fields[2] == strconv.Itoa(int(uid)) {
			return fields[5]
		}
	}
	return ""
}

// entries reads a colon-separated file of the image, safely.
func entries(rootfs, file string) [][]string {
	root, err := os.Open(rootfs)
	if err != nil {
		return nil
	}
	defer root.Close()
	fd, err := unix.Openat2(int(root.Fd()), strings.TrimPrefix(file, "/"), &unix.OpenHow{
		Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), file)
	defer f.Close()
	var out [][]string
	for lines := bufio.NewScanner(f); lines.Scan(); {
		out = append(out, strings.Split(lines.Text(), ":"))
	}
	return out
}

func hasEnv(env []string, name string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			return true
		}
	}
	return false
}
