package lessoncmd

import (
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"

	"github.com/minibox-lab/minibox/internal/cli"
)

// pagerCommand is the pager to show long output through, as git chooses
// it: $PAGER, else "less -R". An empty $PAGER or "cat" means none.
func pagerCommand(lookup func(string) (string, bool)) string {
	pager, set := lookup("PAGER")
	if !set {
		return "less -R"
	}
	if pager = strings.TrimSpace(pager); pager == "cat" {
		return ""
	}
	return pager
}

// startPager returns where to write output that may be long, and a function
// to call once it is all written. When out is a terminal and the pager is
// installed, that is the pager's input and the function waits for the
// reader to quit it; otherwise out itself and a no-op: a pipe or a file
// is never paged, and a missing pager means printing directly.
func startPager(out, errOut io.Writer, getenv func(string) string) (io.Writer, func()) {
	none := func() {}
	file, ok := out.(*os.File)
	if !ok || !cli.IsTerminal(file) {
		return out, none
	}
	pager := pagerCommand(os.LookupEnv)
	if pager == "" {
		return out, none
	}
	if _, err := exec.LookPath(strings.Fields(pager)[0]); err != nil {
		return out, none
	}
	// Through the shell, as git runs it: $PAGER may hold options or a
	// pipeline.
	cmd := exec.Command("/bin/sh", "-c", pager)
	cmd.Stdout, cmd.Stderr = file, errOut
	if getenv("LESS") == "" {
		// git's defaults: quit at once if it fits on one screen (F), pass
		// colours through (R), leave the text on screen after quitting (X).
		cmd.Env = append(os.Environ(), "LESS=FRX")
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return out, none
	}
	if err := cmd.Start(); err != nil {
		return out, none
	}
	// Ctrl-C belongs to the pager (less uses it to stop a search); minibox
	// must not die and leave the terminal to a pager with no input.
	signal.Ignore(os.Interrupt)
	return &quietWriter{w: in}, func() {
		in.Close()
		_ = cmd.Wait()
		signal.Reset(os.Interrupt)
	}
}

// quietWriter drops what is written after the first error: once the reader
// quits the pager, the rest of the lesson has nowhere to go, and that is
// not a failure.
type quietWriter struct {
	w      io.Writer
	broken bool
}

func (q *quietWriter) Write(p []byte) (int, error) {
	if !q.broken {
		if _, err := q.w.Write(p); err != nil {
			q.broken = true
		}
	}
	return len(p), nil
}
