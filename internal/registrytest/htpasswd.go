package registrytest

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StartHtpasswd runs the real docker-registry, as Start does, but
// demanding basic authentication from the users given (name -> password),
// as a private registry does with its htpasswd file: every request without
// their credentials answers 401 with
//
//	WWW-Authenticate: Basic realm="registrytest"
//
// The bcrypt hashes the file needs come from crypt(3) through perl
// (Debian's libcrypt speaks bcrypt; perl is part of every Debian system),
// so the test needs neither apache2-utils' htpasswd nor a Go bcrypt module.
func StartHtpasswd(t testing.TB, users map[string]string) *Registry {
	t.Helper()
	requireCommand(t, "docker-registry", "docker-registry")
	requireCommand(t, "perl", "perl-base")
	dir := t.TempDir()
	htpasswd := filepath.Join(dir, "htpasswd")
	var lines []string
	for user, password := range users {
		hash, err := bcryptHash(password)
		if err != nil {
			t.Fatalf("htpasswd: %v", err)
		}
		lines = append(lines, user+":"+hash)
	}
	if err := os.WriteFile(htpasswd, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatalf("htpasswd: %v", err)
	}
	var lastErr error
	for i := 0; i < 5; i++ {
		r, err := startHtpasswdOnFreePort(t, dir, htpasswd)
		if err == nil {
			return r
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("start docker-registry with htpasswd: %v", lastErr)
	return nil
}

// bcryptHash is crypt(3)'s bcrypt of password ($2b$, cost 5: quick, and
// still what the registry's Go bcrypt reads).
func bcryptHash(password string) (string, error) {
	salt, err := randomHex(11) // 22 characters of the bcrypt alphabet ([0-9a-f] is in it)
	if err != nil {
		return "", err
	}
	out, err := exec.Command("perl", "-e", `print crypt($ARGV[0], $ARGV[1])`, password, "$2b$05$"+salt).Output()
	if err != nil {
		return "", fmt.Errorf("perl crypt: %w", err)
	}
	hash := strings.TrimSpace(string(out))
	if !strings.HasPrefix(hash, "$2b$05$") || len(hash) != 60 {
		return "", fmt.Errorf("this libcrypt has no bcrypt: crypt returned %q", hash)
	}
	return hash, nil
}

// startHtpasswdOnFreePort is startOnFreePort with the auth section.
func startHtpasswdOnFreePort(t testing.TB, dir, htpasswd string) (*Registry, error) {
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
	text := registryConfig(r.Addr, r.StorageDir, id) + fmt.Sprintf(`auth:
  htpasswd:
    realm: registrytest
    path: %s
`, htpasswd)
	if err := os.WriteFile(config, []byte(text), 0o644); err != nil {
		return nil, err
	}
	logFile, err := os.Create(r.logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command("docker-registry", "serve", config)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start docker-registry: %w", err)
	}
	r.pid = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := waitChallenge(r.Addr, exited); err != nil {
		_ = stopProcess(cmd.Process, exited)
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

// waitChallenge polls GET /v2/ until the registry answers 401 with its
// basic challenge (realm "registrytest": ours, not a program that took the
// port first), it exits, or startTimeout passes.
func waitChallenge(addr string, exited <-chan error) error {
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
			if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == `Basic realm="registrytest"` {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("docker-registry did not ask for basic authentication at http://%s/v2/ within %v", addr, startTimeout)
}
