package runtime

import (
	goruntime "runtime"

	"golang.org/x/sys/unix"
)

// onDisposableThread runs f on an OS thread of its own that is thrown away
// afterwards: f may change what is per thread (namespaces with setns, the
// cgroup of a thread on v1, capabilities, no_new_privs) and fork from it,
// and no other Go code ever runs on that thread again.
//
// Go ends a thread whose goroutine exits while locked, except the main
// thread, which it parks forever instead: the process would keep a main
// thread inside the container. So if the goroutine landed on the main
// thread, it keeps it locked (no one else can use it) and runs f on
// another goroutine, which therefore gets another thread.
func onDisposableThread(f func()) {
	done := make(chan struct{})
	go func() {
		goruntime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			f() // never unlocked: the thread dies with this goroutine
			close(done)
			return
		}
		inner := make(chan struct{})
		go func() {
			goruntime.LockOSThread()
			f()
			close(inner)
		}()
		<-inner
		goruntime.UnlockOSThread() // the main thread, untouched
		close(done)
	}()
	<-done
}
