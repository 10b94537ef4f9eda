package cli

// The engine's commands, docker's names and flags: run, create, start, ps,
// logs, exec, stop, kill, rm, inspect, wait, volume. Each is thin: it
// parses flags and calls final/engine.

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/minibox-lab/minibox/final/build/changes"
	"github.com/minibox-lab/minibox/final/engine"
	"github.com/minibox-lab/minibox/internal/cleanup"
)

// engineFlags is the data root every engine command takes.
type engineFlags struct{ root string }

func (f *engineFlags) add(cmd *cobra.Command) { dataRootFlag(cmd, &f.root) } // images.go

// open opens the engine, as root.
func (f *engineFlags) open(what string) (*engine.Engine, error) {
	if geteuid() != 0 {
		return nil, &exitError{code: 1, err: fmt.Errorf("%s needs root: containers are made of namespaces, mounts and cgroups. Run: sudo minibox %s …", what, what)}
	}
	return engine.New(cleanup.DataRoot(f.root))
}

func newPsCmd(s *streams) *cobra.Command {
	var f engineFlags
	var all, quiet bool
	var format string
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List containers (running ones; -a: all)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := f.open("ps")
			if err != nil {
				return err
			}
			list, err := e.List()
			if err != nil {
				return err
			}
			var shown []*engine.Container
			for _, c := range list {
				if all || c.State.Status == "running" {
					shown = append(shown, c)
				}
			}
			switch {
			case format == "json":
				return json.NewEncoder(s.out).Encode(shown)
			case format != "":
				return fmt.Errorf("--format %s: expected json", format)
			case quiet:
				for _, c := range shown {
					fmt.Fprintln(s.out, c.Short())
				}
				return nil
			}
			w := tabwriter.NewWriter(s.out, 0, 8, 3, ' ', 0)
			fmt.Fprintln(w, "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES")
			for _, c := range shown {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s ago\t%s\t%s\t%s\n", c.Short(), c.Image, quoteCommand(c.Config.Cmd),
					humanDuration(time.Since(c.Created)), status(c), strings.Join(c.Network.Ports, ", "), c.Name)
			}
			return w.Flush()
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVarP(&all, "all", "a", false, "all containers, not only running ones")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only the ids")
	cmd.Flags().StringVar(&format, "format", "", "json: the records, as inspect shows them")
	return cmd
}

// status is docker's: Up 3 minutes, Exited (137) 5 seconds ago, Created.
func status(c *engine.Container) string {
	switch c.State.Status {
	case "running":
		return "Up " + humanDuration(time.Since(c.State.StartedAt))
	case "exited":
		return fmt.Sprintf("Exited (%d) %s ago", c.State.ExitCode, humanDuration(time.Since(c.State.FinishedAt)))
	}
	return "Created"
}

func quoteCommand(cmd []string) string {
	s := strings.Join(cmd, " ")
	if len(s) > 20 {
		s = s[:19] + "…"
	}
	return strconv.Quote(s)
}

func newLogsCmd(s *streams) *cobra.Command {
	var f engineFlags
	var o engine.LogOptions
	var tail string
	cmd := &cobra.Command{
		Use:   "logs CONTAINER",
		Short: "Show what a container printed (kept after it exits)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Tail = -1
			if tail != "all" {
				n, err := strconv.Atoi(tail)
				if err != nil || n < 0 {
					return fmt.Errorf("--tail %s: expected a number of lines or all", tail)
				}
				o.Tail = n
			}
			e, err := f.open("logs")
			if err != nil {
				return err
			}
			return e.Logs(args[0], o, s.out, s.err)
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVarP(&o.Follow, "follow", "f", false, "go on printing until the container exits")
	cmd.Flags().StringVar(&tail, "tail", "all", "only the last `N` lines")
	cmd.Flags().BoolVarP(&o.Timestamps, "timestamps", "t", false, "each line with its time")
	return cmd
}

func newStopCmd(s *streams) *cobra.Command {
	var f engineFlags
	var seconds int
	cmd := &cobra.Command{
		Use:   "stop CONTAINER...",
		Short: "Stop containers: SIGTERM, then SIGKILL after -t seconds",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := f.open("stop")
			if err != nil {
				return err
			}
			return eachContainer(s.out, args, func(ref string) error { return e.Stop(ref, time.Duration(seconds)*time.Second) })
		},
	}
	f.add(cmd)
	cmd.Flags().IntVarP(&seconds, "time", "t", 10, "seconds to wait for it to stop before SIGKILL")
	return cmd
}

