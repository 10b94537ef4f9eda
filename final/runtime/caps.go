package runtime

// Capabilities, written with x/sys/unix: a table of names, and the
// per-thread calls that set the five sets before execve.

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// capNames maps config.json's names to capability numbers
// (capabilities(7)).
var capNames = map[string]uintptr{
	"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
	"CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
	"CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
	"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
	"CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
	"CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
	"CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
	"CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
	"CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
	"CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
	"CAP_CHECKPOINT_RESTORE": 40,
}

// capSets are the five sets as bit masks.
type capSets struct {
	bounding, effective, permitted, inheritable, ambient uint64
}

// parseCaps turns the names of one set into a mask; field names the set
// in errors (process.capabilities.bounding).
func parseCaps(field string, names []string) (uint64, error) {
	var m uint64
	for i, n := range names {
		c, ok := capNames[strings.ToUpper(n)]
		if !ok {
			return 0, fmt.Errorf("config.json: %s[%d]: unknown capability %q", field, i, n)
		}
		m |= 1 << c
	}
	return m, nil
}

// lastCap is the highest capability this kernel knows.
func lastCap() uintptr {
	last := uintptr(40)
	for last > 0 {
		if _, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, last, 0, 0, 0); err == nil {
			break
		}
		last--
	}
	return last
}

// dropBounding removes from this thread's bounding set every capability
// not in keep. The bounding set is per thread: the caller must be locked
// to its OS thread and execve (or fork) from it.
func dropBounding(keep uint64) error {
	for c := uintptr(0); c <= lastCap(); c++ {
		if keep&(1<<c) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_CAPBSET_DROP, %d): %w", c, err)
		}
	}
	return nil
}

// capset sets this thread's effective, permitted and inheritable sets,
// within what it has: a capability this process lacks (root here may lack
// CAP_SYS_RESOURCE) cannot be given, and is left out as runc's rootless
// mode does, rather than failing every config that lists it.
func capset(s capSets) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var cur [2]unix.CapUserData
	if err := unix.Capget(&hdr, &cur[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	have := uint64(cur[0].Permitted) | uint64(cur[1].Permitted)<<32
	s.effective &= have
	s.permitted &= have
	data := [2]unix.CapUserData{
		{Effective: uint32(s.effective), Permitted: uint32(s.permitted), Inheritable: uint32(s.inheritable)},
		{Effective: uint32(s.effective >> 32), Permitted: uint32(s.permitted >> 32), Inheritable: uint32(s.inheritable >> 32)},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}

// raiseAmbient raises the ambient capabilities (each must be permitted
// and inheritable already).
func raiseAmbient(mask uint64) error {
	for c := uintptr(0); c < 64; c++ {
		if mask&(1<<c) == 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, c, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_CAP_AMBIENT_RAISE, %d): %w", c, err)
		}
	}
	return nil
}

// ambientList is mask as the numbers Go's SysProcAttr.AmbientCaps wants.
func ambientList(mask uint64) []uintptr {
	var l []uintptr
	for c := uintptr(0); c < 64; c++ {
		if mask&(1<<c) != 0 {
			l = append(l, c)
		}
	}
	return l
}

// setInheritable changes only this thread's inheritable set, keeping the
// effective and permitted sets it has (this process may lack some, such
// as CAP_SYS_RESOURCE, and could not raise them).
func setInheritable(mask uint64) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = uint32(mask), uint32(mask>>32)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}
