package main

// Signals: Ctrl-C must end the container, not only the stage.

import (
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

// catchSignals has Ctrl-C (SIGINT), SIGTERM and SIGHUP delivered on a
// channel instead of ending this process (signal(7)). Were they to end it,
// the container would live on: its PID 1 ignores every signal it has no
// handler for. So we stay alive and kill it (killOnSignal). A signal we
// were started ignoring (by nohup, or as a background job of a script)
// stays ignored.
func catchSignals() chan os.Signal {
	sigs := make(chan os.Signal, 1)
	for _, sig := range []os.Signal{unix.SIGINT, unix.SIGTERM, unix.SIGHUP} {
		if !signal.Ignored(sig) {
			signal.Notify(sigs, sig)
		}
	}
	return sigs
}

// killOnSignal waits for one of those signals and kills the container:
// SIGKILL to its PID 1, the one signal that PID 1 cannot ignore when it
// comes from outside its namespace. When PID 1 dies, the kernel kills
// every other process of its PID namespace. The stage then exits with
// 128+9 = 137, as a shell reports a command killed by SIGKILL: the
// container was killed. (Ctrl-C in an interactive shell inside does not
// come here: that shell takes the terminal for itself.)
func killOnSignal(sigs <-chan os.Signal, p *os.Process) {
	sig := <-sigs
	narrate("kill -KILL %d   # on %v", p.Pid, sig)
	_ = p.Kill()
}
