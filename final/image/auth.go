package image

// Credentials live where docker keeps them, in docker's format, so that a
// `docker login` and a `minibox login` see each other's:
//
//	$DOCKER_CONFIG/config.json, else $HOME/.docker/config.json
//	{"auths": {"127.0.0.1:5000": {"auth": "base64(user:password)"}}, …}
//
// (REGISTRY_AUTH_FILE, podman's auth.json in the same format, wins when
// set.) The file is the user's alone (0600, its directory 0700) and is
// replaced by rename: a crash leaves the old file or the new one. Keys
// minibox does not know (credsStore, proxies, …) are kept as they were.
// Credential helpers (credsStore, credHelpers) are not run: minibox reads
// only the auths the file holds.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Credentials are a user name and password for one registry.
type Credentials struct {
	Username string
	Password string
}

// dockerHubKey is the key docker gives Docker Hub in config.json.
const dockerHubKey = "https://index.docker.io/v1/"

// ConfigPath is the credentials file: $REGISTRY_AUTH_FILE (podman's),
// else $DOCKER_CONFIG/config.json, else $HOME/.docker/config.json. Under
// sudo, HOME is root's: root's credentials, as docker's own client.
func ConfigPath() (string, error) {
	if f := os.Getenv("REGISTRY_AUTH_FILE"); f != "" {
		return f, nil
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("credentials: %w (set DOCKER_CONFIG)", err)
	}
	return filepath.Join(home, ".docker", "config.json"), nil
}

// RegistryKey is the key of a registry in config.json: host[:port], or
// docker's https://index.docker.io/v1/ for Docker Hub.
func RegistryKey(registry string) string {
	host := normalizeHost(registry)
	if host == dockerHub {
		return dockerHubKey
	}
	return host
}

// normalizeHost strips what docker strips from a key: a scheme, a path,
// and Docker Hub's other names.
func normalizeHost(s string) string {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://")
	s, _, _ = strings.Cut(s, "/")
	switch s {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com", dockerHub:
		return dockerHub
	}
	return s
}

// configFile is config.json: auths parsed, every other key kept raw.
type configFile struct {
	path  string
	other map[string]json.RawMessage
	auths map[string]json.RawMessage
}

// authEntry is one registry's entry (docker may add identitytoken and
// others: an entry minibox rewrites keeps only these).
type authEntry struct {
	Auth     string `json:"auth,omitempty"`
	Username string `json:"username,omitempty"` // podman and old docker write these too
	Password string `json:"password,omitempty"`
}

// readConfig reads the credentials file; a missing one is empty.
func readConfig() (*configFile, error) {
	path, err := ConfigPath()
	if err != nil {
		return nil, err
	}
	cf := &configFile{path: path, other: map[string]json.RawMessage{}, auths: map[string]json.RawMessage{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cf, nil
	}
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return cf, nil
	}
	if err := json.Unmarshal(data, &cf.other); err != nil {
		return nil, fmt.Errorf("credentials %s: %w", path, err)
	}
	if raw, ok := cf.other["auths"]; ok {
		if err := json.Unmarshal(raw, &cf.auths); err != nil {
			return nil, fmt.Errorf("credentials %s: auths: %w", path, err)
		}
		if cf.auths == nil {
			cf.auths = map[string]json.RawMessage{}
		}
	}
	return cf, nil
}

// find returns the entry for registry, whichever way the key is written.
func (cf *configFile) find(registry string) (string, *Credentials, error) {
	want := normalizeHost(registry)
	for key, raw := range cf.auths {
		if normalizeHost(key) != want {
			continue
		}
		var e authEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			return key, nil, fmt.Errorf("credentials %s: %s: %w", cf.path, key, err)
		}
		if e.Auth == "" && e.Username != "" {
			return key, &Credentials{Username: e.Username, Password: e.Password}, nil
		}
		if e.Auth == "" {
			return key, nil, nil // an entry with an identity token only: not read
		}
		plain, err := base64.StdEncoding.DecodeString(e.Auth)
		if err != nil {
			return key, nil, fmt.Errorf("credentials %s: %s: auth is not base64: %w", cf.path, key, err)
		}
		user, pass, ok := strings.Cut(string(plain), ":")
		if !ok {
			return key, nil, fmt.Errorf("credentials %s: %s: auth is not user:password", cf.path, key)
		}
		return key, &Credentials{Username: user, Password: pass}, nil
	}
	return "", nil, nil
}

