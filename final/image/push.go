package image

// A push is a pull backwards (distribution-spec, "push"): every blob the
// registry lacks goes up first, the manifest last, so that the registry
// never names an image whose blobs it does not have.
//
//	HEAD /v2/NAME/blobs/DIGEST                      200: "Layer already exists"
//	POST /v2/NAME/blobs/uploads/?mount=D&from=REPO  201: mounted from another repository of the registry
//	POST /v2/NAME/blobs/uploads/                    202 + Location: an upload session
//	PUT  LOCATION?digest=D   (the whole blob)       201: a small blob, in one request
//	PATCH LOCATION (a chunk) … PUT LOCATION?digest=D  a big one, in chunks
//	PUT  /v2/NAME/manifests/TAG                     201: the image is there
//
// The blobs go as the store holds them (gzip, zstd or plain tar, their
// media types kept): the manifest pushed is the stored one, byte for byte,
// so its digest is the one `minibox images --digests` and a later pull see.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// PushOptions say how to push.
type PushOptions struct {
	// Insecure allows plain HTTP (and any certificate) for a registry that
	// is not on this machine; localhost and 127.0.0.0/8 always get HTTP.
	Insecure bool
	// Progress receives docker's push output; nil for none.
	Progress io.Writer
	// Terminal: Progress is a terminal, so layer lines are redrawn in place.
	Terminal bool
	// ChunkSize: a blob up to this size goes up in one PUT, a bigger one in
	// PATCH requests of this size (or of the registry's
	// OCI-Chunk-Min-Length, if bigger). 0: defaultChunkSize.
	ChunkSize int64

	transport http.RoundTripper // tests replace the network
}

// defaultChunkSize: most layers go in one request; a big one in chunks,
// so that a registry (or a proxy before it) that limits a request's size
// still takes it.
const defaultChunkSize = 64 << 20

// parallelPushes is how many blobs go up at once (docker's default is 5).
const parallelPushes = 4

// maxMountSources bounds the repositories a blob mount is tried from.
const maxMountSources = 4

// PushResult is what a push left in the registry.
type PushResult struct {
	Name   string        // the full name pushed
	Digest digest.Digest // the manifest's
	Size   int64         // the manifest's size
}

// Push uploads the image named ref (NAME[:TAG]) to NAME's registry.
func (s *Store) Push(ctx context.Context, ref string, o PushOptions) (PushResult, error) {
	r, err := ParseReference(ref)
	if err == nil && r.Digest != "" {
		err = fmt.Errorf("push %s: a name by digest cannot be pushed: tag it first (minibox tag)", ref)
	}
	if err != nil {
		return PushResult{}, err
	}
	res, err := s.push(ctx, r, o)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return res, fmt.Errorf("push %s: %w", r.Familiar(), err)
	}
	return res, nil
}

// pushJob is one blob to push: a layer (shown) or the config (not shown).
type pushJob struct {
	desc    ocispec.Descriptor
	sources []string // repositories of the registry that have it, for a mount
	line    int      // its progress line; -1 for the config
}

