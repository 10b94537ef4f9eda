package build

// RUN: the command runs in a container of final/runtime on a scratch
// overlay of the image so far, as the image's user, in its working
// directory, with its Env and the build arguments in scope. The
// container has namespaces of its own, a network namespace too, with
// nothing but loopback: builds are offline. What it changed, the upper
// directory, becomes the layer, without the mount points the runtime made
// (/proc, /dev, /sys when the image has none).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/image"
	"github.com/minibox-lab/minibox/final/runtime"
)

// defaultPath is docker's PATH for a config without one.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// planRun works out RUN: its command, environment and history line.
func (bd *build) planRun(s *stage, c *instructions.RunCommand) (*plan, error) {
	if len(c.FlagsUsed) > 0 {
		return nil, fmt.Errorf("RUN --%s is not supported by minibox build (BuildKit's --mount, --network and --security)", c.FlagsUsed[0])
	}
	cmd, err := runCommand(s, c)
	if err != nil {
		return nil, err
	}
	// docker's classic history line: |2 A=1 B=2 /bin/sh -c make
	scoped := argEnv(s.args)
	createdBy := strings.Join(cmd, " ")
	if len(scoped) > 0 {
		createdBy = fmt.Sprintf("|%d %s %s", len(scoped), strings.Join(scoped, " "), createdBy)
	}
	env := s.cfg.Config.Env
	if !hasEnv(env, "PATH") {
		env = append([]string{defaultPath}, env...)
	}
	for _, kv := range scoped {
		if name, _, _ := strings.Cut(kv, "="); !hasEnv(env, name) {
			env = append(env, kv)
		}
	}
	for k, v := range bd.o.BuildArgs { // the proxies, without an ARG
		if predefinedArgs[k] && !hasEnv(env, k) {
			env = append(env, k+"="+v)
			bd.used[k] = true
		}
	}
	p := &plan{key: "RUN " + createdBy, apply: func(*stage) {}}
	p.do = func(ctx context.Context) (stepResult, error) {
		layer, err := bd.inScratch(ctx, s, func(sc *scratch) error {
			return bd.runContainer(ctx, s, sc, cmd, env)
		})
		if err != nil {
			return stepResult{}, err
		}
		return stepResult{createdBy: createdBy, layer: &layer}, nil
	}
	return p, nil
}

// runCommand is RUN's argv. A heredoc (RUN <<EOF … EOF) is the script
// the shell runs; a heredoc within a command goes to the shell whole.
func runCommand(s *stage, c *instructions.RunCommand) ([]string, error) {
	line := c.ShellDependantCmdLine
	if len(line.Files) > 0 {
		if len(line.CmdLine) != 1 || !line.PrependShell {
			return nil, errors.New("RUN with a heredoc needs the shell form")
		}
		if h := parser.MustParseHeredoc(line.CmdLine[0]); h != nil && len(line.Files) == 1 {
			line.CmdLine = []string{line.Files[0].Data}
		} else {
			full := line.CmdLine[0]
			for _, f := range line.Files {
				full += "\n" + f.Data + f.Name
			}
			line.CmdLine = []string{full}
		}
	}
	cmd := commandOf(s, line)
	if len(cmd) == 0 || (len(line.CmdLine) == 1 && strings.TrimSpace(line.CmdLine[0]) == "") {
		return nil, errors.New("RUN needs a command")
	}
	return cmd, nil
}

func hasEnv(env []string, name string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			return true
		}
	}
	return false
}

// runContainer runs cmd in the scratch overlay and waits for it; its
// output goes to the build's output as it comes.
func (bd *build) runContainer(ctx context.Context, s *stage, sc *scratch, cmd, env []string) error {
	id := newID()
	fmt.Fprintf(bd.out, " ---> Running in %s\n", id)
	spec, err := bd.runSpec(s, sc, id, cmd, env)
	if err != nil {
		return err
	}
	bundle := filepath.Join(sc.dir, "bundle")
	data, err := json.Marshal(spec)
	if err == nil {
		err = os.Mkdir(bundle, 0o700)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600)
	}
	if err != nil {
		return err
	}
	code, err := bd.runAndWait(ctx, id, bundle)
	if err != nil {
		return err
	}
	fmt.Fprintf(bd.out, "Removing intermediate container %s\n", id)
	if code != 0 {
		return fmt.Errorf("the command '%s' returned a non-zero code: %d", strings.Join(cmd, " "), code)
	}
	return nil
}

