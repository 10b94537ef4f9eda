package stages

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// account is the user who ran sudo: who the stage programs are built as.
type account struct {
	uid, gid int
	groups   []uint32 // supplementary groups, from the user database
	name     string
	home     string
}

// asInvokingUser returns the user to build as when this process is root
// under sudo ($SUDO_UID, $SUDO_GID), and nil otherwise. It also returns nil,
// with the reason, when building as that user cannot work: the account is
// not in the user database (then its home and groups are unknown), or the
// user cannot read the source tree (a test's copy in root's temporary
// directory). Building as root is what minibox always did; it only needs
// root's module cache to be warm.
func asInvokingUser(src string) (a *account, whyNot string) {
	if os.Geteuid() != 0 {
		return nil, ""
	}
	uidText, gidText := os.Getenv("SUDO_UID"), os.Getenv("SUDO_GID")
	if uidText == "" || uidText == "0" {
		return nil, ""
	}
	uid, errU := strconv.Atoi(uidText)
	gid, errG := strconv.Atoi(gidText)
	if errU != nil || errG != nil || uid < 0 || gid < 0 {
		return nil, fmt.Sprintf("SUDO_UID=%q SUDO_GID=%q are not numeric ids", uidText, gidText)
	}
	a, err := lookupAccount(uid, gid)
	if err != nil {
		return nil, err.Error()
	}
	if path, ok := a.canRead(src); !ok {
		return nil, fmt.Sprintf("%s cannot read %s", a.name, path)
	}
	return a, ""
}

// lookupAccount finds the user's name, home and groups through the
// system's user database (NSS: getent, id), as sudo and
// scripts/as-invoking-user.sh do. A Go program built without cgo reads
// only /etc/passwd, and a lab's directory-service accounts are not there.
func lookupAccount(uid, gid int) (*account, error) {
	out, err := exec.Command("getent", "passwd", strconv.Itoa(uid)).Output()
	fields := strings.Split(strings.TrimSpace(string(out)), ":")
	if err != nil || len(fields) < 7 {
		return nil, fmt.Errorf("SUDO_UID %d is not in the user database (getent passwd %d: %v)", uid, uid, err)
	}
	a := &account{uid: uid, gid: gid, name: fields[0], home: fields[5]}
	out, err = exec.Command("id", "-G", a.name).Output() // every group, as initgroups(3) sees them
	if err != nil {
		return nil, fmt.Errorf("look up the groups of %s (id -G): %v", a.name, err)
	}
	for _, id := range strings.Fields(string(out)) {
		if g, err := strconv.ParseUint(id, 10, 32); err == nil {
			a.groups = append(a.groups, uint32(g))
		}
	}
	return a, nil
}

// credential is the identity go build runs with.
func (a *account) credential() *syscall.Credential {
	return &syscall.Credential{Uid: uint32(a.uid), Gid: uint32(a.gid), Groups: a.groups}
}

// env is base with the user's identity: HOME, USER and LOGNAME are the
// user's. The go command derives GOPATH, GOMODCACHE and GOCACHE from HOME
// and reads GOPROXY, GOFLAGS, GOTOOLCHAIN… from the user's go env file
// (under HOME/.config), exactly as when the user runs go. Go variables set
// explicitly in base are kept: they were passed on purpose
// (sudo GOPROXY=off minibox …, or sudo -E).
func (a *account) env(base []string) []string {
	out := make([]string, 0, len(base)+3)
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "HOME", "USER", "LOGNAME":
			continue
		}
		out = append(out, kv)
	}
	return append(out, "HOME="+a.home, "USER="+a.name, "LOGNAME="+a.name)
}

// canRead reports whether the user can list path and search every
// directory above it, by the permission bits (ACLs are not consulted);
// when not, it names the first directory in the way.
func (a *account) canRead(path string) (string, bool) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return path, false
	}
	for dir := abs; ; dir = filepath.Dir(dir) {
		need := os.FileMode(0o1) // search
		if dir == abs {
			need = 0o5 // read and search
		}
		if !a.allowed(dir, need) {
			return dir, false
		}
		if dir == filepath.Dir(dir) {
			return "", true
		}
	}
}

// allowed reports whether the user has the permission bits need (others'
// position: 4 read, 2 write, 1 search) on path.
func (a *account) allowed(path string, need os.FileMode) bool {
	info, err := os.Stat(path)
	if err != nil {
		return false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	perm := info.Mode().Perm()
	switch {
	case int(st.Uid) == a.uid:
		return perm>>6&need == need
	case a.inGroup(st.Gid):
		return perm>>3&need == need
	default:
		return perm&need == need
	}
}

func (a *account) inGroup(gid uint32) bool {
	if int(gid) == a.gid {
		return true
	}
	for _, g := range a.groups {
		if g == gid {
			return true
		}
	}
	return false
}
