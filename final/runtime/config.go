package runtime

// Reading and checking config.json: every error names the field and why,
// before anything is made.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// rlimitNames maps config.json's names to resource numbers (getrlimit(2)).
var rlimitNames = map[string]int{
	"RLIMIT_CPU": unix.RLIMIT_CPU, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_DATA": unix.RLIMIT_DATA,
	"RLIMIT_STACK": unix.RLIMIT_STACK, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME": unix.RLIMIT_RTTIME,
}

// namespaceFlags maps linux.namespaces[].type to clone flags and the
// names in /proc/PID/ns.
var namespaceFlags = map[specs.LinuxNamespaceType]struct {
	flag uintptr
	proc string
}{
	specs.PIDNamespace:     {unix.CLONE_NEWPID, "pid"},
	specs.NetworkNamespace: {unix.CLONE_NEWNET, "net"},
	specs.MountNamespace:   {unix.CLONE_NEWNS, "mnt"},
	specs.IPCNamespace:     {unix.CLONE_NEWIPC, "ipc"},
	specs.UTSNamespace:     {unix.CLONE_NEWUTS, "uts"},
	specs.UserNamespace:    {unix.CLONE_NEWUSER, "user"},
	specs.CgroupNamespace:  {unix.CLONE_NEWCGROUP, "cgroup"},
}

// loadSpec reads bundle/config.json.
func loadSpec(bundle string) (*specs.Spec, error) {
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", bundle, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: not valid JSON for a runtime-spec config: %w", path, err)
	}
	return &s, nil
}

// rootfsPath is root.path, relative to the bundle unless absolute.
func rootfsPath(bundle string, s *specs.Spec) string {
	if filepath.IsAbs(s.Root.Path) {
		return s.Root.Path
	}
	return filepath.Join(bundle, s.Root.Path)
}

// hasNamespace reports whether the spec asks for namespace t (new or joined).
func hasNamespace(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	if s.Linux == nil {
		return false
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == t {
			return true
		}
	}
	return false
}

// validate checks what Create would otherwise discover half-way.
func validate(s *specs.Spec, bundle string) error {
	if s.Root == nil || s.Root.Path == "" {
		return errors.New("config.json: root.path: missing: the container's root file system")
	}
	if fi, err := os.Stat(rootfsPath(bundle, s)); err != nil || !fi.IsDir() {
		return fmt.Errorf("config.json: root.path %q: not a directory in the bundle (%v)", s.Root.Path, err)
	}
	if err := validateProcess(s.Process); err != nil {
		return err
	}
	if s.Linux == nil {
		return errors.New("config.json: linux: missing: minibox needs at least a mount namespace")
	}
	if err := validateNamespaces(s); err != nil {
		return err
	}
	if err := refuseUnimplemented(s); err != nil {
		return err
	}
	for i, m := range s.Mounts {
		if !filepath.IsAbs(m.Destination) {
			return fmt.Errorf("config.json: mounts[%d].destination %q: must be an absolute path", i, m.Destination)
		}
	}
	return nil
}

func validateProcess(p *specs.Process) error {
	if p == nil {
		return errors.New("config.json: process: missing: what should the container run?")
	}
	if len(p.Args) == 0 || p.Args[0] == "" {
		return errors.New("config.json: process.args: empty: the container needs a command")
	}
	if err := refuseUnimplementedProcess(p); err != nil {
		return err
	}
	if !filepath.IsAbs(p.Cwd) {
		return fmt.Errorf("config.json: process.cwd %q: must be an absolute path", p.Cwd)
	}
	if _, err := capsOf(p); err != nil {
		return err
	}
	for i, r := range p.Rlimits {
		if err := checkRlimit(i, r); err != nil {
			return err
		}
	}
	return nil
}

