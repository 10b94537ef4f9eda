package registrytest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// ProxyOptions say how a proxy in front of a registry behaves. They can be
// changed while it runs (SetOptions): a pull that stalls, then one that
// completes, both at the same address (an image's name includes it).
type ProxyOptions struct {
	// Token makes every /v2/ request without a valid bearer token answer
	// 401 with a challenge, the way Docker Hub does:
	//   WWW-Authenticate: Bearer realm="http://ADDR/token",service="registrytest",scope="repository:NAME:pull"
	// GET /token?service=registrytest&scope=… hands out anonymous tokens,
	// each valid for the scopes it was asked for.
	Token bool
	// RefuseTokens (with Token) accepts no token at all, like a private
	// repository without credentials: every /v2/ request answers 401.
	RefuseTokens bool
	// StallBlobsAfter > 0 makes a blob answer longer than that many bytes
	// stop after them and hang until the client goes away or the test
	// ends: a pull interrupted in the middle of a layer.
	StallBlobsAfter int64
	// Status > 0 answers every (authorised) /v2/ request but GET /v2/
	// itself with this status (429, 500, 503…) and a distribution error.
	Status int
}

// Request is one request a proxy received.
type Request struct {
	Method string
	Path   string // /v2/NAME/manifests/REF, /v2/NAME/blobs/DIGEST, /token…
	Query  string // the raw query (the token endpoint's service and scope)
	// Authorized: it carried a bearer token the proxy had issued for it.
	Authorized bool
	Status     int // what the proxy answered (0 if the client went away first)
}

// proxy is the state of a running proxy.
type proxy struct {
	addr     string
	upstream *url.URL
	rp       *httputil.ReverseProxy
	closing  chan struct{} // closed when the test ends: stalled answers return

	mu       sync.Mutex
	opts     ProxyOptions
	requests []Request
	tokens   map[string][]string // token -> the scopes it was issued for
	stalled  int                 // blob answers stalled so far
	stallCh  chan struct{}       // closed at the first stall
}

// StartTokenAuth starts a proxy in front of upstream that demands Docker
// Hub's anonymous bearer token (ProxyOptions.Token).
func StartTokenAuth(t testing.TB, upstream *Registry) *Registry {
	t.Helper()
	return StartProxy(t, upstream, ProxyOptions{Token: true})
}

// StartProxy starts a proxy (net/http/httputil.ReverseProxy) on 127.0.0.1
// in front of upstream that behaves as opts say and records every request
// (Requests). It stops when the test ends.
func StartProxy(t testing.TB, upstream *Registry, opts ProxyOptions) *Registry {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("start a registry proxy: %v", err)
	}
	target := &url.URL{Scheme: "http", Host: upstream.Addr}
	p := &proxy{
		addr:     l.Addr().String(),
		upstream: target,
		closing:  make(chan struct{}),
		opts:     opts,
		tokens:   map[string][]string{},
		stallCh:  make(chan struct{}),
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = target.Host
			pr.Out.Header.Del("Authorization") // the registry behind needs none
		},
		FlushInterval: -1, // pass every byte on at once: a stall is seen where it is
	}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		close(p.closing)
		_ = srv.Close()
		<-served
	})
	return &Registry{Addr: p.addr, StorageDir: upstream.real().StorageDir, upstream: upstream, proxy: p}
}

// SetOptions changes how the proxy r behaves from the next request on.
func (r *Registry) SetOptions(opts ProxyOptions) {
	p := r.mustProxy()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.opts = opts
}

// Requests are the requests the proxy r received so far, in order.
func (r *Registry) Requests() []Request {
	p := r.mustProxy()
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests...)
}

// ResetRequests forgets the requests received so far.
func (r *Registry) ResetRequests() {
	p := r.mustProxy()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests = nil
}

