package testenv

import "testing"

// SetCgroupRoot points the leak check at dir instead of the host's cgroup
// root until the test ends: a minibox sub-tree the test made, where it can
// make cgroups the registry's minibox/<id> layout does not cover without
// touching the rest of the host.
func SetCgroupRoot(t testing.TB, dir string) {
	old := cgroupRoot
	cgroupRoot = dir
	t.Cleanup(func() { cgroupRoot = old })
}
