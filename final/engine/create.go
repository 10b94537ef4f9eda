package engine

// create: a container record from an image and run's flags (docker
// create). Nothing runs yet; start hands the container to a supervisor.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/minibox-lab/minibox/final/image"
	"github.com/minibox-lab/minibox/final/network"
	"github.com/minibox-lab/minibox/internal/flock"
	"github.com/minibox-lab/minibox/internal/lazyregexp"
	"golang.org/x/sys/unix"
)

// Options are run's and create's flags.
type Options struct {
	Image       string
	Args        []string // after the image: replace its Cmd
	Entrypoint  *string  // --entrypoint; "" clears the image's
	Name        string
	Env         []string
	Workdir     string
	User        string
	Hostname    string
	Tty         bool
	Interactive bool
	AutoRemove  bool
	Memory      int64
	NanoCPUs    int64
	PidsLimit   int64
	Network     string // bridge (default), none, host
	Ports       []string
	Volumes     []string
	Pull        io.Writer // where a missing image's pull reports; nil: do not pull
	ID          string    // the container's id (NewID); "": a new one
}

// nameRule is docker's rule for a container's name.
var nameRule = lazyregexp.New(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

// Create makes a container from o: the image (pulled if missing and
// o.Pull is set), its config under the flags, a name, a directory.
func (e *Engine) Create(ctx context.Context, o Options) (*Container, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	img, err := e.Images.Lookup(o.Image)
	if err != nil && o.Pull != nil {
		fmt.Fprintf(o.Pull, "Unable to find image '%s' locally\n", o.Image)
		img, err = e.Images.Pull(ctx, o.Image, image.PullOptions{Progress: o.Pull})
	}
	if err != nil {
		return nil, err
	}
	if o.ID == "" {
		o.ID = NewID()
	}
	layers, err := e.Images.LayerDirs(img)
	if err != nil {
		return nil, err
	}
	c := &Container{ID: o.ID, Created: time.Now().UTC(), Image: o.Image, ImageID: img.FullID().String(), ImageDigest: img.Digest.String(), Layers: layers}
	c.Config, err = o.config(img)
	if err != nil {
		return nil, err
	}
	c.Network.Ports = o.Ports
	if c.Config.Hostname == "" {
		c.Config.Hostname = c.Short()
	}
	c.State.Status = "created"
	if err := e.makeContainer(c, o.Name); err != nil {
		return nil, err
	}
	return c, nil
}

// makeContainer gives c its name and its directory, all or nothing even
// if we are killed: the directory is made as .new-<id>, under its lock,
// and renamed into place with the record in it (rename(2) is atomic); a
// name whose container has no directory was left by a killed create and
// is taken back (reserveName).
func (e *Engine) makeContainer(c *Container, name string) (err error) {
	tmp := filepath.Join(e.Root, "engine", "containers", newPrefix+c.ID)
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return err
	}
	lock, err := flock.Lock(filepath.Join(tmp, "lock"), unix.LOCK_EX)
	if err != nil {
		os.RemoveAll(tmp)
		return err
	}
	defer lock.Close()
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if c.Name, err = e.reserveName(name, c.ID); err != nil {
		return err
	}
	if err = e.saveIn(tmp, c); err == nil {
		err = os.Rename(tmp, e.containerDir(c.ID))
	}
	if err != nil {
		e.releaseName(c)
	}
	return err
}

// check rejects bad flag values before anything is made.
func (o *Options) check() error {
	if o.ID != "" && !isID(o.ID) {
		return fmt.Errorf("container id %q: expected 64 hex digits (NewID)", o.ID)
	}
	if o.Name != "" && !nameRule.MatchString(o.Name) {
		return fmt.Errorf("--name %q: expected letters, digits, _ . - (starting with a letter or digit)", o.Name)
	}
	switch o.Network {
	case "":
		o.Network = "bridge"
	case "bridge", "none", "host":
	default:
		return fmt.Errorf("--network %s: expected bridge, none or host", o.Network)
	}
	if len(o.Ports) > 0 && o.Network != "bridge" {
		return fmt.Errorf("-p needs --network bridge (it is %s)", o.Network)
	}
	for _, p := range o.Ports {
		if _, err := network.ParsePort(p); err != nil {
			return fmt.Errorf("-p %s: %w", p, err)
		}
	}
	for _, v := range o.Volumes {
		if _, err := parseVolume(v); err != nil {
			return err
		}
	}
	var err error
	o.Env, err = callerEnv(o.Env)
	return err
}

