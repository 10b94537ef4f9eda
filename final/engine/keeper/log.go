package keeper

// The log: everything the container prints goes to
// containers/<id>/container.log, one JSON object per line as docker's
// json-file driver writes them ({"log":"…\n","stream":"stdout","time":"…"}),
// so that `logs` works after the container has exited, and after the
// command that started it has gone.

import (
	"bytes"
	"encoding/json"
	"os"
	"sync"
	"time"
)

// LogEntry is one line of output.
type LogEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// Log appends entries; a line is written when its newline comes.
type Log struct {
	mu      sync.Mutex
	f       *os.File
	partial map[string][]byte // per stream, the line still without its newline
}

// OpenLog opens the log at path for appending.
func OpenLog(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	return NewLog(f, nil), nil
}

// NewLog appends to f, after the unfinished lines partial (a handover's).
func NewLog(f *os.File, partial map[string][]byte) *Log {
	l := &Log{f: f, partial: map[string][]byte{}}
	for stream, p := range partial {
		l.partial[stream] = p
	}
	return l
}

// Write logs p, from stream (stdout or stderr), line by line.
func (l *Log) Write(stream string, p []byte) {
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

// maxLine bounds what is kept of a line still without its newline:
// `cat /dev/zero` must not grow it without end.
const maxLine = 16 << 10

// Close writes what is left of unfinished lines, and closes the file.
func (l *Log) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for stream, rest := range l.partial {
		if len(rest) > 0 {
			l.entry(stream, rest)
		}
	}
	l.f.Close()
}

func (l *Log) entry(stream string, line []byte) {
	data, _ := json.Marshal(LogEntry{Log: string(line), Stream: stream, Time: time.Now().UTC()})
	_, _ = l.f.Write(append(data, '\n'))
}
