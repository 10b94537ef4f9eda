package runtime

import specs "github.com/opencontainers/runtime-spec/specs-go"

// What of config.json the init is sent.
//
// The init decodes its bootstrap first thing, on the way of every
// container's start, and encoding/json prepares, the first time a process
// decodes a type, the encoders of every type that type can reach: for
// specs.Spec (Windows, Solaris, VM, z/OS, the cgroup resources, seccomp,
// hooks…) that took ~0.9 ms of each start (a fresh process decoding a
// runc spec, measured), for initSpec ~0.3. So the init gets only what it
// acts on; the rest is the parent's (the cgroup and its resources, the
// namespaces to clone) or not implemented, and refused by Create
// (unimplemented.go). TestInitSpecCarriesWhatTheInitReads lists which,
// and fails on a field of a newer runtime-spec that is in neither list.

// initSpec is the part of the spec the init reads.
type initSpec struct {
	Process  *specs.Process `json:"process"`
	Root     *specs.Root    `json:"root"`
	Hostname string         `json:"hostname,omitempty"`
	Mounts   []specs.Mount  `json:"mounts,omitempty"`
	Linux    initLinux      `json:"linux"`
}

// initLinux is the part of linux the init reads.
type initLinux struct {
	Namespaces        []specs.LinuxNamespace `json:"namespaces,omitempty"`
	Devices           []specs.LinuxDevice    `json:"devices,omitempty"`
	Sysctl            map[string]string      `json:"sysctl,omitempty"`
	MaskedPaths       []string               `json:"maskedPaths,omitempty"`
	ReadonlyPaths     []string               `json:"readonlyPaths,omitempty"`
	RootfsPropagation string                 `json:"rootfsPropagation,omitempty"`
}

// newInitSpec is what of s the init is sent (validate has checked s).
func newInitSpec(s *specs.Spec) *initSpec {
	l := s.Linux
	return &initSpec{
		Process: s.Process, Root: s.Root, Hostname: s.Hostname, Mounts: s.Mounts,
		Linux: initLinux{
			Namespaces: l.Namespaces, Devices: l.Devices, Sysctl: l.Sysctl,
			MaskedPaths: l.MaskedPaths, ReadonlyPaths: l.ReadonlyPaths, RootfsPropagation: l.RootfsPropagation,
		},
	}
}

// spec is i as the spec the init's functions take.
func (i *initSpec) spec() *specs.Spec {
	l := i.Linux
	return &specs.Spec{
		Process: i.Process, Root: i.Root, Hostname: i.Hostname, Mounts: i.Mounts,
		Linux: &specs.Linux{
			Namespaces: l.Namespaces, Devices: l.Devices, Sysctl: l.Sysctl,
			MaskedPaths: l.MaskedPaths, ReadonlyPaths: l.ReadonlyPaths, RootfsPropagation: l.RootfsPropagation,
		},
	}
}
