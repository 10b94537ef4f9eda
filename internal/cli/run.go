package cli

// run, create, start, exec and the hidden supervise: the commands that
// start processes in containers.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/minibox-lab/minibox/final/engine"
	"github.com/minibox-lab/minibox/final/engine/early"
)

// runFlags are run's and create's flags, docker's names.
type runFlags struct {
	engineFlags
	o          engine.Options
	detach     bool
	envFiles   []string
	memory     string
	cpus       float64
	entrypoint string
}

func (f *runFlags) add(cmd *cobra.Command, run bool) {
	f.engineFlags.add(cmd)
	fl := cmd.Flags()
	fl.SetInterspersed(false) // flags after IMAGE are the command's
	if run {
		fl.BoolVarP(&f.detach, "detach", "d", false, "run in the background and print the container's id")
		fl.BoolVar(&f.o.AutoRemove, "rm", false, "remove the container when it exits")
	}
	fl.BoolVarP(&f.o.Interactive, "interactive", "i", false, "keep its standard input open")
	fl.BoolVarP(&f.o.Tty, "tty", "t", false, "a pseudo-terminal: job control, window size, Ctrl-C inside")
	fl.StringVar(&f.o.Name, "name", "", "the container's `NAME`")
	fl.StringArrayVarP(&f.o.Env, "env", "e", nil, "an environment variable `NAME=VALUE`, or NAME: its value here")
	fl.StringArrayVar(&f.envFiles, "env-file", nil, "read NAME=VALUE lines from `FILE`")
	fl.StringArrayVarP(&f.o.Volumes, "volume", "v", nil, "a volume or bind mount `[SOURCE:]DEST[:ro]`")
	fl.StringArrayVarP(&f.o.Ports, "publish", "p", nil, "publish a port `[IP:]HOSTPORT:PORT[/udp]`")
	fl.StringVarP(&f.memory, "memory", "m", "", "memory limit: bytes, or 512k, 64m, 1g")
	fl.Float64Var(&f.cpus, "cpus", 0, "CPU time in CPUs: 0.5 = half of one")
	fl.Int64Var(&f.o.PidsLimit, "pids-limit", 0, "at most `N` processes")
	fl.StringVarP(&f.o.Workdir, "workdir", "w", "", "the working `DIR`")
	fl.StringVarP(&f.o.User, "user", "u", "", "`USER[:GROUP]`, names or numbers")
	fl.StringVar(&f.o.Hostname, "hostname", "", "the hostname (default: the short id)")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "instead of the image's entrypoint (and its Cmd)")
	fl.StringVar(&f.o.Network, "network", "bridge", "bridge, none or host")
}

// options completes the engine's options from the flags and arguments.
func (f *runFlags) options(cmd *cobra.Command, args []string) (engine.Options, error) {
	o := f.o
	o.Image, o.Args = args[0], args[1:]
	if cmd.Flags().Changed("entrypoint") {
		o.Entrypoint = &f.entrypoint
	}
	if f.memory != "" {
		n, err := parseBytes(f.memory)
		if err != nil {
			return o, fmt.Errorf("--memory %s: %w", f.memory, err)
		}
		o.Memory = n
	}
	if f.cpus < 0 {
		return o, fmt.Errorf("--cpus %v: expected a positive number", f.cpus)
	}
	o.NanoCPUs = int64(f.cpus * 1e9)
	for _, file := range f.envFiles {
		env, err := readEnvFile(file)
		if err != nil {
			return o, err
		}
		o.Env = append(env, o.Env...)
	}
	return o, nil
}

// create makes the container that run and create ask for (pulling its
// image if missing, with the pull's progress on stderr); errors in what
// was asked exit with 125, as docker's do.
func (f *runFlags) create(cmd *cobra.Command, args []string, s *streams, what string) (*engine.Engine, *engine.Container, error) {
	o, e, err := f.prepare(cmd, args, what)
	if err != nil {
		return nil, nil, err
	}
	c, err := createIn(e, o, s)
	return e, c, err
}

// prepare reads the flags and opens the engine.
func (f *runFlags) prepare(cmd *cobra.Command, args []string, what string) (engine.Options, *engine.Engine, error) {
	o, err := f.options(cmd, args)
	if err != nil {
		return o, nil, &exitError{code: 125, err: err}
	}
	e, err := f.open(what)
	return o, e, err
}

// createIn makes the container (pulling its image if missing).
func createIn(e *engine.Engine, o engine.Options, s *streams) (*engine.Container, error) {
	o.Pull = s.err
	c, err := e.Create(context.Background(), o)
	if err != nil {
		return nil, &exitError{code: 125, err: err}
	}
	return c, nil
}