// callerEnv checks -e's values: NAME=VALUE, or NAME alone, which docker
// fills in with the caller's value, or leaves out when it has none.
func callerEnv(list []string) ([]string, error) {
	var env []string
	for _, kv := range list {
		if strings.HasPrefix(kv, "=") {
			return nil, fmt.Errorf("-e %s: expected NAME=VALUE or NAME", kv)
		}
		if !strings.Contains(kv, "=") {
			value, ok := os.LookupEnv(kv)
			if !ok {
				continue
			}
			kv += "=" + value
		}
		env = append(env, kv)
	}
	return env, nil
}

// config applies docker's rules: the image's Entrypoint and Cmd, args
// replacing Cmd, --entrypoint replacing the entrypoint and dropping Cmd;
// Env, WorkingDir, User from the image unless a flag says otherwise.
func (o *Options) config(img *image.Image) (Config, error) {
	ic := img.Config.Config
	ep, cmd := ic.Entrypoint, ic.Cmd
	if o.Entrypoint != nil {
		ep, cmd = nil, nil
		if *o.Entrypoint != "" {
			ep = []string{*o.Entrypoint}
		}
	}
	if len(o.Args) > 0 {
		cmd = o.Args
	}
	c := Config{Cmd: append(append([]string{}, ep...), cmd...), Env: mergeEnv(ic.Env, o.Env),
		WorkingDir: first(o.Workdir, ic.WorkingDir, "/"), User: first(o.User, ic.User), Hostname: o.Hostname,
		Tty: o.Tty, OpenStdin: o.Interactive, AutoRemove: o.AutoRemove, Memory: o.Memory, NanoCPUs: o.NanoCPUs,
		PidsLimit: o.PidsLimit, Network: o.Network, Ports: o.Ports, Volumes: o.Volumes}
	if len(c.Cmd) == 0 {
		return c, fmt.Errorf("%s: no command: the image has no Entrypoint and no Cmd; give one after the image name", o.Image)
	}
	return c, nil
}

// mergeEnv is docker's: a default PATH, the image's variables, then -e's,
// a later NAME replacing an earlier one.
func mergeEnv(lists ...[]string) []string {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, list := range lists {
		for _, kv := range list {
			name, _, _ := strings.Cut(kv, "=")
			replaced := false
			for i, old := range env {
				if strings.HasPrefix(old, name+"=") {
					env[i], replaced = kv, true
				}
			}
			if !replaced {
				env = append(env, kv)
			}
		}
	}
	return env
}

func first(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// reserveName takes name (or a generated one) for id: a file in
// $ROOT/engine/names made with O_EXCL, so two runs cannot both get it,
// under names.lock, so that taking back a stale name cannot race.
func (e *Engine) reserveName(name, id string) (string, error) {
	dir := filepath.Join(e.Root, "engine", "names")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	lock, err := flock.Lock(filepath.Join(e.Root, "engine", "names.lock"), unix.LOCK_EX)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	generated := name == ""
	for try := 0; try < 100; try++ {
		if generated {
			name = randomName()
		}
		path := filepath.Join(dir, name)
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			_, err = f.WriteString(id)
			f.Close()
			return name, err
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", err
		}
		other, _ := os.ReadFile(path)
		if e.staleName(string(other)) {
			os.Remove(path) // its create was killed: take it back
			try--
			continue
		}
		if !generated {
			return "", fmt.Errorf("the name %q is already in use by container %.12s: remove it or choose another name", name, other)
		}
	}
	return "", errors.New("no free name after 100 tries")
}

// staleName reports whether a name's owner never came to be: not an id
// (killed between O_EXCL and the write), or an id with neither a
// directory nor a .new- one whose create still holds its lock. The caller
// holds names.lock, so no create is between those steps now.
func (e *Engine) staleName(owner string) bool {
	if !isID(owner) {
		return true
	}
	if _, err := os.Stat(e.containerDir(owner)); err == nil {
		return false
	}
	tmp := filepath.Join(e.Root, "engine", "containers", newPrefix+owner)
	if _, err := os.Stat(tmp); err != nil {
		return true
	}
	if held, _ := flock.Held(filepath.Join(tmp, "lock")); held {
		return false // its create runs
	}
	os.RemoveAll(tmp)
	return true
}

// releaseName removes c's name if it is still c's (never another's).
func (e *Engine) releaseName(c *Container) {
	name := filepath.Join(e.Root, "engine", "names", c.Name)
	if owner, err := os.ReadFile(name); err == nil && string(owner) == c.ID {
		os.Remove(name)
	}
}