func (s *Store) push(ctx context.Context, r Reference, o PushOptions) (PushResult, error) {
	res := PushResult{Name: r.String()}
	unlock, err := s.flock(gcLock, unix.LOCK_SH) // no blob goes while it is read
	if err != nil {
		return res, err
	}
	defer unlock()
	matches, err := s.match(r.String())
	if err != nil {
		return res, fmt.Errorf("%w: %s: tag an image with this name first (minibox tag IMAGE %s)", ErrNotFound, r.Familiar(), r.Familiar())
	}
	desc := matches[0].desc
	manifest, err := s.readBlob(desc.Digest, maxManifest)
	if err != nil {
		return res, err
	}
	img, err := s.loadImage(desc.Digest)
	if err != nil {
		return res, err
	}
	mediaType := orDefault(img.Manifest.MediaType, orDefault(desc.MediaType, ocispec.MediaTypeImageManifest))
	jobs, err := s.pushJobs(r, img)
	if err != nil {
		return res, err
	}

	c := newClient(r, o.Insecure, o.transport)
	c.creds = storedCredentials(r.Registry)
	c.scopes = []string{"repository:" + r.Repository + ":pull,push"}
	for _, j := range jobs {
		for _, src := range j.sources {
			if scope := "repository:" + src + ":pull"; !containsString(c.scopes, scope) {
				c.scopes = append(c.scopes, scope)
			}
		}
	}
	if err := c.ping(ctx); err != nil {
		return res, err
	}
	p := newProgress(o.Progress, o.Terminal)
	p.line("The push refers to repository [%s]", r.Registry+"/"+r.Repository)
	if err := s.pushBlobs(ctx, c, jobs, o, p); err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	resp, err := c.call(ctx, http.MethodPut, c.base+"/v2/"+c.repository+"/manifests/"+r.Tag, bytesBody(manifest),
		http.Header{"Content-Type": {mediaType}}, "manifest "+r.Tag)
	if err != nil {
		return res, err
	}
	drain(resp)
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != desc.Digest.String() {
		return res, fmt.Errorf("%w: the registry stored the manifest as %s, minibox sent %s", ErrDigestMismatch, got, desc.Digest)
	}
	res.Digest, res.Size = desc.Digest, int64(len(manifest))
	p.line("%s: digest: %s size: %d", r.Tag, desc.Digest, len(manifest))
	return res, nil
}

