package main

// pull walks an image from its top: the manifest (for a multi-platform
// image, an index of manifests first), then the config, then each layer,
// every one checked against its digest before it enters the store. The
// name is written last: an interrupted pull leaves no image.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"mime"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/term"
)

func pull(args []string) int {
	flags := flag.NewFlagSet("pull", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	verbose := flags.Bool("v", false, "")
	insecure := flags.Bool("insecure", false, "")
	root := flags.String("root", "", "")
	if flags.Parse(args) != nil || flags.NArg() != 1 {
		fail(2, "pull: expected [-v] [--insecure] [--root DIR] NAME[:TAG|@DIGEST]\n%s", usage)
	}
	if *verbose {
		os.Setenv(traceEnv, "1")
	}
	ref, err := parseReference(flags.Arg(0))
	if err != nil {
		fail(2, "pull: %v", err)
	}
	// Ctrl-C cancels the transfer; the deferred clean-ups then run.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := pullImage(ctx, dataRoot(*root), ref, *insecure); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(os.Stderr, "%s: pull %s: interrupted; no image was stored\n", stage, ref)
			return 130
		}
		fmt.Fprintf(os.Stderr, "%s: pull %s: %v\n", stage, ref, err)
		return 1
	}
	return 0
}

// pullImage fetches ref into the store and unpacks its layers.
func pullImage(ctx context.Context, root string, ref reference, insecure bool) error {
	s, err := openStore(root)
	if err != nil {
		return err
	}
	r := newRegistry(ctx, ref, insecure)
	if err := r.ping(); err != nil {
		return err
	}
	fmt.Printf("Pulling %s from %s\n", ref, r.base)
	tagOrDigest := ref.tag
	if ref.digest != "" {
		tagOrDigest = ref.digest.String()
	}
	data, manifest, err := r.manifest(tagOrDigest, ref.digest, false)
	if err != nil {
		return err
	}
	var m ocispec.Manifest
	err = json.Unmarshal(data, &m)
	if err == nil {
		err = checkDigests(m) // before any digest becomes a file name (store.go)
	}
	if err != nil {
		return fmt.Errorf("manifest %s: %w", manifest.Digest, err)
	}
	fmt.Printf("manifest %s  %s\n", manifest.Digest, manifest.MediaType)
	// The config, then the layers: blobs before the manifest that names them.
	if err := r.blob(s, m.Config, "config  "); err != nil {
		return err
	}
	for _, l := range m.Layers {
		if err := r.blob(s, l, "layer   "); err != nil {
			return err
		}
	}
	if _, _, err := s.putBlob(strings.NewReader(string(data)), manifest.Digest); err != nil {
		return err
	}
	img, err := s.loadImage(manifest.Digest)
	if err == nil {
		_, err = img.layerDirs(root, s) // unpacked now, so that run starts at once
	}
	if err == nil {
		err = ctx.Err() // a Ctrl-C during the unpack: no name
	}
	if err == nil {
		err = s.tag(ref.String(), manifest)
	}
	if err != nil {
		return err
	}
	fmt.Printf("Digest: %s\nStatus: downloaded %s (image id %s)\n", manifest.Digest, ref, img.ID())
	return nil
}

// maxManifest bounds what a registry may send as a manifest or an index
// (4 MiB, as the distribution spec suggests).
const maxManifest = 4 << 20

// manifest fetches a manifest by tag or digest and checks its digest
// (against want, and against the registry's Docker-Content-Digest). An
// index lists one manifest per platform: the host's is fetched in turn.
func (r *registry) manifest(tagOrDigest string, want digest.Digest, inIndex bool) ([]byte, ocispec.Descriptor, error) {
	resp, err := r.get("/v2/"+r.repository+"/manifests/"+tagOrDigest, manifestTypes)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	defer resp.Body.Close()
	if err := r.check(resp, "manifest "+tagOrDigest); err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxManifest+1))
	if err == nil && len(data) > maxManifest {
		err = fmt.Errorf("over %d bytes: not a manifest", maxManifest)
	}
	if err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("manifest %s: %w", tagOrDigest, err)
	}
	got := digest.FromBytes(data)
	header := digest.Digest(resp.Header.Get("Docker-Content-Digest"))
	if (want != "" && got != want) || (header != "" && got != header) {
		return nil, ocispec.Descriptor{}, fmt.Errorf("manifest %s: digest mismatch: got %s: the data was damaged or tampered with", tagOrDigest, got)
	}
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: got, Size: int64(len(data))}
	if !strings.Contains(mediaType, "index") && !strings.Contains(mediaType, "list") {
		return data, desc, nil
	}
	if inIndex {
		return nil, desc, fmt.Errorf("index %s: an index inside an index", got)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, desc, fmt.Errorf("index %s: %w", got, err)
	}
	var platforms []string
	for _, m := range idx.Manifests {
		if m.Platform == nil {
			continue
		}
		if m.Platform.OS == "linux" && m.Platform.Architecture == runtime.GOARCH && m.Digest.Validate() == nil {
			fmt.Printf("index    %s  linux/%s → %s\n", got, runtime.GOARCH, m.Digest)
			return r.manifest(m.Digest.String(), m.Digest, true)
		}
		platforms = append(platforms, m.Platform.OS+"/"+m.Platform.Architecture)
	}
	return nil, desc, fmt.Errorf("index %s: no image for linux/%s, only for %s", got, runtime.GOARCH, strings.Join(platforms, ", "))
}

// blob fetches a config or a layer into the store, unless it is there.
func (r *registry) blob(s *store, desc ocispec.Descriptor, label string) error {
	if _, err := os.Stat(s.blobPath(desc.Digest)); err == nil {
		fmt.Printf("%s%s  already in the store\n", label, desc.Digest)
		return nil
	}
	resp, err := r.get("/v2/"+r.repository+"/blobs/"+desc.Digest.String(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := r.check(resp, "blob "+desc.Digest.String()); err != nil {
		return err
	}
	p := &progress{label: label + desc.Digest.String(), total: desc.Size, start: time.Now(), tty: term.IsTerminal(int(os.Stdout.Fd()))}
	// At most one byte more than the manifest says: a longer blob is wrong.
	_, size, err := s.putBlob(io.TeeReader(io.LimitReader(resp.Body, desc.Size+1), p), desc.Digest)
	if err == nil && size != desc.Size {
		err = fmt.Errorf("%d bytes, the manifest says %d", size, desc.Size)
	}
	p.done(err)
	if err != nil {
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	return nil
}

// progress prints one line per blob: redrawn in place at most ten times a
// second on a terminal, written once at the end otherwise (a log file
// gets no flood of updates).
type progress struct {
	label       string
	total, n    int64
	start, last time.Time
	tty         bool
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if p.tty && time.Since(p.last) > 100*time.Millisecond {
		p.last = time.Now()
		fmt.Printf("\r%s  %s / %s  %s/s ", p.label, humanSize(p.n), humanSize(p.total), humanSize(p.rate()))
	}
	return len(b), nil
}

func (p *progress) rate() int64 {
	return int64(float64(p.n) / max(time.Since(p.start).Seconds(), 0.001))
}

func (p *progress) done(err error) {
	status := "done"
	if err != nil {
		status = "failed"
	}
	if p.tty {
		fmt.Print("\r\033[K") // erase the line in place
	}
	fmt.Printf("%s  %s in %.1fs (%s/s) %s\n", p.label, humanSize(p.n), time.Since(p.start).Seconds(), humanSize(p.rate()), status)
}
