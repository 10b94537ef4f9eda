package registrytest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The media types of manifests and indexes, OCI's and Docker's.
const (
	MediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// ImageOptions say what a fixture image holds and how it is pushed.
type ImageOptions struct {
	Tag string // "latest" if empty
	// Docker pushes it with Docker schema 2 media types (skopeo --format
	// v2s2) instead of OCI's.
	Docker bool
	// Config is set with `umoci config`.
	Config Config
	// Files, if any, are put in a second layer on top of the directory's
	// (path in the image -> content, files mode 0644): an image whose top
	// layer is its own, not shared with another image in the registry
	// (the registry stores each blob once).
	Files map[string]string
}

// Config is the part of an image's configuration a fixture sets.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Env        []string // "K=V"
	WorkingDir string
	User       string
	Labels     map[string]string
}

// Descriptor is a blob's media type, digest and size.
type Descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// Image is a fixture image as the registry holds it.
type Image struct {
	Ref      string     // Addr/NAME:TAG, the name a client pulls
	Name     string     // NAME, the repository
	Tag      string     // TAG
	Manifest Descriptor // its manifest (Digest: skopeo's --digestfile)
	Config   Descriptor
	Layers   []Descriptor // bottom first
	Arch     string       // the config's architecture
}

// ByDigest is the image's name with its manifest digest: Addr/NAME@sha256:…
func (img Image) ByDigest() string {
	return strings.TrimSuffix(img.Ref, ":"+img.Tag) + "@" + img.Manifest.Digest
}

// Index is a fixture multi-platform image: an index (OCI) or manifest list
// (Docker) with two platforms.
type Index struct {
	Ref   string     // Addr/NAME:TAG
	Index Descriptor // the index itself
	// Host is the linux/GOARCH image, Other the image for another
	// architecture. Other is listed first in the index, so that a client
	// that takes the first entry instead of its platform's gets it wrong.
	// Its top layer (a file /etc/registrytest-arch) and its config are
	// its own: a test can tell whether a client fetched them.
	Host, Other Image
}

// PushRootfs builds an OCI layout from the directory rootfsDir with umoci
// (the directory as one layer, opts.Files as a second, opts.Config as its
// configuration, linux/GOARCH), pushes it with skopeo to r as NAME:TAG, and
// returns what the registry then holds. For a proxy r, it pushes to the
// registry behind it (the proxy's log then holds only the test's own
// requests) and Ref names the proxy.
func PushRootfs(t testing.TB, r *Registry, rootfsDir, name string, opts ImageOptions) Image {
	t.Helper()
	requireFixtureTools(t)
	start := time.Now()
	tag := tagOrLatest(opts.Tag)
	layout := filepath.Join(t.TempDir(), "layout")
	runTool(t, "umoci", "init", "--layout", layout)
	buildImage(t, layout, tag, rootfsDir, runtime.GOARCH, opts)
	digest := push(t, r, layout, name, tag, opts.Docker, false)
	img := fetchImage(t, r, name, tag, digest)
	t.Logf("registrytest: pushed %s (%s, %d layers) in %v", img.Ref, img.Manifest.MediaType, len(img.Layers), time.Since(start).Round(time.Millisecond))
	return img
}

