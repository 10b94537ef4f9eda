// Package stages finds the stage programs (01-chroot, 02-namespaces, …) in
// the source tree and builds them, so lessons run the student's current
// code.
package stages

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Module is the module path that identifies the minibox source tree.
const Module = "github.com/minibox-lab/minibox"

// Stage is one stage folder.
type Stage struct {
	Number int
	Name   string // folder name, "01-chroot"
	Dir    string // absolute path
}

// Binary is the stage program's name on a lesson's PATH: stage01, stage02…
func (s Stage) Binary() string { return fmt.Sprintf("stage%02d", s.Number) }

// FindSource returns the root of the minibox source tree: $MINIBOX_SRC, else
// the first directory holding minibox's go.mod above start, else above the
// running executable.
func FindSource(start string) (string, error) {
	if src := os.Getenv("MINIBOX_SRC"); src != "" {
		if !isSourceRoot(src) {
			return "", fmt.Errorf("MINIBOX_SRC=%s: no go.mod for %s there", src, Module)
		}
		return src, nil
	}
	// Absolute, or the walk up from "." would stop at once.
	if abs, err := filepath.Abs(start); err == nil {
		start = abs
	}
	starts := []string{start}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for d := dir; ; d = filepath.Dir(d) {
			if isSourceRoot(d) {
				return d, nil
			}
			if d == filepath.Dir(d) {
				break
			}
		}
	}
	return "", fmt.Errorf("cannot find the minibox source tree (needed to build the stage programs): run minibox from inside the checkout, or set MINIBOX_SRC")
}

// isSourceRoot reports whether dir holds the go.mod of Module: its module
// directive names it (comments may come first; the path may be quoted).
func isSourceRoot(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == Module
		}
	}
	return false
}

// List returns the stage folders of the source tree, in order.
func List(src string) ([]Stage, error) {
	dirs, err := filepath.Glob(filepath.Join(src, "[0-9][0-9]-*"))
	if err != nil {
		return nil, err
	}
	var out []Stage
	for _, d := range dirs {
		if info, err := os.Stat(d); err != nil || !info.IsDir() {
			continue
		}
		name := filepath.Base(d)
		n, _ := strconv.Atoi(name[:2])
		out = append(out, Stage{Number: n, Name: name, Dir: d})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out, nil
}

// Find returns stage n.
func Find(src string, n int) (Stage, error) {
	all, err := List(src)
	if err != nil {
		return Stage{}, err
	}
	var names []string
	for _, s := range all {
		if s.Number == n {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return Stage{}, fmt.Errorf("no stage %02d in %s (there are: %s)", n, src, strings.Join(names, ", "))
}

// GoTool returns the go command: on PATH, else the usual install places
// (sudo's secure_path usually leaves /usr/local/go/bin out).
func GoTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/local/go/bin/go", "/usr/lib/go/bin/go"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if os.Getenv("SUDO_USER") != "" {
		return "", fmt.Errorf("the go command is not on root's PATH: sudo replaces PATH with its secure_path. Run sudo env \"PATH=$PATH\" %s …, or link go into /usr/local/bin", os.Args[0])
	}
	return "", fmt.Errorf("the go command is not on PATH nor in /usr/local/go/bin: install Go %s or newer (https://go.dev/doc/install) — the lessons build the stage programs from your working tree", MinGo)
}

// MinGo is the oldest Go that builds minibox: the go line of go.mod
// (make lint keeps the two in step).
const MinGo = "1.22"

// Build compiles the given stages into outDir as stage01, stage02, … — static
// (CGO_ENABLED=0), so they also run inside a busybox rootfs. It creates
// outDir if needed. Progress goes to log; a compile error is returned with
// the compiler's message.
//
// Under sudo the go command runs as the invoking user (see asInvokingUser),
// so it uses that user's Go caches and settings: after one online build,
// later builds work offline, and root never writes into the user's caches.
func Build(ctx context.Context, src, outDir string, list []Stage, log io.Writer) error {
	goTool, err := GoTool()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", outDir, err)
	}
	builder, err := newBuilder(src, outDir, log)
	if err != nil {
		return err
	}
	defer builder.close()
	for _, s := range list {
		if log != nil {
			fmt.Fprintf(log, "building %s from %s\n", s.Binary(), s.Name)
		}
		if err := builder.build(ctx, goTool, s); err != nil {
			return err
		}
	}
	return nil
}

// builder runs go build for Build, as root or as the invoking user.
type builder struct {
	src, outDir string
	as          *account // nil: as this process's user
	// staging is where the go command, running as the invoking user, writes:
	// outDir's parents may be closed to that user (a lesson's temporary
	// directory is root's, mode 0700). Built files are moved to outDir.
	staging string
}

func newBuilder(src, outDir string, log io.Writer) (*builder, error) {
	b := &builder{src: src, outDir: outDir}
	a, why := asInvokingUser(src)
	if why != "" && log != nil {
		fmt.Fprintf(log, "note: building as root: %s\n", why)
	}
	if a == nil {
		return b, nil
	}
	staging, err := os.MkdirTemp("", "minibox-build-")
	if err != nil {
		return nil, fmt.Errorf("create a build directory: %w", err)
	}
	if err := os.Chown(staging, a.uid, a.gid); err != nil {
		os.RemoveAll(staging)
		return nil, fmt.Errorf("give the build directory to %s: %w", a.name, err)
	}
	b.as, b.staging = a, staging
	return b, nil
}

func (b *builder) close() {
	if b.staging != "" {
		os.RemoveAll(b.staging)
	}
}

func (b *builder) build(ctx context.Context, goTool string, s Stage) error {
	dir := b.outDir
	if b.as != nil {
		dir = b.staging
	}
	out := filepath.Join(dir, s.Binary())
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, "./"+s.Name)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.Dir = b.src
	env := os.Environ()
	if b.as != nil {
		env = b.as.env(env)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: b.as.credential()}
	}
	cmd.Env = append(env, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s failed:\n%s", s.Name, strings.TrimSpace(string(out)))
	}
	if b.as == nil {
		return nil
	}
	return takeBuilt(out, filepath.Join(b.outDir, s.Binary()), b.as.uid)
}

// takeBuilt copies the program the invoking user built at from to to,
// safely: the staging directory is the user's, so what is there when root
// reads it could have been swapped for a symlink to any file. It opens from
// with O_NOFOLLOW, requires a regular file owned by the user, and copies
// from that open file; the copy is root's, mode 0755.
func takeBuilt(from, to string, uid int) error {
	in, err := os.OpenFile(from, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open the built %s: %w", from, err)
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	if st, ok := info.Sys().(*syscall.Stat_t); !ok || !info.Mode().IsRegular() || int(st.Uid) != uid {
		return fmt.Errorf("the built %s is not a regular file of the building user", from)
	}
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
