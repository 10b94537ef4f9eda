package engine

// The bundle: what the engine hands the runtime. A root file system (the
// image's layers and the container's own, joined by overlayfs, as stage 04
// taught) and a config.json in the OCI runtime spec's format, docker's
// defaults plus run's flags (limits from stage 03, the network namespace
// of stage 05, volumes as bind mounts).

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/image"
	"github.com/minibox-lab/minibox/final/runtime"
)

// mountRootfs mounts the overlay of the image's layers and the
// container's upper directory on containers/<id>/rootfs.
func (e *Engine) mountRootfs(c *Container) (string, error) {
	layers, err := e.layers(c)
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
	// mount -t overlay overlay -o lowerdir=…,upperdir=…,workdir=…[,volatile] rootfs
	volatile := c.Config.AutoRemove // its layer goes when it exits
	if err := MountOverlay(e.Root, layers, filepath.Join(dir, "diff"), filepath.Join(dir, "work"), rootfs, volatile); err != nil {
		return "", err
	}
	return rootfs, nil
}

// layers are the container's image's layer directories, bottom first: as
// its record says (create wrote them), or from the image store for a
// record from before they were recorded.
func (e *Engine) layers(c *Container) ([]string, error) {
	if len(c.Layers) > 0 {
		return c.Layers, nil
	}
	img, err := e.Images.Lookup(c.ImageDigest)
	if err != nil {
		return nil, fmt.Errorf("image of container %s: %w", c.Short(), err)
	}
	return e.Images.LayerDirs(img)
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

// writeBundle writes containers/<id>/bundle/config.json for rootfs, and
// returns the bundle and its spec.
func (e *Engine) writeBundle(c *Container, rootfs string, extra []specs.Mount) (string, *specs.Spec, error) {
	spec := runtime.Spec()
	spec.Root = &specs.Root{Path: rootfs}
	spec.Hostname = c.Config.Hostname
	p := spec.Process
	p.Args, p.Cwd, p.Terminal = c.Config.Cmd, c.Config.WorkingDir, c.Config.Tty
	p.Env = append(append([]string{}, c.Config.Env...), "HOSTNAME="+c.Config.Hostname)
	if c.Config.Tty {
		p.Env = append(p.Env, "TERM=xterm")
	}
	user, home, err := resolveUser(rootfs, c.Config.User)
	if err != nil {
		return "", nil, err
	}
	p.User = user
	if home != "" && !hasEnv(p.Env, "HOME") {
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
		return "", nil, err
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600)
	}
	return dir, &spec, err
}

// resources are -m, --cpus and --pids-limit as the spec's cgroup limits.
func resources(c Config) *specs.LinuxResources {
	r := &specs.LinuxResources{}
	if c.Memory > 0 {
		// docker's -m without --memory-swap: as much swap again, so
		// memory + swap = 2 × -m (v1's memsw); without a swap limit a host
		// with swap lets the container past -m into swap. (A kernel
		// without swap accounting has no such limit: the runtime skips it.)
		swap := 2 * c.Memory
		r.Memory = &specs.LinuxMemory{Limit: &c.Memory, Swap: &swap}
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

// resolveUser turns USER[:GROUP] ("": root) into ids and the user's
// home, looked up in the image's /etc/passwd and /etc/group inside rootfs
// (image.LookupUser), as docker does.
func resolveUser(rootfs, spec string) (specs.User, string, error) {
	root, err := os.Open(rootfs)
	if err != nil {
		return specs.User{}, "", err
	}
	defer root.Close()
	u, err := image.LookupUser(root, first(spec, "0"), false)
	if err != nil {
		return specs.User{}, "", err
	}
	return specs.User{UID: uint32(u.UID), GID: uint32(u.GID)}, u.Home, nil
}

func hasEnv(env []string, name string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			return true
		}
	}
	return false
}
