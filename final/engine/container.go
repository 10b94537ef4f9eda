package engine

// A container's record: what docker inspect shows. One JSON file per
// container, $ROOT/engine/containers/<id>/container.json, rewritten whole
// through a temporary file and rename(2), under the container's lock: a
// reader sees the old record or the new one, never half of one.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/engine/keeper"
	"github.com/minibox-lab/minibox/final/network"
	"github.com/minibox-lab/minibox/internal/flock"
)

// Container is one container, as `minibox inspect` prints it.
type Container struct {
	ID          string `json:"Id"`
	Name        string
	Created     time.Time
	Image       string // as the user named it
	ImageID     string // the config's digest, sha256:…: docker's image id
	ImageDigest string // the manifest's: what the container runs, even if the name moves
	// Layers are the image's layer directories, bottom first, as create
	// found them (image.Store.LayerDirs): the supervisor mounts them
	// without opening the image store (older records: it looks them up).
	Layers  []string `json:",omitempty"`
	Config  Config
	State   State
	Network NetworkSettings
	Mounts  []Mount
}

// Config is what `run` was asked for.
type Config struct {
	Cmd        []string // the whole command: entrypoint and arguments
	Env        []string
	WorkingDir string
	User       string
	Hostname   string
	Tty        bool
	OpenStdin  bool
	AutoRemove bool     // --rm
	Memory     int64    // -m, bytes; 0: no limit
	NanoCPUs   int64    // --cpus × 1e9
	PidsLimit  int64    // --pids-limit; 0: no limit
	Network    string   // bridge, none, host
	Ports      []string // -p as given
	Volumes    []string // -v as given
}

// State is where the container is in its life.
type State struct {
	Status        string // created, running, exited
	Pid           int    // its PID 1, on the host
	SupervisorPid int
	ExitCode      int
	OOMKilled     bool
	Error         string
	StartedAt     time.Time
	FinishedAt    time.Time
}

// NetworkSettings is the container's address and published ports.
type NetworkSettings struct {
	IPAddress string `json:",omitempty"`
	Gateway   string `json:",omitempty"`
	Ports     []string
}

// Mount is a volume or a bind mount in the container.
type Mount struct {
	Type        string // volume or bind
	Name        string `json:",omitempty"`
	Anonymous   bool   `json:",omitempty"` // -v /path: removed by rm -v
	Source      string
	Destination string
	RW          bool
}

// Short is the 12-digit id docker shows.
func (c *Container) Short() string { return c.ID[:12] }

func (e *Engine) containerDir(id string) string {
	return filepath.Join(e.Root, "engine", "containers", id)
}

// NewID is a new container's id: 64 random hex digits, as docker's. A
// caller that needs it before Create (Prestart) passes it in Options.ID.
func NewID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newPrefix names a container directory being made (makeContainer),
// removingPrefix one being removed (removeStopped).
const (
	newPrefix      = ".new-"
	removingPrefix = ".rm-"
)

// save writes the record atomically.
func (e *Engine) save(c *Container) error { return e.saveIn(e.containerDir(c.ID), c) }

// saveIn writes c's record into dir through a temporary file and rename(2).
func (e *Engine) saveIn(dir string, c *Container) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "container.json")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("save container %s: %w", c.Short(), err)
	}
	return os.Rename(tmp, path)
}

// load reads one record.
func (e *Engine) load(id string) (*Container, error) {
	data, err := os.ReadFile(filepath.Join(e.containerDir(id), "container.json"))
	if err != nil {
		return nil, err
	}
	c := &Container{}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	if c.ID != id || !isID(id) { // the id names directories: never a path
		return nil, fmt.Errorf("container %.12s: its record names another id, %q", id, c.ID)
	}
	return c, nil
}

