package bench

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// innerEnv marks the run inside the throw-away network namespace.
const innerEnv = "MINIBOX_BENCH_INNER"

// TestMain runs the benchmarks, as root, again in a network namespace of
// their own (`unshare --net`), which vanishes with them: both engines'
// bridges, veths and iptables rules are made there, never in the
// machine's own namespace. Its loopback is brought up for the registry.
func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		os.Exit(m.Run()) // the benchmarks skip (or fail under MINIBOX_REQUIRE_ROOT=1)
	}
	if os.Getenv(innerEnv) == "1" {
		// The engines' processes that outlive their command come to us
		// (settle waits for them).
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			fmt.Fprintln(os.Stderr, "bench: prctl(PR_SET_CHILD_SUBREAPER):", err)
			os.Exit(1)
		}
		if err := loopbackUp(); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		code := m.Run()
		removeBuild()
		os.Exit(code)
	}
	cmd := exec.Command("unshare", append([]string{"--net", "--", os.Args[0]}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), innerEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if exit, ok := err.(*exec.ExitError); ok {
			os.Exit(exit.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "bench: run in a network namespace of its own (unshare --net, util-linux):", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// loopbackUp brings up lo, down in a new namespace: the registry listens
// on 127.0.0.1.
func loopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}
