// Package testenv holds what kernel tests share: skipping (or, in CI,
// failing) when a prerequisite is missing, and checking that a test left
// nothing behind in the kernel — mounts, cgroups, links, network namespaces
// or processes.
package testenv

import (
	"os"
	"testing"
)

// RequireRootEnv is the variable that turns a missing prerequisite from a
// skip into a failure. .ci/run sets it so that CI cannot pass by skipping.
const RequireRootEnv = "MINIBOX_REQUIRE_ROOT"

// Require skips the test (or fails it under MINIBOX_REQUIRE_ROOT=1) when ok
// is false, saying why.
func Require(t testing.TB, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv(RequireRootEnv) == "1" {
		t.Fatalf("prerequisite missing (%s=1 makes this a failure): %s", RequireRootEnv, why)
	}
	t.Skip("skipped: " + why)
}

// RequireRoot is Require for tests that touch the kernel.
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "needs root to create namespaces, mounts and cgroups; run `sudo make test`")
}
