package cli

// `minibox runtime`: the OCI runtime as a runc-compatible command (runc's
// subcommands, flag names and state JSON), so that bundles move between
// minibox and runc.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"text/tabwriter"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/minibox-lab/minibox/final/build/changes"
	"github.com/minibox-lab/minibox/final/runtime"
)

func newRuntimeCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runtime",
		Short: "The OCI runtime: run a bundle (config.json + rootfs), as runc does",
		Long: `minibox's OCI runtime, with runc's subcommands and flags: a bundle made by
` + "`runc spec`" + ` runs here, and one made by ` + "`minibox runtime spec`" + ` runs on runc.

  minibox runtime spec --bundle DIR          write DIR/config.json
  minibox runtime run --bundle DIR ID        create, start, wait, delete
  minibox runtime create|start|state|kill|delete|list|exec`,
	}
	cmd.PersistentFlags().String("root", runtime.DefaultRoot, "`DIR` for the containers' state")
	cmd.AddCommand(
		&cobra.Command{Use: "init", Hidden: true, Run: func(*cobra.Command, []string) { runtime.Init() }},
		newRuntimeSpecCmd(s), newRuntimeCreateCmd(s), newRuntimeStartCmd(), newRuntimeRunCmd(s),
		newRuntimeStateCmd(s), newRuntimeKillCmd(), newRuntimeDeleteCmd(), newRuntimeListCmd(s),
		newRuntimeExecCmd(s),
	)
	return cmd
}

func runtimeOf(cmd *cobra.Command) *runtime.Runtime {
	root, _ := cmd.Flags().GetString("root")
	return &runtime.Runtime{Root: root}
}

func newRuntimeSpecCmd(s *streams) *cobra.Command {
	var bundle string
	cmd := &cobra.Command{
		Use:   "spec",
		Short: "Write a default config.json (docker's capabilities, masked paths, default mounts)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := filepath.Join(bundle, "config.json")
			if _, err := os.Stat(path); err == nil {
				return fmt.Errorf("%s exists already; remove it first", path)
			}
			data, err := json.MarshalIndent(runtime.Spec(), "", "\t")
			if err != nil {
				return err
			}
			return os.WriteFile(path, append(data, '\n'), 0o644)
		},
	}
	cmd.Flags().StringVarP(&bundle, "bundle", "b", ".", "bundle `DIR`")
	return cmd
}

type createFlags struct{ bundle, consoleSocket, pidFile string }

func (f *createFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.bundle, "bundle", "b", ".", "bundle `DIR` (config.json and its rootfs)")
	cmd.Flags().StringVar(&f.consoleSocket, "console-socket", "", "unix socket `PATH` that receives the terminal's master (process.terminal)")
	cmd.Flags().StringVar(&f.pidFile, "pid-file", "", "write the init's PID to `FILE`")
}

func stdIO() runtime.IO { return runtime.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr} }

func newRuntimeCreateCmd(s *streams) *cobra.Command {
	var f createFlags
	cmd := &cobra.Command{
		Use:   "create [flags] ID",
		Short: "Create a container; its process waits for start",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := runtimeOf(cmd).Create(args[0], f.bundle, stdIO(), f.consoleSocket, f.pidFile)
			return err
		},
	}
	f.add(cmd)
	return cmd
}

func newRuntimeStartCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "start ID",
		Short: "Start a created container's process",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runtimeOf(cmd).Start(args[0])
		},
	}
}

func newRuntimeRunCmd(s *streams) *cobra.Command {
	var f createFlags
	var detach bool
	cmd := &cobra.Command{
		Use:   "run [flags] ID",
		Short: "Create and start a container; without --detach wait and exit with its status",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runForeground(runtimeOf(cmd), args[0], f, detach)
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "return once the container has started")
	return cmd
}

