package main

// Starting the child in new namespaces, and the child's proof that they
// are new before it changes anything.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// namespaceKinds names each kind by its clone(2) flag, its entry in
// /proc/PID/ns and its unshare(1) option.
var namespaceKinds = []struct {
	flag       uintptr
	clone, ns  string
	unshareOpt string
}{
	{unix.CLONE_NEWUSER, "CLONE_NEWUSER", "user", "--user"},
	{unix.CLONE_NEWUTS, "CLONE_NEWUTS", "uts", "--uts"},
	{unix.CLONE_NEWPID, "CLONE_NEWPID", "pid", "--pid"},
	{unix.CLONE_NEWNS, "CLONE_NEWNS", "mnt", "--mount"},
	{unix.CLONE_NEWIPC, "CLONE_NEWIPC", "ipc", "--ipc"},
	{unix.CLONE_NEWNET, "CLONE_NEWNET", "net", "--net"},
}

// mustBeNew are the namespaces the child must own before it touches
// anything. The list is kept apart from the clone flags on purpose: if a
// flag goes missing from main.go, its namespace is still checked, and the
// child refuses instead of renaming, remounting or re-routing the host.
var mustBeNew = []string{"uts", "pid", "mnt", "ipc", "net"}

// parentNSEnv carries the parent's namespace ids to the child, e.g.
// "uts:[4026531838] pid:[4026531836] …".
const parentNSEnv = "MINIBOX_PARENT_NS"

// passNamespaces gives the child our own namespace ids to compare with.
// They come from the parent, not from /proc/1: root may not read PID 1's
// (some hosts forbid it), and the stage may run in a container already.
func passNamespaces(cmd *exec.Cmd, userns bool) {
	names := mustBeNew
	if userns {
		names = append(names[:len(names):len(names)], "user")
	}
	var ids []string
	for _, ns := range names {
		// readlink /proc/self/ns/uts; one we cannot read is left out, and
		// the child, with nothing to compare, refuses.
		if id, err := os.Readlink("/proc/self/ns/" + ns); err == nil {
			ids = append(ids, id)
		}
	}
	var env []string
	for _, kv := range os.Environ() {
		// Our variables for the child are the ones we set now, never stale
		// ones from the caller's environment (-v's MINIBOX_TRACE aside).
		if !strings.HasPrefix(kv, "MINIBOX_") || strings.HasPrefix(kv, traceEnv+"=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, parentNSEnv+"="+strings.Join(ids, " "))
}

// checkNamespaces is the child's first step: every namespace it must own
// differs from the parent's, or it refuses, having changed nothing.
func checkNamespaces() {
	parent := map[string]string{}
	for _, id := range strings.Fields(os.Getenv(parentNSEnv)) {
		name, _, _ := strings.Cut(id, ":")
		parent[name] = id
	}
	check := mustBeNew
	if _, ok := parent["user"]; ok {
		check = append(check[:len(check):len(check)], "user")
	}
	for _, ns := range check {
		mine, err := os.Readlink("/proc/self/ns/" + ns)
		switch {
		case parent[ns] == "":
			fail(1, "not in a new %s namespace: the parent passed no id to compare with (could it not read its own? `%s child` run by hand?); refusing to change anything", ns, stage)
		case err != nil:
			fail(1, "not in a new %s namespace: cannot read /proc/self/ns/%s: %v; refusing to change anything", ns, ns, err)
		case mine == parent[ns]:
			fail(1, "not in a new %s namespace: %s is the parent's own (is %s missing from the clone flags in main.go?); refusing to change the host's", ns, mine, cloneName(ns))
		}
	}
}

// startChild starts the child: clone(2) with the namespace flags, then
// execve of /proc/self/exe. If the kernel refuses, it finds out which flag.
func startChild(cmd *exec.Cmd) error {
	flags := cmd.SysProcAttr.Cloneflags
	if cmd.SysProcAttr.UidMappings != nil && flags&unix.CLONE_NEWUSER == 0 {
		// Go would wait forever for a namespace that never comes.
		return errors.New("uid maps but no user namespace: is CLONE_NEWUSER missing from userns.go?")
	}
	var opts []string
	for _, k := range namespaceKinds {
		if flags&k.flag != 0 {
			opts = append(opts, k.unshareOpt)
		}
	}
	narrate("unshare %s --fork /proc/self/exe child   # clone(2)", strings.Join(opts, " "))
	if flags&unix.CLONE_NEWUSER != 0 {
		narrateIDMaps() // userns.go
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the child in new namespaces: %v%s", err, refusedFlags(flags))
	}
	return nil
}

// refusedFlags tries each namespace flag alone (a child that exits at
// once) and names those the kernel refuses, with the usual causes.
func refusedFlags(flags uintptr) string {
	var refused []string
	for _, k := range namespaceKinds {
		if flags&k.flag == 0 {
			continue
		}
		probe := exec.Command("/proc/self/exe", "probe") // unknown: exits 2 at once
		probe.SysProcAttr = &syscall.SysProcAttr{Cloneflags: k.flag}
		if err := probe.Start(); err != nil {
			refused = append(refused, k.clone)
			continue
		}
		_ = probe.Wait()
	}
	if len(refused) == 0 {
		return "\n(minibox doctor checks what this machine allows)"
	}
	return fmt.Sprintf("\nthe kernel refuses %s: user namespaces may be restricted, or this runs inside a container without the privilege; minibox doctor says which and how to fix it",
		strings.Join(refused, ", "))
}

func cloneName(ns string) string {
	for _, k := range namespaceKinds {
		if k.ns == ns {
			return k.clone
		}
	}
	return ns
}