// PushIndex pushes, as NAME:TAG, an index with two platforms: linux/GOARCH
// (rootfsDir and opts, as PushRootfs) and linux/another architecture (the
// same directory, plus a file /etc/registrytest-arch, and Cmd
// ["/bin/false"]), listed first. With opts.Docker it is a Docker manifest
// list of schema-2 manifests. skopeo copy --all pushes every platform.
func PushIndex(t testing.TB, r *Registry, rootfsDir, name string, opts ImageOptions) Index {
	t.Helper()
	requireFixtureTools(t)
	start := time.Now()
	tag := tagOrLatest(opts.Tag)
	other := otherArch(runtime.GOARCH)
	layout := filepath.Join(t.TempDir(), "layout")
	runTool(t, "umoci", "init", "--layout", layout)
	hostDesc := buildImage(t, layout, "host", rootfsDir, runtime.GOARCH, opts)
	otherDesc := buildImage(t, layout, "other", rootfsDir, other, ImageOptions{
		Config: Config{Cmd: []string{"/bin/false"}},
		Files:  map[string]string{"etc/registrytest-arch": other + "\n"},
	})
	index := map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeOCIIndex,
		"manifests": []map[string]any{
			platformDescriptor(otherDesc, other),
			platformDescriptor(hostDesc, runtime.GOARCH),
		},
	}
	addToLayout(t, layout, tag, MediaTypeOCIIndex, index)
	digest := push(t, r, layout, name, tag, opts.Docker, true)

	ix := Index{Ref: r.Ref(name, tag)}
	body, mediaType := getManifest(t, r, name, digest)
	ix.Index = Descriptor{MediaType: mediaType, Digest: digest, Size: int64(len(body))}
	var parsed struct {
		Manifests []struct {
			Descriptor
			Platform struct {
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(body, &parsed); err != nil {
		t.Fatalf("parse the index of %s: %v", ix.Ref, err)
	}
	for _, m := range parsed.Manifests {
		img := fetchImage(t, r, name, tag, m.Digest)
		switch m.Platform.Architecture {
		case runtime.GOARCH:
			ix.Host = img
		case other:
			ix.Other = img
		}
	}
	if ix.Host.Manifest.Digest == "" || ix.Other.Manifest.Digest == "" {
		t.Fatalf("the index of %s lacks a platform: %s", ix.Ref, body)
	}
	t.Logf("registrytest: pushed %s (%s: %s, %s) in %v", ix.Ref, mediaType, runtime.GOARCH, other, time.Since(start).Round(time.Millisecond))
	return ix
}

// requireFixtureTools checks for umoci and skopeo.
func requireFixtureTools(t testing.TB) {
	t.Helper()
	requireCommand(t, "umoci", "umoci")
	requireCommand(t, "skopeo", "skopeo")
}

// tagOrLatest is tag, or "latest" if it is empty.
func tagOrLatest(tag string) string {
	if tag == "" {
		return "latest"
	}
	return tag
}

// otherArch is an architecture other than arch.
func otherArch(arch string) string {
	if arch == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// buildImage makes the image tag in layout with umoci: rootfsDir as its
// first layer, opts.Files as a second, its config for linux/arch. It
// returns the manifest's descriptor in the layout.
func buildImage(t testing.TB, layout, tag, rootfsDir, arch string, opts ImageOptions) Descriptor {
	t.Helper()
	image := layout + ":" + tag
	runTool(t, "umoci", "new", "--image", image)
	runTool(t, "umoci", append(rootless(), "insert", "--image", image, rootfsDir, "/")...)
	if len(opts.Files) > 0 {
		dir := writeFiles(t, opts.Files)
		runTool(t, "umoci", append(rootless(), "insert", "--image", image, dir, "/")...)
	}
	runTool(t, "umoci", configArgs(image, arch, opts.Config)...)
	// Each umoci command leaves the previous manifest and config behind:
	// drop them, so that the layout holds only what is pushed.
	runTool(t, "umoci", "gc", "--layout", layout)
	return layoutManifest(t, layout, tag)
}

// rootless is umoci's --rootless when the test does not run as root (it
// then does not try to keep files' owners).
func rootless() []string {
	if os.Geteuid() != 0 {
		return []string{"--rootless"}
	}
	return nil
}

// configArgs is `umoci config` setting c, linux and arch on image.
func configArgs(image, arch string, c Config) []string {
	args := []string{"config", "--image", image, "--os", "linux", "--architecture", arch}
	for _, s := range c.Entrypoint {
		args = append(args, "--config.entrypoint", s)
	}
	for _, s := range c.Cmd {
		args = append(args, "--config.cmd", s)
	}
	for _, s := range c.Env {
		args = append(args, "--config.env", s)
	}
	if c.WorkingDir != "" {
		args = append(args, "--config.workingdir", c.WorkingDir)
	}
	if c.User != "" {
		args = append(args, "--config.user", c.User)
	}
	for k, v := range c.Labels {
		args = append(args, "--config.label", k+"="+v)
	}
	return args
}

// writeFiles writes files (path -> content) into a new directory.
func writeFiles(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for path, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(path, "/")))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatalf("write fixture file: %v", err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatalf("write fixture file: %v", err)
		}
	}
	return dir
}

// ociLayoutIndex is an OCI layout's index.json, as much as we touch.
type ociLayoutIndex struct {
	SchemaVersion int              `json:"schemaVersion"`
	MediaType     string           `json:"mediaType,omitempty"`
	Manifests     []map[string]any `json:"manifests"`
}

// readLayoutIndex reads layout/index.json.
func readLayoutIndex(t testing.TB, layout string) ociLayoutIndex {
	t.Helper()
	var ix ociLayoutIndex
	b, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err == nil {
		err = json.Unmarshal(b, &ix)
	}
	if err != nil {
		t.Fatalf("read the OCI layout %s: %v", layout, err)
	}
	return ix
}

// layoutManifest is the descriptor that tag names in layout.
func layoutManifest(t testing.TB, layout, tag string) Descriptor {
	t.Helper()
	for _, m := range readLayoutIndex(t, layout).Manifests {
		ann, _ := m["annotations"].(map[string]any)
		if ann["org.opencontainers.image.ref.name"] != tag {
			continue
		}
		b, _ := json.Marshal(m)
		var d Descriptor
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("read %s in the OCI layout %s: %v", tag, layout, err)
		}
		return d
	}
	t.Fatalf("no tag %s in the OCI layout %s", tag, layout)
	return Descriptor{}
}

