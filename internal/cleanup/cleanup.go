// Package cleanup is the one place that knows every kind of object minibox
// makes on a host — mounts, cgroups, container directories, half-unpacked
// layers and half-written image files in the data root, the runtime's
// state directories, and the iptables rules, veths, address leases and
// bridges of stage 05 and the engine (in the network namespace it runs in)
// — how to find the ones that are still there, and how to remove them.
// `minibox cleanup` removes them, `minibox doctor` lists them, and the
// tests' leak check (internal/testenv) judges and removes what a test left
// with the same code.
//
// # Adding a kind
//
// A stage that makes a new kind of object adds one file here with a Kind
// value (a name, a Find that returns the objects minibox made and only
// those, and a Remove for one of them), and one line in Kinds:
//
//	var Kinds = []Kind{
//		Mounts,
//		ContainerDirs,
//		LayerTemps,
//		ContainerRules,
//		Veths, // 05-network: a new line, before the bridge a veth is on
//		…
//		Cgroups,
//		CgroupParents,
//	}
//
// The order of Kinds is the order of removal: what holds another object
// comes first (a mount before the directory it is in, a group before its
// parent, a veth before its bridge). Find must recognise minibox's objects
// by a mark minibox put on them (a name starting with "minibox", a place
// only minibox writes to) and never return anything else: cleanup removes
// all it finds. An object that cannot be removed now (a cgroup that still
// holds processes) is returned with Busy set, saying why and what to do;
// cleanup reports it and leaves it alone. Remove must succeed, or say why
// not, and must treat an object that is already gone as removed, so that
// cleanup is safe to run twice. Remove checks again what Find did (the leak
// check removes what it found without asking); an Object keeps the data
// roots Find looked in for that. Add a test in this package that makes one
// such object, finds it and removes it.
package cleanup

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Object is one thing minibox made that is still there.
type Object struct {
	Kind   string // the Kind's name: "mount", "cgroup", …
	Name   string // what identifies it: a mount point, a cgroup directory
	Detail string // what else tells it apart: "tmpfs minibox-test"
	// Busy, when set, says why the object cannot be removed now and how
	// to end what holds it. Cleanup leaves busy objects alone.
	Busy string
	// dataRoots are the data roots Find looked in: where Remove looks
	// again for the leases that say a container is running (network kinds).
	dataRoots []string
	// runtimeRoots are the runtime roots Find looked in (runtime states).
	runtimeRoots []string
}

// roots are the data roots Find looked in, or, for an Object made by
// hand, the default one.
func (o Object) roots() []string {
	if o.dataRoots == nil {
		return []string{DataRoot("")}
	}
	return o.dataRoots
}

// runtimeRootsOrDefault are the runtime roots Find looked in, or, for an
// Object made by hand, the default one.
func (o Object) runtimeRootsOrDefault() []string {
	if o.runtimeRoots == nil {
		return []string{DefaultRuntimeRoot}
	}
	return o.runtimeRoots
}

// String is the object as cleanup prints it: "cgroup /sys/fs/cgroup/…".
func (o Object) String() string {
	s := o.Kind + " " + o.Name
	if o.Detail != "" {
		s += " (" + o.Detail + ")"
	}
	return s
}

// Key identifies the object across two looks at the host: what the leak
// check compares, without Busy, which changes as processes come and go.
func (o Object) Key() string { return strings.TrimSpace(o.Kind + ": " + o.Name + " " + o.Detail) }

// Kind is one kind of object minibox makes.
type Kind struct {
	Name string
	// Shared kinds are objects minibox leaves in place on purpose (the
	// empty minibox/ parent cgroup, as docker leaves its own): cleanup
	// removes them, but they are no leak.
	Shared bool
	// Find returns the objects of this kind that minibox made, in the
	// order they must be removed.
	Find func(Env) ([]Object, error)
	// Remove removes one object Find returned. Already gone is success.
	Remove func(Object) error
}