// update changes a record under the container's lock (flock(2)): the
// supervisor and the CLI may both write it.
func (e *Engine) update(id string, change func(*Container) error) (*Container, error) {
	unlock, err := e.lock(id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	c, err := e.load(id)
	if err != nil {
		return nil, err
	}
	if err := change(c); err != nil {
		return c, err
	}
	return c, e.save(c)
}

// lock takes the container's lock file.
func (e *Engine) lock(id string) (func(), error) {
	f, err := flock.Lock(filepath.Join(e.containerDir(id), "lock"), unix.LOCK_EX)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Get finds a container as docker does: by full id, else by name, else
// by a unique id prefix; and brings its state up to date (a supervisor
// that died is noticed here).
func (e *Engine) Get(ref string) (*Container, error) {
	if isID(ref) {
		if _, err := os.Stat(e.containerDir(ref)); err == nil {
			return e.refresh(ref)
		}
	}
	if nameRule.MatchString(ref) { // never a path: names/<ref> stays in names/
		if id, err := os.ReadFile(filepath.Join(e.Root, "engine", "names", ref)); err == nil && isID(string(id)) {
			return e.refresh(string(id))
		}
	}
	all, err := e.ids()
	if err != nil {
		return nil, err
	}
	var found []string
	for _, id := range all {
		if ref != "" && strings.HasPrefix(id, ref) {
			found = append(found, id)
		}
	}
	switch {
	case len(found) == 0:
		return nil, fmt.Errorf("no such container: %s", ref)
	case len(found) > 1:
		return nil, fmt.Errorf("%s names %d containers: give more of the id", ref, len(found))
	}
	return e.refresh(found[0])
}

// List returns every container, newest first.
func (e *Engine) List() ([]*Container, error) {
	ids, err := e.ids()
	if err != nil {
		return nil, err
	}
	var list []*Container
	for _, id := range ids {
		c, err := e.refresh(id)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile, or not made yet
		}
		if err != nil {
			return nil, err
		}
		list = append(list, c)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Created.After(list[j].Created) })
	return list, nil
}

// isID reports whether s is a container id: 64 hex digits.
func isID(s string) bool {
	return len(s) == 64 && strings.Trim(s, "0123456789abcdef") == ""
}

func (e *Engine) ids() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(e.Root, "engine", "containers"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var ids []string
	for _, d := range entries {
		if isID(d.Name()) {
			ids = append(ids, d.Name())
		}
	}
	return ids, err
}

// refresh notices a container whose supervisor is gone while its record
// says running (the supervisor was killed), ends it and undoes what the
// supervisor could not (recoverOrphan), and the record says so. The
// container died with its supervisor (SIGKILL, 137), unless its keeper
// saw it end first and wrote how (keeper.Ended): a finish that could not
// run leaves the same record, and the status is the container's own. A
// --rm container is then removed, as its supervisor would have done:
// refresh says it does not exist (fs.ErrNotExist).
func (e *Engine) refresh(id string) (*Container, error) {
	c, err := e.load(id)
	if err != nil || c.State.Status != "running" || e.supervised(id) {
		return c, err
	}
	recovered := false
	c, err = e.update(id, func(c *Container) error {
		if c.State.Status == "running" && !e.supervised(id) {
			recovered = true
			e.recoverOrphan(c)
			c.State.Status, c.State.ExitCode, c.State.FinishedAt = "exited", 137, time.Now()
			c.State.Error = "its supervisor died"
			if ended, err := keeper.ReadEnded(e.endedPath(id)); err == nil && ended.Pid == c.State.Pid {
				c.State.ExitCode, c.State.FinishedAt = ended.Status, ended.FinishedAt
				c.State.Error = "its supervisor did not finish it"
			}
			os.Remove(e.endedPath(id)) // told: a later run's end is its own
			c.State.Pid = 0
		}
		return nil
	})
	if err != nil || !recovered || !c.Config.AutoRemove {
		return c, err
	}
	if err := e.removeStopped(c, true); err != nil {
		return c, err
	}
	return nil, removedError{name: c.Name, status: c.State.ExitCode, why: c.State.Error}
}

// removedError is refresh's answer for a --rm container it found ended
// and removed: it does not exist (fs.ErrNotExist), and this is how it
// ended (for wait).
type removedError struct {
	name   string
	status int
	why    string
}

func (r removedError) Error() string {
	return fmt.Sprintf("container %s ended with status %d (%s) and was removed (--rm)", r.name, r.status, r.why)
}

func (r removedError) Unwrap() error { return fs.ErrNotExist }

// recoverOrphan undoes the work of a supervisor that was killed. Its
// container died with it (Runtime.DeathSignal), but what the supervisor
// would have undone is still there: the cgroup and the runtime's state,
// the address, rules and veth, the root mount (TestSupervisorKilled).
// Whoever notices first does it, under the container's lock: the
// runtime's delete kills whatever may still run in the cgroup and removes
// it and the runtime's state; the network is released from its lease; the
// root is unmounted.
func (e *Engine) recoverOrphan(c *Container) {
	_ = e.Runtime.Delete(c.ID, true)
	if c.Config.Network == "bridge" {
		if ep, err := network.Load(c.ID, network.Options{Root: e.Root}); err == nil {
			_ = ep.Release()
		}
	}
	_ = e.unmountRootfs(c)
}

// supervised reports whether the container's supervisor holds its
// supervisor.lock: a lock dies with its process, so no PID can be reused
// into a false answer.
func (e *Engine) supervised(id string) bool {
	held, _ := flock.Held(filepath.Join(e.containerDir(id), "supervisor.lock"))
	return held
}
