package lesson

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"
)

// ProgressPathHelp says, for --help, where progress is kept.
const ProgressPathHelp = `Progress is kept in $MINIBOX_STATE if set, else
$XDG_STATE_HOME/minibox/progress.json, else ~/.local/state/minibox/progress.json
(under sudo: the invoking user's home, so that progress is the student's).`

// Progress records which lessons a user has finished.
type Progress struct {
	path     string
	Finished map[string]time.Time `json:"finished"` // lesson number → when
}

// ProgressPath returns where progress is kept (see ProgressPathHelp).
func ProgressPath(getenv func(string) string) string {
	if p := getenv("MINIBOX_STATE"); p != "" {
		return p
	}
	if d := getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "minibox", "progress.json")
	}
	home := getenv("HOME")
	if sudoHome := invokingUserHome(getenv); sudoHome != "" {
		home = sudoHome
	}
	return filepath.Join(home, ".local", "state", "minibox", "progress.json")
}

// invokingUserHome is the home of the user who ran sudo (os/user looks
// them up through /etc/passwd or the system's directory service).
func invokingUserHome(getenv func(string) string) string {
	uid := getenv("SUDO_UID")
	if uid == "" || uid == "0" {
		return ""
	}
	u, err := user.LookupId(uid)
	if err != nil {
		return ""
	}
	return u.HomeDir
}

// LoadProgress reads the progress file; a missing file is no progress yet.
func LoadProgress(path string) (*Progress, error) {
	p := &Progress{path: path, Finished: map[string]time.Time{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read progress: %w", err)
	}
	if err := json.Unmarshal(data, p); err != nil {
		return nil, fmt.Errorf("read progress %s: %w (delete the file to start over)", path, err)
	}
	if p.Finished == nil {
		p.Finished = map[string]time.Time{}
	}
	return p, nil
}

// IsFinished reports whether lesson n is done.
func (p *Progress) IsFinished(n int) bool {
	_, ok := p.Finished[strconv.Itoa(n)]
	return ok
}

// MarkFinished records lesson n as done and saves. Under sudo, every
// directory and file it creates is given back to the invoking user, whose
// progress it is.
func (p *Progress) MarkFinished(n int, getenv func(string) string) error {
	p.Finished[strconv.Itoa(n)] = time.Now().UTC().Truncate(time.Second)
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	owner := func(string) {}
	uid, errU := strconv.Atoi(getenv("SUDO_UID"))
	gid, errG := strconv.Atoi(getenv("SUDO_GID"))
	if errU == nil && errG == nil && uid != 0 {
		owner = func(path string) { _ = os.Chown(path, uid, gid) }
	}
	if err := mkdirAllOwned(filepath.Dir(p.path), owner); err != nil {
		return fmt.Errorf("save progress: %w", err)
	}
	// Write a temporary file and rename it: a crash never leaves half a file.
	tmp := p.path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("save progress: %w", err)
	}
	owner(tmp)
	if err := os.Rename(tmp, p.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save progress: %w", err)
	}
	return nil
}

// mkdirAllOwned is os.MkdirAll that also hands each directory it creates
// to owner (so sudo does not leave ~/.local owned by root).
func mkdirAllOwned(dir string, owner func(string)) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := mkdirAllOwned(parent, owner); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	owner(dir)
	return nil
}
