package image

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progress shows a pull as docker does. On a terminal: one line per
// layer, redrawn in place (at most ten times a second while bytes
// arrive). Otherwise: a line per step worth logging
// ("<short digest>: Pull complete"), never a flood of byte counts.
type progress struct {
	mu     sync.Mutex
	w      io.Writer // nil: silent
	tty    bool
	ids    []string // the layers' short digests, in order
	status []string
	drawn  int       // lines of the layer block on the terminal
	last   time.Time // the last redraw for bytes
}

func newProgress(w io.Writer, tty bool) *progress {
	return &progress{w: w, tty: tty && w != nil}
}

// line prints a line outside the layer block (before or after it).
func (p *progress) line(format string, args ...any) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// layers starts the block: one line per layer.
func (p *progress) layers(ids []string) {
	p.mu.Lock()
	p.ids = ids
	p.status = make([]string, len(ids))
	p.mu.Unlock()
	for i := range ids {
		p.set(i, "Pulling fs layer")
	}
}

// logged are the steps a non-terminal gets a line for, as docker prints them.
var logged = map[string]bool{
	"Pulling fs layer": true, "Already exists": true, "Verifying Checksum": true,
	"Download complete": true, "Pull complete": true,
}

// set changes layer i's status.
func (p *progress) set(i int, status string) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status[i] = status
	if p.tty {
		p.redraw()
	} else if logged[status] || strings.HasPrefix(status, "Failed") {
		fmt.Fprintf(p.w, "%s: %s\n", p.ids[i], status)
	}
}

// bytes shows layer i's download: n of total bytes (terminal only).
func (p *progress) bytes(i int, n, total int64) { p.transfer(i, "Downloading", n, total) }

// transfer shows layer i's transfer (Downloading, Pushing): n of total
// bytes, at most every 100 ms (terminal only).
func (p *progress) transfer(i int, verb string, n, total int64) {
	if p.w == nil || !p.tty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.last) < 100*time.Millisecond && n < total {
		return
	}
	p.last = time.Now()
	p.status[i] = verb + " " + bar(n, total) + " " + HumanSize(n) + "/" + HumanSize(total)
	p.redraw()
}

// redraw rewrites the layer block in place: up to its first line, then
// every line erased and written again. Called with p.mu held.
func (p *progress) redraw() {
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\033[%dA", p.drawn)
	}
	for i, id := range p.ids {
		fmt.Fprintf(&b, "\r\033[K%s: %s\n", id, p.status[i])
	}
	p.drawn = len(p.ids)
	_, _ = io.WriteString(p.w, b.String())
}

// bar is docker's [=====>     ].
func bar(n, total int64) string {
	const width = 30
	filled := width
	if total > 0 && n < total {
		filled = int(n * width / total)
	}
	s := strings.Repeat("=", filled)
	if filled < width {
		s += ">" + strings.Repeat(" ", width-filled-1)
	}
	return "[" + s + "]"
}

// counter passes bytes through, reporting how many went by.
type counter struct {
	r     io.Reader
	n     int64
	total int64
	i     int
	p     *progress
}

func (c *counter) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	c.p.bytes(c.i, c.n, c.total)
	return n, err
}

// HumanSize is docker's size: 4.26MB (powers of 1000, three digits).
func HumanSize(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.3gGB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.3gMB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.3gkB", float64(n)/1e3)
	}
	return fmt.Sprintf("%dB", n)
}