// parseBytes reads 512k, 64m, 1g (docker's units, powers of 1024).
func parseBytes(s string) (int64, error) {
	mult := int64(1)
	switch strings.ToLower(s[len(s)-1:]) {
	case "b":
		s = s[:len(s)-1]
	case "k":
		mult, s = 1<<10, s[:len(s)-1]
	case "m":
		mult, s = 1<<20, s[:len(s)-1]
	case "g":
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("expected a size such as 64m")
	}
	return n * mult, nil
}

// readEnvFile reads NAME=VALUE lines (a NAME alone takes our value, as
// -e NAME does); # comments and blank lines skipped.
func readEnvFile(file string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("--env-file: %w", err)
	}
	defer f.Close()
	var env []string
	lines := bufio.NewScanner(f)
	for n := 1; lines.Scan(); n++ {
		line := strings.TrimSpace(lines.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "=") {
			return nil, fmt.Errorf("--env-file %s:%d: expected NAME=VALUE or NAME, got %q", file, n, line)
		}
		env = append(env, line)
	}
	return env, lines.Err()
}

func newRunCmd(s *streams) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [flags] IMAGE [COMMAND [ARG...]]",
		Short: "Run a command in a new container (pulls the image if missing)",
		Long: `Run a command in a new container, as docker run does: the image's layers
under a writable layer of its own (lesson 4), new namespaces (lesson 2),
cgroup limits (lesson 3), a network (lesson 5), the image's config
(lesson 6), on minibox's OCI runtime (minibox runtime). Without -d, run
waits for the container and exits with its exit status.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, e, err := f.prepare(cmd, args, "run")
			if err != nil {
				return err
			}
			// The container's supervisor has started before main, or starts
			// now: its start-up overlaps ours, the image lookup and the
			// record (engine.PrestartNew).
			sup, err := e.PrestartNew(early.Take())
			if err != nil {
				return &exitError{code: 125, err: err}
			}
			o.ID = sup.ID()
			defer sup.Cancel() // no container for it after all: it exits
			c, err := createIn(e, o, s)
			if err != nil {
				return err
			}
			if f.detach {
				err = sup.Start(nil)
			} else {
				var code int
				if code, err = attachAndStart(e, c, s, sup.Start); err == nil {
					return exitCode(code)
				}
			}
			if err != nil {
				if c.Config.AutoRemove { // --rm: a container that never ran goes too
					_ = e.Remove(c.ID, true, true)
				}
				return &exitError{code: 125, err: err}
			}
			fmt.Fprintln(s.out, c.ID)
			return nil
		},
	}
	f.add(cmd, true)
	return cmd
}

// attachAndStart starts c with start (its supervisor's Start) attached to
// our terminal or pipes and returns its exit status.
func attachAndStart(e *engine.Engine, c *engine.Container, s *streams, start func(attach func(id string) error) error) (int, error) {
	io := engine.AttachIO{Stdout: s.out, Stderr: s.err}
	if c.Config.OpenStdin {
		io.Stdin = s.in
	}
	if c.Config.Tty {
		restore, resize := rawTerminal()
		defer restore()
		io.Resize = resize
	}
	result := make(chan error, 1)
	var code int
	err := start(func(id string) error {
		ready := make(chan struct{})
		go func() {
			var err error
			code, err = e.Attach(id, io, ready)
			result <- err
		}()
		<-ready
		return nil
	})
	if err != nil {
		return 0, err
	}
	if !c.Config.Tty { // docker's sig-proxy: Ctrl-C and SIGTERM go to the container
		sigs := make(chan os.Signal, 4)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
		defer signal.Stop(sigs)
		go func() {
			for sig := range sigs {
				_ = e.Kill(c.ID, sig.(syscall.Signal))
			}
		}()
	}
	return code, <-result
}

// rawTerminal puts stdin's terminal in raw mode (what the container's
// terminal does with the keys is its business) and reports its size now
// and on each SIGWINCH.
func rawTerminal() (func(), <-chan [2]uint16) {
	fd := int(os.Stdin.Fd())
	resize := make(chan [2]uint16, 1)
	if !term.IsTerminal(fd) {
		close(resize)
		return func() {}, resize
	}
	old, err := term.MakeRaw(fd)
	if err != nil {
		close(resize)
		return func() {}, resize
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	send := func() {
		if ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err == nil {
			select {
			case resize <- [2]uint16{ws.Row, ws.Col}:
			default:
			}
		}
	}
	send()
	go func() {
		for range winch {
			send()
		}
	}()
	return func() { signal.Stop(winch); _ = term.Restore(fd, old) }, resize
}

func exitCode(code int) error {
	if code == 0 {
		return nil
	}
	return &exitError{code: code}
}

func newCreateCmd(s *streams) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "create [flags] IMAGE [COMMAND [ARG...]]",
		Short: "Create a container without starting it (start starts it)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, c, err := f.create(cmd, args, s, "create")
			if err == nil {
				fmt.Fprintln(s.out, c.ID)
			}
			return err
		},
	}
	f.add(cmd, false)
	return cmd
}

func newStartCmd(s *streams) *cobra.Command {
	var f engineFlags
	var attach bool
	cmd := &cobra.Command{
		Use:   "start [-a] CONTAINER...",
		Short: "Start created or exited containers (an exited one runs again)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := f.open("start")
			if err != nil {
				return err
			}
			if attach {
				c, err := e.Get(args[0])
				if err != nil {
					return err
				}
				sup, err := e.Prestart(c.ID)
				if err != nil {
					return err
				}
				code, err := attachAndStart(e, c, s, sup.Start)
				if err != nil {
					return err
				}
				return exitCode(code)
			}
			return eachContainer(s.out, args, func(ref string) error { return e.Start(ref, nil) })
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVarP(&attach, "attach", "a", false, "attach to its output and wait for it")
	return cmd
}

// newSuperviseCmd is the supervisor's entry point (engine.Supervise): a
// mode of this binary, started by start, never by hand.
func newSuperviseCmd() *cobra.Command {
	var f engineFlags
	cmd := &cobra.Command{
		Use:    "supervise ID",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ready := os.NewFile(3, "ready")
			engine.TellBuild(ready)
			e, err := f.open("supervise")
			if err != nil {
				fmt.Fprintf(ready, "error: %v\n", err)
				return err
			}
			return e.Supervise(args[0], ready)
		},
	}
	f.add(cmd)
	return cmd
}

func newExecCmd(s *streams) *cobra.Command {
	var f engineFlags
	var o engine.ExecOptions
	cmd := &cobra.Command{
		Use:   "exec [flags] CONTAINER COMMAND [ARG...]",
		Short: "Run a command in a running container (all its namespaces, its cgroup)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := f.open("exec")
			if err != nil {
				return err
			}
			o.Cmd = args[1:]
			var stdin = s.in
			var resize <-chan [2]uint16
			if o.Tty {
				restore, r := rawTerminal()
				defer restore()
				resize = r
			}
			if !o.Interactive {
				stdin = nil
			}
			code, err := e.Exec(args[0], o, stdin, s.out, s.err, resize)
			if err != nil {
				return &exitError{code: 126, err: err}
			}
			return exitCode(code)
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.BoolVarP(&o.Interactive, "interactive", "i", false, "keep standard input open")
	fl.BoolVarP(&o.Tty, "tty", "t", false, "a pseudo-terminal")
	fl.StringArrayVarP(&o.Env, "env", "e", nil, "an environment variable `NAME=VALUE`, or NAME: its value here")
	fl.StringVarP(&o.Workdir, "workdir", "w", "", "the working `DIR`")
	fl.StringVarP(&o.User, "user", "u", "", "`USER[:GROUP]`")
	return cmd
}

func newVolumeCmd(s *streams) *cobra.Command {
	var f engineFlags
	cmd := &cobra.Command{Use: "volume", Short: "Manage volumes: ls, create, rm"}
	ls := &cobra.Command{
		Use: "ls", Short: "List volumes", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := f.open("volume ls")
			if err != nil {
				return err
			}
			names, err := e.Volumes()
			if err != nil {
				return err
			}
			fmt.Fprintln(s.out, "DRIVER    VOLUME NAME")
			for _, n := range names {
				fmt.Fprintf(s.out, "local     %s\n", n)
			}
			return nil
		},
	}
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a volume", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := f.open("volume create")
			if err != nil {
				return err
			}
			if _, err := e.CreateVolume(args[0]); err != nil {
				return err
			}
			fmt.Fprintln(s.out, args[0])
			return nil
		},
	}
	rm := &cobra.Command{
		Use: "rm NAME...", Short: "Remove volumes no container uses", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := f.open("volume rm")
			if err != nil {
				return err
			}
			return eachContainer(s.out, args, e.RemoveVolume)
		},
	}
	for _, sub := range []*cobra.Command{ls, create, rm} {
		f.add(sub)
		cmd.AddCommand(sub)
	}
	return cmd
}
