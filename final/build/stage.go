package build

// One stage: FROM, then each instruction a step. A step prints docker's
// classic lines (Step 3/7 : …, ---> Using cache, ---> <id>), is looked up
// in the cache, else done, and leaves an image (unnamed) behind it.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/minibox-lab/minibox/final/build/changes"
	"github.com/minibox-lab/minibox/final/image"
)

// buildStage builds one stage.
func (bd *build) buildStage(ctx context.Context, is *instructions.Stage) error {
	bd.step++
	fmt.Fprintf(bd.out, "Step %d/%d : %s\n", bd.step, bd.steps, is.SourceCode)
	s, err := bd.from(ctx, is)
	if err != nil {
		return bd.lineError(parser.WithLocation(err, is.Location))
	}
	bd.stages = append(bd.stages, s)
	if s.manifest != "" {
		fmt.Fprintf(bd.out, " ---> %s\n", shortID(s))
	}
	for _, c := range is.Commands {
		if err := ctx.Err(); err != nil {
			return err
		}
		bd.step++
		fmt.Fprintf(bd.out, "Step %d/%d : %s\n", bd.step, bd.steps, sourceOf(c))
		if err := bd.do(ctx, s, c); err != nil {
			var e *Error
			if errors.As(err, &e) || ctx.Err() != nil {
				return err
			}
			return bd.lineError(parser.WithLocation(err, c.Location()))
		}
		fmt.Fprintf(bd.out, " ---> %s\n", shortID(s))
	}
	return nil
}

// sourceOf is the instruction as written (continuations joined).
func sourceOf(c instructions.Command) string {
	if s, ok := c.(fmt.Stringer); ok {
		return s.String()
	}
	return strings.ToUpper(c.Name())
}

// shortID is the 12-digit id of the stage's image so far.
func shortID(s *stage) string { return s.id }

// from starts a stage: scratch, an earlier stage (by name), or an image
// of the store (pulled if missing, as docker does).
func (bd *build) from(ctx context.Context, is *instructions.Stage) (*stage, error) {
	base, err := bd.expandWith(is.BaseName, argEnv(bd.metaArgs))
	if err != nil {
		return nil, err
	}
	if is.Platform != "" {
		return nil, fmt.Errorf("FROM --platform: minibox builds for this machine only")
	}
	s := &stage{name: is.Name, shell: []string{"/bin/sh", "-c"}}
	switch {
	case base == "":
		return nil, errors.New("FROM needs an image: the name is empty after expansion")
	case base == "scratch":
		s.cfg = ocispec.Image{RootFS: ocispec.RootFS{Type: "layers"}}
		return s, nil
	}
	for _, prev := range bd.stages {
		if prev.name != "" && strings.EqualFold(prev.name, base) {
			*s = *prev
			s.name, s.args, s.cmdSet = is.Name, nil, false
			s.cfg = image.CopyConfig(prev.cfg)
			s.layers = append([]ocispec.Descriptor(nil), prev.layers...)
			return s, nil
		}
	}
	img, err := bd.Images.Lookup(base)
	if errors.Is(err, image.ErrNotFound) {
		fmt.Fprintf(bd.out, "Unable to find image '%s' locally\n", base)
		img, err = bd.Images.Pull(ctx, base, image.PullOptions{Progress: bd.out})
	}
	if err != nil {
		return nil, fmt.Errorf("FROM %s: %w", base, err)
	}
	s.cfg = image.CopyConfig(img.Config)
	s.layers = append([]ocispec.Descriptor(nil), img.Manifest.Layers...)
	s.manifest, s.id = img.Digest, img.ID
	return s, nil
}

// A stepResult is what a step did, for the history and the cache.
type stepResult struct {
	createdBy string
	layer     *image.Layer // nil: the config only
}

