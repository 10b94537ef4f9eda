package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/minibox-lab/minibox/internal/cleanup"
	"github.com/minibox-lab/minibox/internal/rootfs"
)

// geteuid is os.Geteuid; tests replace it to check the message for users.
var geteuid = os.Geteuid

func newCleanupCmd(s *streams) *cobra.Command {
	var dryRun bool
	var dataRoot string
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove what an interrupted lesson or a killed stage left behind",
		Long: `Remove everything minibox made that is still there after an interrupted
demo or a killed stage: mounts in minibox's temporary directories or below
the demo rootfs, container directories in the data root ($ROOT/containers/<id>,
kept ones included), half-unpacked layers ($ROOT/layers/tmp-*) and
half-written image blobs and index files ($ROOT/images/ingest/tmp-*…), the
minibox/<id> cgroups and their empty minibox/ parents, and stage 05's
network in the network namespace it runs in: the iptables rules tagged
minibox:<id> of containers that are gone, their mbx… veths, stale address
leases ($ROOT/network/*.json), and the minibox… bridges with their rules
tagged minibox:<bridge> once no running container uses them (ip_forward is
left as it is). It prints one line per object it removed, or "nothing to
clean up", and touches nothing that minibox did not make: the data root's
layers, images and demo rootfs stay, and so do links and rules without minibox's
name or tag. Running it twice is safe. Stage 05 changes the network
namespace it runs in: run cleanup in that one too (ip netns exec NAME
minibox cleanup).

It kills nothing: a cgroup that still holds processes (or whose
cgroup.procs a stage holds open for a container that is starting), a
container directory, lease, rule or veth whose stage is still running, or
a bridge such a container is on, belongs to a container that is still
running; it is listed with the command that stops it, and the
exit status is 1. docs/cleanup.md says what is recognised, and how.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !dryRun && geteuid() != 0 {
				return &exitError{code: 1, err: fmt.Errorf("cleanup needs root: it unmounts file systems and removes cgroups, root-owned directories, links and iptables rules. Run: sudo minibox cleanup  (or minibox cleanup --dry-run to only list)")}
			}
			flag, _ := cmd.Flags().GetString("rootfs")
			env := cleanup.DefaultEnv(rootfs.Dir(flag))
			env.DataRoots = []string{cleanup.DataRoot(dataRoot)}
			rep, err := cleanup.Clean(env, dryRun)
			if left := printCleanup(s.out, rep, dryRun); left > 0 || err != nil {
				return &exitError{code: 1, err: err}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be removed, remove nothing")
	cmd.Flags().StringVar(&dataRoot, "root", "", "data root `DIR` whose containers/, layers/, images/ and network/ to clean (default $MINIBOX_ROOT, else "+cleanup.DefaultDataRoot+")")
	return cmd
}

// printCleanup writes one line per object, and returns how many are left.
func printCleanup(w io.Writer, rep cleanup.Report, dryRun bool) int {
	verb := "removed"
	if dryRun {
		verb = "would remove"
	}
	for _, o := range rep.Removed {
		fmt.Fprintf(w, "%s %s\n", verb, o)
	}
	for _, o := range rep.Busy {
		fmt.Fprintf(w, "left %s: %s\n", o, o.Busy)
	}
	for _, f := range rep.Failed {
		fmt.Fprintf(w, "could not remove %s: %v\n", f.Object, f.Err)
	}
	if len(rep.Removed)+len(rep.Busy)+len(rep.Failed) == 0 {
		fmt.Fprintln(w, "nothing to clean up")
	}
	return len(rep.Busy) + len(rep.Failed)
}
