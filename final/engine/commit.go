package engine

// commit: a container's changes as a new image (docker commit). The
// container's upper directory, containers/<id>/diff, is what it changed
// on top of its image: stored as one more layer (image.Store.AddLayer,
// overlayfs's whiteouts becoming the layer format's), under a config
// that is the image's with the container's own settings (its Env, user,
// working directory) and the -c changes, and one more history entry.
// The -c changes are Dockerfile instructions: the CLI reads them
// (final/build/changes, on buildkit's parser) and hands the engine a
// function, so that the engine, and minibox-shim with it, links no
// Dockerfile parser.
// Left out, as docker leaves them out: the files the engine bind-mounts
// (/etc/hostname, /etc/hosts, /etc/resolv.conf) and the empty mount
// points the runtime made for volumes and /proc, /dev, /sys.

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/minibox-lab/minibox/final/image"
)

// CommitOptions are commit's flags.
type CommitOptions struct {
	// Changes applies -c to the new image's config, after the container's
	// own settings; nil changes nothing. Its error is commit's as it is.
	Changes func(*ocispec.ImageConfig) error
	Message string // -m: the history entry's comment
	Author  string // -a
	Name    string // NAME[:TAG]; "" leaves the image unnamed
}

// Commit makes an image of container ref's changes; it works on a running
// container too (its files are read as they are: minibox does not freeze
// it, docker's --pause).
func (e *Engine) Commit(ctx context.Context, ref string, o CommitOptions) (*image.Image, error) {
	c, err := e.Get(ref)
	if err != nil {
		return nil, err
	}
	img, err := e.Images.Lookup(c.ImageDigest)
	if err != nil {
		return nil, fmt.Errorf("image of container %s: %w", c.Short(), err)
	}
	cfg := image.CopyConfig(img.Config)
	e.commitConfig(&cfg.Config, c)
	if o.Changes != nil {
		if err := o.Changes(&cfg.Config); err != nil {
			return nil, err
		}
	}
	// No prune or rmi frees the new layer before the image names it.
	keep, err := e.Images.KeepBlobs()
	if err != nil {
		return nil, err
	}
	defer keep()
	layer, err := e.commitLayer(ctx, c, img)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	cfg.Created = &now
	if o.Author != "" {
		cfg.Author = o.Author
	}
	cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, layer.DiffID)
	image.AddHistory(&cfg, ocispec.History{Created: &now, CreatedBy: strings.Join(c.Config.Cmd, " "), Author: o.Author, Comment: o.Message})
	layers := append(append([]ocispec.Descriptor(nil), img.Manifest.Layers...), layer.Desc)
	made, err := e.Images.WriteImage(cfg, layers, o.Name)
	if err == nil && o.Name == "" {
		err = e.Images.KeepUnnamed(made) // docker's dangling image, run by its id
	}
	return made, err
}

// commitConfig takes the container's own settings into the image's
// config, as docker's commit does: its environment (the image's with -e),
// user and working directory.
func (e *Engine) commitConfig(cfg *ocispec.ImageConfig, c *Container) {
	if len(c.Config.Env) > 0 {
		cfg.Env = append([]string(nil), c.Config.Env...)
	}
	if c.Config.User != "" {
		cfg.User = c.Config.User
	}
	if wd := c.Config.WorkingDir; wd != "" && (wd != "/" || cfg.WorkingDir != "") {
		cfg.WorkingDir = wd
	}
}

// commitLayer stores the container's upper directory as a layer; a
// container never started has none, and commits an empty layer. The
// container's lock is held meanwhile: rm waits.
func (e *Engine) commitLayer(ctx context.Context, c *Container, img *image.Image) (image.Layer, error) {
	unlock, err := e.lock(c.ID)
	if err != nil {
		return image.Layer{}, err
	}
	defer unlock()
	diff := filepath.Join(e.containerDir(c.ID), "diff")
	if _, err := os.Stat(diff); os.IsNotExist(err) {
		empty, err := os.MkdirTemp(e.containerDir(c.ID), ".commit-")
		if err != nil {
			return image.Layer{}, err
		}
		defer os.RemoveAll(empty)
		diff = empty
	}
	lower, err := e.Images.LayerDirs(img)
	if err != nil {
		return image.Layer{}, err
	}
	made := engineMadePaths(c)
	skip := func(rel string, info fs.FileInfo) bool {
		p := "/" + rel
		switch {
		case etcFile[p]:
			return info.Mode().IsRegular()
		case made[p] && info.IsDir():
			return isEmpty(filepath.Join(diff, rel)) && !inLayers(lower, rel)
		}
		return false
	}
	layer, err := e.Images.AddLayerFiltered(ctx, diff, skip)
	if err != nil {
		return image.Layer{}, fmt.Errorf("commit %s: %w", c.Short(), err)
	}
	return layer, nil
}

// etcFile are the files the engine bind-mounts into every container.
var etcFile = map[string]bool{"/etc/hostname": true, "/etc/hosts": true, "/etc/resolv.conf": true}

// engineMadePaths are the mount points the runtime may have made in the
// container's root: volumes and the standard mounts.
func engineMadePaths(c *Container) map[string]bool {
	made := map[string]bool{"/proc": true, "/dev": true, "/sys": true}
	for _, m := range c.Mounts {
		made[path.Clean("/"+m.Destination)] = true
	}
	return made
}

// inLayers reports whether rel exists in one of the image's layers.
func inLayers(lower []string, rel string) bool {
	for _, l := range lower {
		if _, err := os.Lstat(filepath.Join(l, rel)); err == nil {
			return true
		}
	}
	return false
}

// isEmpty reports whether directory dir has no entries.
func isEmpty(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) == 0
}