// Fetched reports whether the proxy r received a GET or HEAD of the blob or
// manifest with this digest (whatever it answered).
func (r *Registry) Fetched(digest string) bool {
	for _, req := range r.Requests() {
		if (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
			strings.HasPrefix(req.Path, "/v2/") && strings.HasSuffix(req.Path, "/"+digest) {
			return true
		}
	}
	return false
}

// WaitStalled waits until the proxy r has stalled a blob answer
// (ProxyOptions.StallBlobsAfter), and fails the test after timeout.
func (r *Registry) WaitStalled(t testing.TB, timeout time.Duration) {
	t.Helper()
	p := r.mustProxy()
	select {
	case <-p.stallCh:
	case <-time.After(timeout):
		t.Fatalf("no blob answer of the proxy at %s stalled within %v; requests: %+v", r.Addr, timeout, r.Requests())
	}
}

// Stalled is how many blob answers the proxy r has stalled so far.
func (r *Registry) Stalled() int {
	p := r.mustProxy()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stalled
}

// mustProxy is r's proxy state; calling a proxy's method on the real
// registry is a mistake in the test.
func (r *Registry) mustProxy() *proxy {
	if r.proxy == nil {
		panic("registrytest: " + r.Addr + " is the real registry, not a proxy (StartProxy)")
	}
	return r.proxy
}

// ServeHTTP answers the token endpoint itself and passes /v2/ requests on
// to the registry, once authorised.
func (p *proxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	rec := &recorder{ResponseWriter: w}
	entry := Request{Method: req.Method, Path: req.URL.Path, Query: req.URL.RawQuery}
	defer func() {
		entry.Status = rec.status
		p.mu.Lock()
		p.requests = append(p.requests, entry)
		p.mu.Unlock()
	}()
	p.mu.Lock()
	opts := p.opts
	p.mu.Unlock()

	if req.URL.Path == "/token" {
		p.serveToken(rec, req)
		return
	}
	if !strings.HasPrefix(req.URL.Path, "/v2/") {
		writeError(rec, http.StatusNotFound, "NOT_FOUND", "not a registry path")
		return
	}
	repo := repository(req.URL.Path)
	entry.Authorized = p.authorized(req, repo)
	if opts.Token && (!entry.Authorized || opts.RefuseTokens) {
		p.challenge(rec, repo)
		return
	}
	if opts.Status > 0 && req.URL.Path != "/v2/" {
		if opts.Status == http.StatusTooManyRequests {
			rec.Header().Set("Retry-After", "60")
		}
		writeError(rec, opts.Status, errorCode(opts.Status), http.StatusText(opts.Status))
		return
	}
	if opts.StallBlobsAfter > 0 && strings.Contains(req.URL.Path, "/blobs/") {
		p.rp.ServeHTTP(&staller{recorder: rec, p: p, limit: opts.StallBlobsAfter, req: req}, req)
		return
	}
	p.rp.ServeHTTP(rec, req)
}

// challenge answers 401 with Docker Hub's bearer challenge (a scope for a
// repository's paths; none for GET /v2/, as Docker Hub does).
func (p *proxy) challenge(w http.ResponseWriter, repo string) {
	v := fmt.Sprintf(`Bearer realm="http://%s/token",service="registrytest"`, p.addr)
	if repo != "" {
		v += fmt.Sprintf(`,scope="repository:%s:pull"`, repo)
	}
	w.Header().Set("WWW-Authenticate", v)
	writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
}

// serveToken hands out an anonymous token for the scopes asked for, as
// Docker Hub's auth.docker.io/token does.
func (p *proxy) serveToken(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	if q.Get("service") != "registrytest" {
		writeError(w, http.StatusBadRequest, "DENIED", `service must be "registrytest"`)
		return
	}
	token, err := randomHex(16)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	p.mu.Lock()
	p.tokens[token] = q["scope"]
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token":        token,
		"access_token": token,
		"expires_in":   300,
		"issued_at":    time.Now().UTC().Format(time.RFC3339),
	})
}

// authorized reports whether req carries a token issued for repo's pull
// scope (any issued token will do for GET /v2/, which names no repository).
func (p *proxy) authorized(req *http.Request, repo string) bool {
	token, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	p.mu.Lock()
	scopes, issued := p.tokens[token]
	p.mu.Unlock()
	if !issued {
		return false
	}
	if repo == "" {
		return true
	}
	for _, s := range scopes {
		// "repository:NAME:pull" or "repository:NAME:pull,push"
		if rest, ok := strings.CutPrefix(s, "repository:"+repo+":"); ok &&
			containsWord(strings.Split(rest, ","), "pull") {
			return true
		}
	}
	return false
}

// repository is NAME in /v2/NAME/{manifests,blobs,tags}/…, "" for /v2/.
func repository(path string) string {
	rest := strings.TrimPrefix(path, "/v2/")
	for _, kind := range []string{"/manifests/", "/blobs/", "/tags/"} {
		if i := strings.LastIndex(rest, kind); i > 0 {
			return rest[:i]
		}
	}
	return ""
}

// containsWord reports whether list holds w.
func containsWord(list []string, w string) bool {
	for _, x := range list {
		if x == w {
			return true
		}
	}
	return false
}

// writeError answers with the distribution API's error body.
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]any{{"code": code, "message": message}},
	})
}

// errorCode is the distribution error code a registry sends with status.
func errorCode(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "TOOMANYREQUESTS"
	case http.StatusUnauthorized:
		return "UNAUTHORIZED"
	case http.StatusForbidden:
		return "DENIED"
	case http.StatusNotFound:
		return "NAME_UNKNOWN"
	default:
		return "UNKNOWN"
	}
}

// recorder remembers the status a handler answered with.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Flush passes the reverse proxy's flushes on.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// staller passes on the first limit bytes of an answer, flushes them, and
// then hangs until the client goes away or the test ends.
type staller struct {
	*recorder
	p       *proxy
	limit   int64
	written int64
	req     *http.Request
}

func (s *staller) Write(b []byte) (int, error) {
	room := s.limit - s.written
	if int64(len(b)) <= room {
		n, err := s.recorder.Write(b)
		s.written += int64(n)
		return n, err
	}
	n, err := s.recorder.Write(b[:room])
	s.written += int64(n)
	if err != nil {
		return n, err
	}
	s.recorder.Flush()
	s.p.noteStall()
	select {
	case <-s.req.Context().Done():
	case <-s.p.closing:
	}
	return n, fmt.Errorf("registrytest: answer stalled after %d bytes", s.limit)
}

// noteStall counts a stall and wakes WaitStalled.
func (p *proxy) noteStall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled++
	if p.stalled == 1 {
		close(p.stallCh)
	}
}