// do runs one instruction: from the cache, or for real.
func (bd *build) do(ctx context.Context, s *stage, c instructions.Command) error {
	if ex, ok := c.(instructions.SupportsSingleWordExpansion); ok {
		env := s.env()
		if err := ex.Expand(func(w string) (string, error) { return bd.expandWith(w, env) }); err != nil {
			return err
		}
	}
	p, err := bd.plan(s, c)
	if err != nil {
		return err
	}
	key := cacheKey(s.manifest, p.key, p.content)
	if !bd.o.NoCache {
		if img := bd.cached(key); img != nil {
			fmt.Fprintln(bd.out, " ---> Using cache")
			p.apply(s) // the stage's own state (ARG, SHELL, CMD seen)
			s.cfg, s.layers, s.manifest, s.id = image.CopyConfig(img.Config), img.Manifest.Layers, img.Digest, img.ID
			return nil
		}
	}
	res, err := p.do(ctx)
	if err != nil {
		return err
	}
	p.apply(s)
	now := time.Now().UTC()
	s.cfg.Created = &now
	h := ocispec.History{Created: &now, CreatedBy: res.createdBy, EmptyLayer: res.layer == nil}
	if res.layer != nil {
		s.layers = append(s.layers, res.layer.Desc)
		s.cfg.RootFS.DiffIDs = append(s.cfg.RootFS.DiffIDs, res.layer.DiffID)
	}
	image.AddHistory(&s.cfg, h)
	img, err := bd.writeImage(s, "")
	if err != nil {
		return err
	}
	s.manifest, s.id = img.Digest, img.ID
	return bd.remember(key, img.Digest) // only now: an entry never names a half image
}

// plan is a step worked out before it is done: its cache key, what it
// does to the config and what it makes.
type plan struct {
	key     string // the instruction after expansion, and what it depends on
	content string // the hash of the files it copies
	apply   func(*stage)
	do      func(context.Context) (stepResult, error)
}

// plan works out step c on stage s.
func (bd *build) plan(s *stage, c instructions.Command) (*plan, error) {
	p := &plan{apply: func(*stage) {}}
	meta := func(text string, change func(*stage)) (*plan, error) {
		p.key, p.apply = text, change
		p.do = func(context.Context) (stepResult, error) {
			return stepResult{createdBy: "/bin/sh -c #(nop)  " + text}, nil
		}
		return p, nil
	}
	switch c := c.(type) {
	case *instructions.EnvCommand:
		return meta(kvText("ENV", c.Env), func(s *stage) {
			for _, kv := range c.Env {
				s.cfg.Config.Env = changes.SetEnv(s.cfg.Config.Env, kv.Key+"="+kv.Value)
			}
		})
	case *instructions.LabelCommand:
		return meta(kvText("LABEL", c.Labels), func(s *stage) {
			if s.cfg.Config.Labels == nil {
				s.cfg.Config.Labels = map[string]string{}
			}
			for _, kv := range c.Labels {
				s.cfg.Config.Labels[kv.Key] = kv.Value
			}
		})
	case *instructions.MaintainerCommand:
		return meta("MAINTAINER "+c.Maintainer, func(s *stage) { s.cfg.Author = c.Maintainer })
	case *instructions.WorkdirCommand:
		wd := changes.InWorkdir(s.cfg.Config.WorkingDir, c.Path)
		p, _ := meta("WORKDIR "+wd, func(s *stage) { s.cfg.Config.WorkingDir = wd })
		p.do = func(ctx context.Context) (stepResult, error) {
			return bd.workdir(ctx, s, wd, "/bin/sh -c #(nop) WORKDIR "+wd)
		}
		return p, nil
	case *instructions.UserCommand:
		return meta("USER "+c.User, func(s *stage) { s.cfg.Config.User = c.User })
	case *instructions.StopSignalCommand:
		if _, err := changes.ParseSignal(c.Signal); err != nil {
			return nil, fmt.Errorf("STOPSIGNAL: %w", err)
		}
		return meta("STOPSIGNAL "+c.Signal, func(s *stage) { s.cfg.Config.StopSignal = c.Signal })
	case *instructions.VolumeCommand:
		if len(c.Volumes) == 0 {
			return nil, errors.New("VOLUME needs at least one path")
		}
		return meta(fmt.Sprintf("VOLUME %v", c.Volumes), func(s *stage) {
			if s.cfg.Config.Volumes == nil {
				s.cfg.Config.Volumes = map[string]struct{}{}
			}
			for _, v := range c.Volumes {
				s.cfg.Config.Volumes[v] = struct{}{}
			}
		})
	case *instructions.ExposeCommand:
		ports, err := bd.exposedPorts(s, c.Ports)
		if err != nil {
			return nil, err
		}
		return meta("EXPOSE "+strings.Join(ports, " "), func(s *stage) {
			if s.cfg.Config.ExposedPorts == nil {
				s.cfg.Config.ExposedPorts = map[string]struct{}{}
			}
			for _, port := range ports {
				s.cfg.Config.ExposedPorts[port] = struct{}{}
			}
		})
	case *instructions.CmdCommand:
		cmd := commandOf(s, c.ShellDependantCmdLine)
		return meta(fmt.Sprintf("CMD %q", cmd), func(s *stage) { s.cfg.Config.Cmd, s.cmdSet = cmd, true })
	case *instructions.EntrypointCommand:
		ep := commandOf(s, c.ShellDependantCmdLine)
		return meta(fmt.Sprintf("ENTRYPOINT %q", ep), func(s *stage) {
			s.cfg.Config.Entrypoint = ep
			if !s.cmdSet { // the base image's CMD was for its entrypoint
				s.cfg.Config.Cmd = nil
			}
		})
	case *instructions.ShellCommand:
		if len(c.Shell) == 0 {
			return nil, errors.New("SHELL needs a JSON array: SHELL [\"/bin/bash\", \"-c\"]")
		}
		return meta(fmt.Sprintf("SHELL %q", c.Shell), func(s *stage) { s.shell = append([]string(nil), c.Shell...) })
	case *instructions.ArgCommand:
		args := bd.stageArgs(s, c)
		var text []string
		for _, a := range args {
			text = append(text, a.name+"="+derefOr(a.value, "<unset>"))
		}
		return meta("ARG "+strings.Join(text, " "), func(s *stage) {
			for _, a := range args {
				s.args = setArg(s.args, a)
			}
		})
	case *instructions.HealthCheckCommand:
		return nil, errors.New("HEALTHCHECK is not supported: minibox's engine runs no health checks, and the OCI image config has no place for one")
	case *instructions.OnbuildCommand:
		return nil, errors.New("ONBUILD is not supported: the OCI image config has no place for triggers, and minibox runs none")
	case *instructions.RunCommand:
		return bd.planRun(s, c)
	case *instructions.CopyCommand:
		return bd.planCopy(s, copySpec{cmd: "COPY", from: c.From, chown: c.Chown, chmod: c.Chmod, link: c.Link, parents: c.Parents, src: c.SourcesAndDest})
	case *instructions.AddCommand:
		if c.Checksum != "" || c.KeepGitDir {
			return nil, errors.New("ADD --checksum and --keep-git-dir are for remote sources, which minibox does not fetch")
		}
		return bd.planCopy(s, copySpec{cmd: "ADD", chown: c.Chown, chmod: c.Chmod, link: c.Link, src: c.SourcesAndDest})
	}
	return nil, fmt.Errorf("%s is not supported by minibox build", strings.ToUpper(c.Name()))
}

