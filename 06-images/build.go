package main

// Building an image from a Dockerfile (docker build). Each instruction
// starts from the image the one before made and makes a new one: COPY,
// ADD and RUN add a layer, the others change only the config. Every step's
// image is kept in the store, unnamed, and a cache file remembers it by
// what made it (the parent, the instruction, the files it copies): an
// unchanged step never runs twice. Lesson 6 explains it.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// builder is one build: the image so far, and where things are.
type builder struct {
	root, context, file string // file: the Dockerfile as -f named it, for errors
	net                 string // RUN's network: none or bridge
	s                   *store
	img                 *image          // the image so far: each step replaces it
	cmdSet              bool            // a CMD in this Dockerfile, which ENTRYPOINT keeps
	stopped             context.Context // done once a signal came
}

func build(args []string) int {
	flags := flag.NewFlagSet("build", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	verbose := flags.Bool("v", false, "")
	root := flags.String("root", "", "")
	name := flags.String("t", "", "")
	file := flags.String("f", "", "")
	netMode := flags.String("net", "none", "")
	if flags.Parse(args) != nil || flags.NArg() != 1 || *name == "" || (*netMode != "none" && *netMode != "bridge") {
		fail(2, "build: expected [-v] [--root DIR] -t NAME[:TAG] [-f FILE] [--net none|bridge] CONTEXT\n%s", usage)
	}
	if _, err := normalizeName(*name); err != nil {
		fail(2, "build -t: %v", err)
	}
	if *verbose {
		os.Setenv(traceEnv, "1") // for RUN's containers too
	}
	b, list, err := newBuilder(dataRoot(*root), flags.Arg(0), *file, *netMode)
	if err != nil {
		fail(1, "%v", err) // Dockerfile:7: unknown instruction "COPPY"
	}
	// Ctrl-C, SIGTERM or SIGHUP (signals.go): RUN's container is killed,
	// the build stops, and nothing is tagged.
	var stop context.CancelFunc
	b.stopped, stop = context.WithCancel(context.Background())
	go func(sigs <-chan os.Signal) { <-sigs; stop() }(catchSignals())
	for i, in := range list {
		fmt.Printf("Step %d/%d : %s\n", i+1, len(list), in.text)
		err := b.step(in)
		if b.stopped.Err() != nil { // the step's container is gone too
			fail(130, "build: interrupted at step %d: nothing tagged", i+1)
		}
		if err != nil {
			fail(1, "%s:%d: %v", b.file, in.line, err)
		}
		fmt.Printf(" ---> %s\n", b.img.ID())
	}
	if err := b.s.tag(*name, b.img.desc); err != nil {
		fail(1, "build: %v", err)
	}
	full, _ := normalizeName(*name)
	repo, tag := shortRepository(full)
	fmt.Printf("Successfully built %s\nSuccessfully tagged %s:%s\n", b.img.ID(), repo, tag)
	return 0
}

// newBuilder finds the context and reads the Dockerfile (by default the
// context's own).
func newBuilder(root, context, file, net string) (*builder, []instruction, error) {
	abs, err := filepath.Abs(context)
	if err == nil {
		context, err = filepath.EvalSymlinks(abs) // the real path, to tell what is inside it
	}
	if err != nil {
		return nil, nil, fmt.Errorf("context %s: %w", abs, err)
	}
	b := &builder{root: root, context: context, file: file, net: net}
	if file == "" {
		b.file, file = "Dockerfile", filepath.Join(context, "Dockerfile")
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	list, err := parseDockerfile(b.file, f) // dockerfile.go
	if err == nil {
		b.s, err = openStore(root)
	}
	return b, list, err
}

// step makes the next image: from the cache if this instruction already
// ran on this parent with these files, otherwise by doing it.
func (b *builder) step(in instruction) error {
	if in.cmd == "FROM" {
		return b.from(in.args[0])
	}
	var files layerFiles
	var content string // what the files hold, for the cache key
	var err error
	if in.cmd == "COPY" || in.cmd == "ADD" {
		if files, content, err = b.plan(in); err != nil {
			return err
		}
	}
	key := digest.FromString(b.img.desc.Digest.String() + "\n" + in.text + "\n" + content).Encoded()
	if in.cmd == "CMD" { // before the cache: a later ENTRYPOINT keeps this CMD
		b.cmdSet = true
	}
	if b.fromCache(key) {
		fmt.Println(" ---> Using cache")
		return nil
	}
	switch in.cmd {
	case "COPY", "ADD":
		err = b.copyFiles(in, files, content)
	case "RUN":
		err = b.run(in)
	default:
		err = b.configure(in)
	}
	if err != nil {
		return err
	}
	desc, err := b.s.writeImage(b.img)
	if err == nil { // only now: a cache file never names a half-made image
		err = writeFileAtomic(filepath.Join(b.s.dir, "cache", key), []byte(desc.Digest.String()))
		narrate("echo %s > %s/cache/%s", desc.Digest, b.s.dir, key)
	}
	return err
}

// from starts the build with an image of the store, or with nothing.
func (b *builder) from(ref string) error {
	if ref == "scratch" { // no layer, an empty config
		b.img = &image{config: ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{}}}}
		_, err := b.s.writeImage(b.img)
		return err
	}
	img, err := b.s.lookup(ref)
	if err != nil {
		return fmt.Errorf("FROM %s: %w", ref, err) // no image busybox in …: pull it
	}
	b.img = img
	return nil
}

