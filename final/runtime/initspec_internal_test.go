package runtime

import (
	"encoding/json"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/require"
)

// Every field of the spec is either sent to the init (initSpec) or listed
// here with whose it is: a field that a newer runtime-spec adds fails this
// test until someone decides, so that the init never silently loses
// something it must act on.
var notTheInits = map[string]string{
	"Spec.Version":       "checked by validate, in the parent",
	"Spec.Domainname":    "not implemented: Create refuses it (unimplemented.go)",
	"Spec.Hooks":         "not implemented: Create refuses it (unimplemented.go)",
	"Spec.Annotations":   "the caller's: kept in the state, for `state`",
	"Spec.Solaris":       "another platform",
	"Spec.Windows":       "another platform",
	"Spec.VM":            "another platform",
	"Spec.ZOS":           "another platform",
	"Spec.FreeBSD":       "another platform",
	"Linux.UIDMappings":  "the parent's: the clone's ID maps (initAttr)",
	"Linux.GIDMappings":  "the parent's: the clone's ID maps (initAttr)",
	"Linux.Resources":    "the parent's: it makes the cgroup (createCgroup), the init joins it",
	"Linux.CgroupsPath":  "the parent's: it makes the cgroup (createCgroup), the init joins it",
	"Linux.NetDevices":   "not implemented: Create refuses it (unimplemented.go)",
	"Linux.Seccomp":      "not implemented: Create refuses it (unimplemented.go)",
	"Linux.MountLabel":   "not implemented: Create refuses it (unimplemented.go)",
	"Linux.IntelRdt":     "not implemented: Create refuses it (unimplemented.go)",
	"Linux.MemoryPolicy": "not implemented: Create refuses it (unimplemented.go)",
	"Linux.Personality":  "not implemented: Create refuses it (unimplemented.go)",
	"Linux.TimeOffsets":  "not implemented: Create refuses it (unimplemented.go)",
}

func TestInitSpecCarriesWhatTheInitReads(t *testing.T) {
	sorted := func(prefix string, full, sent reflect.Type) {
		for i := 0; i < full.NumField(); i++ {
			name := prefix + "." + full.Field(i).Name
			_, carried := sent.FieldByName(full.Field(i).Name)
			_, elsewhere := notTheInits[name]
			require.True(t, carried != elsewhere, "%s: the init must be sent it (initspec.go) or notTheInits must say whose it is, not both", name)
		}
	}
	sorted("Spec", reflect.TypeOf(specs.Spec{}), reflect.TypeOf(initSpec{}))
	sorted("Linux", reflect.TypeOf(specs.Linux{}), reflect.TypeOf(initLinux{}))

	// What is carried arrives whole, through the JSON the init decodes.
	s := Spec()
	s.Hostname = "h"
	s.Root.Readonly = true
	s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}}
	s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1"}
	s.Linux.RootfsPropagation = "slave"
	data, err := json.Marshal(newInitSpec(&s))
	require.NoError(t, err)
	var sent initSpec
	require.NoError(t, json.Unmarshal(data, &sent))
	got := sent.spec()
	same := func(prefix string, want, got reflect.Value, fields reflect.Type) {
		for i := 0; i < fields.NumField(); i++ {
			name := fields.Field(i).Name
			if name == "Linux" {
				continue
			}
			w := want.FieldByName(name)
			require.False(t, w.IsZero(), "%s.%s: give it a value here, or this test proves nothing", prefix, name)
			require.Equal(t, w.Interface(), got.FieldByName(name).Interface(), "%s.%s", prefix, name)
		}
	}
	same("Spec", reflect.ValueOf(s), reflect.ValueOf(*got), reflect.TypeOf(initSpec{}))
	same("Linux", reflect.ValueOf(*s.Linux), reflect.ValueOf(*got.Linux), reflect.TypeOf(initLinux{}))
}
