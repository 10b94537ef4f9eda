package main

// The last step of every stage: find the command inside the new root and
// become it, with an environment of its own (and from stage 06 on, the
// image's environment, working directory and user).

import (
	"bufio"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// defaultPath is the PATH docker gives a container: the host's PATH names
// the host's directories, not the container's.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// execCommand replaces this process with the command (execve(2)). It
// returns only by failing, with a shell's status: 127 when the command is
// not found, 126 when it cannot be executed.
func execCommand(rootfs string, command []string) {
	var p process // the image's, -e's, -w's and -u's (image.go)
	if err := json.Unmarshal([]byte(os.Getenv(processEnv)), &p); err != nil {
		fail(1, "no process from the parent: start me with `%s run`", stage)
	}
	env := commandEnv(p.Env)
	if p.Dir != "" { // docker makes a missing WORKDIR
		must(os.MkdirAll(p.Dir, 0o755), "mkdir -p %s", p.Dir)
		must(os.Chdir(p.Dir), "cd %s", p.Dir)
	}
	if p.User != "" {
		env = switchUser(p.User, env, lookupEnv(p.Env, "HOME") == "")
	}
	os.Setenv("PATH", lookupEnv(env, "PATH")) // LookPath searches the container's PATH
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
// default PATH, the hostname, root's home and the terminal type, then the
// image's and -e's variables over them. Nothing else of the host's (USER,
// SUDO_*, MINIBOX_*…) describes the container.
func commandEnv(extra []string) []string {
	hostname, _ := os.Hostname() // uname(2): the container's own from stage 02 on
	env := []string{"PATH=" + defaultPath, "HOSTNAME=" + hostname, "HOME=/root"}
	if term, ok := os.LookupEnv("TERM"); ok {
		env = append(env, "TERM="+term)
	}
	for _, kv := range extra {
		env = setEnv(env, kv)
	}
	return env
}

// setEnv sets K=V in env, replacing an earlier K.
func setEnv(env []string, kv string) []string {
	key, _, _ := strings.Cut(kv, "=")
	for i, old := range env {
		if strings.HasPrefix(old, key+"=") {
			env[i] = kv
			return env
		}
	}
	return append(env, kv)
}

func lookupEnv(env []string, key string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// switchUser becomes USER[:GROUP] (names looked up in the container's own
// /etc/passwd and /etc/group, as docker does) and sets HOME to the user's
// unless setHome is false:
// setgroups(2), setgid(2), setuid(2), in that order, while still root.
func switchUser(spec string, env []string, setHome bool) []string {
	name, group, _ := strings.Cut(spec, ":")
	uid, gid, home, ok := lookupID("/etc/passwd", name)
	if !ok {
		fail(1, "user %s: not a number, and no valid entry in the image's /etc/passwd", name)
	}
	if group != "" {
		if gid, _, _, ok = lookupID("/etc/group", group); !ok {
			fail(1, "group %s: not a number, and no valid entry in the image's /etc/group", group)
		}
	}
	must(syscall.Setgroups([]int{gid}), "setpriv --groups=%d   # setgroups(2)", gid)
	must(syscall.Setgid(gid), "setpriv --regid=%d   # setgid(2)", gid)
	must(syscall.Setuid(uid), "setpriv --reuid=%d   # setuid(2)", uid)
	if !setHome {
		return env // the image's ENV or -e said HOME: it stays
	}
	if home == "" {
		home = "/" // docker's, for a user the image's /etc/passwd lacks
	}
	return setEnv(env, "HOME="+home)
}

// lookupID finds name (or a number) in a passwd or group file: its id,
// its primary group (passwd) and its home. A number needs no entry; its
// group is then 0, as in docker.
func lookupID(file, name string) (id, gid int, home string, ok bool) {
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		id, ok = n, true
	}
	f, err := os.Open(file)
	if err != nil {
		return id, 0, "", ok
	}
	defer f.Close()
	passwd := strings.HasSuffix(file, "passwd")
	for lines := bufio.NewScanner(f); lines.Scan(); {
		fields := strings.Split(lines.Text(), ":") // name:x:uid:gid:gecos:home:shell
		if len(fields) < 3 || (fields[0] != name && fields[2] != name) {
			continue
		}
		// A malformed entry is no entry: never root by a parse error.
		var err1, err2 error
		id, err1 = strconv.Atoi(fields[2])
		if passwd && len(fields) >= 6 {
			gid, err2 = strconv.Atoi(fields[3])
			home = fields[5]
		} else if passwd {
			err2 = errors.New("short entry")
		}
		return id, gid, home, err1 == nil && err2 == nil && id >= 0 && gid >= 0
	}
	return id, 0, "", ok
}
