// Package registrytest gives tests a real image registry on 127.0.0.1 (the
// Debian package docker-registry, the CNCF distribution registry 2.8), a
// small proxy in front of it that demands Docker Hub's anonymous bearer
// tokens (or stalls, or fails) and records what a client asked, and
// fixture images put into it with the real tools (umoci builds an OCI
// layout from a directory, skopeo pushes it), so that a test proves
// minibox reads what real tools write.
//
// Everything a test starts here is stopped, and checked stopped, when the
// test ends (t.Cleanup). No traffic leaves the loopback interface.
package registrytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minibox-lab/minibox/internal/testenv"
)

// Registry is a registry a test reaches at Addr: the real docker-registry
// (Start) or a proxy in front of one (StartProxy, StartTokenAuth).
type Registry struct {
	// Addr is "127.0.0.1:PORT", the host part of an image name:
	// Addr + "/busybox:latest".
	Addr string
	// StorageDir is the filesystem storage root of the real registry (for
	// a proxy: of its upstream's). Blobs are in
	// docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data.
	StorageDir string

	upstream *Registry // a proxy's real registry; nil for the real one
	proxy    *proxy    // nil for the real registry
	pid      int       // the real registry's process
	logPath  string    // its stdout and stderr
}

// startTimeout bounds how long the registry may take to answer GET /v2/.
const startTimeout = 5 * time.Second

// stopTimeout bounds how long the registry may take to exit after SIGTERM,
// and then after SIGKILL.
const stopTimeout = 5 * time.Second

// Start runs the real `docker-registry serve CONFIG` on 127.0.0.1 with a
// free port and filesystem storage in a temporary directory of the test,
// waits until it answers GET /v2/, and stops it when the test ends.
func Start(t testing.TB) *Registry {
	t.Helper()
	requireCommand(t, "docker-registry", "docker-registry")
	return start(t, t.TempDir(), "", waitReady)
}

