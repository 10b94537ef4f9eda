package build

// USER and --chown name users of the image: numbers, or names looked up
// in the image's /etc/passwd and /etc/group, read inside the image's root
// (openat2 RESOLVE_IN_ROOT: an image's symlink cannot make the builder
// read the host's files).

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lookupUser resolves USER[:GROUP] in the image rooted at root. For
// --chown (chown true) a user without a group gets its own number as the
// group, as docker does; for USER, the group of its passwd entry (else 0).
func lookupUser(root *os.File, spec string, chown bool) (uid, gid int, home string, err error) {
	name, group, hasGroup := strings.Cut(spec, ":")
	passwd := readColon(root, "/etc/passwd")
	uid, ok := -1, false
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		uid, ok = n, true
	}
	gid = 0
	for _, f := range passwd {
		if len(f) < 7 || (f[0] != name && f[2] != name) {
			continue
		}
		u, err1 := strconv.Atoi(f[2])
		g, err2 := strconv.Atoi(f[3])
		if err1 == nil && err2 == nil && u >= 0 && g >= 0 {
			uid, gid, home, ok = u, g, f[5], true
			break
		}
	}
	if !ok {
		return 0, 0, "", fmt.Errorf("user %s: not a number, and no valid entry in the image's /etc/passwd", name)
	}
	if chown && !hasGroup {
		gid = uid // docker's rule for --chown=USER
	}
	if hasGroup {
		g, ok := -1, false
		if n, err := strconv.Atoi(group); err == nil && n >= 0 {
			g, ok = n, true
		}
		for _, f := range readColon(root, "/etc/group") {
			if len(f) >= 3 && (f[0] == group || f[2] == group) {
				if n, err := strconv.Atoi(f[2]); err == nil && n >= 0 {
					g, ok = n, true
					break
				}
			}
		}
		if !ok {
			return 0, 0, "", fmt.Errorf("group %s: not a number, and no valid entry in the image's /etc/group", group)
		}
		gid = g
	}
	return uid, gid, home, nil
}

// readColon reads a colon-separated file of the image; nil if missing.
func readColon(root *os.File, file string) [][]string {
	fd, err := openIn(root, file, unix.O_RDONLY)
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
