package main

// An image's name says where it lives: [REGISTRY/]REPOSITORY[:TAG|@DIGEST].
// "busybox" is short for docker.io/library/busybox:latest, as in docker.

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"
)

// reference is one image name, split.
type reference struct {
	registry   string // 127.0.0.1:5000, docker.io
	repository string // library/busybox
	tag        string // latest; "" when by digest
	digest     digest.Digest
}

// repositoryName is the distribution spec's grammar for a repository path.
var repositoryName = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
var tagName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// parseReference splits NAME[:TAG|@DIGEST]. The first component is a
// registry when it has a dot or a port, or is localhost (docker's rule).
func parseReference(s string) (reference, error) {
	var r reference
	name := s
	if i := strings.Index(name, "@"); i >= 0 {
		d, err := digest.Parse(name[i+1:])
		if err != nil {
			return r, fmt.Errorf("image %q: bad digest: %v", s, err)
		}
		name, r.digest = name[:i], d
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, r.tag = name[:i], name[i+1:]
		if !tagName.MatchString(r.tag) {
			return r, fmt.Errorf("image %q: bad tag %q", s, r.tag)
		}
	}
	r.registry = "docker.io"
	if i := strings.Index(name, "/"); i > 0 && (strings.ContainsAny(name[:i], ".:") || name[:i] == "localhost") {
		r.registry, name = name[:i], name[i+1:]
	}
	if r.registry == "index.docker.io" {
		r.registry = "docker.io"
	}
	if r.registry == "docker.io" && !strings.Contains(name, "/") {
		name = "library/" + name // Docker Hub's official images
	}
	if !repositoryName.MatchString(name) {
		return r, fmt.Errorf("image %q: expected [REGISTRY/]NAME[:TAG|@sha256:HEX], NAME in lower case", s)
	}
	r.repository = name
	if r.tag == "" && r.digest == "" {
		r.tag = "latest"
	}
	return r, nil
}

// String is the full name the store keeps: docker.io/library/busybox:latest.
func (r reference) String() string {
	if r.digest != "" {
		return r.registry + "/" + r.repository + "@" + r.digest.String()
	}
	return r.registry + "/" + r.repository + ":" + r.tag
}

// normalizeName is the full name of ref: busybox → docker.io/library/busybox:latest.
func normalizeName(ref string) (string, error) {
	r, err := parseReference(ref)
	return r.String(), err
}

// shortRepository is the repository as docker shows it: busybox, not
// docker.io/library/busybox.
func shortRepository(full string) (repo, tag string) {
	repo, tag = full, "<none>"
	if i := strings.Index(full, "@"); i >= 0 {
		repo = full[:i]
	} else if i := strings.LastIndex(full, ":"); i > strings.LastIndex(full, "/") {
		repo, tag = full[:i], full[i+1:]
	}
	repo = strings.TrimPrefix(strings.TrimPrefix(repo, "docker.io/"), "library/")
	return repo, tag
}