// pushJobs lists the image's layers (once each) and its config, each
// with the repositories of the same registry whose images in the store
// have it: the registry can mount it from there instead of an upload.
func (s *Store) pushJobs(r Reference, img *Image) ([]pushJob, error) {
	entries, err := s.entries()
	if err != nil {
		return nil, err
	}
	have := map[digest.Digest][]string{} // blob -> repositories of r.Registry
	for _, e := range entries {
		other, err := ParseReference(e.name)
		if e.name == "" || err != nil || other.Registry != r.Registry || other.Repository == r.Repository {
			continue
		}
		oimg, err := s.loadImage(e.desc.Digest)
		if err != nil {
			continue
		}
		for _, l := range append([]ocispec.Descriptor{oimg.Manifest.Config}, oimg.Manifest.Layers...) {
			if !containsString(have[l.Digest], other.Repository) && len(have[l.Digest]) < maxMountSources {
				have[l.Digest] = append(have[l.Digest], other.Repository)
			}
		}
	}
	var jobs []pushJob
	seen := map[digest.Digest]bool{}
	for _, l := range img.Manifest.Layers {
		if seen[l.Digest] {
			continue
		}
		seen[l.Digest] = true
		jobs = append(jobs, pushJob{desc: l, sources: have[l.Digest], line: len(jobs)})
	}
	jobs = append(jobs, pushJob{desc: img.Manifest.Config, sources: have[img.Manifest.Config.Digest], line: -1})
	for _, j := range jobs {
		info, err := os.Stat(s.blobPath(j.desc.Digest))
		if err != nil {
			return nil, fmt.Errorf("blob %s: not in the store (%v)", j.desc.Digest, err)
		}
		if info.Size() != j.desc.Size {
			return nil, fmt.Errorf("blob %s: %w: it is %d bytes, the manifest says %d", j.desc.Digest, ErrDigestMismatch, info.Size(), j.desc.Size)
		}
	}
	return jobs, nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// pushBlobs pushes the layers, parallelPushes at a time, then the config.
// The first failure cancels the others.
func (s *Store) pushBlobs(ctx context.Context, c *client, jobs []pushJob, o PushOptions, p *progress) error {
	var ids []string
	for _, j := range jobs {
		if j.line >= 0 {
			ids = append(ids, j.desc.Digest.Encoded()[:12])
		}
	}
	p.mu.Lock()
	p.ids, p.status = ids, make([]string, len(ids))
	p.mu.Unlock()
	for i := range ids {
		p.pushStatus(i, "Preparing")
	}
	return inParallel(ctx, len(jobs), parallelPushes, func(ctx context.Context, i int) error {
		j := jobs[i]
		err := s.pushBlob(ctx, c, j, o, p)
		if err != nil {
			if j.line >= 0 {
				p.pushStatus(j.line, "Failed")
			}
			return fmt.Errorf("blob %s: %w", j.desc.Digest, err)
		}
		return nil
	})
}

// pushBlob puts one blob in the registry, unless it is there already.
func (s *Store) pushBlob(ctx context.Context, c *client, j pushJob, o PushOptions, p *progress) error {
	status := func(st string) {
		if j.line >= 0 {
			p.pushStatus(j.line, st)
		}
	}
	blobURL := c.base + "/v2/" + c.repository + "/blobs/" + j.desc.Digest.String()
	resp, err := c.call(ctx, http.MethodHead, blobURL, nil, nil, "blob "+j.desc.Digest.String())
	switch {
	case err == nil:
		drain(resp)
		status("Layer already exists")
		return nil
	case !errors.Is(err, ErrRemoteNotFound):
		return err
	}
	session := ""
	for _, src := range j.sources {
		mounted, loc, err := c.mount(ctx, j.desc.Digest, src)
		if err != nil {
			return err
		}
		if mounted {
			status("Mounted from " + src)
			return nil
		}
		if loc != "" { // the registry did not mount, but opened an upload
			session = loc
			break
		}
	}
	minChunk := int64(0)
	if session == "" {
		if session, minChunk, err = c.startUpload(ctx); err != nil {
			return err
		}
	}
	f, err := os.Open(s.blobPath(j.desc.Digest))
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := o.ChunkSize
	if chunk <= 0 {
		chunk = defaultChunkSize
	}
	if minChunk > chunk {
		chunk = minChunk
	}
	sent := func(n int64) {
		if j.line >= 0 {
			p.pushBytes(j.line, n, j.desc.Size)
		}
	}
	if j.desc.Size <= chunk {
		err = c.uploadWhole(ctx, session, f, j.desc, sent)
	} else {
		err = c.uploadChunks(ctx, session, f, j.desc, chunk, sent)
	}
	if err != nil {
		return err
	}
	status("Pushed")
	return nil
}

// mount asks the registry to link blob d from repository src (the
// distribution spec's cross-repository mount). 201: done. 202: the
// registry would not (another repository's blob it cannot see, or a
// registry without mounts) and opened an upload session instead, whose
// location is returned.
func (c *client) mount(ctx context.Context, d digest.Digest, src string) (bool, string, error) {
	u := c.base + "/v2/" + c.repository + "/blobs/uploads/?" + url.Values{"mount": {d.String()}, "from": {src}}.Encode()
	resp, err := c.call(ctx, http.MethodPost, u, bytesBody(nil), nil, "mount of "+d.String()+" from "+src)
	if err != nil {
		if errors.Is(err, ErrRemoteNotFound) || errors.Is(err, ErrUnauthorized) {
			return false, "", nil // no mount from there: upload instead
		}
		return false, "", err
	}
	drain(resp)
	if resp.StatusCode == http.StatusCreated {
		return true, "", nil
	}
	loc, err := c.location(resp)
	if err != nil {
		return false, "", nil
	}
	return false, loc, nil
}

// startUpload opens an upload session: its location and the registry's
// smallest chunk (OCI-Chunk-Min-Length, 0 if it says none).
func (c *client) startUpload(ctx context.Context) (string, int64, error) {
	resp, err := c.call(ctx, http.MethodPost, c.base+"/v2/"+c.repository+"/blobs/uploads/", bytesBody(nil), nil, "upload")
	if err != nil {
		return "", 0, err
	}
	drain(resp)
	if resp.StatusCode != http.StatusAccepted {
		return "", 0, fmt.Errorf("POST /v2/%s/blobs/uploads/: %s, expected 202 Accepted", c.repository, resp.Status)
	}
	loc, err := c.location(resp)
	if err != nil {
		return "", 0, err
	}
	minChunk, _ := strconv.ParseInt(resp.Header.Get("OCI-Chunk-Min-Length"), 10, 64)
	return loc, minChunk, nil
}

// location is the absolute URL of an answer's Location header (registries
// send a path or a full URL).
func (c *client) location(resp *http.Response) (string, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", fmt.Errorf("%s %s: %s without a Location", resp.Request.Method, resp.Request.URL.Path, resp.Status)
	}
	base, err := url.Parse(c.base + "/")
	if err != nil {
		return "", err
	}
	u, err := base.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("Location %q: %w", loc, err)
	}
	return u.String(), nil
}

