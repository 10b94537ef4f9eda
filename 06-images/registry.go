package main

// A registry serves images over plain HTTP GETs: the distribution API
// (OCI distribution-spec), the same at Docker Hub, Quay, Harbor and a
// docker-registry on 127.0.0.1:
//
//	GET /v2/                                   a registry? 401 says where to get a token
//	GET /v2/REPOSITORY/manifests/TAG|DIGEST    the manifest, or an index of manifests
//	GET /v2/REPOSITORY/blobs/DIGEST            a config or a layer
//
// This file is the client; pull.go walks an image with it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// manifestTypes is the Accept header of a manifest request. A registry
// answers 404 to a request that does not list the manifest's type, so
// every kind is listed: OCI and Docker schema 2, single and multi-platform.
var manifestTypes = []string{
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}

// httpClient gives up on a registry that does not connect or answer; a
// slow body is fine (a big layer), and Ctrl-C cancels it.
var httpClient = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
	TLSHandshakeTimeout:   10 * time.Second,
	ResponseHeaderTimeout: 30 * time.Second,
}}

// registry talks to one repository of one registry.
type registry struct {
	ctx        context.Context // Ctrl-C cancels the request under way
	base       string          // http://127.0.0.1:5000, https://registry-1.docker.io
	repository string          // library/busybox
	token      string          // the bearer token, once the registry asked for one
}

// newRegistry picks the URL: HTTPS, or plain HTTP for loopback or with
// --insecure, like docker (which treats 127.0.0.0/8 as insecure too).
func newRegistry(ctx context.Context, ref reference, insecure bool) *registry {
	host := ref.registry
	if host == "docker.io" {
		host = "registry-1.docker.io" // Docker Hub's API lives there
	}
	scheme := "https"
	if insecure || isLoopback(host) {
		scheme = "http"
	}
	return &registry{ctx: ctx, base: scheme + "://" + host, repository: ref.repository}
}

// isLoopback reports whether host[:port] is this machine.
func isLoopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// ping is GET /v2/: 200, or 401 and a WWW-Authenticate header naming
// where an anonymous token for this repository comes from (Docker Hub's
// way; a registry without auth answers 200).
func (r *registry) ping() error {
	resp, err := r.get("/v2/", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		return r.login(resp.Header.Get("WWW-Authenticate"))
	}
	return r.check(resp, "")
}

// login fetches an anonymous bearer token:
// GET REALM?service=SERVICE&scope=repository:REPOSITORY:pull.
func (r *registry) login(challenge string) error {
	scheme, params := parseChallenge(challenge)
	if !strings.EqualFold(scheme, "bearer") || params["realm"] == "" {
		return fmt.Errorf("%s wants %q authentication: "+stage+" pulls anonymously (final/ will have login)", r.base, challenge)
	}
	q := url.Values{"scope": {"repository:" + r.repository + ":pull"}}
	if params["service"] != "" {
		q.Set("service", params["service"])
	}
	resp, err := r.do(params["realm"] + "?" + q.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := r.check(resp, "token"); err != nil {
		return err
	}
	var token struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"` // OAuth 2's name, also allowed
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&token); err != nil {
		return fmt.Errorf("token from %s: %w", params["realm"], err)
	}
	r.token = token.Token
	if r.token == "" {
		r.token = token.AccessToken
	}
	return nil
}

// parseChallenge splits `Bearer realm="…",service="…",scope="…"`.
func parseChallenge(h string) (string, map[string]string) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	params := map[string]string{}
	for rest != "" {
		var key, value string
		key, rest, _ = strings.Cut(strings.TrimLeft(rest, ", "), "=")
		if strings.HasPrefix(rest, `"`) {
			value, rest, _ = strings.Cut(rest[1:], `"`)
		} else {
			value, rest, _ = strings.Cut(rest, ",")
		}
		params[strings.ToLower(strings.TrimSpace(key))] = value
	}
	return scheme, params
}

// get is GET r.base+path, with the token once there is one.
func (r *registry) get(path string, accept []string) (*http.Response, error) {
	return r.do(r.base+path, accept...)
}

// do sends one GET, narrated as curl under -v with the answer's status.
func (r *registry) do(url string, accept ...string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	curl := "curl"
	if len(accept) > 0 {
		req.Header.Set("Accept", strings.Join(accept, ", "))
		curl += " -H 'Accept: " + strings.Join(accept, ", ") + "'"
	}
	if r.token != "" && strings.HasPrefix(url, r.base+"/") { // never to another host
		req.Header.Set("Authorization", "Bearer "+r.token)
		curl += " -H 'Authorization: Bearer …'"
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("registry %s is not answering (is it running?): %w", r.base, err)
		}
		return nil, fmt.Errorf("registry %s: %w", r.base, err)
	}
	narrate("%s %s   # %s", curl, url, answer(resp))
	return resp, nil
}

// answer is a response's status and what matters of its headers.
func answer(resp *http.Response) string {
	s := resp.Status
	for _, h := range []string{"WWW-Authenticate", "Content-Type", "Docker-Content-Digest"} {
		if v := resp.Header.Get(h); v != "" {
			s += ", " + h + ": " + v
		}
	}
	return s
}

// check turns an HTTP error into one that says what it means for what.
func (r *registry) check(resp *http.Response, what string) error {
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if resp.StatusCode < 300 {
		return nil
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
	detail := resp.Status
	for _, x := range e.Errors {
		detail += ": " + x.Code + " " + x.Message
	}
	where := r.base + "/" + r.repository + " " + what
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s: not found (no such repository, tag or blob): %s", where, detail)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%s: access refused (%s): %s pulls anonymously; is the name right?", where, detail, stage)
	case resp.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("%s: too many requests (%s): the registry limits pulls, wait and try again", where, detail)
	case resp.StatusCode >= 500:
		return fmt.Errorf("%s: the registry failed (%s): try again later", where, detail)
	}
	return fmt.Errorf("%s: %s", where, detail)
}
