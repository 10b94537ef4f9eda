package registrytest

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	auth := fmt.Sprintf("auth:\n  htpasswd:\n    realm: registrytest\n    path: %s\n", htpasswd)
	return start(t, dir, auth, func(addr, _ string, exited <-chan error) error { return waitChallenge(addr, exited) })
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

// waitChallenge polls GET /v2/ until the registry answers 401 with its
// basic challenge (realm "registrytest": ours, not a program that took the
// port first), it exits, or startTimeout passes.
func waitChallenge(addr string, exited <-chan error) error {
	return pollV2(addr, exited, "ask for basic authentication at", func(resp *http.Response) bool {
		return resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == `Basic realm="registrytest"`
	})
}