// stageArgs resolves the ARGs of one instruction: --build-arg, else the
// default, else the value of the same ARG before FROM.
func (bd *build) stageArgs(s *stage, c *instructions.ArgCommand) []arg {
	var out []arg
	for _, kv := range c.Args {
		a := arg{name: kv.Key, value: kv.Value}
		if v, ok := bd.o.BuildArgs[kv.Key]; ok {
			a.value = &v
		} else if a.value == nil {
			for _, m := range bd.metaArgs {
				if m.name == kv.Key {
					a.value = m.value
				}
			}
		}
		bd.used[kv.Key] = true
		out = append(out, a)
	}
	return out
}

func derefOr(p *string, or string) string {
	if p == nil {
		return or
	}
	return *p
}

// kvText is LABEL's pairs as text, in order.
func kvText(cmd string, kvs instructions.KeyValuePairs) string {
	parts := []string{cmd}
	for _, kv := range kvs {
		parts = append(parts, kv.Key+"="+kv.Value)
	}
	return strings.Join(parts, " ")
}

// commandOf is CMD's, ENTRYPOINT's or RUN's command: the exec form as
// written, the shell form run by the stage's SHELL.
func commandOf(s *stage, c instructions.ShellDependantCmdLine) []string {
	return changes.Command(c, s.shell)
}

// exposedPorts expands and checks EXPOSE's PORT[/PROTO] words: 80 is 80/tcp.
func (bd *build) exposedPorts(s *stage, words []string) ([]string, error) {
	expanded := make([]string, len(words))
	for i, w := range words {
		var err error
		if expanded[i], err = bd.expandWith(w, s.env()); err != nil {
			return nil, err
		}
	}
	return changes.ExposedPorts(expanded)
}

// cacheKey is the step's cache file name.
func cacheKey(parent digest.Digest, key, content string) string {
	return digest.FromString("minibox-build-v1\n" + parent.String() + "\n" + key + "\n" + content).Encoded()
}