// fromCache takes the step's image from the cache, if there is one whose
// manifest, config and layers are all still in the store.
func (b *builder) fromCache(key string) bool {
	data, err := os.ReadFile(filepath.Join(b.s.dir, "cache", key))
	if err != nil {
		return false
	}
	img, err := b.s.loadImage(digest.Digest(strings.TrimSpace(string(data))))
	for i := 0; err == nil && i < len(img.manifest.Layers); i++ {
		_, err = os.Stat(b.s.blobPath(img.manifest.Layers[i].Digest))
	}
	if err != nil {
		return false
	}
	b.img = img
	return true
}

// run runs RUN's command in a container of this stage on the image so far
// (stored, unnamed, for it), and keeps what the command changed, the
// container's upper layer, as the new layer: stage 04's commit.
func (b *builder) run(in instruction) error {
	desc, err := b.s.writeImage(b.img)
	if err != nil {
		return err
	}
	// RUN's container id comes back in a file beside the blobs being
	// written: `minibox cleanup` removes one a killed build left.
	cid, err := os.CreateTemp(filepath.Join(b.s.dir, "ingest"), "tmp-")
	if err != nil {
		return err
	}
	cid.Close()
	defer os.Remove(cid.Name())
	defer b.removeContainer(cid.Name()) // also when the command failed
	args := []string{"run", "--root", b.root, "--keep", "--cidfile", cid.Name(), "--net", b.net}
	if in.json { // the exec form: no shell
		args = append(append(args, "--entrypoint", in.args[0], "sha256:"+desc.Digest.Encoded(), "--"), in.args[1:]...)
	} else {
		args = append(args, "--entrypoint", "/bin/sh", "sha256:"+desc.Digest.Encoded(), "-c", in.args[0])
	}
	narrate("%s %s", stage, shellQuote(args))
	cmd := exec.CommandContext(b.stopped, "/proc/self/exe", args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) } // run kills its container
	// And if this build is killed (SIGKILL), so is RUN's stage (prctl(2)).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return fmt.Errorf("RUN exited with status %d", exitStatus(err))
		}
		return fmt.Errorf("RUN: %w", err)
	}
	id, _ := os.ReadFile(cid.Name())
	upper := filepath.Join(b.root, "containers", string(id), "upper")
	createdBy := "/bin/sh -c " + in.args[0]
	if in.json {
		createdBy = in.text
	}
	return b.putLayer(createdBy, upper, func(w io.Writer) error { return writeLayerTar(upper, w) }) // commit.go
}

