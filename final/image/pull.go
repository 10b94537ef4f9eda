package image

// A pull walks an image from its top: the manifest (for a multi-platform
// image, an index first), the config, then the layers (three at a time),
// every one checked against its digest before it enters the store, each
// layer unpacked and checked against its diff_id. The name is written
// last: an interrupted pull leaves no image.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// PullOptions say how to pull.
type PullOptions struct {
	// Insecure allows plain HTTP (and any certificate) for a registry that
	// is not on this machine; localhost and 127.0.0.0/8 always get HTTP.
	Insecure bool
	// Progress receives docker's pull output; nil for none.
	Progress io.Writer
	// Terminal: Progress is a terminal, so layer lines are redrawn in place.
	Terminal bool

	transport http.RoundTripper // tests replace the network
}

// parallelLayers is how many layers download at once (docker's default).
const parallelLayers = 3

// gcLock is shared by pulls and unpacks, exclusive while rmi frees blobs:
// a blob a pull found present is still there when it names the image.
const gcLock = "gc.lock"

// Pull fetches ref (NAME[:TAG|@sha256:…]) into the store, unpacks its
// layers and names it. The image returned is the stored one.
func (s *Store) Pull(ctx context.Context, ref string, o PullOptions) (*Image, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	img, err := s.pull(ctx, r, o)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("pull %s: %w", r.Familiar(), err)
	}
	return img, nil
}