// checkRlimit refuses a limit above the hard limit we inherited: raising
// it needs CAP_SYS_RESOURCE, which root may lack (it does on this project's
// CI machines), and the kernel's EPERM would not say which limit.
func checkRlimit(i int, r specs.POSIXRlimit) error {
	res, ok := rlimitNames[r.Type]
	if !ok {
		return fmt.Errorf("config.json: process.rlimits[%d].type %q: unknown resource", i, r.Type)
	}
	if r.Soft > r.Hard {
		return fmt.Errorf("config.json: process.rlimits[%d]: %s soft %d above its hard %d", i, r.Type, r.Soft, r.Hard)
	}
	var cur syscall.Rlimit
	if err := syscall.Getrlimit(res, &cur); err != nil {
		return fmt.Errorf("getrlimit %s: %w", r.Type, err)
	}
	if r.Hard > cur.Max {
		return fmt.Errorf("config.json: process.rlimits[%d]: %s hard %d above the inherited hard limit %d (raising it needs CAP_SYS_RESOURCE)", i, r.Type, r.Hard, cur.Max)
	}
	return nil
}

// capsOf parses process.capabilities.
func capsOf(p *specs.Process) (capSets, error) {
	var c capSets
	if p.Capabilities == nil {
		return c, nil
	}
	var err error
	for _, set := range []struct {
		name  string
		names []string
		mask  *uint64
	}{
		{"bounding", p.Capabilities.Bounding, &c.bounding},
		{"effective", p.Capabilities.Effective, &c.effective},
		{"permitted", p.Capabilities.Permitted, &c.permitted},
		{"inheritable", p.Capabilities.Inheritable, &c.inheritable},
		{"ambient", p.Capabilities.Ambient, &c.ambient},
	} {
		if *set.mask, err = parseCaps("process.capabilities."+set.name, set.names); err != nil {
			return c, err
		}
	}
	return c, nil
}

func validateNamespaces(s *specs.Spec) error {
	seen := map[specs.LinuxNamespaceType]bool{}
	newMount := false
	for i, ns := range s.Linux.Namespaces {
		if _, ok := namespaceFlags[ns.Type]; !ok {
			return fmt.Errorf("config.json: linux.namespaces[%d].type %q: unknown or unsupported namespace", i, ns.Type)
		}
		if seen[ns.Type] {
			return fmt.Errorf("config.json: linux.namespaces[%d]: %s listed twice", i, ns.Type)
		}
		seen[ns.Type] = true
		if ns.Path != "" {
			if ns.Type == specs.UserNamespace {
				return fmt.Errorf("config.json: linux.namespaces[%d]: joining a user namespace by path is not supported: a Go process is multi-threaded and setns(CLONE_NEWUSER) refuses that (runc does it in C before the Go runtime starts)", i)
			}
			if ns.Type == specs.MountNamespace {
				return fmt.Errorf("config.json: linux.namespaces[%d]: joining a mount namespace by path is not supported: minibox mounts the rootfs in a new one", i)
			}
			if _, err := os.Stat(ns.Path); err != nil {
				return fmt.Errorf("config.json: linux.namespaces[%d].path: %w", i, err)
			}
		}
		if ns.Type == specs.MountNamespace {
			newMount = true
		}
	}
	if !newMount {
		// Fail closed: without one, the mounts and pivot_root would
		// change the host's own mount table.
		return errors.New("config.json: linux.namespaces: no mount namespace: minibox makes the container's mounts in a new one and refuses to touch the host's")
	}
	if s.Hostname != "" && !seen[specs.UTSNamespace] {
		return fmt.Errorf("config.json: hostname %q: needs a uts namespace in linux.namespaces (it would rename the host)", s.Hostname)
	}
	hasMaps := len(s.Linux.UIDMappings) > 0 || len(s.Linux.GIDMappings) > 0
	if seen[specs.UserNamespace] && (len(s.Linux.UIDMappings) == 0 || len(s.Linux.GIDMappings) == 0) {
		return errors.New("config.json: linux.uidMappings/gidMappings: a user namespace needs both")
	}
	if hasMaps && !seen[specs.UserNamespace] {
		return errors.New("config.json: linux.uidMappings: mappings without a user namespace in linux.namespaces")
	}
	return nil
}

// hostID maps id inside the user namespace to the host (identity without maps).
func hostID(maps []specs.LinuxIDMapping, id uint32) int {
	if len(maps) == 0 {
		return int(id)
	}
	for _, m := range maps {
		if id >= m.ContainerID && id < m.ContainerID+m.Size {
			return int(m.HostID + id - m.ContainerID)
		}
	}
	return -1
}

// envPath is PATH from env, or the usual default.
func envPath(env []string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			return v
		}
	}
	return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}