// write replaces the file: its directory made 0700, the file 0600,
// written to a temporary file beside it and renamed.
func (cf *configFile) write() error {
	auths, err := json.Marshal(cf.auths)
	if err != nil {
		return err
	}
	cf.other["auths"] = auths
	data, err := json.MarshalIndent(cf.other, "", "\t")
	if err != nil {
		return err
	}
	// As docker does: a config.json that is a symlink (dotfiles) is
	// written where it points, and keeps its owner and mode (sudo -E
	// keeps the user's HOME: their own file must stay theirs).
	path := cf.path
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-config")
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	_, err = tmp.Write(append(data, '\n'))
	if err == nil {
		err = tmp.Chmod(0o600) // CreateTemp's mode already; said for the reader
	}
	if old, statErr := os.Stat(path); err == nil && statErr == nil {
		if st, ok := old.Sys().(*syscall.Stat_t); ok {
			err = tmp.Chown(int(st.Uid), int(st.Gid))
		}
		if err == nil {
			err = tmp.Chmod(old.Mode().Perm() & 0o600) // never wider than 0600: it holds passwords
		}
	}
	if err == nil {
		err = tmp.Sync()
	}
	if err2 := tmp.Close(); err == nil {
		err = err2
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("credentials %s: %w", path, err)
	}
	return nil
}

// storedCredentials are registry's stored credentials for a pull or a
// push; a credentials file that cannot be read is a warning, as in
// docker, and the registry is asked without them (a public image still
// comes).
func storedCredentials(registry string) *Credentials {
	creds, err := LookupCredentials(registry)
	if err != nil {
		fmt.Fprintf(os.Stderr, "WARNING: %v: going on without stored credentials\n", err)
		return nil
	}
	return creds
}

// LookupCredentials returns the stored credentials for registry, nil if
// there are none.
func LookupCredentials(registry string) (*Credentials, error) {
	cf, err := readConfig()
	if err != nil {
		return nil, err
	}
	_, creds, err := cf.find(registry)
	return creds, err
}

// SaveCredentials stores creds for registry, replacing what was there.
func SaveCredentials(registry string, creds Credentials) error {
	cf, err := readConfig()
	if err != nil {
		return err
	}
	if key, _, _ := cf.find(registry); key != "" {
		delete(cf.auths, key)
	}
	entry, err := json.Marshal(authEntry{Auth: base64.StdEncoding.EncodeToString([]byte(creds.Username + ":" + creds.Password))})
	if err != nil {
		return err
	}
	cf.auths[RegistryKey(registry)] = entry
	return cf.write()
}

// RemoveCredentials forgets registry's credentials; false if there were
// none.
func RemoveCredentials(registry string) (bool, error) {
	cf, err := readConfig()
	if err != nil {
		return false, err
	}
	key, _, _ := cf.find(registry)
	if key == "" {
		return false, nil
	}
	delete(cf.auths, key)
	return true, cf.write()
}

// LoginOptions say how to reach the registry.
type LoginOptions struct {
	Insecure  bool              // plain HTTP or any certificate for a registry not on this machine
	transport http.RoundTripper // tests replace the network
}

// Login checks creds against registry, as docker login does: GET /v2/
// with them (basic authentication), or a token asked for with them
// (bearer). It stores nothing: SaveCredentials does, once this passed.
func Login(ctx context.Context, registry string, creds Credentials, o LoginOptions) error {
	host := normalizeHost(registry)
	c := newClient(Reference{Registry: host}, o.Insecure, o.transport)
	c.creds = &creds
	c.scopes = nil // no repository: only the credentials are proven
	resp, err := c.send(ctx, c.base+"/v2/", nil)
	if err != nil && c.insecure && strings.HasPrefix(c.base, "https://") && !errors.Is(err, context.Canceled) {
		c.base = "http://" + strings.TrimPrefix(c.base, "https://")
		resp, err = c.send(ctx, c.base+"/v2/", nil)
	}
	if err != nil {
		return fmt.Errorf("login %s: %w", host, err)
	}
	challenge := resp.Header.Get("WWW-Authenticate")
	drain(resp)
	if resp.StatusCode == http.StatusOK {
		return nil // a registry that asks nothing: docker logs in too
	}
	if resp.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("login %s: GET /v2/: %s", host, resp.Status)
	}
	scheme, params := parseChallenge(challenge)
	switch {
	case strings.EqualFold(scheme, "basic"):
		c.basic = true
		resp, err := c.send(ctx, c.base+"/v2/", nil)
		if err != nil {
			return fmt.Errorf("login %s: %w", host, err)
		}
		drain(resp)
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return fmt.Errorf("login %s: %w: incorrect username or password", host, ErrUnauthorized)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("login %s: GET /v2/: %s", host, resp.Status)
		}
		return nil
	case strings.EqualFold(scheme, "bearer") && params["realm"] != "":
		if _, err := c.fetchToken(ctx, params, nil); err != nil {
			if errors.Is(err, ErrUnauthorized) {
				return fmt.Errorf("login %s: %w: incorrect username or password", host, ErrUnauthorized)
			}
			return fmt.Errorf("login %s: %w", host, err)
		}
		return nil
	}
	return fmt.Errorf("login %s: the registry asks for %q authentication, which minibox does not speak", host, challenge)
}
