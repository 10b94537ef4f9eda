// Stage 01 — chroot: a new root directory, and why it is not isolation.
//
// This is the first stage: a program that runs a command with a different
// root directory. The parent re-executes itself (/proc/self/exe) as a child;
// the child calls chroot(2) on ROOTFS, changes into "/", and replaces itself
// with the command. Every later stage keeps this shape and adds one
// mechanism. Lesson 1 (`minibox lesson 1`) explains it; `escape` shows that a
// root user can walk out of a chroot.
//
//	sudo go run ./01-chroot run ROOTFS -- CMD [ARGS...]
//	sudo go run ./01-chroot escape HOST-FILE   (run inside the chroot)
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

const usage = `usage:
  stage01 run ROOTFS -- CMD [ARGS...]   run CMD with ROOTFS as its root directory
  stage01 escape HOST-FILE              (inside a chroot) break out and read HOST-FILE`

func main() {
	if len(os.Args) < 2 {
		fail(2, usage)
	}
	switch os.Args[1] {
	case "run":
		os.Exit(run(os.Args[2:]))
	case "child":
		child(os.Args[2:])
	case "escape":
		os.Exit(escape(os.Args[2:]))
	default:
		fail(2, "unknown command %q\n%s", os.Args[1], usage)
	}
}

// run is the parent: it checks the arguments, starts the child and returns
// the command's exit status.
func run(args []string) int {
	if len(args) < 3 || args[1] != "--" {
		fail(2, usage)
	}
	rootfs, command := args[0], args[2:]
	if info, err := os.Stat(rootfs); err != nil || !info.IsDir() {
		fail(1, "rootfs %s: not a directory (build one with `minibox rootfs`)", rootfs)
	}

	// Re-execute this very program as "child". Later stages add namespace
	// flags here; this stage needs nothing but a second process.
	cmd := exec.Command("/proc/self/exe", append([]string{"child", rootfs}, command...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return exitStatus(err)
	}
	return 0
}

// child runs in the new process: it changes its root directory and becomes
// the command.
func child(args []string) {
	if len(args) < 2 {
		fail(2, usage) // only run itself calls child, with both
	}
	rootfs, command := args[0], args[1:]

	// chroot ROOTFS — from now on "/" means ROOTFS for this process (chroot(2)).
	must(unix.Chroot(rootfs), "chroot %s", rootfs)
	// cd / — chroot does not move the current directory; without this the
	// process would still stand in the host's tree.
	must(unix.Chdir("/"), "chdir /")

	path, err := exec.LookPath(command[0])
	if errors.Is(err, fs.ErrPermission) {
		// Found, but access(2) says not executable: 126, as in a shell.
		fail(126, "%s: permission denied (is it executable?)", command[0])
	}
	if err != nil {
		fail(127, "%s: command not found in %s", command[0], rootfs)
	}
	// exec CMD — the child process becomes the command (execve(2)).
	err = unix.Exec(path, command, os.Environ())
	fail(126, "exec %s: %v", command[0], err)
}

// escape breaks out of a chroot, as root, the classic way: chroot into a
// subdirectory (so the current directory is now *outside* the root), walk up
// with chdir("..") past where the old root was, and chroot(".") at the top.
// It proves the escape by printing a file that exists only on the host.
// It returns its exit status, so that its deferred clean-up always runs.
func escape(args []string) int {
	if len(args) != 1 {
		fail(2, usage)
	}
	hostFile := args[0]
	if _, err := os.Stat(hostFile); err == nil {
		fmt.Printf("note: %s is already visible; not inside a chroot?\n", hostFile)
	}

	// Keep a handle on the chroot's own "/" so the helper directory can be
	// removed afterwards: once out, "/.escape" would name a host path.
	oldRoot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		return escapeFailed("open /: %v", err)
	}
	defer unix.Unlinkat(oldRoot, ".escape", unix.AT_REMOVEDIR)

	// mkdir /.escape && chroot /.escape — the root moves down, cwd stays up.
	_ = os.Mkdir("/.escape", 0o700)
	if err := unix.Chroot("/.escape"); err != nil {
		return escapeFailed("chroot /.escape: %v", err)
	}

	// cd .. (many times) — the kernel stops ".." only at the process's
	// root, and our cwd is no longer beneath it, so we climb to the real /.
	for i := 0; i < 256; i++ {
		if err := unix.Chdir(".."); err != nil {
			return escapeFailed("chdir ..: %v", err)
		}
	}
	// chroot . — make the host's real / our root again.
	if err := unix.Chroot("."); err != nil {
		return escapeFailed("chroot .: %v", err)
	}

	secret, err := os.ReadFile(hostFile)
	if err != nil {
		return escapeFailed("cannot read %s: %v", hostFile, err)
	}
	fmt.Printf("escaped! %s on the host says: %s", hostFile, secret)
	return 0
}

func escapeFailed(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "escape failed: "+format+"\n", args...)
	return 1
}

// exitStatus turns the child's end into a shell-style exit status:
// its exit code, or 128+N when signal N killed it.
func exitStatus(err error) int {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		fmt.Fprintln(os.Stderr, "stage01:", err)
		return 1
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return exit.ExitCode()
}

func must(err error, format string, args ...any) {
	if err != nil {
		fail(1, "%s: %v", fmt.Sprintf(format, args...), err)
	}
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "stage01: "+format+"\n", args...)
	os.Exit(code)
}