// platformDescriptor is d with a platform: linux/arch.
func platformDescriptor(d Descriptor, arch string) map[string]any {
	return map[string]any{
		"mediaType": d.MediaType,
		"digest":    d.Digest,
		"size":      d.Size,
		"platform":  map[string]string{"architecture": arch, "os": "linux"},
	}
}

// addToLayout writes v as a blob of layout and names it tag in its
// index.json (umoci makes no indexes: we write this one ourselves).
func addToLayout(t testing.TB, layout, tag, mediaType string, v any) {
	t.Helper()
	blob, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode %s: %v", tag, err)
	}
	digest := sha256Digest(blob)
	path := filepath.Join(layout, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
	if err := os.WriteFile(path, blob, 0o644); err != nil {
		t.Fatalf("write %s into the OCI layout: %v", tag, err)
	}
	ix := readLayoutIndex(t, layout)
	ix.Manifests = append(ix.Manifests, map[string]any{
		"mediaType":   mediaType,
		"digest":      digest,
		"size":        len(blob),
		"annotations": map[string]string{"org.opencontainers.image.ref.name": tag},
	})
	b, err := json.Marshal(ix)
	if err == nil {
		err = os.WriteFile(filepath.Join(layout, "index.json"), b, 0o644)
	}
	if err != nil {
		t.Fatalf("write the OCI layout's index.json: %v", err)
	}
}

// push copies layout:tag to the real registry behind r as name:tag with
// skopeo (--all: every image of an index) and returns the digest of what
// it wrote, from --digestfile.
func push(t testing.TB, r *Registry, layout, name, tag string, docker, all bool) string {
	t.Helper()
	digestFile := filepath.Join(t.TempDir(), "digest")
	args := []string{"copy", "--quiet", "--dest-tls-verify=false", "--digestfile", digestFile}
	if docker {
		args = append(args, "--format", "v2s2")
	}
	if all {
		args = append(args, "--all")
	}
	dest := "docker://" + r.real().Addr + "/" + name + ":" + tag
	args = append(args, "oci:"+layout+":"+tag, dest)
	runTool(t, "skopeo", args...)
	b, err := os.ReadFile(digestFile)
	if err != nil {
		t.Fatalf("skopeo copy to %s wrote no digest: %v", dest, err)
	}
	return strings.TrimSpace(string(b))
}

// AcceptAll is the Accept header of a client that takes any manifest or
// index, OCI's or Docker's.
var AcceptAll = strings.Join([]string{MediaTypeOCIManifest, MediaTypeOCIIndex, MediaTypeDockerManifest, MediaTypeDockerList}, ", ")

// getManifest fetches the manifest or index ref (a tag or digest) of name
// from the real registry behind r, checks a digest ref against what came,
// and returns it with its media type.
func getManifest(t testing.TB, r *Registry, name, ref string) ([]byte, string) {
	t.Helper()
	url := "http://" + r.real().Addr + "/v2/" + name + "/manifests/" + ref
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	req.Header.Set("Accept", AcceptAll)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v %s", url, resp.Status, err, body)
	}
	if strings.HasPrefix(ref, "sha256:") && sha256Digest(body) != ref {
		t.Fatalf("GET %s: the registry sent a manifest whose digest is %s", url, sha256Digest(body))
	}
	return body, resp.Header.Get("Content-Type")
}

// fetchImage reads back from the registry the image manifest with this
// digest and its config's architecture.
func fetchImage(t testing.TB, r *Registry, name, tag, digest string) Image {
	t.Helper()
	body, mediaType := getManifest(t, r, name, digest)
	var m struct {
		Config Descriptor   `json:"config"`
		Layers []Descriptor `json:"layers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("parse the manifest %s of %s: %v", digest, name, err)
	}
	img := Image{
		Ref:      r.Ref(name, tag),
		Name:     name,
		Tag:      tag,
		Manifest: Descriptor{MediaType: mediaType, Digest: digest, Size: int64(len(body))},
		Config:   m.Config,
		Layers:   m.Layers,
	}
	config, err := os.ReadFile(r.BlobPath(m.Config.Digest))
	if err != nil {
		t.Fatalf("read the config of %s in the registry's storage: %v", img.Ref, err)
	}
	var c struct {
		Architecture string `json:"architecture"`
	}
	if err := json.Unmarshal(config, &c); err != nil {
		t.Fatalf("parse the config of %s: %v", img.Ref, err)
	}
	img.Arch = c.Architecture
	return img
}

// String is the image's name and digests, for failure messages.
func (img Image) String() string {
	return fmt.Sprintf("%s (manifest %s, config %s, %d layers)", img.Ref, img.Manifest.Digest, img.Config.Digest, len(img.Layers))
}
