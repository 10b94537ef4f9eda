// Package build is minibox's docker build, grown up from stage 06
// (06-images/build.go, dockerfile.go, copy.go): a Dockerfile read by
// Docker's own parser (moby/buildkit's frontend/dockerfile parser,
// instructions and shell-word expansion), multi-stage, every instruction
// a step that makes an image. COPY, ADD and RUN make a layer: each step
// mounts an overlay of the image so far with a fresh upper directory, does
// its work there (RUN in a container of final/runtime, with a network
// namespace of its own that has only loopback: builds are offline) and
// stores the upper directory as the new layer (image.Store.AddLayer). The
// other instructions change only the config, with a history entry marked
// empty_layer, as docker's classic builder does.
//
// The cache ($ROOT/build/cache/<hex>, one file per step, written
// atomically under $ROOT/build/lock) maps what a step depends on (the
// image it starts from, the instruction after expansion, the build
// arguments a RUN sees, the bytes, modes, owners and names of the files
// it copies) to the manifest digest of the image it made. A step found
// there, with all its blobs still in the store, is not done again.
package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/image"
	"github.com/minibox-lab/minibox/final/runtime"
)

// Options are docker build's flags.
type Options struct {
	ContextDir string            // CONTEXT
	Dockerfile string            // -f; "" is CONTEXT/Dockerfile
	Tags       []string          // -t NAME[:TAG], any number
	BuildArgs  map[string]string // --build-arg K=V
	Target     string            // --target STAGE
	NoCache    bool              // --no-cache
	Quiet      bool              // -q: no step output (the caller prints the id)
	Out        io.Writer         // the steps, RUN's output, "Successfully built …"
}

// Builder builds images into a data root's store.
type Builder struct {
	Root    string // the data root
	Images  *image.Store
	Runtime *runtime.Runtime // RUN's containers
}

// New opens the builder of data root root.
func New(root string) (*Builder, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	images, err := image.Open(abs)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"build/cache", "build/tmp", "build/runtime"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o700); err != nil {
			return nil, err
		}
	}
	// A RUN container dies with the build (Runtime.DeathSignal: the
	// thread that creates it stays locked until it has exited).
	rt := &runtime.Runtime{Root: filepath.Join(abs, "build", "runtime"), DeathSignal: unix.SIGKILL}
	return &Builder{Root: abs, Images: images, Runtime: rt}, nil
}

// build is one run of Build.
type build struct {
	*Builder
	ctx      context.Context // the build's: Ctrl-C ends what it does (a pull for COPY --from)
	o        Options
	out      io.Writer // o.Out, or nothing with -q
	file     string    // the Dockerfile's name in errors: Dockerfile:7: …
	escape   rune
	context  *tree // the build context, .dockerignore applied
	metaArgs []arg // ARG before the first FROM
	used     map[string]bool
	stages   []*stage
	step     int
	steps    int
	mounts   []*scratch // read-only views of COPY --from sources, released at the end
}

// arg is a build argument in scope.
type arg struct {
	name  string
	value *string // nil: declared without a value
}

// stage is one FROM … and its image so far.
type stage struct {
	name     string
	cfg      ocispec.Image
	layers   []ocispec.Descriptor
	manifest digest.Digest // the image so far; "" for scratch before any step
	id       string        // its id, 12 hex digits
	args     []arg
	cmdSet   bool     // a CMD in this stage: a later ENTRYPOINT keeps it
	shell    []string // SHELL, ["/bin/sh", "-c"] by default
}

// Build builds the Dockerfile and tags the image; it returns it.
func (b *Builder) Build(ctx context.Context, o Options) (*image.Image, error) {
	bd := &build{Builder: b, ctx: ctx, o: o, out: o.Out, used: map[string]bool{}}
	if bd.out == nil || o.Quiet {
		bd.out = io.Discard
	}
	for _, t := range o.Tags {
		if _, err := image.NormalizeName(t); err != nil {
			return nil, fmt.Errorf("-t %s: %w", t, err)
		}
	}
	keep, err := b.Images.KeepBlobs() // no rmi frees a step's blobs meanwhile
	if err != nil {
		return nil, err
	}
	defer keep()
	b.recoverStale()
	defer bd.releaseMounts()
	stages, err := bd.parse()
	if err != nil {
		return nil, err
	}
	for i := range stages {
		if err := bd.buildStage(ctx, &stages[i]); err != nil {
			return nil, err
		}
	}
	return bd.finish()
}