// runForeground is `runtime run`: create, start, and unless detached wait
// for the process, pass on SIGINT/SIGTERM, delete and return its status.
func runForeground(r *runtime.Runtime, id string, f createFlags, detach bool) error {
	terminal, err := wantsTerminal(f.bundle)
	if err != nil {
		return err
	}
	var console *consoleProxy
	if terminal && f.consoleSocket == "" {
		if detach {
			return errors.New("config.json: process.terminal is true: a detached container needs --console-socket")
		}
		if console, err = newConsoleProxy(); err != nil {
			return err
		}
		defer console.close()
		f.consoleSocket = console.path
	}
	pid, err := r.Create(id, f.bundle, stdIO(), f.consoleSocket, f.pidFile)
	if err != nil {
		return err
	}
	if err := r.Start(id); err != nil {
		_ = r.Delete(id, true)
		return err
	}
	if detach {
		return nil
	}
	if console != nil {
		console.serve()
	}
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT)
	defer signal.Stop(signals)
	go func() {
		for sig := range signals {
			_ = r.Kill(id, sig.(unix.Signal), false)
		}
	}()
	code := waitExit(pid)
	if console != nil {
		console.drain()
	}
	if err := r.Delete(id, true); err != nil {
		return &exitError{code: code, err: err}
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// waitExit waits for our child pid and returns a shell's status for it.
func waitExit(pid int) int {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func wantsTerminal(bundle string) (bool, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return false, fmt.Errorf("bundle %s: %w", bundle, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return false, fmt.Errorf("%s/config.json: %w", bundle, err)
	}
	return s.Process != nil && s.Process.Terminal, nil
}

// consoleProxy is run's own console socket: it receives the container's
// terminal and copies it to and from ours (runc does the same).
type consoleProxy struct {
	dir, path string
	ln        int
	master    *os.File
	restore   func()
	copied    chan struct{}
}

func newConsoleProxy() (*consoleProxy, error) {
	dir, err := os.MkdirTemp("", "minibox-console-")
	if err != nil {
		return nil, err
	}
	c := &consoleProxy{dir: dir, path: filepath.Join(dir, "console.sock"), ln: -1, restore: func() {}}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		c.ln = fd
		err = unix.Bind(fd, &unix.SockaddrUnix{Name: c.path})
	}
	if err == nil {
		err = unix.Listen(fd, 1)
	}
	if err != nil {
		c.close()
		return nil, fmt.Errorf("console socket: %w", err)
	}
	return c, nil
}

// serve receives the master (sent during create) and starts copying.
func (c *consoleProxy) serve() {
	conn, _, err := unix.Accept4(c.ln, unix.SOCK_CLOEXEC)
	if err != nil {
		return
	}
	defer unix.Close(conn)
	master, err := recvFD(conn)
	if err != nil {
		return
	}
	c.master = master
	if term.IsTerminal(int(os.Stdin.Fd())) {
		if ws, err := unix.IoctlGetWinsize(int(os.Stdin.Fd()), unix.TIOCGWINSZ); err == nil {
			_ = unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, ws)
		}
		if old, err := term.MakeRaw(int(os.Stdin.Fd())); err == nil {
			c.restore = func() { _ = term.Restore(int(os.Stdin.Fd()), old) }
		}
	}
	c.copied = make(chan struct{})
	go func() { _, _ = io.Copy(master, os.Stdin) }()
	go func() { _, _ = io.Copy(os.Stdout, master); close(c.copied) }()
}

// drain waits briefly for the last output after the process exited.
func (c *consoleProxy) drain() {
	if c.copied != nil {
		select {
		case <-c.copied:
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (c *consoleProxy) close() {
	c.restore()
	if c.master != nil {
		c.master.Close()
	}
	if c.ln >= 0 {
		unix.Close(c.ln)
	}
	os.RemoveAll(c.dir)
}

// recvFD receives one file descriptor sent with SCM_RIGHTS.
func recvFD(conn int) (*os.File, error) {
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(conn, buf, oob, 0)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) == 0 {
		return nil, fmt.Errorf("no file descriptor received: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) == 0 {
		return nil, fmt.Errorf("no file descriptor received: %v", err)
	}
	return os.NewFile(uintptr(fds[0]), string(buf[:n])), nil
}

// runcState is `runc state`'s JSON.
type runcState struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	PID         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func toRunc(r *runtime.Runtime, st specs.State) runcState {
	created, _ := r.CreatedAt(st.ID)
	rs := runcState{Created: created, OCIVersion: st.Version, ID: st.ID, PID: st.Pid, Status: string(st.Status), Bundle: st.Bundle, Annotations: st.Annotations}
	if st.Status == specs.StateStopped {
		rs.PID = 0
	}
	if data, err := os.ReadFile(filepath.Join(st.Bundle, "config.json")); err == nil {
		var s specs.Spec
		if json.Unmarshal(data, &s) == nil && s.Root != nil {
			rs.Rootfs = s.Root.Path
			if !filepath.IsAbs(rs.Rootfs) {
				rs.Rootfs = filepath.Join(st.Bundle, rs.Rootfs)
			}
		}
	}
	return rs
}

func newRuntimeStateCmd(s *streams) *cobra.Command {
	return &cobra.Command{
		Use:   "state ID",
		Short: "Print a container's state as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := runtimeOf(cmd).State(args[0])
			if err != nil {
				return err
			}
			data, err := json.MarshalIndent(toRunc(runtimeOf(cmd), st), "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintln(s.out, string(data))
			return nil
		},
	}
}

func newRuntimeKillCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "kill [flags] ID [SIGNAL]",
		Short: "Send a signal (default SIGTERM) to the container's process",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			sig := unix.SIGTERM
			if len(args) == 2 {
				var err error
				if sig, err = changes.ParseSignal(args[1]); err != nil {
					return err
				}
			}
			return runtimeOf(cmd).Kill(args[0], sig, all)
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "signal every process of the container")
	return cmd
}

func newRuntimeDeleteCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "delete [flags] ID",
		Short: "Delete a stopped container (--force: kill it first)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runtimeOf(cmd).Delete(args[0], force)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running container first")
	return cmd
}

