package image

// An image's name says where it lives: [REGISTRY/]REPOSITORY[:TAG|@DIGEST].
// "busybox" is short for docker.io/library/busybox:latest, as in docker.

import (
	"fmt"
	"strings"

	"github.com/minibox-lab/minibox/internal/lazyregexp"
	"github.com/opencontainers/go-digest"
)

// Reference is one image name, split into its parts.
type Reference struct {
	Registry   string        // 127.0.0.1:5000, docker.io
	Repository string        // library/busybox
	Tag        string        // latest; "" when by digest only
	Digest     digest.Digest // "" when by tag
}

// repositoryName is the distribution spec's grammar for a repository path.
var repositoryName = lazyregexp.New(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)

// tagName is the distribution spec's grammar for a tag.
var tagName = lazyregexp.New(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// dockerHub is the registry of names without one.
const dockerHub = "docker.io"

// ParseReference splits NAME[:TAG][@DIGEST]. The first component is a
// registry when it has a dot or a port, or is localhost (docker's rule);
// Docker Hub's official images live under library/. Only sha256 digests
// are accepted: a digest becomes a file name in the store.
func ParseReference(s string) (Reference, error) {
	var r Reference
	name := s
	if i := strings.Index(name, "@"); i >= 0 {
		d, err := parseSHA256(name[i+1:])
		if err != nil {
			return r, fmt.Errorf("image %q: %w", s, err)
		}
		name, r.Digest = name[:i], d
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, r.Tag = name[:i], name[i+1:]
		if !tagName.MatchString(r.Tag) {
			return r, fmt.Errorf("image %q: bad tag %q", s, r.Tag)
		}
	}
	r.Registry = dockerHub
	if i := strings.Index(name, "/"); i > 0 && (strings.ContainsAny(name[:i], ".:") || name[:i] == "localhost") {
		r.Registry, name = name[:i], name[i+1:]
	}
	if r.Registry == "index.docker.io" || r.Registry == "registry-1.docker.io" {
		r.Registry = dockerHub
	}
	if r.Registry == dockerHub && !strings.Contains(name, "/") {
		name = "library/" + name
	}
	if !repositoryName.MatchString(name) {
		return r, fmt.Errorf("image %q: expected [REGISTRY/]NAME[:TAG|@sha256:HEX], NAME in lower case", s)
	}
	r.Repository = name
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r, nil
}

// parseSHA256 accepts "sha256:<64 lower-case hex>" and nothing else.
func parseSHA256(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("bad digest %q: expected sha256:<64 hex digits>", s)
	}
	if d.Algorithm() != digest.SHA256 {
		return "", fmt.Errorf("digest %q: only sha256 digests are accepted", s)
	}
	return d, nil
}

// String is the full name the store keeps in index.json:
// docker.io/library/busybox:latest, or REGISTRY/REPO@sha256:… when pulled
// by digest (the same as stage 06, so both read each other's names).
func (r Reference) String() string {
	if r.Digest != "" {
		return r.Registry + "/" + r.Repository + "@" + r.Digest.String()
	}
	return r.Registry + "/" + r.Repository + ":" + r.Tag
}

// Familiar is the name as docker prints it: busybox:latest, not
// docker.io/library/busybox:latest.
func (r Reference) Familiar() string {
	repo, tag := SplitName(r.String())
	if r.Digest != "" {
		return repo + "@" + r.Digest.String()
	}
	return repo + ":" + tag
}

// NormalizeName is the full name of ref: busybox → docker.io/library/busybox:latest.
func NormalizeName(ref string) (string, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return "", err
	}
	return r.String(), nil
}

// SplitName splits a full name into the repository as docker shows it
// (busybox, not docker.io/library/busybox) and the tag ("<none>" for a
// name by digest).
func SplitName(full string) (repo, tag string) {
	repo, tag = full, "<none>"
	if i := strings.Index(full, "@"); i >= 0 {
		repo = full[:i]
	} else if i := strings.LastIndex(full, ":"); i > strings.LastIndex(full, "/") {
		repo, tag = full[:i], full[i+1:]
	}
	if rest, ok := strings.CutPrefix(repo, dockerHub+"/"); ok {
		repo = strings.TrimPrefix(rest, "library/")
	}
	return repo, tag
}

// FamiliarName is a full name as docker prints it: busybox:latest,
// 127.0.0.1:5000/x:1, x@sha256:…; "<none>" for an unnamed image.
func FamiliarName(full string) string {
	if full == "" {
		return "<none>"
	}
	repo, tag := SplitName(full)
	if i := strings.Index(full, "@"); i >= 0 {
		return repo + full[i:]
	}
	return repo + ":" + tag
}
