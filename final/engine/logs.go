package engine

// Logs: the supervisor writes everything the container prints to
// containers/<id>/container.log, one JSON object per line as docker's
// json-file driver does ({"log":"…\n","stream":"stdout","time":"…"}), so
// `logs` works after the container has exited, and after the CLI that
// started it has gone.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// LogEntry is one line of output.
type LogEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// logger appends entries; a line is written when its newline comes.
type logger struct {
	mu      sync.Mutex
	f       *os.File
	partial map[string][]byte
}

func (e *Engine) logPath(id string) string {
	return filepath.Join(e.containerDir(id), "container.log")
}

func openLogger(path string) (*logger, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	return &logger{f: f, partial: map[string][]byte{}}, nil
}

// write logs p, from stream (stdout or stderr), line by line.
func (l *logger) write(stream string, p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	buf := append(l.partial[stream], p...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		l.entry(stream, buf[:i+1])
		buf = buf[i+1:]
	}
	if len(buf) >= maxLine { // no newline for long: an entry of its own, as docker's json-file does
		l.entry(stream, buf)
		buf = nil
	}
	l.partial[stream] = append([]byte{}, buf...)
}

// maxLine bounds what the supervisor keeps of a line still without its
// newline: `cat /dev/zero` must not grow it without end.
const maxLine = 16 << 10

// close writes what is left of unfinished lines.
func (l *logger) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for stream, rest := range l.partial {
		if len(rest) > 0 {
			l.entry(stream, rest)
		}
	}
	l.f.Close()
}

func (l *logger) entry(stream string, line []byte) {
	data, _ := json.Marshal(LogEntry{Log: string(line), Stream: stream, Time: time.Now().UTC()})
	_, _ = l.f.Write(append(data, '\n'))
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