// withDigest is the session URL with ?digest=D added to its query.
func withDigest(session string, d digest.Digest) (string, error) {
	u, err := url.Parse(session)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("digest", d.String())
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// uploadWhole sends the blob in the request that closes the session.
func (c *client) uploadWhole(ctx context.Context, session string, f *os.File, d ocispec.Descriptor, sent func(int64)) error {
	u, err := withDigest(session, d.Digest)
	if err != nil {
		return err
	}
	resp, err := c.call(ctx, http.MethodPut, u, sectionBody(f, 0, d.Size, sent),
		http.Header{"Content-Type": {"application/octet-stream"}}, "upload")
	if err != nil {
		return err
	}
	drain(resp)
	return checkCreated(resp, d.Digest)
}

// uploadChunks sends the blob in PATCH requests of chunk bytes, each to
// the Location the previous answer gave, from where the registry's Range
// says it has got to; then closes the session with PUT ?digest=.
func (c *client) uploadChunks(ctx context.Context, session string, f *os.File, d ocispec.Descriptor, chunk int64, sent func(int64)) error {
	for off := int64(0); off < d.Size; {
		n := chunk
		if off+n > d.Size {
			n = d.Size - off
		}
		hdr := http.Header{
			"Content-Type":  {"application/octet-stream"},
			"Content-Range": {fmt.Sprintf("%d-%d", off, off+n-1)},
		}
		start := off
		resp, err := c.call(ctx, http.MethodPatch, session, sectionBody(f, off, n, func(k int64) { sent(start + k) }), hdr, "upload chunk")
		if err != nil {
			return err
		}
		drain(resp)
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("PATCH (bytes %d-%d): %s, expected 202 Accepted", off, off+n-1, resp.Status)
		}
		if session, err = c.location(resp); err != nil {
			return err
		}
		next := off + n
		if rng := resp.Header.Get("Range"); rng != "" { // "0-LAST": what the registry holds
			_, last, _ := strings.Cut(strings.TrimPrefix(rng, "bytes="), "-")
			end, err := strconv.ParseInt(last, 10, 64)
			if err != nil || end+1 < off || end+1 > off+n {
				return fmt.Errorf("PATCH (bytes %d-%d): the registry answered Range %q", off, off+n-1, rng)
			}
			next = end + 1
		}
		off = next
	}
	u, err := withDigest(session, d.Digest)
	if err != nil {
		return err
	}
	resp, err := c.call(ctx, http.MethodPut, u, bytesBody(nil), nil, "upload")
	if err != nil {
		return err
	}
	drain(resp)
	return checkCreated(resp, d.Digest)
}

// checkCreated: the session closed with 201, the blob under our digest.
func checkCreated(resp *http.Response, d digest.Digest) error {
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("closing the upload: %s, expected 201 Created", resp.Status)
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != d.String() {
		return fmt.Errorf("%w: the registry stored %s as %s", ErrDigestMismatch, d, got)
	}
	return nil
}

// bytesBody is a request body of data (nil: empty).
func bytesBody(data []byte) body {
	return func() (io.Reader, int64, error) {
		return strings.NewReader(string(data)), int64(len(data)), nil
	}
}

// sectionBody is n bytes of f from off, reporting the bytes sent so far.
func sectionBody(f *os.File, off, n int64, sent func(int64)) body {
	return func() (io.Reader, int64, error) {
		return &sentCounter{r: io.NewSectionReader(f, off, n), sent: sent}, n, nil
	}
}

// sentCounter passes bytes through to a request, counting them.
type sentCounter struct {
	r    io.Reader
	n    int64
	sent func(int64)
}

func (c *sentCounter) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	if c.sent != nil {
		c.sent(c.n)
	}
	return n, err
}

// pushStatus sets layer i's status: redrawn in place on a terminal, a
// line of its own otherwise (docker's "<short digest>: Pushed").
func (p *progress) pushStatus(i int, status string) {
	if p.w == nil {
		return
	}
	if p.tty {
		p.set(i, status)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status[i] = status
	fmt.Fprintf(p.w, "%s: %s\n", p.ids[i], status)
}

// pushBytes shows layer i's upload: n of total bytes (terminal only).
func (p *progress) pushBytes(i int, n, total int64) { p.transfer(i, "Pushing", n, total) }
