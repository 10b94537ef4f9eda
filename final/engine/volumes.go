package engine

// Volumes: directories that outlive containers. -v NAME:/path is a named
// volume, $ROOT/volumes/NAME/_data, made on first use; -v /host:/path a
// bind mount of a host directory; -v /path an anonymous volume (a random
// name, removed by rm -v). In the container each is a bind mount.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/minibox-lab/minibox/internal/lazyregexp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// volumeName is docker's rule for a named volume.
var volumeName = lazyregexp.New(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// parseVolume reads -v [SOURCE:]DEST[:ro|:rw].
func parseVolume(v string) (Mount, error) {
	parts := strings.Split(v, ":")
	m := Mount{RW: true}
	if n := len(parts); n >= 2 && (parts[n-1] == "ro" || parts[n-1] == "rw") {
		m.RW, parts = parts[n-1] == "rw", parts[:n-1]
	}
	switch len(parts) {
	case 1:
		m.Type, m.Destination = "volume", parts[0]
	case 2:
		m.Source, m.Destination = parts[0], parts[1]
		m.Type = "volume"
		if filepath.IsAbs(m.Source) {
			m.Type = "bind"
		} else if !volumeName.MatchString(m.Source) {
			return m, fmt.Errorf("-v %s: %q is neither an absolute host path nor a volume name", v, m.Source)
		} else {
			m.Name = m.Source
		}
	default:
		return m, fmt.Errorf("-v %s: expected [SOURCE:]DEST[:ro]", v)
	}
	if !filepath.IsAbs(m.Destination) || filepath.Clean(m.Destination) == "/" {
		return m, fmt.Errorf("-v %s: the destination must be an absolute path other than /", v)
	}
	return m, nil
}

// volumeMounts turns the container's -v into bind mounts, making named
// and anonymous volumes as needed, and records them in c.Mounts.
func (e *Engine) volumeMounts(c *Container) ([]specs.Mount, error) {
	var out []specs.Mount
	var recorded []Mount
	for _, v := range c.Config.Volumes {
		m, err := parseVolume(v)
		if err != nil {
			return nil, err
		}
		if m.Type == "volume" {
			if m.Name == "" {
				m.Name, m.Anonymous = anonymousVolume(c, m.Destination), true
			}
			if m.Source, err = e.CreateVolume(m.Name); err != nil {
				return nil, err
			}
		} else if info, err := os.Stat(m.Source); err != nil || !info.IsDir() && !info.Mode().IsRegular() {
			return nil, fmt.Errorf("-v %s: host path %s: not there (%v)", v, m.Source, err)
		}
		opts := []string{"rbind", "rprivate"}
		if !m.RW {
			opts = append(opts, "ro")
		}
		out = append(out, specs.Mount{Destination: m.Destination, Type: "bind", Source: m.Source, Options: opts})
		recorded = append(recorded, m)
	}
	_, err := e.update(c.ID, func(c *Container) error { c.Mounts = recorded; return nil })
	c.Mounts = recorded
	return out, err
}

// anonymousVolume is the name of the container's anonymous volume at
// dest: the same one on every start of the container.
func anonymousVolume(c *Container, dest string) string {
	sum := 0
	for _, b := range []byte(dest) {
		sum = sum*31 + int(b)
	}
	return fmt.Sprintf("%.56s%08x", c.ID, uint32(sum))
}

// CreateVolume makes volume name (if missing) and returns its directory.
func (e *Engine) CreateVolume(name string) (string, error) {
	if !volumeName.MatchString(name) {
		return "", fmt.Errorf("volume name %q: expected letters, digits, _ . -", name)
	}
	dir := filepath.Join(e.Root, "volumes", name, "_data")
	return dir, os.MkdirAll(dir, 0o755)
}

// Volumes lists the volumes' names.
func (e *Engine) Volumes() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(e.Root, "volumes"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var names []string
	for _, d := range entries {
		names = append(names, d.Name())
	}
	sort.Strings(names)
	return names, err
}

// RemoveVolume removes a volume no container uses.
func (e *Engine) RemoveVolume(name string) error {
	if !volumeName.MatchString(name) {
		return fmt.Errorf("volume name %q: expected letters, digits, _ . -", name)
	}
	dir := filepath.Join(e.Root, "volumes", name)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("no such volume: %s", name)
	}
	list, err := e.List()
	if err != nil {
		return err
	}
	for _, c := range list {
		for _, m := range c.Mounts {
			if m.Type == "volume" && m.Name == name {
				return fmt.Errorf("volume %s is in use by container %s", name, c.Name)
			}
		}
	}
	return os.RemoveAll(dir)
}
