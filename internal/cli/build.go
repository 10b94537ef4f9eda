package cli

// build and commit: docker's commands that make images (final/build,
// final/engine's Commit), into the data root's store.

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/minibox-lab/minibox/final/build"
	"github.com/minibox-lab/minibox/final/build/changes"
	"github.com/minibox-lab/minibox/final/engine"
	"github.com/minibox-lab/minibox/internal/cleanup"
)

func newBuildCmd(s *streams) *cobra.Command {
	var root, file, target string
	var tags, buildArgs []string
	var noCache, quiet bool
	cmd := &cobra.Command{
		Use:   "build [OPTIONS] -t NAME[:TAG] CONTEXT",
		Short: "Build an image from a Dockerfile",
		Long: `Build an image from CONTEXT/Dockerfile (or -f FILE), read by Docker's own
parser: line continuations, the escape directive, heredocs, JSON and shell
forms, $VAR and ${VAR:-default} behave as in docker. Multi-stage builds
(FROM … AS name, COPY --from=name|image, --target), ARG (before FROM too)
and --build-arg, .dockerignore (with ! exceptions and **).

Each instruction is a step that makes an image: COPY, ADD and RUN add a
layer, the others change only the config. RUN runs in a container with a
network namespace of its own that has only loopback: builds are offline,
and ADD takes local files and tar archives (tar, tar.gz, tar.bz2, which it
unpacks), never URLs. HEALTHCHECK and ONBUILD are refused: the OCI image
config has no place for them.

A step already done on the same image with the same instruction and the
same files (their bytes, modes, owners and names) comes from the cache,
$ROOT/build/cache: " ---> Using cache". --no-cache does every step again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if geteuid() != 0 {
				return &exitError{code: 1, err: fmt.Errorf("build needs root: RUN makes containers (namespaces, mounts, cgroups). Run: sudo minibox build …")}
			}
			values, err := parseBuildArgs(buildArgs)
			if err != nil {
				return err
			}
			b, err := build.New(cleanup.DataRoot(root))
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			img, err := b.Build(ctx, build.Options{ContextDir: args[0], Dockerfile: file, Tags: tags, BuildArgs: values,
				Target: target, NoCache: noCache, Quiet: quiet, Out: s.out})
			if err != nil {
				if ctx.Err() != nil {
					return &exitError{code: 130, err: fmt.Errorf("build: interrupted; nothing was tagged")}
				}
				return err
			}
			if quiet {
				fmt.Fprintln(s.out, img.FullID())
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&tags, "tag", "t", nil, "name and optionally a tag, `NAME[:TAG]` (repeatable)")
	f.StringVarP(&file, "file", "f", "", "name of the Dockerfile (default CONTEXT/Dockerfile)")
	f.StringArrayVar(&buildArgs, "build-arg", nil, "set a build-time variable, `KEY=VALUE` (KEY alone: from the environment)")
	f.StringVar(&target, "target", "", "build the stage of this `NAME` and stop")
	f.BoolVar(&noCache, "no-cache", false, "do not use the cache when building the image")
	f.BoolVarP(&quiet, "quiet", "q", false, "print only the image id (sha256:…) when done")
	dataRootFlag(cmd, &root)
	return cmd
}

// parseBuildArgs reads --build-arg KEY=VALUE; KEY alone takes the
// variable of the environment (and is left out if it is not set), as
// docker does.
func parseBuildArgs(list []string) (map[string]string, error) {
	values := map[string]string{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if k == "" {
			return nil, fmt.Errorf("--build-arg %q: expected KEY=VALUE", kv)
		}
		if !ok {
			if v, ok = os.LookupEnv(k); !ok {
				continue
			}
		}
		values[k] = v
	}
	return values, nil
}

func newCommitCmd(s *streams) *cobra.Command {
	var f engineFlags
	var o engine.CommitOptions
	var changeLines []string
	var pause bool
	cmd := &cobra.Command{
		Use:   "commit [OPTIONS] CONTAINER [NAME[:TAG]]",
		Short: "Create a new image from a container's changes",
		Long: `Make an image of what a container (running or exited) changed: its upper
directory becomes one more layer on top of its image's layers, under the
image's config with the container's environment, user and working
directory. -c applies Dockerfile instructions to the config: CMD,
ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL.
The files the engine mounts (/etc/hostname, /etc/hosts, /etc/resolv.conf)
and the empty mount points it made are left out, as docker does.
Prints the new image's id (sha256:…). minibox does not freeze a running
container while it reads its files (--pause is accepted for docker's
scripts): commit a busy container at a quiet moment, or stop it first.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := f.open("commit")
			if err != nil {
				return err
			}
			if len(args) == 2 {
				o.Name = args[1]
			}
			o.Changes = applyChanges(changeLines)
			img, err := e.Commit(context.Background(), args[0], o)
			if err != nil {
				return err
			}
			fmt.Fprintln(s.out, img.FullID())
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVarP(&changeLines, "change", "c", nil, "apply a Dockerfile `INSTRUCTION` to the image's config (repeatable)")
	fl.StringVarP(&o.Message, "message", "m", "", "commit `MESSAGE` (the history entry's comment)")
	fl.StringVarP(&o.Author, "author", "a", "", "`AUTHOR` (e.g. \"Jane Doe <jane@example.com>\")")
	fl.BoolVarP(&pause, "pause", "p", true, "accepted for docker's scripts; minibox does not pause the container")
	f.add(cmd)
	return cmd
}

// applyChanges is commit's -c for the engine: the Dockerfile lines are
// read here, by final/build/changes, so the engine (and minibox-shim,
// which links it) stays free of buildkit's parser.
func applyChanges(lines []string) func(*ocispec.ImageConfig) error {
	return func(cfg *ocispec.ImageConfig) error { return changes.Apply(cfg, lines) }
}
