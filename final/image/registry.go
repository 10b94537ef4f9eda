package image

// The distribution API (OCI distribution-spec), the same at Docker Hub,
// Quay, Harbor and a docker-registry on 127.0.0.1:
//
//	GET /v2/                                   a registry? 401 + WWW-Authenticate says where tokens come from
//	GET /v2/REPOSITORY/manifests/TAG|DIGEST    a manifest, or an index of manifests
//	GET /v2/REPOSITORY/blobs/DIGEST            a config or a layer

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Errors a pull wraps, for callers that decide by kind (errors.Is).
var (
	ErrRemoteNotFound   = errors.New("not found in the registry (no such repository, tag or blob)")
	ErrUnauthorized     = errors.New("access refused by the registry (minibox pulls anonymously: a private repository, or a wrong name?)")
	ErrTooManyRequests  = errors.New("too many requests: the registry limits pulls; wait and try again")
	ErrRegistryFailed   = errors.New("the registry failed; try again later")
	ErrRegistryDown     = errors.New("the registry is not answering (is it running? is the address right?)")
	ErrDigestMismatch   = errors.New("digest mismatch")
	ErrInsecureRegistry = errors.New("not a registry over HTTPS (plain HTTP is only used for this machine or with --insecure)")
)

// manifestTypes is the Accept header of a manifest request. A registry
// answers 404 to a request that does not list the manifest's type, so
// every kind minibox reads is listed: OCI and Docker schema 2, single and
// multi-platform.
var manifestTypes = []string{
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.oci.image.index.v1+json",
	mediaTypeDockerManifest,
	mediaTypeDockerList,
}

// newTransport gives up on a registry that does not connect or answer; a
// slow body is fine (a big layer), and the context cancels it.
func newTransport(skipVerify bool) *http.Transport {
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   4,
	}
	if skipVerify { // --insecure: docker's insecure-registries accept any certificate too
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for by --insecure
	}
	return t
}

// client talks to one repository of one registry.
type client struct {
	http       *http.Client
	base       string // http://127.0.0.1:5000, https://registry-1.docker.io
	name       string // the registry as the user named it, for messages
	repository string // library/busybox
	insecure   bool

	mu    sync.Mutex
	token string // the bearer token, once the registry asked for one
}

// newClient picks the URL: HTTPS, or plain HTTP for this machine
// (localhost, 127.0.0.0/8, ::1), like docker. --insecure tries HTTPS
// without checking the certificate, then plain HTTP (ping).
func newClient(ref Reference, insecure bool, rt http.RoundTripper) *client {
	host := ref.Registry
	if host == dockerHub {
		host = "registry-1.docker.io" // Docker Hub's API lives there
	}
	scheme := "https"
	if isLoopback(host) {
		scheme = "http"
	}
	if rt == nil {
		rt = newTransport(insecure)
	}
	return &client{http: &http.Client{Transport: rt}, base: scheme + "://" + host, name: ref.Registry, repository: ref.Repository, insecure: insecure}
}

// isLoopback reports whether host[:port] is this machine.
func isLoopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// ping is GET /v2/: 200, or 401 and a challenge naming where an anonymous
// token for this repository comes from (Docker Hub's way).
func (c *client) ping(ctx context.Context) error {
	resp, err := c.send(ctx, c.base+"/v2/", nil)
	if err != nil && c.insecure && strings.HasPrefix(c.base, "https://") && !errors.Is(err, context.Canceled) {
		// --insecure: a registry that speaks plain HTTP (docker's fallback).
		c.base = "http://" + strings.TrimPrefix(c.base, "https://")
		var err2 error
		if resp, err2 = c.send(ctx, c.base+"/v2/", nil); err2 != nil {
			return fmt.Errorf("%v; over plain HTTP: %w", err, err2)
		}
	} else if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode == http.StatusUnauthorized {
		return c.login(ctx, resp.Header.Get("WWW-Authenticate"))
	}
	if resp.StatusCode == http.StatusOK && resp.Header.Get("Docker-Distribution-Api-Version") == "" && resp.Header.Get("Content-Type") == "text/html" {
		return fmt.Errorf("%s/v2/: answered a web page, not the registry API", c.base)
	}
	return c.check(resp, "GET /v2/")
}

