package main

// The last step of every stage: find the command inside the new root and
// become it, with an environment of its own.

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// defaultPath is the PATH docker gives a container: the host's PATH names
// the host's directories, not the container's.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// execCommand replaces this process with the command (execve(2)). It
// returns only by failing, with a shell's status: 127 when the command is
// not found, 126 when it cannot be executed.
func execCommand(rootfs string, command []string) {
	env := commandEnv()
	os.Setenv("PATH", defaultPath) // LookPath searches the container's PATH
	path, err := exec.LookPath(command[0])
	if errors.Is(err, fs.ErrPermission) {
		// Found, but access(2) says not executable: 126, as in a shell.
		fail(126, "%s: permission denied (is it executable?)", command[0])
	}
	if err != nil {
		fail(127, "%s: command not found in %s", command[0], rootfs)
	}
	narrate("exec %s", strings.Join(command, " "))
	err = unix.Exec(path, command, env)
	fail(126, "exec %s: %v", command[0], err)
}

// commandEnv is the command's whole environment, as docker sets it: the
// default PATH, the hostname, root's home and the terminal type. Nothing
// else of the host's (USER, SUDO_*, MINIBOX_*…) describes the container.
func commandEnv() []string {
	hostname, _ := os.Hostname() // uname(2): the container's own from stage 02 on
	env := []string{"PATH=" + defaultPath, "HOSTNAME=" + hostname, "HOME=/root"}
	if term, ok := os.LookupEnv("TERM"); ok {
		env = append(env, "TERM="+term)
	}
	return env
}
