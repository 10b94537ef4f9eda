package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/minibox-lab/minibox/internal/rootfs"
)

func newRootfsCmd(s *streams) *cobra.Command {
	return &cobra.Command{
		Use:   "rootfs [DIR]",
		Short: "Build the demo root filesystem from the host's static busybox",
		Long: `Build the root filesystem the lessons run containers in: the host's static
busybox (Debian/Ubuntu package busybox-static) as /bin/busybox, a symlink for
each of its applets (ls, sh, ps, mount, …), and /proc /sys /dev /tmp /etc with
passwd, group and hostname.

It goes in DIR, else --rootfs, else $MINIBOX_ROOTFS, else
/var/lib/minibox/rootfs. Running it again is safe: it only fixes what
changed. A dynamically linked busybox is refused: the rootfs has no /lib, so
it could not run there.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			flag, _ := cmd.Flags().GetString("rootfs")
			dir := rootfs.Dir(flag)
			if len(args) == 1 {
				dir = args[0]
			}
			busybox, err := rootfs.FindStaticBusybox()
			if err != nil {
				return err
			}
			if err := rootfs.Build(dir, busybox); err != nil {
				return fmt.Errorf("build rootfs in %s: %w", dir, err)
			}
			fmt.Fprintf(s.out, "demo rootfs ready in %s (busybox from %s)\n", dir, busybox)
			return nil
		},
	}
}
