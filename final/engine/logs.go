package engine

// Logs: the supervisor writes everything the container prints to
// containers/<id>/container.log, one JSON object per line as docker's
// json-file driver does (package keeper), so `logs` works after the
// container has exited, and after the CLI that started it has gone.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/minibox-lab/minibox/final/engine/keeper"
)

// LogEntry is one line of output (the keeper writes them).
type LogEntry = keeper.LogEntry

func (e *Engine) logPath(id string) string {
	return filepath.Join(e.containerDir(id), "container.log")
}

// LogOptions are logs' flags.
type LogOptions struct {
	Follow     bool
	Tail       int // the last N lines; < 0: all
	Timestamps bool
}

// Logs prints a container's output, stdout's lines to stdout and
// stderr's to stderr; with Follow, until the container has exited.
func (e *Engine) Logs(ref string, o LogOptions, stdout, stderr io.Writer) error {
	c, err := e.Get(ref)
	if err != nil {
		return err
	}
	f, err := os.Open(e.logPath(c.ID))
	if os.IsNotExist(err) {
		return nil // never started
	}
	if err != nil {
		return err
	}
	defer f.Close()
	r := &logReader{f: f}
	var entries []LogEntry
	for { // what is there now: all of it, or its tail
		entry, ok, err := r.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		entries = append(entries, entry)
	}
	if o.Tail >= 0 && len(entries) > o.Tail {
		entries = entries[len(entries)-o.Tail:]
	}
	for _, entry := range entries {
		printEntry(entry, o.Timestamps, stdout, stderr)
	}
	for o.Follow {
		entry, ok, err := r.next()
		if err != nil {
			return err
		}
		if ok {
			printEntry(entry, o.Timestamps, stdout, stderr)
			continue
		}
		if c, err := e.refresh(c.ID); err != nil || c.State.Status != "running" {
			for entry, ok, _ := r.next(); ok; entry, ok, _ = r.next() {
				printEntry(entry, o.Timestamps, stdout, stderr)
			}
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// logReader reads whole lines of a log that may still be growing: a
// line being written is kept until its newline arrives.
type logReader struct {
	f   *os.File
	buf []byte
}

func (r *logReader) next() (LogEntry, bool, error) {
	for {
		if i := bytes.IndexByte(r.buf, '\n'); i >= 0 {
			var entry LogEntry
			err := json.Unmarshal(r.buf[:i+1], &entry)
			r.buf = r.buf[i+1:]
			if err != nil {
				return entry, false, fmt.Errorf("log line: %w", err)
			}
			return entry, true, nil
		}
		chunk := make([]byte, 32<<10)
		n, _ := r.f.Read(chunk)
		if n == 0 {
			return LogEntry{}, false, nil
		}
		r.buf = append(r.buf, chunk[:n]...)
	}
}

func printEntry(entry LogEntry, timestamps bool, stdout, stderr io.Writer) {
	w := stdout
	if entry.Stream == "stderr" {
		w = stderr
	}
	if timestamps {
		fmt.Fprintf(w, "%s %s", entry.Time.Format(time.RFC3339Nano), entry.Log)
		return
	}
	fmt.Fprint(w, entry.Log)
}
