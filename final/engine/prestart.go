package engine

// A supervisor started before its container is made.
//
// `minibox run` makes the container's id first, starts the container's
// supervisor at once, and tells it to go once the record is written: the
// supervisor's own start (fork, exec of minibox-shim, the Go runtime,
// package inits: ~3 ms) overlaps the CLI's image lookup and record
// instead of following them. Start (`minibox start`) takes the same two
// steps back to back. The word comes on the supervisor's descriptor 4:
// "run", or "attach" (wait for a client before starting the container, so
// that no output is missed); end of file means that no container comes,
// and the supervisor exits without touching anything.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minibox-lab/minibox/final/engine/early"
	"github.com/minibox-lab/minibox/final/runtime"
)

// A Supervisor is a container's supervisor process, waiting for the word.
type Supervisor struct {
	e       *Engine
	id      string
	ready   *os.File // its descriptor 3: "build …", "listening", then "ok" or "error: …"
	goAhead *os.File // its descriptor 4: "run" or "attach", then closed
	// early: started before main (package early), it is used only if it
	// runs this build's supervisors' binary, which it tells first thing
	// (its first line: "build" and its build information, quoted).
	early *early.Supervisor
}

// PrestartNew starts the supervisor of a new container, whose id it
// chooses (ID, for Options.ID), or takes started, one that `minibox run`
// started from a package init (early.Take) if it was told this data
// root. Start checks that started runs this build's supervisors' binary
// before it gives the word, and starts another supervisor if not.
func (e *Engine) PrestartNew(started *early.Supervisor) (*Supervisor, error) {
	if started == nil {
		return e.Prestart(NewID())
	}
	go syscall.Wait4(started.Pid, nil, 0, nil) //nolint:errcheck // reaped if we are still here when it ends
	s := &Supervisor{e: e, id: started.ID, ready: started.Ready, goAhead: started.GoAhead, early: started}
	if started.Root != e.Root {
		s.Cancel()
		return e.Prestart(NewID())
	}
	return s, nil
}

// ours reports why the early supervisor is not ours to use, or nil: the
// build it reports on its first line must be ours (runtime.SameBuild,
// what runtime.Shim checks by reading the shim's file), and its binary
// the supervisors' binary (the shim next to us, or Self).
func (s *Supervisor) ours(lines *bufio.Scanner) error {
	if s.e.Self != "" && s.e.Self != s.early.Binary {
		return fmt.Errorf("the supervisors' binary is %s, not %s", s.e.Self, s.early.Binary)
	}
	// Within a second: a minibox-shim of a build from before this line
	// says nothing until its word, which would wait for ever.
	if err := s.early.Ready.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if !lines.Scan() {
		return fmt.Errorf("it did not tell its build: %v", lines.Err())
	}
	if err := s.early.Ready.SetReadDeadline(time.Time{}); err != nil {
		return err
	}
	quoted, ok := strings.CutPrefix(lines.Text(), "build ")
	if !ok {
		return fmt.Errorf("its first line is %q, not its build", lines.Text())
	}
	info, err := strconv.Unquote(quoted)
	if err != nil {
		return fmt.Errorf("its build line: %w", err)
	}
	return runtime.SameBuild(info)
}

// ID is the id of the supervisor's container.
func (s *Supervisor) ID() string { return s.id }

// Prestart starts the supervisor of container id (NewID), which need not
// exist yet (Options.ID). Start has it start the container; Cancel tells
// it that none comes.
func (e *Engine) Prestart(id string) (*Supervisor, error) {
	self, err := e.supervisorBinary()
	if err != nil {
		return nil, err
	}
	started, err := early.Spawn(self, e.Root, id)
	if err != nil {
		return nil, fmt.Errorf("start the supervisor %s: %w", self, err)
	}
	go syscall.Wait4(started.Pid, nil, 0, nil) //nolint:errcheck // reaped if we are still here when it ends
	return &Supervisor{e: e, id: id, ready: started.Ready, goAhead: started.GoAhead}, nil
}

// Cancel tells the supervisor that its container does not come: it exits.
// (If we die first, our end of the pipe closes all the same.)
func (s *Supervisor) Cancel() {
	s.goAhead.Close()
	s.ready.Close()
}

// Start has the supervisor start its container (created, or exited) and
// returns once it runs, or failed to. With attach, the container starts
// only once attach (called with the container's id) has connected.
func (s *Supervisor) Start(attach func(id string) error) error {
	defer s.Cancel()
	c, err := s.e.Get(s.id)
	if err != nil {
		return err
	}
	if c.State.Status == "running" {
		return fmt.Errorf("container %s is already running", c.Name)
	}
	lines := bufio.NewScanner(s.ready)
	if s.early != nil && s.ours(lines) != nil {
		// Not ours to use: it goes without a word, another comes.
		s.Cancel()
		other, err := s.e.Prestart(s.id)
		if err != nil {
			return err
		}
		*s = *other
		lines = bufio.NewScanner(s.ready)
	}
	word := "run\n"
	if attach != nil {
		word = "attach\n"
	}
	if _, err := s.goAhead.WriteString(word); err != nil {
		// It ended before it heard: why is on the ready pipe.
		if why := failure(lines); why != nil {
			return why
		}
		return fmt.Errorf("the supervisor of %s: %w", c.Name, err)
	}
	s.goAhead.Close()
	for lines.Scan() {
		line := lines.Text()
		switch {
		case line == "listening" && attach != nil:
			if err := attach(c.ID); err != nil {
				return err
			}
		case line == "ok":
			return nil
		case strings.HasPrefix(line, "error: "):
			return errors.New(strings.TrimPrefix(line, "error: "))
		}
	}
	return fmt.Errorf("the supervisor of %s ended without a word", c.Name)
}

// failure is the error a supervisor that ended reported on its ready
// pipe, lines, if any.
func failure(lines *bufio.Scanner) error {
	for lines.Scan() {
		if why, ok := strings.CutPrefix(lines.Text(), "error: "); ok {
			return errors.New(why)
		}
	}
	return nil
}

// awaitGoAhead is the supervisor's side: the word on descriptor 4, as
// whether to wait for a client to attach; ok is false if no container
// comes.
func awaitGoAhead() (waitAttach, ok bool) {
	f := os.NewFile(4, "go-ahead")
	defer f.Close() // nothing we start may hold it
	word, err := bufio.NewReader(f).ReadString('\n')
	switch {
	case err == nil && word == "run\n":
		return false, true
	case err == nil && word == "attach\n":
		return true, true
	}
	return false, false
}