// Kinds is the registry, in the order of removal. Add a kind in one line.
var Kinds = []Kind{
	Mounts,
	ContainerDirs,  // 04-layers: after the mounts that may be in them
	EngineTemps,    // final/engine: an interrupted create's directory
	BuildSteps,     // final/build: after the mounts in them
	LayerTemps,     // 04-layers: half-unpacked layers
	ImageTemps,     // 06-images: interrupted blob, index and cache writes
	RuntimeStates,  // final/runtime: a dead init's state directory
	ContainerRules, // 05-network: a gone container's DNAT rules
	Veths,          // 05-network: before the bridge they are on
	Leases,         // 05-network: before the bridges, whose use they tell
	BridgeRules,    // 05-network: a bridge's MASQUERADE and FORWARD rules
	Bridges,        // 05-network: last of the network, once nothing is on them
	Cgroups,
	CgroupParents,
}

// Env says where minibox keeps its things on this host.
type Env struct {
	// TempDir holds the lessons' and stages' temporary directories,
	// minibox-lesson-* and minibox-*: every mount inside one is minibox's.
	TempDir string
	// Rootfs is the demo root filesystem: every mount below it is a
	// stage's (one whose mounts escaped its mount namespace).
	Rootfs string
	// Owned are more directories whose every mount is minibox's: the tests
	// give their own temporary directory.
	Owned []string
	// Mountinfo is the mount table to read, /proc/self/mountinfo.
	Mountinfo string
	// CgroupRoot is where the cgroup trees are mounted, /sys/fs/cgroup.
	CgroupRoot string
	// DataRoots are the data roots to look in ($ROOT/containers/*,
	// $ROOT/layers/tmp-*, $ROOT/images' temporary files, every mount below
	// $ROOT/containers): the one
	// minibox cleanup --root names, or $MINIBOX_ROOT, or /var/lib/minibox.
	// The engine's places are below them too: the mounts in
	// $ROOT/engine/containers, the runtime states in $ROOT/engine/runtime.
	DataRoots []string
	// RuntimeRoots are the `minibox runtime` state roots to look in (its
	// --root): /run/minibox/runtime.
	RuntimeRoots []string
}

// DefaultEnv is the host's: os.TempDir(), /proc/self/mountinfo,
// /sys/fs/cgroup, the demo rootfs given, the data root ($MINIBOX_ROOT,
// else /var/lib/minibox) and the runtime's default root.
func DefaultEnv(rootfs string) Env {
	return Env{
		TempDir:      os.TempDir(),
		Rootfs:       rootfs,
		Mountinfo:    "/proc/self/mountinfo",
		CgroupRoot:   CgroupRoot,
		DataRoots:    []string{DataRoot("")},
		RuntimeRoots: []string{DefaultRuntimeRoot},
	}
}

// Find lists every object of every kind still there, without removing
// anything: what `minibox cleanup --dry-run` and `minibox doctor` show.
func Find(env Env) ([]Object, error) {
	var all []Object
	var errs []error
	for _, k := range Kinds {
		objs, err := k.Find(env)
		if err != nil {
			errs = append(errs, fmt.Errorf("find %ss: %w", k.Name, err))
		}
		all = append(all, objs...)
	}
	return all, errors.Join(errs...)
}

// Report is what Clean did.
type Report struct {
	Removed []Object // removed (or, in a dry run, would be)
	Busy    []Object // left alone: Busy says why
	Failed  []Failure
}

// Failure is an object that could not be removed.
type Failure struct {
	Object Object
	Err    error
}

// Clean removes every object of every kind, kind by kind in the order of
// Kinds, so that a kind's Find sees what the kinds before it removed (the
// minibox/ parents are empty only once their groups are gone). With dryRun
// it removes nothing and reports what it would remove.
func Clean(env Env, dryRun bool) (Report, error) {
	var rep Report
	var errs []error
	for _, k := range Kinds {
		objs, err := k.Find(env)
		if err != nil {
			errs = append(errs, fmt.Errorf("find %ss: %w", k.Name, err))
		}
		for _, o := range objs {
			switch {
			case o.Busy != "":
				rep.Busy = append(rep.Busy, o)
			case dryRun:
				rep.Removed = append(rep.Removed, o)
			default:
				if err := k.Remove(o); err != nil {
					rep.Failed = append(rep.Failed, Failure{o, err})
					continue
				}
				rep.Removed = append(rep.Removed, o)
			}
		}
	}
	return rep, errors.Join(errs...)
}

// KindNamed returns the registered kind called name.
func KindNamed(name string) (Kind, bool) {
	for _, k := range Kinds {
		if k.Name == name {
			return k, true
		}
	}
	return Kind{}, false
}