// login fetches an anonymous bearer token:
// GET REALM?service=SERVICE&scope=repository:REPOSITORY:pull.
func (c *client) login(ctx context.Context, challenge string) error {
	scheme, params := parseChallenge(challenge)
	if !strings.EqualFold(scheme, "bearer") || params["realm"] == "" {
		return fmt.Errorf("%s: %w (it wants %q authentication)", c.base, ErrUnauthorized, challenge)
	}
	realm, err := url.Parse(params["realm"])
	if err != nil || (realm.Scheme != "https" && !(realm.Scheme == "http" && (c.insecure || isLoopback(realm.Host)))) {
		return fmt.Errorf("%s: token realm %q: not an HTTPS URL", c.base, params["realm"])
	}
	q := realm.Query()
	q.Set("scope", "repository:"+c.repository+":pull")
	if params["service"] != "" {
		q.Set("service", params["service"])
	}
	realm.RawQuery = q.Encode()
	resp, err := c.send(ctx, realm.String(), nil)
	if err != nil {
		return err
	}
	defer drain(resp)
	if err := c.check(resp, "token"); err != nil {
		return err
	}
	var token struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"` // OAuth 2's name, also allowed
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&token); err != nil {
		return fmt.Errorf("token from %s: %w", realm.Host, err)
	}
	if token.Token == "" {
		token.Token = token.AccessToken
	}
	if token.Token == "" {
		return fmt.Errorf("token from %s: empty", realm.Host)
	}
	c.mu.Lock()
	c.token = token.Token
	c.mu.Unlock()
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

// get is GET base+path, with the token. A 401 with a new challenge (the
// token expired, or the registry asks per request) logs in once more and
// retries once.
func (c *client) get(ctx context.Context, path string, accept []string, what string) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		resp, err := c.send(ctx, c.base+path, accept)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 && resp.Header.Get("WWW-Authenticate") != "" {
			challenge := resp.Header.Get("WWW-Authenticate")
			drain(resp)
			if err := c.login(ctx, challenge); err != nil {
				return nil, err
			}
			continue
		}
		if err := c.check(resp, what); err != nil {
			drain(resp)
			return nil, err
		}
		return resp, nil
	}
}

// send does one GET; the token goes only to the registry itself (never
// to a token server or a redirect's storage host).
func (c *client) send(ctx context.Context, u string, accept []string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if len(accept) > 0 {
		req.Header.Set("Accept", strings.Join(accept, ", "))
	}
	req.Header.Set("User-Agent", "minibox")
	c.mu.Lock()
	token := c.token
	c.mu.Unlock()
	if token != "" && strings.HasPrefix(u, c.base+"/") {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, u, err)
	}
	return resp, nil
}

// transportError says what a failed request means: the registry down, a
// name that does not resolve, a certificate not trusted, HTTPS spoken to
// a plain HTTP server.
func (c *client) transportError(ctx context.Context, u string, err error) error {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var opErr *net.OpError
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%s: %w: connection refused", hostOf(u), ErrRegistryDown)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("%s: %w: %v", hostOf(u), ErrRegistryDown, dnsErr)
	case errors.As(err, &certErr):
		return fmt.Errorf("%s: its TLS certificate is not trusted (%v); --insecure accepts any", hostOf(u), certErr.Err)
	case isTLSOverHTTP(err):
		return fmt.Errorf("%s: %w: %v", hostOf(u), ErrInsecureRegistry, err)
	case errors.As(err, &opErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), os.IsTimeout(err):
		return fmt.Errorf("%s: %w: %v", hostOf(u), ErrRegistryDown, err)
	}
	return fmt.Errorf("%s: %w", hostOf(u), err)
}

// isTLSOverHTTP: an HTTPS request answered in plain HTTP.
func isTLSOverHTTP(err error) bool {
	var re tls.RecordHeaderError
	return errors.As(err, &re) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

// hostOf is scheme://host of a URL, for messages.
func hostOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Scheme + "://" + p.Host
}

// drain reads what is left of a small answer and closes it, so that the
// connection can be used again.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// check turns an HTTP error into one that says what it means, naming the
// registry, the repository and what was asked.
func (c *client) check(resp *http.Response, what string) error {
	if resp.StatusCode < 300 {
		return nil
	}
	var e struct {
		Errors []struct{ Code, Message string }
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
	detail := resp.Status
	for _, x := range e.Errors {
		detail += ": " + x.Code + " " + x.Message
	}
	where := c.base + " " + c.repository + " " + what
	var kind error
	switch {
	case resp.StatusCode == http.StatusNotFound:
		kind = ErrRemoteNotFound
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		kind = ErrUnauthorized
	case resp.StatusCode == http.StatusTooManyRequests:
		kind = ErrTooManyRequests
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			detail += " (Retry-After: " + ra + "s)"
		}
	case resp.StatusCode >= 500:
		kind = ErrRegistryFailed
	default:
		return fmt.Errorf("%s: %s", where, detail)
	}
	return fmt.Errorf("%s: %s: %w", where, detail, kind)
}
