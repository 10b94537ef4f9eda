// Package stagetest tests the stage programs (01-chroot, 02-namespaces, …)
// from the outside, as a student runs them: it builds each stage binary,
// runs it as root against a real busybox root filesystem, and checks what
// the kernel did. The stages themselves stay free of test code, so that
// `minibox diff N` shows only the mechanism a stage adds.
//
// The binaries are built once per test run from the working tree. Set
// MINIBOX_STAGE_BIN to a directory of prebuilt binaries (stage01, stage02,
// …) to skip the build: the cgroup v2 VM harness does this, since there is
// no Go toolchain inside the VM.
package stagetest