func newRuntimeListCmd(s *streams) *cobra.Command {
	var format string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the containers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := runtimeOf(cmd)
			list, err := r.List()
			if err != nil {
				return err
			}
			out := make([]runcState, 0, len(list))
			for _, st := range list {
				out = append(out, toRunc(r, st))
			}
			switch {
			case quiet:
				for _, st := range out {
					fmt.Fprintln(s.out, st.ID)
				}
			case format == "json":
				return json.NewEncoder(s.out).Encode(out)
			case format == "table":
				w := tabwriter.NewWriter(s.out, 0, 8, 1, ' ', 0)
				fmt.Fprintln(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER")
				for _, st := range out {
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", st.ID, st.PID, st.Status, st.Bundle, st.Created.Format(time.RFC3339Nano), "root")
				}
				return w.Flush()
			default:
				return fmt.Errorf("--format %q: expected table or json", format)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "table", "`table` or json")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only the IDs")
	return cmd
}

func newRuntimeExecCmd(s *streams) *cobra.Command {
	var tty bool
	var cwd string
	var env []string
	cmd := &cobra.Command{
		Use:   "exec [flags] ID CMD [ARG...]",
		Short: "Run a new process in a running container (all its namespaces, its cgroup)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r := runtimeOf(cmd)
			p, err := execProcess(r, args[0], args[1:], tty, cwd, env)
			if err != nil {
				return err
			}
			code, err := execAndWait(r, args[0], p)
			if err != nil {
				return err
			}
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().BoolVarP(&tty, "tty", "t", false, "give the process a pseudo-terminal")
	cmd.Flags().StringVar(&cwd, "cwd", "", "working `DIR` in the container")
	cmd.Flags().StringArrayVarP(&env, "env", "e", nil, "`NAME=VALUE` to add to the environment")
	return cmd
}

// execProcess is the container's own process settings (user,
// capabilities, environment) with the new command.
func execProcess(r *runtime.Runtime, id string, args []string, tty bool, cwd string, env []string) (specs.Process, error) {
	st, err := r.State(id)
	if err != nil {
		return specs.Process{}, err
	}
	data, err := os.ReadFile(filepath.Join(st.Bundle, "config.json"))
	if err != nil {
		return specs.Process{}, fmt.Errorf("container %s: %w", id, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil || s.Process == nil {
		return specs.Process{}, fmt.Errorf("container %s: config.json: %v", id, err)
	}
	p := *s.Process
	p.Args, p.Terminal, p.ConsoleSize = args, tty, nil
	p.Env = append(append([]string(nil), p.Env...), env...)
	if cwd != "" {
		p.Cwd = cwd
	}
	return p, nil
}

// execAndWait runs p and returns its status; with a terminal it makes a
// pseudo-terminal here and copies between it and ours.
func execAndWait(r *runtime.Runtime, id string, p specs.Process) (int, error) {
	pio := stdIO()
	var master *os.File
	if p.Terminal {
		m, slave, err := openPTY()
		if err != nil {
			return 0, err
		}
		defer m.Close()
		defer slave.Close()
		master, pio = m, runtime.IO{Stdin: slave, Stdout: slave, Stderr: slave}
	}
	proc, err := r.Exec(id, p, pio)
	if err != nil {
		return 0, err
	}
	if master != nil {
		pio.Stdin.Close()
		if term.IsTerminal(int(os.Stdin.Fd())) {
			if old, err := term.MakeRaw(int(os.Stdin.Fd())); err == nil {
				defer func() { _ = term.Restore(int(os.Stdin.Fd()), old) }()
			}
		}
		go func() { _, _ = io.Copy(master, os.Stdin) }()
		done := make(chan struct{})
		go func() { _, _ = io.Copy(os.Stdout, master); close(done) }()
		defer func() {
			select {
			case <-done:
			case <-time.After(500 * time.Millisecond):
			}
		}()
	}
	ps, err := proc.Wait()
	if err != nil {
		return 0, err
	}
	if ws, ok := ps.Sys().(unix.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ps.ExitCode(), nil
}

// openPTY opens a pseudo-terminal pair on this host's devpts.
func openPTY() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("ptsname: %w", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, s, nil
}
