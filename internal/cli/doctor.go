package cli

import (
	"github.com/spf13/cobra"

	"github.com/minibox-lab/minibox/internal/doctor"
	"github.com/minibox-lab/minibox/internal/rootfs"
)

func newDoctorCmd(s *streams) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check that this machine can run every lesson, and say how to fix what is missing",
		Long: `Check the host: root, the kernel version, that each of the six namespaces
can be created, the cgroup mode (v2, v1 or hybrid) and whether memory, cpu and
pids can be limited, overlayfs, the propagation of /, IP forwarding, iptables,
iproute2, Go, a static busybox, the demo rootfs, and whether this is a
container. Every failed check prints the exact fix.

Exit status 0 means every lesson can run (warnings are worth reading but do
not stop a lesson). docs/doctor.md explains each check.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			flag, _ := cmd.Flags().GetString("rootfs")
			host := doctor.Real{RootfsDir: rootfs.Dir(flag), Busybox: rootfs.FindStaticBusybox, IsBuilt: rootfs.IsBuilt}
			results := doctor.Run(host, doctor.Checks())
			doctor.Print(s.out, results, isTerminal(s.out))
			if !doctor.Healthy(results) {
				return &exitError{code: 1}
			}
			return nil
		},
	}
}