// start starts a registry in dir with extra appended to its
// configuration; ready waits until it answers as it should. The port is
// picked by listening on :0 and closing: another program can take it
// before the registry binds it. Then the registry exits ("address
// already in use") and we try another.
func start(t testing.TB, dir, extra string, ready func(addr, id string, exited <-chan error) error) *Registry {
	t.Helper()
	const attempts = 5
	var lastErr error
	for i := 0; i < attempts; i++ {
		r, err := startOnFreePort(t, dir, extra, ready)
		if err == nil {
			return r
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("start docker-registry: %v", lastErr)
	return nil
}

// errPortTaken: the registry could not bind the port it was given.
var errPortTaken = errors.New("port taken")

// startOnFreePort starts one registry process in dir on a port free a
// moment ago. On success its stop is registered with t.Cleanup.
func startOnFreePort(t testing.TB, dir, extra string, ready func(addr, id string, exited <-chan error) error) (*Registry, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	id, err := randomHex(8)
	if err != nil {
		return nil, err
	}
	r := &Registry{
		Addr:       fmt.Sprintf("127.0.0.1:%d", port),
		StorageDir: filepath.Join(dir, "storage"),
		logPath:    filepath.Join(dir, fmt.Sprintf("registry-%d.log", port)),
	}
	config := filepath.Join(dir, fmt.Sprintf("config-%d.yml", port))
	if err := os.WriteFile(config, []byte(registryConfig(r.Addr, r.StorageDir, id)+extra), 0o644); err != nil {
		return nil, err
	}
	logFile, err := os.Create(r.logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command("docker-registry", "serve", config)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If the test binary dies, the registry must not outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start docker-registry: %w", err)
	}
	r.pid = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	if err := ready(r.Addr, id, exited); err != nil {
		stopProcess(cmd.Process, exited)
		log, _ := os.ReadFile(r.logPath)
		if strings.Contains(string(log), "address already in use") {
			return nil, fmt.Errorf("%w: %s", errPortTaken, r.Addr)
		}
		return nil, fmt.Errorf("%w\nregistry log:\n%s", err, log)
	}
	t.Cleanup(func() {
		if err := stopProcess(cmd.Process, exited); err != nil {
			t.Errorf("stop docker-registry (pid %d): %v", r.pid, err)
		}
		if t.Failed() {
			t.Logf("docker-registry at %s, its log:\n%s", r.Addr, tail(r.logPath, 40))
		}
	})
	return r, nil
}

// registryConfig is the registry's configuration: filesystem storage in
// storage, listening on addr only, and a header carrying id in every
// answer, so that waitReady knows the registry answering is ours and not
// a program that took the port first.
func registryConfig(addr, storage, id string) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  headers:
    X-Registrytest-Id: [%q]
`, storage, addr, id)
}

// waitReady polls GET /v2/ until our registry answers, it exits, or
// startTimeout passes.
func waitReady(addr, id string, exited <-chan error) error {
	return pollV2(addr, exited, "answer GET", func(resp *http.Response) bool {
		return resp.StatusCode == http.StatusOK && resp.Header.Get("X-Registrytest-Id") == id
	})
}

// pollV2 polls GET http://addr/v2/ until ours says the registry is up,
// the registry exits, or startTimeout passes (then: "did not <what>").
func pollV2(addr string, exited <-chan error, what string, ours func(*http.Response) bool) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("docker-registry exited before answering: %v", err)
		default:
		}
		resp, err := client.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if ours(resp) {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("docker-registry did not %s http://%s/v2/ within %v", what, addr, startTimeout)
}

// stopProcess sends SIGTERM, then SIGKILL if the process has not exited
// within stopTimeout, and waits for it (exited is its Wait's result).
// It fails only if the process is still there after both.
func stopProcess(p *os.Process, exited <-chan error) error {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = p.Kill()
	select {
	case <-exited:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("still running %v after SIGTERM and SIGKILL", 2*stopTimeout)
	}
}

// PID is the real registry's process id (for a proxy: its upstream's).
func (r *Registry) PID() int { return r.real().pid }

// Log is what the real registry printed so far (its warnings and errors).
func (r *Registry) Log() string {
	b, _ := os.ReadFile(r.real().logPath)
	return string(b)
}

// real is the docker-registry behind r: r itself, or a proxy's upstream.
func (r *Registry) real() *Registry {
	for r.upstream != nil {
		r = r.upstream
	}
	return r
}

// Ref is the full name of an image in r: Addr/name:tag.
func (r *Registry) Ref(name, tag string) string {
	return r.Addr + "/" + name + ":" + tag
}

// BlobPath is the file in which the real registry keeps the blob with the
// digest "sha256:<hex>".
func (r *Registry) BlobPath(digest string) string {
	hexPart := strings.TrimPrefix(digest, "sha256:")
	if len(hexPart) < 2 {
		return ""
	}
	return filepath.Join(r.real().StorageDir, "docker", "registry", "v2", "blobs", "sha256",
		hexPart[:2], hexPart, "data")
}

// CorruptBlob changes one byte in the middle of a stored blob, keeping its
// size: the registry serves it as it is (it does not check digests when it
// serves), so only a client that verifies digests notices.
func (r *Registry) CorruptBlob(t testing.TB, digest string) {
	t.Helper()
	path := r.BlobPath(digest)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("corrupt blob %s: %v", digest, err)
	}
	if len(data) == 0 {
		t.Fatalf("corrupt blob %s: it is empty", digest)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatalf("corrupt blob %s: %v", digest, err)
	}
}

// DownAddr is "127.0.0.1:PORT" where nothing listens (free a moment ago):
// the address of a registry that is down.
func DownAddr(t testing.TB) string {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// freePort is a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// requireCommand skips the test (fails it under MINIBOX_REQUIRE_ROOT=1)
// when the program name is not installed, naming the Debian package.
func requireCommand(t testing.TB, name, pkg string) {
	t.Helper()
	_, err := exec.LookPath(name)
	testenv.Require(t, err == nil, fmt.Sprintf("needs %s (Debian package %s; scripts/install-prereqs.sh --test installs it)", name, pkg))
}

// runTool runs a fixture tool (umoci, skopeo), at most a minute, and fails
// the test with its output if it fails.
func runTool(t testing.TB, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, &out)
	}
}

// randomHex is n random bytes in hex.
func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// sha256Digest is "sha256:<hex>" of data.
func sha256Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// tail is the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