// runSpec is the container's config: the runtime's defaults (docker's
// capabilities, masked paths, its own namespaces) on the overlay.
func (bd *build) runSpec(s *stage, sc *scratch, id string, cmd, env []string) (*specs.Spec, error) {
	root, err := os.Open(sc.rootfs)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	spec := runtime.Spec()
	spec.Root = &specs.Root{Path: sc.rootfs}
	spec.Hostname = id
	p := spec.Process
	p.Terminal, p.Args, p.Env = false, cmd, env
	p.Cwd = s.cfg.Config.WorkingDir
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	uid, gid, home := 0, 0, "/root"
	if u := s.cfg.Config.User; u != "" {
		user, err := image.LookupUser(root, u, false)
		if err != nil {
			return nil, fmt.Errorf("USER %s: %w", u, err)
		}
		uid, gid, home = user.UID, user.GID, user.Home
	}
	p.User = specs.User{UID: uint32(uid), GID: uint32(gid)}
	if !hasEnv(p.Env, "HOME") && home != "" {
		p.Env = append(p.Env, "HOME="+home)
	}
	// WORKDIR's directory is made if the image lacks it, as docker does.
	w := &writer{root: root, uid: uid, gid: gid, dirs: map[string]int{}}
	_, err = w.dir(p.Cwd)
	w.close()
	if err != nil {
		return nil, fmt.Errorf("WORKDIR %s: %w", p.Cwd, err)
	}
	made := map[string]bool{} // the mount points the runtime will make
	for _, m := range spec.Mounts {
		top := "/" + strings.Split(strings.TrimPrefix(m.Destination, "/"), "/")[0]
		if fd, err := openIn(root, top, unix.O_PATH); err == nil {
			unix.Close(fd)
		} else {
			made[strings.TrimPrefix(top, "/")] = true
		}
	}
	sc.skip = func(rel string, info fs.FileInfo) bool {
		return made[rel] && info.IsDir() && isEmptyDir(filepath.Join(sc.upper, rel))
	}
	spec.Linux.CgroupsPath = "/minibox/" + id
	return &spec, nil
}

// isEmptyDir reports whether directory dir has no entries.
func isEmptyDir(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) == 0
}

// runAndWait creates, starts and waits for the container, then deletes
// it (its cgroup and state). The container is created from a thread
// locked until it has exited: if the build dies, so does the container
// (Runtime.DeathSignal). Ctrl-C (ctx) kills it.
func (bd *build) runAndWait(ctx context.Context, id, bundle string) (int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(bd.out, r)
		r.Close()
		close(copied)
	}()
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	pid, err := bd.Runtime.Create(id, bundle, runtime.IO{Stdout: w, Stderr: w}, "", "")
	w.Close()
	if err != nil {
		<-copied
		return 0, fmt.Errorf("RUN's container: %w", err)
	}
	defer bd.Runtime.Delete(id, true) //nolint:errcheck // also when the start failed
	stop := context.AfterFunc(ctx, func() { _ = bd.Runtime.Kill(id, unix.SIGKILL, true) })
	defer stop()
	if err := bd.Runtime.Start(id); err != nil {
		_ = bd.Runtime.Kill(id, unix.SIGKILL, true)
		waitPid(pid)
		<-copied
		return 0, err
	}
	code := waitPid(pid)
	<-copied
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := bd.Runtime.Delete(id, true); err != nil {
		if _, gone := bd.Runtime.State(id); gone == nil {
			return 0, err
		} // else another build's recoverStale deleted it first
	}
	return code, nil
}

// waitPid reaps the container's init, our child, and returns its status
// as a shell says it.
func waitPid(pid int) int {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err != unix.EINTR {
			break
		}
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// newID is 12 random hex digits: RUN's container, as docker shows it.
func newID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
