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
	ErrUnauthorized     = errors.New("access refused by the registry (not logged in, or not allowed; or a wrong name?)")
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

	// creds are the user's credentials for this registry (minibox login),
	// nil for anonymous access.
	creds *Credentials
	// scopes are what a token is asked for: repository:NAME:pull, and
	// pull,push (and the repositories blobs are mounted from) for a push.
	scopes []string

	mu    sync.Mutex
	token string // the bearer token, once the registry asked for one
	basic bool   // the registry asked for basic authentication (htpasswd)
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
	return &client{http: &http.Client{Transport: rt}, base: scheme + "://" + host, name: ref.Registry, repository: ref.Repository, insecure: insecure,
		scopes: []string{"repository:" + ref.Repository + ":pull"}}
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

// login answers a 401's challenge. Bearer (Docker Hub, Harbor, Quay): a
// token from GET REALM?service=SERVICE&scope=repository:REPOSITORY:pull
// (pull,push for a push), asked with the user's credentials if they logged
// in, anonymously otherwise. Basic (a docker-registry with htpasswd): the
// credentials go with every request from now on.
func (c *client) login(ctx context.Context, challenge string) error {
	scheme, params := parseChallenge(challenge)
	if strings.EqualFold(scheme, "basic") {
		if c.creds == nil {
			return fmt.Errorf("%s: %w: it asks for a user name and password: minibox login %s", c.name, ErrUnauthorized, c.name)
		}
		c.mu.Lock()
		c.basic = true
		c.mu.Unlock()
		return nil
	}
	if !strings.EqualFold(scheme, "bearer") || params["realm"] == "" {
		return fmt.Errorf("%s: %w (it wants %q authentication)", c.base, ErrUnauthorized, challenge)
	}
	token, err := c.fetchToken(ctx, params, c.scopes)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.token = token
	c.mu.Unlock()
	return nil
}

// fetchToken asks the token server of a bearer challenge for a token for
// scopes (none: just proving the credentials, as docker login does).
func (c *client) fetchToken(ctx context.Context, params map[string]string, scopes []string) (string, error) {
	realm, err := url.Parse(params["realm"])
	if err != nil || (realm.Scheme != "https" && !(realm.Scheme == "http" && (c.insecure || isLoopback(realm.Host)))) {
		return "", fmt.Errorf("%s: token realm %q: not an HTTPS URL", c.base, params["realm"])
	}
	q := realm.Query()
	for _, scope := range scopes {
		q.Add("scope", scope)
	}
	if params["service"] != "" {
		q.Set("service", params["service"])
	}
	if c.creds != nil {
		q.Set("account", c.creds.Username)
	}
	realm.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, realm.String(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("User-Agent", "minibox")
	if c.creds != nil { // the password goes to the token server only, never elsewhere
		req.SetBasicAuth(c.creds.Username, c.creds.Password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", c.transportError(ctx, realm.String(), err)
	}
	defer drain(resp)
	if err := c.check(resp, "token"); err != nil {
		return "", err
	}
	var token struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"` // OAuth 2's name, also allowed
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&token); err != nil {
		return "", fmt.Errorf("token from %s: %w", realm.Host, err)
	}
	if token.Token == "" {
		token.Token = token.AccessToken
	}
	if token.Token == "" {
		return "", fmt.Errorf("token from %s: empty", realm.Host)
	}
	return token.Token, nil
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
	hdr := http.Header{}
	if len(accept) > 0 {
		hdr.Set("Accept", strings.Join(accept, ", "))
	}
	return c.call(ctx, http.MethodGet, c.base+path, nil, hdr, what)
}

// body makes a request's body afresh for each attempt (a retry after a
// 401 sends it again): a reader and its length.
type body func() (io.Reader, int64, error)

// call does one request to the registry (u: a full URL), logging in once
// more and retrying once on a 401 with a challenge, and turns an error
// status into an error.
func (c *client) call(ctx context.Context, method, u string, b body, hdr http.Header, what string) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		resp, err := c.do(ctx, method, u, b, hdr)
		if err != nil {
			return nil, err
		}
		// A challenge is answered only when the registry itself asked: a
		// redirect or an upload Location on another host that says 401
		// gets no credentials (its realm would receive the password).
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 && resp.Header.Get("WWW-Authenticate") != "" &&
			c.isRegistry(resp.Request.URL) {
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

// isRegistry reports whether u is on the registry's own scheme and host.
func (c *client) isRegistry(u *url.URL) bool {
	base, err := url.Parse(c.base)
	return err == nil && u.Scheme == base.Scheme && u.Host == base.Host
}

// send does one GET, no retry.
func (c *client) send(ctx context.Context, u string, accept []string) (*http.Response, error) {
	hdr := http.Header{}
	if len(accept) > 0 {
		hdr.Set("Accept", strings.Join(accept, ", "))
	}
	return c.do(ctx, http.MethodGet, u, nil, hdr)
}

// do sends one request. The token or the password goes only to the
// registry itself (never to a redirect's storage host).
func (c *client) do(ctx context.Context, method, u string, b body, hdr http.Header) (*http.Response, error) {
	var r io.Reader
	size := int64(0)
	if b != nil {
		var err error
		if r, size, err = b(); err != nil {
			return nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, err
	}
	if b != nil {
		req.ContentLength = size
		if size == 0 {
			req.Body = http.NoBody
		}
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "minibox")
	c.mu.Lock()
	token, basic := c.token, c.basic
	c.mu.Unlock()
	if strings.HasPrefix(u, c.base+"/") {
		switch {
		case token != "":
			req.Header.Set("Authorization", "Bearer "+token)
		case basic && c.creds != nil:
			req.SetBasicAuth(c.creds.Username, c.creds.Password)
		}
	}
	// The token must not follow a redirect to another host (a blob's
	// storage); Go's client drops Authorization on such a redirect.
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
	digestInvalid := false
	for _, x := range e.Errors {
		detail += ": " + x.Code + " " + x.Message
		digestInvalid = digestInvalid || x.Code == "DIGEST_INVALID"
	}
	where := c.base + " " + c.repository + " " + what
	var kind error
	switch {
	case digestInvalid: // a push: the registry hashed what it got
		kind = ErrDigestMismatch
	case resp.StatusCode == http.StatusNotFound:
		kind = ErrRemoteNotFound
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%s: %s: %w; log in first: minibox login %s", where, detail, ErrUnauthorized, c.name)
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