// parse reads the context and the Dockerfile, and picks the stages to
// build: all of them up to --target (as docker's classic builder does).
func (bd *build) parse() ([]instructions.Stage, error) {
	dir, err := filepath.Abs(bd.o.ContextDir)
	if err == nil {
		dir, err = filepath.EvalSymlinks(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	path := bd.o.Dockerfile
	if path == "" {
		path = filepath.Join(dir, "Dockerfile")
	}
	bd.file = filepath.Base(path)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the Dockerfile: %w", err)
	}
	if bd.context, err = walkContext(dir); err != nil {
		return nil, err
	}
	res, err := parser.Parse(strings.NewReader(string(data)))
	if err != nil {
		return nil, bd.lineError(err)
	}
	bd.escape = res.EscapeToken
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return nil, bd.lineError(err)
	}
	if len(stages) == 0 {
		return nil, fmt.Errorf("%s: no FROM: a Dockerfile starts with FROM (after ARGs)", bd.file)
	}
	for _, m := range metaArgs {
		for _, kv := range m.Args {
			a := arg{name: kv.Key, value: kv.Value}
			if v, ok := bd.o.BuildArgs[kv.Key]; ok {
				a.value = &v
				bd.used[kv.Key] = true
			} else if a.value != nil { // a default may use an earlier ARG
				v, err := bd.expandWith(*a.value, argEnv(bd.metaArgs))
				if err != nil {
					return nil, bd.lineError(parser.WithLocation(err, m.Location()))
				}
				a.value = &v
			}
			bd.metaArgs = setArg(bd.metaArgs, a)
		}
	}
	if bd.o.Target != "" {
		i, ok := instructions.HasStage(stages, bd.o.Target)
		if !ok {
			return nil, fmt.Errorf("target stage %q could not be found", bd.o.Target)
		}
		stages = stages[:i+1]
	}
	for _, s := range stages {
		bd.steps += 1 + len(s.Commands)
	}
	return stages, nil
}

// lineError is err as docker says it: Dockerfile:7: message.
func (bd *build) lineError(err error) error {
	var loc *parser.ErrorLocation
	if errors.As(err, &loc) && len(loc.Locations) > 0 && len(loc.Locations[0]) > 0 {
		return &Error{File: bd.file, Line: loc.Locations[0][0].Start.Line, Err: loc.Unwrap()}
	}
	return fmt.Errorf("%s: %w", bd.file, err)
}

// Error is a failed instruction: its Dockerfile line and why.
type Error struct {
	File string
	Line int
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// finish tags the last stage's image and says so.
func (bd *build) finish() (*image.Image, error) {
	last := bd.stages[len(bd.stages)-1]
	img, err := bd.writeImage(last, "")
	if err != nil {
		return nil, err
	}
	bd.warnUnused()
	fmt.Fprintf(bd.out, "Successfully built %s\n", img.ID)
	for _, t := range bd.o.Tags {
		if img, err = bd.writeImage(last, t); err != nil {
			return nil, err
		}
		fmt.Fprintf(bd.out, "Successfully tagged %s\n", image.FamiliarName(img.Name))
	}
	return img, nil
}

// warnUnused is docker's warning for a --build-arg no ARG declared.
func (bd *build) warnUnused() {
	var unused []string
	for k := range bd.o.BuildArgs {
		if !bd.used[k] && !predefinedArgs[k] {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		fmt.Fprintf(bd.out, "[Warning] One or more build-args %v were not consumed\n", unused)
	}
}

// writeImage writes the stage's image as it is now, named or not.
func (bd *build) writeImage(s *stage, name string) (*image.Image, error) {
	return bd.Images.WriteImage(s.cfg, s.layers, name)
}

// predefinedArgs are the build arguments docker passes to RUN without an
// ARG (proxies); they stay out of the history and the cache key.
var predefinedArgs = map[string]bool{
	"HTTP_PROXY": true, "http_proxy": true, "HTTPS_PROXY": true, "https_proxy": true,
	"FTP_PROXY": true, "ftp_proxy": true, "NO_PROXY": true, "no_proxy": true,
	"ALL_PROXY": true, "all_proxy": true,
}

// setArg adds a or replaces the argument of its name.
func setArg(args []arg, a arg) []arg {
	for i := range args {
		if args[i].name == a.name {
			args[i] = a
			return args
		}
	}
	return append(args, a)
}

// argEnv is the arguments with a value as NAME=VALUE.
func argEnv(args []arg) []string {
	var env []string
	for _, a := range args {
		if a.value != nil {
			env = append(env, a.name+"="+*a.value)
		}
	}
	return env
}

// expandWith is docker's shell-word expansion of word ($VAR, ${VAR:-x},
// quotes) with env.
func (bd *build) expandWith(word string, env []string) (string, error) {
	out, _, err := shell.NewLex(bd.escape).ProcessWord(word, shell.EnvsFromSlice(env))
	return out, err
}

// env is what a stage's instructions expand with: its arguments, then
// its config's Env (ENV wins over ARG, as in docker).
func (s *stage) env() []string {
	return append(argEnv(s.args), s.cfg.Config.Env...)
}