func (s *Store) pull(ctx context.Context, r Reference, o PullOptions) (*Image, error) {
	unlock, err := s.flock(gcLock, unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()
	c := newClient(r, o.Insecure, o.transport)
	c.creds = storedCredentials(r.Registry)
	p := newProgress(o.Progress, o.Terminal)
	if err := c.ping(ctx); err != nil {
		return nil, err
	}
	tagOrDigest := r.Tag
	if r.Digest != "" {
		tagOrDigest = r.Digest.String()
	}
	p.line("%s: Pulling from %s", tagOrDigest, r.Repository)
	data, desc, err := c.manifest(ctx, tagOrDigest, r.Digest, false)
	if err != nil {
		return nil, err
	}
	m, err := parseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	cfg, err := s.pullConfig(ctx, c, m)
	if err != nil {
		return nil, err
	}
	if err := checkPlatform(cfg); err != nil {
		return nil, fmt.Errorf("image %s: %w", desc.Digest, err)
	}
	name := r.String()
	before, _ := s.match(name)
	if err := s.pullLayers(ctx, c, m, cfg, p); err != nil {
		return nil, err
	}
	if err := s.putBytes(data, desc.Digest); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil { // Ctrl-C before the name: no image
		return nil, err
	}
	if err := s.tag(name, desc); err != nil {
		return nil, err
	}
	p.line("Digest: %s", desc.Digest)
	if len(before) == 1 && before[0].desc.Digest == desc.Digest {
		p.line("Status: Image is up to date for %s", r.Familiar())
	} else {
		p.line("Status: Downloaded newer image for %s", r.Familiar())
	}
	img, err := s.loadImage(desc.Digest)
	if err != nil {
		return nil, err
	}
	img.Name = name
	return img, nil
}

// manifest fetches a manifest by tag or digest and checks its digest
// (against want, and against the registry's Docker-Content-Digest). An
// index lists one manifest per platform: the host's is fetched in turn.
func (c *client) manifest(ctx context.Context, tagOrDigest string, want digest.Digest, inIndex bool) ([]byte, ocispec.Descriptor, error) {
	resp, err := c.get(ctx, "/v2/"+c.repository+"/manifests/"+tagOrDigest, manifestTypes, "manifest "+tagOrDigest)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxManifest+1))
	if err == nil && len(data) > maxManifest {
		err = fmt.Errorf("over %d bytes: not a manifest", maxManifest)
	}
	if err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("manifest %s: %w", tagOrDigest, err)
	}
	got := digest.FromBytes(data)
	header := digest.Digest(resp.Header.Get("Docker-Content-Digest"))
	if (want != "" && got != want) || (header != "" && header.Validate() == nil && header.Algorithm() == digest.SHA256 && got != header) {
		expected := want
		if expected == "" {
			expected = header
		}
		return nil, ocispec.Descriptor{}, fmt.Errorf("manifest %s: %w: expected %s, got %s: the data was damaged or tampered with", tagOrDigest, ErrDigestMismatch, expected, got)
	}
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	var probe struct {
		MediaType string          `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
	}
	_ = json.Unmarshal(data, &probe)
	if probe.MediaType != "" {
		mediaType = probe.MediaType // the document's own word over the header's
	}
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: got, Size: int64(len(data))}
	switch {
	case mediaType == ocispec.MediaTypeImageIndex || mediaType == mediaTypeDockerList || (mediaType == "" && probe.Manifests != nil):
	case mediaType == ocispec.MediaTypeImageManifest || mediaType == mediaTypeDockerManifest || mediaType == "":
		desc.MediaType = orDefault(mediaType, ocispec.MediaTypeImageManifest)
		return data, desc, nil
	case strings.HasPrefix(mediaType, "application/vnd.docker.distribution.manifest.v1"):
		return nil, desc, fmt.Errorf("manifest %s: Docker schema 1 (%s) is deprecated and not read; push the image again with a current tool", tagOrDigest, mediaType)
	default:
		return nil, desc, fmt.Errorf("manifest %s: media type %q is not an image", tagOrDigest, mediaType)
	}
	if inIndex {
		return nil, desc, fmt.Errorf("index %s: an index inside an index", got)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, desc, fmt.Errorf("index %s: %w", got, err)
	}
	pick, err := pickPlatform(idx, runtime.GOARCH, hostVariant())
	if err != nil {
		return nil, desc, fmt.Errorf("index %s: %w", got, err)
	}
	return c.manifest(ctx, pick.Digest.String(), pick.Digest, true)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// pickPlatform chooses the index's manifest for linux/arch: the one with
// the host's variant, else one without a variant, else the first for arch.
func pickPlatform(idx ocispec.Index, arch, variant string) (ocispec.Descriptor, error) {
	var exact, plain, any *ocispec.Descriptor
	var platforms []string
	for i := range idx.Manifests {
		m := &idx.Manifests[i]
		if m.Platform == nil {
			continue
		}
		pl := m.Platform.OS + "/" + m.Platform.Architecture
		if m.Platform.Variant != "" {
			pl += "/" + m.Platform.Variant
		}
		platforms = append(platforms, pl)
		if m.Platform.OS != "linux" || m.Platform.Architecture != arch {
			continue
		}
		if err := checkSHA256(m.Digest); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("linux/%s: %w", arch, err)
		}
		switch {
		case exact == nil && variant != "" && m.Platform.Variant == variant:
			exact = m
		case plain == nil && m.Platform.Variant == "":
			plain = m
		case any == nil:
			any = m
		}
	}
	for _, d := range []*ocispec.Descriptor{exact, plain, any} {
		if d != nil {
			return *d, nil
		}
	}
	return ocispec.Descriptor{}, fmt.Errorf("no image for linux/%s, only for %s", arch, strings.Join(platforms, ", "))
}

// hostVariant is the host's CPU variant as images name it (arm64 is v8;
// 32-bit arm is assumed v7, the common one).
func hostVariant() string {
	switch runtime.GOARCH {
	case "arm64":
		return "v8"
	case "arm":
		return "v7"
	}
	return ""
}

// checkPlatform refuses an image for another operating system (docker
// does too); another architecture is the registry's or the user's choice.
func checkPlatform(cfg ocispec.Image) error {
	if cfg.OS != "" && cfg.OS != "linux" {
		return fmt.Errorf("an image for %s, not linux", cfg.OS)
	}
	return nil
}

// pullConfig fetches the config (unless present) and reads it.
func (s *Store) pullConfig(ctx context.Context, c *client, m ocispec.Manifest) (ocispec.Image, error) {
	var cfg ocispec.Image
	if err := s.checkPresentSize(m.Config); err != nil {
		return cfg, err
	}
	if !s.hasBlob(m.Config.Digest) {
		if err := s.download(ctx, c, m.Config, nil); err != nil {
			return cfg, fmt.Errorf("config %s: %w", m.Config.Digest, err)
		}
	}
	data, err := s.readBlob(m.Config.Digest, maxConfig)
	if err == nil {
		err = parseConfig(data, m, &cfg)
	}
	return cfg, err
}

// download fetches a blob into the store (through ingest/, checked).
func (s *Store) download(ctx context.Context, c *client, d ocispec.Descriptor, count func(io.Reader) io.Reader) error {
	resp, err := c.get(ctx, "/v2/"+c.repository+"/blobs/"+d.Digest.String(), nil, "blob "+d.Digest.String())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.ContentLength > d.Size {
		return fmt.Errorf("the registry sends %d bytes, the manifest says %d", resp.ContentLength, d.Size)
	}
	var body io.Reader = resp.Body
	if count != nil {
		body = count(body)
	}
	return s.putBlob(body, d.Digest, d.Size)
}

// pullLayers fetches and unpacks the layers, parallelLayers at a time.
// The first failure cancels the others.
func (s *Store) pullLayers(ctx context.Context, c *client, m ocispec.Manifest, cfg ocispec.Image, p *progress) error {
	type job struct {
		layer  ocispec.Descriptor
		diffID digest.Digest
	}
	var jobs []job
	seen := map[digest.Digest]bool{}
	var ids []string
	for i, l := range m.Layers {
		if err := checkLayer(l); err != nil {
			return err
		}
		if seen[l.Digest] { // the same layer twice (empty ones): once is enough
			continue
		}
		seen[l.Digest] = true
		jobs = append(jobs, job{l, cfg.RootFS.DiffIDs[i]})
		ids = append(ids, l.Digest.Encoded()[:12])
	}
	p.layers(ids)
	return inParallel(ctx, len(jobs), parallelLayers, func(ctx context.Context, i int) error {
		err := s.pullLayer(ctx, c, jobs[i].layer, jobs[i].diffID, i, p)
		if err != nil {
			p.set(i, "Failed")
		}
		return err
	})
}

// inParallel runs work(ctx, 0) … work(ctx, n-1), at most limit at once
// (layers and blobs go to and from a registry side by side, as docker's
// do). The first failure cancels the others' ctx; the error returned is
// the first real one, not a cancellation it caused.
func inParallel(ctx context.Context, n, limit int, work func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, n)
	slots := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			if errs[i] = work(ctx, i); errs[i] != nil {
				cancel()
			}
		}(i)
	}
	wg.Wait()
	var canceled error
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		if err != nil {
			canceled = err
		}
	}
	return canceled
}

// pullLayer fetches one layer (unless present) and unpacks it (unless
// unpacked), checking its digest and then its diff_id.
func (s *Store) pullLayer(ctx context.Context, c *client, l ocispec.Descriptor, diffID digest.Digest, i int, p *progress) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.checkPresentSize(l); err != nil {
		return err
	}
	if s.hasBlob(l.Digest) {
		if _, err := s.unpacked(ctx, l, diffID); err != nil {
			return err
		}
		p.set(i, "Already exists")
		return nil
	}
	err := s.download(ctx, c, l, func(r io.Reader) io.Reader {
		return &counter{r: r, total: l.Size, i: i, p: p}
	})
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	p.set(i, "Verifying Checksum")
	p.set(i, "Download complete")
	p.set(i, "Extracting")
	if _, err := s.unpacked(ctx, l, diffID); err != nil {
		return err
	}
	p.set(i, "Pull complete")
	return nil
}

// checkPresentSize: a blob already in the store must have the size the
// manifest states (its digest was checked when it was stored).
func (s *Store) checkPresentSize(d ocispec.Descriptor) error {
	info, err := os.Stat(s.blobPath(d.Digest))
	if err != nil || info.Size() == d.Size {
		return nil
	}
	return fmt.Errorf("blob %s: %w: it is %d bytes, the manifest says %d", d.Digest, ErrDigestMismatch, info.Size(), d.Size)
}