// putLayer adds the tar that write writes (the files of from) as a layer
// on top of the image so far (commit.go).
func (b *builder) putLayer(createdBy, from string, write func(io.Writer) error) error {
	return b.img.addLayer(b.s, createdBy, from, write)
}

// removeContainer removes RUN's kept container: rm -rf $ROOT/containers/ID.
func (b *builder) removeContainer(cidfile string) {
	data, _ := os.ReadFile(cidfile)
	if id := string(data); len(id) == 12 && strings.Trim(id, "0123456789abcdef") == "" {
		dir := filepath.Join(b.root, "containers", id)
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(os.Stderr, "%s: warning: cannot remove %s: %v\n", stage, dir, err)
		}
		narrate("rm -rf %s", dir)
	}
}

func (b *builder) history(createdBy string, empty bool) { b.img.addHistory(createdBy, empty) }

// configure does what CMD, ENTRYPOINT, ENV, WORKDIR, LABEL, EXPOSE and
// USER do: change the config, no layer. $VAR comes from the config's Env
// as it was before the instruction.
func (b *builder) configure(in instruction) error {
	cfg := &b.img.config.Config
	env := cfg.Env
	arg := func(i int) string { return expand(in.args[i], in.escape, env) } // dockerfile.go
	switch in.cmd {
	case "CMD":
		cfg.Cmd = shellOrExec(in)
	case "ENTRYPOINT":
		if cfg.Entrypoint = shellOrExec(in); !b.cmdSet {
			cfg.Cmd = nil // the base image's CMD was for its entrypoint
		}
	case "ENV":
		cfg.Env = append([]string{}, env...)
		for i := 0; i < len(in.args); i += 2 {
			cfg.Env = setEnv(cfg.Env, arg(i)+"="+arg(i+1)) // command.go
		}
	case "LABEL":
		cfg.Labels = mapOr(cfg.Labels)
		for i := 0; i < len(in.args); i += 2 {
			cfg.Labels[arg(i)] = arg(i + 1)
		}
	case "EXPOSE":
		cfg.ExposedPorts = mapOr(cfg.ExposedPorts)
		for i := range in.args {
			port, err := exposedPort(arg(i))
			if err != nil {
				return err
			}
			cfg.ExposedPorts[port] = struct{}{}
		}
	case "WORKDIR":
		cfg.WorkingDir = inWorkdir(cfg.WorkingDir, arg(0))
	case "USER":
		cfg.User = arg(0)
	}
	b.history("/bin/sh -c #(nop)  "+in.text, true)
	return nil
}

// shellQuote writes args as a shell would need them: 'echo a > /b'.
func shellQuote(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		if quoted[i] = a; a == "" || strings.ContainsAny(a, " \t\n'\"\\$&|;<>*?()`#~") {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(quoted, " ")
}

// mapOr is m, or a new map if m is nil.
func mapOr[V any](m map[string]V) map[string]V {
	if m == nil {
		m = map[string]V{}
	}
	return m
}

// inWorkdir is path p seen from directory workdir, as cd would see it.
func inWorkdir(workdir, p string) string {
	if !path.IsAbs(p) {
		p = path.Join("/", workdir, p)
	}
	return path.Clean(p)
}

// shellOrExec is CMD's or ENTRYPOINT's command: the exec form as written,
// the shell form run by /bin/sh -c.
func shellOrExec(in instruction) []string {
	if in.json {
		return in.args
	}
	return []string{"/bin/sh", "-c", in.args[0]}
}

// exposedPort checks PORT[/PROTO]: 80 is 80/tcp.
func exposedPort(s string) (string, error) {
	port, proto, _ := strings.Cut(s, "/")
	if proto == "" {
		proto = "tcp"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || (proto != "tcp" && proto != "udp" && proto != "sctp") {
		return "", fmt.Errorf("EXPOSE %s: expected PORT[/tcp|/udp], PORT 1 to 65535", s)
	}
	return port + "/" + proto, nil
}
