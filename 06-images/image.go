package main

// Running an image: its layers become stage 04's read-only layers, and its
// config says what to run, with which environment, in which directory and
// as which user (docker run's rules).

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// layerDirs returns the image's layers, bottom first, each unpacked once
// into $ROOT/layers/<its blob's digest> by stage 04's safe unpacker and
// then shared by every container and image that has it.
func (img *image) layerDirs(root string, s *store) ([]string, error) {
	if len(img.manifest.Layers) == 0 {
		return nil, errors.New("the image has no layer: nothing to run (FROM scratch needs an ADD or COPY)")
	}
	var dirs []string
	for _, l := range img.manifest.Layers {
		if !strings.HasSuffix(l.MediaType, ".tar") && !strings.HasSuffix(l.MediaType, "gzip") {
			return nil, fmt.Errorf("layer %s: %s: %s reads tar and gzip layers (zstd is for final/)", l.Digest, l.MediaType, stage)
		}
		dir := filepath.Join(root, "layers", l.Digest.Encoded())
		if _, err := os.Stat(dir); err != nil {
			f, err := os.Open(s.blobPath(l.Digest))
			if err != nil {
				return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
			}
			err = unpackLayer(f, l.Digest.Encoded(), dir) // checks the digest again, narrates
			f.Close()
			if err != nil {
				return nil, err
			}
		}
		dirs = append(dirs, dir)
	}
	return dirs, nil
}

// imageCommand is docker's rule for `run IMAGE [ARGS...]`: the entrypoint,
// then ARGS or else the image's Cmd. --entrypoint replaces the image's
// entrypoint and drops its Cmd; --entrypoint "" clears it.
func imageCommand(cfg ocispec.ImageConfig, entrypoint *string, args []string) ([]string, error) {
	ep, cmd := cfg.Entrypoint, cfg.Cmd
	if entrypoint != nil {
		ep, cmd = nil, nil
		if *entrypoint != "" {
			ep = []string{*entrypoint}
		}
	}
	if len(args) > 0 {
		cmd = args
	}
	argv := append(append([]string{}, ep...), cmd...)
	if len(argv) == 0 {
		return nil, errors.New("no command: the image has no Entrypoint and no Cmd; give one after the image name")
	}
	return argv, nil
}

// process is what the child applies right before exec, besides the
// command: from the image config, then -e, -w and -u.
type process struct {
	Env  []string `json:",omitempty"` // K=V, over docker's defaults
	Dir  string   `json:",omitempty"` // the working directory, made if missing
	User string   `json:",omitempty"` // uid or name, [:gid or group]
}

// processEnv carries the process to the child, as JSON.
const processEnv = "MINIBOX_PROCESS"

// fromImage puts the image's Env under -e's, and its WorkingDir and User
// where -w and -u said nothing.
func (p *process) fromImage(cfg ocispec.ImageConfig) {
	p.Env = append(append([]string{}, cfg.Env...), p.Env...)
	if p.Dir == "" {
		p.Dir = cfg.WorkingDir
	}
	if p.User == "" {
		p.User = cfg.User
	}
}

// passTo hands the process to the child cmd before it starts.
func (p *process) passTo(cmd *exec.Cmd) {
	data, _ := json.Marshal(p)
	cmd.Env = append(cmd.Env, processEnv+"="+string(data))
}

// recordImage writes which image a container runs, for `commit ID NAME`.
func (c *container) recordImage(img *image) error {
	return os.WriteFile(filepath.Join(c.dir, "image"), []byte(img.desc.Digest.String()), 0o644)
}

// runImage resolves `run IMAGE [--] [CMD...]`: the image's layers, under
// any --layer, and the command.
func runImage(root, ref string, layers []string, entrypoint *string, args []string) (*image, []string, []string) {
	s, err := openStore(root)
	var img *image
	if err == nil {
		img, err = s.lookup(ref)
	}
	var dirs []string
	if err == nil {
		dirs, err = img.layerDirs(root, s)
	}
	if err != nil {
		fail(1, "%v", err)
	}
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	command, err := imageCommand(img.config.Config, entrypoint, args)
	if err != nil {
		fail(1, "%s: %v", ref, err)
	}
	return img, append(dirs, layers...), command
}
