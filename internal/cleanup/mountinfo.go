package cleanup

import (
	"strconv"
	"strings"
)

// Mount is one line of a mountinfo file (proc(5)), with the fields minibox
// reads, escapes decoded. In
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// Point is /mnt2, Optional [master:1], FSType ext3, Source /dev/root and
// SuperOptions [rw errors=continue].
type Mount struct {
	Point  string // where it is mounted
	FSType string // ext4, tmpfs, cgroup, cgroup2, overlay…
	Source string // /dev/sda2, tmpfs, minibox-test…
	// Optional are the optional fields before the " - " separator:
	// shared:N, master:N, propagate_from:N, unbindable; none for a private
	// mount.
	Optional []string
	// SuperOptions are the file system's options, one per element: a v1
	// cgroup's name its controllers ("rw", "memory").
	SuperOptions []string
}

// ParseMountinfo reads a mountinfo file (proc(5)); lines it cannot read
// are skipped. It is the one mountinfo parser outside the stages: cleanup,
// doctor and the tests all use it.
func ParseMountinfo(text string) []Mount {
	var out []Mount
	for _, line := range strings.Split(text, "\n") {
		if m, ok := parseMountinfoLine(line); ok {
			out = append(out, m)
		}
	}
	return out
}

// parseMountinfoLine reads one line: fields 1-6 (ID, parent ID, major:minor,
// root, mount point, mount options), the optional fields, "-", then the
// file system type, the source and the super options. No field holds a
// bare space (the kernel writes \040), so " - " is the separator.
func parseMountinfoLine(line string) (Mount, bool) {
	pre, post, ok := strings.Cut(line, " - ")
	fields, tail := strings.Fields(pre), strings.Fields(post)
	if !ok || len(fields) < 6 || len(tail) < 2 {
		return Mount{}, false
	}
	m := Mount{Point: Unescape(fields[4]), FSType: Unescape(tail[0]), Source: Unescape(tail[1])}
	for _, f := range fields[6:] {
		m.Optional = append(m.Optional, Unescape(f))
	}
	if len(tail) > 2 {
		// Split first: an escaped comma (\054) is part of its option.
		for _, opt := range strings.Split(tail[2], ",") {
			m.SuperOptions = append(m.SuperOptions, Unescape(opt))
		}
	}
	return m, true
}

// Unescape decodes the octal escapes the kernel writes in mountinfo for a
// space (\040), a tab (\011), a newline (\012) and a backslash (\134).
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
