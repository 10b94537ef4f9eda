package runtime

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// What config.json may ask for that this runtime does not do (yet).
//
// A runtime that skipped them would run the container with less than it
// was asked for, and say nothing: a container meant to run under a
// seccomp filter or an AppArmor profile would run without it. So Create
// (and Exec, for a process) refuses a bundle that asks for one, naming
// the field. `runc spec` bundles and the engine's ask for none of them.

// unimplemented is one such field and whether the spec sets it.
type unimplemented struct {
	field string
	set   bool
}

// refuseUnimplemented fails on the first field of s this runtime does not
// implement (the process's are validateProcess's).
func refuseUnimplemented(s *specs.Spec) error {
	l := s.Linux
	return refuse([]unimplemented{
		{"hooks", s.Hooks != nil && (len(s.Hooks.Prestart) > 0 || len(s.Hooks.CreateRuntime) > 0 ||
			len(s.Hooks.CreateContainer) > 0 || len(s.Hooks.StartContainer) > 0 || len(s.Hooks.Poststart) > 0 || len(s.Hooks.Poststop) > 0)},
		{"domainname", s.Domainname != ""},
		{"linux.seccomp", l.Seccomp != nil},
		{"linux.netDevices", len(l.NetDevices) > 0},
		{"linux.mountLabel", l.MountLabel != ""},
		{"linux.intelRdt", l.IntelRdt != nil},
		{"linux.memoryPolicy", l.MemoryPolicy != nil},
		{"linux.personality", l.Personality != nil},
		{"linux.timeOffsets", len(l.TimeOffsets) > 0},
	})
}

// refuseUnimplementedProcess is refuseUnimplemented for process.
func refuseUnimplementedProcess(p *specs.Process) error {
	return refuse([]unimplemented{
		{"process.apparmorProfile", p.ApparmorProfile != ""},
		{"process.selinuxLabel", p.SelinuxLabel != ""},
		{"process.oomScoreAdj", p.OOMScoreAdj != nil},
		{"process.scheduler", p.Scheduler != nil},
		{"process.ioPriority", p.IOPriority != nil},
		{"process.execCPUAffinity", p.ExecCPUAffinity != nil},
	})
}

func refuse(fields []unimplemented) error {
	for _, f := range fields {
		if f.set {
			return fmt.Errorf("config.json: %s: not implemented by minibox's runtime, which will not run the container without it (remove %s from config.json to run it anyway)", f.field, f.field)
		}
	}
	return nil
}