func newKillCmd(s *streams) *cobra.Command {
	var f engineFlags
	var signal string
	cmd := &cobra.Command{
		Use:   "kill CONTAINER...",
		Short: "Send a signal to containers (default SIGKILL)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sig, err := changes.ParseSignal(signal)
			if err != nil {
				return err
			}
			e, err := f.open("kill")
			if err != nil {
				return err
			}
			return eachContainer(s.out, args, func(ref string) error { return e.Kill(ref, sig) })
		},
	}
	f.add(cmd)
	cmd.Flags().StringVarP(&signal, "signal", "s", "KILL", "the `SIGNAL`: a name (TERM, SIGHUP) or a number")
	return cmd
}

func newRmCmd(s *streams) *cobra.Command {
	var f engineFlags
	var force, volumes bool
	cmd := &cobra.Command{
		Use:   "rm CONTAINER...",
		Short: "Remove containers (-f: running ones too)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := f.open("rm")
			if err != nil {
				return err
			}
			return eachContainer(s.out, args, func(ref string) error { return e.Remove(ref, force, volumes) })
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running container first")
	cmd.Flags().BoolVarP(&volumes, "volumes", "v", false, "remove its anonymous volumes too")
	return cmd
}

func newInspectCmd(s *streams) *cobra.Command {
	var f engineFlags
	cmd := &cobra.Command{
		Use:   "inspect CONTAINER...",
		Short: "A container's record as JSON: config, state, exit code, OOM kill, address, mounts",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := f.open("inspect")
			if err != nil {
				return err
			}
			var list []*engine.Container
			for _, ref := range args {
				c, err := e.Get(ref)
				if err != nil {
					return err
				}
				list = append(list, c)
			}
			enc := json.NewEncoder(s.out)
			enc.SetIndent("", "    ")
			return enc.Encode(list)
		},
	}
	f.add(cmd)
	return cmd
}

func newWaitCmd(s *streams) *cobra.Command {
	var f engineFlags
	cmd := &cobra.Command{
		Use:   "wait CONTAINER...",
		Short: "Wait until containers exit, and print their exit statuses",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := f.open("wait")
			if err != nil {
				return err
			}
			for _, ref := range args {
				code, err := e.Wait(ref)
				if err != nil {
					return err
				}
				fmt.Fprintln(s.out, code)
			}
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

// eachContainer runs do for each ref, prints each that worked (as docker
// does) and fails if any failed, naming it.
func eachContainer(out io.Writer, refs []string, do func(string) error) error {
	var failed []string
	for _, ref := range refs {
		if err := do(ref); err != nil {
			fmt.Fprintf(os.Stderr, "minibox: %s: %v\n", ref, err)
			failed = append(failed, ref)
			continue
		}
		fmt.Fprintln(out, ref)
	}
	if len(failed) > 0 {
		return &exitError{code: 1}
	}
	return nil
}

// rmi asks the engine whether a container uses an image.
func init() {
	ImageInUse = func(root, id string) bool {
		e, err := engine.New(root)
		if err != nil {
			return true // cannot tell: keep it
		}
		list, err := e.List()
		if err != nil {
			return true
		}
		for _, c := range list {
			if strings.HasPrefix(strings.TrimPrefix(c.ImageID, "sha256:"), id) {
				return true
			}
		}
		return false
	}
}
