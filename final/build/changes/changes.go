// Package changes applies docker's configuration changes (commit -c,
// import -c) to an image config: one Dockerfile instruction each, read by
// Docker's own parser, as `docker commit --change` reads them. It is a
// package of its own so that the builder and the CLI (commit, which hands
// final/engine a function) share it; final/engine must not import it:
// minibox-shim links the engine and would link buildkit's parser too.
package changes

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Allowed are the instructions docker accepts as a change.
const Allowed = "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD (refused: no triggers in OCI configs), STOPSIGNAL, USER, VOLUME, WORKDIR"

// Apply applies each change (a Dockerfile line such as `CMD ["sh"]` or
// `ENV A=b`) to cfg, in order. $VAR is expanded from cfg's Env.
func Apply(cfg *ocispec.ImageConfig, changes []string) error {
	for _, ch := range changes {
		if err := apply(cfg, ch); err != nil {
			return fmt.Errorf("--change %q: %w", ch, err)
		}
	}
	return nil
}

func apply(cfg *ocispec.ImageConfig, change string) error {
	res, err := parser.Parse(strings.NewReader(change))
	if err != nil {
		return err
	}
	if len(res.AST.Children) != 1 {
		return errors.New("expected one Dockerfile instruction")
	}
	cmd, err := instructions.ParseCommand(res.AST.Children[0])
	if err != nil {
		return err
	}
	if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
		lex, env := shell.NewLex(res.EscapeToken), shell.EnvsFromSlice(cfg.Env)
		err := ex.Expand(func(w string) (string, error) {
			out, _, err := lex.ProcessWord(w, env)
			return out, err
		})
		if err != nil {
			return err
		}
	}
	switch c := cmd.(type) {
	case *instructions.CmdCommand:
		cfg.Cmd = Command(c.ShellDependantCmdLine, nil)
	case *instructions.EntrypointCommand:
		cfg.Entrypoint = Command(c.ShellDependantCmdLine, nil)
	case *instructions.EnvCommand:
		for _, kv := range c.Env {
			cfg.Env = SetEnv(cfg.Env, kv.Key+"="+kv.Value)
		}
	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for _, kv := range c.Labels {
			cfg.Labels[kv.Key] = kv.Value
		}
	case *instructions.ExposeCommand:
		ports, err := ExposedPorts(c.Ports)
		if err != nil {
			return err
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range ports {
			cfg.ExposedPorts[p] = struct{}{}
		}
	case *instructions.UserCommand:
		cfg.User = c.User
	case *instructions.WorkdirCommand:
		cfg.WorkingDir = InWorkdir(cfg.WorkingDir, c.Path)
	case *instructions.VolumeCommand:
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			cfg.Volumes[v] = struct{}{}
		}
	case *instructions.StopSignalCommand:
		if _, err := ParseSignal(c.Signal); err != nil {
			return fmt.Errorf("STOPSIGNAL: %w", err)
		}
		cfg.StopSignal = c.Signal
	default:
		return fmt.Errorf("%s is not a change docker allows (%s)", strings.ToUpper(cmd.Name()), Allowed)
	}
	return nil
}

// Command is CMD's, ENTRYPOINT's or RUN's argv: the exec form as
// written, the shell form run by shell (nil: /bin/sh -c).
func Command(c instructions.ShellDependantCmdLine, sh []string) []string {
	if !c.PrependShell {
		return append([]string(nil), c.CmdLine...)
	}
	if len(c.CmdLine) == 0 {
		return nil
	}
	if sh == nil {
		sh = []string{"/bin/sh", "-c"}
	}
	return append(append([]string(nil), sh...), strings.Join(c.CmdLine, " "))
}

// SetEnv sets NAME=VALUE in env, replacing an old value of NAME.
func SetEnv(env []string, kv string) []string {
	name, _, _ := strings.Cut(kv, "=")
	out := append([]string(nil), env...)
	for i, old := range out {
		if strings.HasPrefix(old, name+"=") {
			out[i] = kv
			return out
		}
	}
	return append(out, kv)
}

// InWorkdir is path p seen from directory workdir, as cd would see it.
func InWorkdir(workdir, p string) string {
	if !path.IsAbs(p) {
		p = path.Join("/", workdir, p)
	}
	return path.Clean(p)
}

// ExposedPorts checks EXPOSE's PORT[/PROTO] words: 80 is 80/tcp.
func ExposedPorts(words []string) ([]string, error) {
	var ports []string
	for _, w := range words {
		port, proto, _ := strings.Cut(w, "/")
		if proto == "" {
			proto = "tcp"
		}
		proto = strings.ToLower(proto)
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || (proto != "tcp" && proto != "udp" && proto != "sctp") {
			return nil, fmt.Errorf("EXPOSE %s: expected PORT[/tcp|/udp|/sctp], PORT from 1 to 65535", w)
		}
		ports = append(ports, strconv.Itoa(n)+"/"+proto)
	}
	return ports, nil
}

// ParseSignal reads a signal as docker takes it (STOPSIGNAL's value, kill
// -s): a name (SIGTERM, TERM) or a number.
func ParseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("signal %q: not a signal name or number", s)
}
