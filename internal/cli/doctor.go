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
		Long: `Check the host, one line per check, in this order:

  root               running as root
  kernel             Linux 4.18 or newer
  namespaces         each of the six namespaces can be created
  cgroups            the cgroup mode (v2, v1 or hybrid), and that memory, cpu
                     and pids can be limited
  cgroup join        whether the kernel lets a --userns container join its
                     cgroup v2 group (the CVE-2021-4197 fix)
  overlayfs          the kernel has overlayfs
  mount API          fsopen(2) works: the new mount API stage 04 uses
  data root          overlay can keep upper layers in the data root
                     (not on overlayfs or NFS)
  mount propagation  the propagation of /
  ip forwarding      net.ipv4.ip_forward
  iptables           the iptables command, and that it can read the nat
                     table in this network namespace (its backend: nf_tables
                     or legacy)
  iproute2           the ip command
  image tools        docker-registry, skopeo and umoci, which lesson 6 runs
  engine tools       runc and podman, which lesson 7 runs
  go toolchain       Go, new enough to build the stages
  static busybox     a statically linked busybox
  demo rootfs        the demo rootfs is built
  rootfs access      every directory down to the rootfs is searchable by
                     others (--userns)
  container          whether this is a container (overlay on overlay)
  leftovers          what an interrupted lesson or a killed stage left
                     (minibox cleanup removes it)

Every failed check prints the exact fix.

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
