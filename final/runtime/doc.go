// Package runtime is minibox's OCI runtime: it takes a runtime-spec bundle
// (config.json and a root file system) and makes the container, as runc
// does. It is the grown-up form of stages 02–05 (namespaces, rootfs,
// cgroups, limits, user namespaces) and never imports the engine.
//
// # API
//
//	r := &runtime.Runtime{Root: "/run/minibox/runtime"}
//	pid, err := r.Create(id, bundle, runtime.IO{...}, consoleSocket, pidFile)
//	err = r.Start(id)             // the process runs
//	st, err := r.State(id)        // creating | created | running | stopped
//	err = r.Kill(id, unix.SIGTERM, all)
//	err = r.Delete(id, force)     // processes, cgroup and state gone
//	proc, err := r.Exec(id, process, io)
//
// A program that embeds the runtime must call Init first thing when IsInit
// is true: Create re-executes the running binary (/proc/self/exe) as
// `minibox runtime init`, the container's init, exactly as runc re-executes
// itself as `runc init` — or rather minibox-init (only the runtime) or
// minibox-shim (the runtime and the engine), small binaries next to it,
// when there is one of the same build (selfexe.go's initBinary), and
// always through a sealed copy that the container cannot write
// (selfexe.go: CVE-2019-5736). Create returns the init's PID; it is the caller's
// child, and the caller may wait for it (unix.Wait4) to learn the exit
// status; Delete reaps it otherwise.
//
// # Create and Start
//
// Create checks config.json (every error names the field: `config.json:
// process.rlimits[0]: RLIMIT_NOFILE hard 1048576 above the inherited hard
// limit 524288`; a field it does not implement, such as linux.seccomp, is
// refused rather than skipped: unimplemented.go), makes the cgroup (linux.cgroupsPath, default
// minibox/<id>; v2 if /sys/fs/cgroup is cgroup2, else v1) with
// linux.resources, and starts the init with clone flags for the new
// namespaces and Go's UidMappings/GidMappings for a user namespace.
// Namespaces joined by path are entered before the fork with setns on a
// locked OS thread that is thrown away afterwards (thread.go). The init
// is in the cgroup before it runs anything of the container's: on v2 it is
// forked into it (clone3 CLONE_INTO_CGROUP); on v1 it gets the groups'
// tasks files and moves its own thread (`echo 0 > tasks`) first thing.
// Neither waits for the lock over all thread groups that writing another
// process's PID into cgroup.procs takes (an RCU grace period, 5-25 ms
// here: cgroups.go, joinAtFork). The parent sends the init the config over
// a socket pair; the init mounts (config.json's mounts, the default devices,
// pivot_root, masked and read-only paths, a read-only root), sets the
// hostname, sysctls and rlimits, makes the terminal if process.terminal
// (opened in the container's devpts, its master sent to the console socket
// with SCM_RIGHTS, as runc does), answers "ready", and blocks opening
// exec.fifo in the state directory for writing. Start opens the fifo for
// reading, which releases the init: it drops the bounding set, changes
// uid/gid/groups keeping its capabilities, sets the effective, permitted
// and inheritable sets, raises ambient capabilities, sets no_new_privs,
// marks every descriptor above stderr close-on-exec (fds.go: none the
// runtime's caller leaked reaches the container, as runc's init closes
// them) and executes process.args. Those steps are per thread in Linux, so the
// init locks its main goroutine to its thread and calls execve from it.
//
// # Exec: a new process in all the container's namespaces
//
// setns(2) moves only the calling thread, and a Go program is
// multi-threaded from its first instruction. Two namespaces care:
//
//   - mount: setns(CLONE_NEWNS) refuses (EINVAL) a thread that shares its
//     fs_struct (root and working directory) with other threads. After
//     unshare(CLONE_FS) the thread has its own, and setns succeeds.
//   - user: setns(CLONE_NEWUSER) refuses any multi-threaded process, and
//     nothing can make a Go process single-threaded.
//
// So Exec runs on a goroutine locked to its OS thread (runtime.LockOSThread)
// and never unlocked, so that Go ends the thread when the goroutine
// returns, instead of running other goroutines in the container's
// namespaces. On that thread it: opens /proc/<init>/ns/{ipc,uts,net,pid,
// mnt,cgroup} (all before the first setns, while /proc is still the
// host's); unshare(CLONE_FS); joins the cgroup (v1: the thread moves
// itself, 0 into each controller's tasks file, and the child inherits it; v2: clone3's
// CLONE_INTO_CGROUP through SysProcAttr.CgroupFD); setns into each
// namespace that differs from ours (pid affects the thread's children
// only, which is what we want); drops the bounding set and sets the
// inheritable set (both per thread); sets no_new_privs; and then forks
// (os.StartProcess) from the thread. The child inherits the thread's
// namespaces, root and cwd, cgroup and capability bounds; Go's child code
// then sets groups, gid, uid, ambient capabilities, the session and the
// controlling terminal, changes to process.cwd and executes. The program
// is looked up inside the container, through /proc/<init>/root.
//
// If that goroutine happens to run on the main thread, Go would park the
// main thread forever instead of ending it: the process would keep its
// main thread inside the container. onDisposableThread detects it (gettid
// == getpid), keeps the main thread locked and idle, and does the work on
// a second goroutine, which then necessarily gets another thread.
//
// The limit: a container with a user namespace cannot be exec'ed into; Exec
// refuses with an error saying why. runc solves it with libcontainer/nsenter:
// C code run as a constructor (__attribute__((constructor))) of the runc
// binary before the Go runtime starts any thread. `runc exec` re-executes
// runc as `runc init`; the constructor reads the namespace paths from a
// netlink message on an inherited pipe, and while the process is still
// single-threaded calls setns for every namespace (user first), clones the
// child into the PID namespace, and only then lets the Go runtime start,
// already inside. minibox avoids cgo (DESIGN.md); other ways would be
// nsenter(1), or asking a process already inside the container to fork.
//
// # Known limits
//
//   - Device control: v1 through the devices controller, v2 through a
//     BPF_PROG_TYPE_CGROUP_DEVICE program written by hand (devices_v2.go).
//   - No seccomp, AppArmor or SELinux; no pause/resume, checkpoint, hooks,
//     or the systemd form of cgroupsPath.
//   - Exec forks the calling binary itself into the container (exec.go):
//     until its execve, /proc/PID/exe of that child is the host's minibox
//     binary. The child is not dumpable (the container cannot open that
//     file or ptrace it without CAP_SYS_PTRACE), but the sealed copy that
//     protects the init (selfexe.go) does not cover it: that would need
//     the exec'd process to start from the sealed shim too, as `runc exec`
//     does (runc init).
//   - Exec applies no rlimits (they are per process and would change the
//     caller's).
package runtime
