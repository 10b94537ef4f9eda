package image

// An image's users: USER, `run -u`, `exec -u` and COPY --chown name them
// by number or by name, and names are looked up in the image's own
// /etc/passwd and /etc/group, read inside its root (openat2(2)
// RESOLVE_IN_ROOT, magic links refused): an image's symlink cannot make
// host root read the host's files.

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// User is what USER[:GROUP] names in an image.
type User struct {
	UID, GID int
	Home     string // from the passwd entry; "" without one
}

// LookupUser resolves USER[:GROUP] in the image whose root directory is
// root, as docker does: a name or a number; the group of the user's
// passwd entry unless GROUP is given (with chown, docker's --chown rule:
// the user's own number). A passwd or group entry that names the user but
// is malformed is an error, never root.
func LookupUser(root *os.File, spec string, chown bool) (User, error) {
	name, group, hasGroup := strings.Cut(spec, ":")
	var u User
	uid, ok := number(name)
	u.UID = uid
	for _, f := range colonFile(root, "/etc/passwd") {
		if len(f) < 3 || (f[0] != name && f[2] != name) {
			continue
		}
		id, err1 := strconv.Atoi(f[2])
		gid, err2 := -1, fmt.Errorf("short entry")
		if len(f) >= 7 {
			gid, err2 = strconv.Atoi(f[3])
			u.Home = f[5]
		}
		if ok = err1 == nil && err2 == nil && id >= 0 && gid >= 0; ok {
			u.UID, u.GID = id, gid
		}
		break
	}
	if !ok {
		return User{}, fmt.Errorf("user %s: not a number, and no valid entry in the image's /etc/passwd", name)
	}
	if chown && !hasGroup {
		u.GID = u.UID
	}
	if hasGroup {
		gid, ok := number(group)
		for _, f := range colonFile(root, "/etc/group") {
			if len(f) < 3 || (f[0] != group && f[2] != group) {
				continue
			}
			id, err := strconv.Atoi(f[2])
			if ok = err == nil && id >= 0; ok {
				gid = id
			}
			break
		}
		if !ok {
			return User{}, fmt.Errorf("group %s: not a number, and no valid entry in the image's /etc/group", group)
		}
		u.GID = gid
	}
	return u, nil
}

// number is s as a user or group id, if it is one.
func number(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0
}

// colonFile reads a colon-separated file of the image; nil if missing.
func colonFile(root *os.File, file string) [][]string {
	fd, err := unix.Openat2(int(root.Fd()), strings.TrimPrefix(file, "/"), &unix.OpenHow{
		Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), file)
	defer f.Close()
	var out [][]string
	for lines := bufio.NewScanner(f); lines.Scan(); {
		out = append(out, strings.Split(lines.Text(), ":"))
	}
	return out
}
