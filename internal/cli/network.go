package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/minibox-lab/minibox/final/network"
	"github.com/minibox-lab/minibox/internal/cleanup"
)

// newNetworkCmd is `minibox network`, docker's network command; only ls:
// minibox's networks are docker's three built-in ones.
func newNetworkCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Manage networks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(newNetworkLsCmd(s))
	return cmd
}

func newNetworkLsCmd(s *streams) *cobra.Command {
	var dataRoot, format string
	var quiet, noTrunc bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List networks",
		Long: `List the networks a container can join with run --network, as docker's
network ls does: bridge (the minibox0 bridge, 10.89.0.0/24: a veth and an
address per container, NAT to the outside, -p publishes ports), host (the
host's own network namespace) and none (lo only).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			nets, err := network.List(cleanup.DataRoot(dataRoot))
			if err != nil {
				return err
			}
			switch {
			case quiet:
				for _, n := range nets {
					fmt.Fprintln(s.out, shortNetworkID(n.ID, noTrunc))
				}
				return nil
			case format == "json":
				return printNetworksJSON(s.out, nets)
			case format != "" && format != "table":
				return &exitError{code: 1, err: fmt.Errorf("--format %q: expected table or json", format)}
			}
			printNetworks(s.out, nets, noTrunc)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataRoot, "root", "", "data root `DIR` whose network/ to read (default $MINIBOX_ROOT, else "+cleanup.DefaultDataRoot+")")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only display network IDs")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "do not truncate the output")
	cmd.Flags().StringVar(&format, "format", "", "output format: table or json (one object per line)")
	return cmd
}

// printNetworks is docker's table: NETWORK ID NAME DRIVER SCOPE.
func printNetworks(out io.Writer, nets []network.Info, noTrunc bool) {
	w := tabwriter.NewWriter(out, 0, 8, 3, ' ', 0)
	fmt.Fprintln(w, "NETWORK ID\tNAME\tDRIVER\tSCOPE")
	for _, n := range nets {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", shortNetworkID(n.ID, noTrunc), n.Name, n.Driver, n.Scope)
	}
	w.Flush()
}

// printNetworksJSON writes one object per line with docker's field names.
func printNetworksJSON(out io.Writer, nets []network.Info) error {
	enc := json.NewEncoder(out)
	for _, n := range nets {
		if err := enc.Encode(map[string]any{
			"ID": shortNetworkID(n.ID, false), "Name": n.Name, "Driver": n.Driver, "Scope": n.Scope,
			"Bridge": n.Bridge, "Subnet": n.Subnet, "Gateway": n.Gateway, "Containers": n.Containers,
			"IPv6": "false", "Internal": "false", "Labels": "",
		}); err != nil {
			return err
		}
	}
	return nil
}

func shortNetworkID(id string, noTrunc bool) string {
	if noTrunc || len(id) <= 12 {
		return id
	}
	return id[:12]
}
