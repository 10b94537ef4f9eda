package main

// The user namespace (--userns): root inside is an unprivileged user outside.

import (
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// With --userns, uids and gids 0-65535 inside are 100000-165535 on the host:
// the range /etc/subuid conventionally gives the first user, owned by no
// one on the host. Container root is host uid 100000.
const (
	userNSHostID = 100000
	userNSSize   = 65536
)

// addUserNamespace adds CLONE_NEWUSER (user_namespaces(7)). Before the
// child runs, Go writes its maps (narrateIDMaps shows how, in shell).
//
// The child starts as host root, uid 0 outside, which the map does not
// name (inside it shows as nobody, 65534); Credential makes it switch to
// uid and gid 0 of the namespace, host uid 100000, before it executes. The
// other namespaces, made in the same clone, belong to this user namespace:
// root inside may mount, set the hostname… there, and nowhere else.
func addUserNamespace(cmd *exec.Cmd) {
	attr := cmd.SysProcAttr
	attr.Cloneflags |= unix.CLONE_NEWUSER
	ids := []syscall.SysProcIDMap{{ContainerID: 0, HostID: userNSHostID, Size: userNSSize}}
	attr.UidMappings, attr.GidMappings = ids, ids
	// No setgroups(2) inside: it could drop a group that a file's mode denies.
	attr.GidMappingsEnableSetgroups = false
	attr.Credential = &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true}

	// The child would inherit our supplementary groups (under sudo, group
	// 0: root), and inside the user namespace, where setgroups is denied,
	// container root could not drop them: it could read the host's files
	// that group root may read. Go applies this to all of its threads, so
	// whichever thread starts the child has no groups.
	must(syscall.Setgroups(nil), "setpriv --clear-groups   # setgroups(2) with no groups, for the child")
}

// narrateIDMaps shows what Go writes for the child between clone and exec.
func narrateIDMaps() {
	narrate("echo deny > /proc/CHILD/setgroups")
	narrate("echo 0 %d %d > /proc/CHILD/uid_map", userNSHostID, userNSSize)
	narrate("echo 0 %d %d > /proc/CHILD/gid_map", userNSHostID, userNSSize)
}
