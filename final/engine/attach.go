package engine

// Attaching: the supervisor holds the container's standard streams (pipes,
// or a pseudo-terminal's master) and serves them on a unix socket,
// containers/<id>/attach.sock, to `run` without -d (and whoever attaches):
// what the container prints goes to every client, what a client types goes
// to the container. conmon's attach socket works the same way. Frames:
// one byte of kind, four of length, the data.

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Frame kinds.
const (
	frameStdin  = 0 // client → container
	frameStdout = 1 // container → client
	frameStderr = 2
	frameExit   = 3 // the exit status, 4 bytes
	frameResize = 4 // rows, cols: 2 bytes each
	frameClose  = 5 // client: end of stdin
)

func writeFrame(w io.Writer, kind byte, data []byte) error {
	head := make([]byte, 5)
	head[0] = kind
	binary.BigEndian.PutUint32(head[1:], uint32(len(data)))
	_, err := w.Write(append(head, data...))
	return err
}

func readFrame(r io.Reader) (byte, []byte, error) {
	head := make([]byte, 5)
	if _, err := io.ReadFull(r, head); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(head[1:])
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("attach: a frame of %d bytes", n)
	}
	data := make([]byte, n)
	_, err := io.ReadFull(r, data)
	return head[0], data, err
}

func (e *Engine) attachPath(id string) string {
	return filepath.Join(e.containerDir(id), "attach.sock")
}

// shortPath names file in dir by way of an open descriptor of dir,
// /proc/self/fd/N/file: a unix socket's path may not exceed 107 bytes
// (unix(7)), and a data root's container directories can be longer.
// Call done once the socket is bound or connected.
func shortPath(path string) (short string, done func(), err error) {
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path)), func() { dir.Close() }, nil
}

// attachServer is the supervisor's side.
type attachServer struct {
	mu      sync.Mutex
	clients map[net.Conn]bool
	stdin   io.WriteCloser // the container's stdin (a pipe, or the pty master), or nil
	resize  func(rows, cols uint16)
	first   chan struct{} // closed when the first client is there
	once    sync.Once
	// ready is closed once stdin and resize are set. With -t the pty's
	// master arrives only during the runtime's create, after run has
	// attached: a client's first keys and its terminal's size wait for it
	// instead of being dropped (type-ahead, and the initial window size).
	ready chan struct{}
	// l is the socket clients connect to; served is closed when serve
	// has stopped accepting (l closed, or its deadline passed).
	l      *net.UnixListener
	served chan struct{}
}

// listen serves clients on l.
func (s *attachServer) listen(l *net.UnixListener) {
	s.l, s.served = l, make(chan struct{})
	go s.serve(l, s.served)
}

// serve accepts clients until the listener closes or its deadline.
func (s *attachServer) serve(l net.Listener, served chan struct{}) {
	defer close(served)
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.clients[conn] = true
		s.mu.Unlock()
		s.once.Do(func() { close(s.first) })
		go s.readClient(conn)
	}
}

// stopServing stops accepting clients (connections wait in the socket's
// backlog meanwhile) and reports whether none is attached; if one is,
// it goes on serving.
func (s *attachServer) stopServing() bool {
	if s.l == nil {
		return true
	}
	if err := s.l.SetDeadline(time.Now()); err != nil {
		return false
	}
	<-s.served
	s.mu.Lock()
	none := len(s.clients) == 0
	s.mu.Unlock()
	if !none {
		_ = s.l.SetDeadline(time.Time{})
		s.listen(s.l)
	}
	return none
}

// readClient passes a client's input to the container.
func (s *attachServer) readClient(conn net.Conn) {
	<-s.ready // frames wait in the socket meanwhile
	for {
		kind, data, err := readFrame(conn)
		if err != nil {
			s.drop(conn)
			return
		}
		switch {
		case kind == frameStdin && s.stdin != nil:
			_, _ = s.stdin.Write(data)
		case kind == frameClose && s.stdin != nil:
			_ = s.stdin.Close()
		case kind == frameResize && len(data) == 4 && s.resize != nil:
			s.resize(binary.BigEndian.Uint16(data), binary.BigEndian.Uint16(data[2:]))
		}
	}
}

func (s *attachServer) drop(conn net.Conn) {
	s.mu.Lock()
	delete(s.clients, conn)
	s.mu.Unlock()
	conn.Close()
}

// broadcast sends a frame to every client; a slow client is dropped
// rather than stall the container's output.
func (s *attachServer) broadcast(kind byte, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for conn := range s.clients {
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if writeFrame(conn, kind, data) != nil {
			delete(s.clients, conn)
			conn.Close()
		}
	}
}

// AttachIO is the client's side: the terminal or the pipes of `run`.
type AttachIO struct {
	Stdin          io.Reader // nil: no input
	Stdout, Stderr io.Writer
	Resize         <-chan [2]uint16 // rows, cols, when the terminal's size changes
}

// Attach connects to a container's streams, closes connected once it is
// connected (or failed to), and returns the exit status once it has ended.
func (e *Engine) Attach(id string, a AttachIO, connected chan<- struct{}) (int, error) {
	path, done, err := shortPath(e.attachPath(id))
	var conn net.Conn
	if err == nil {
		conn, err = net.Dial("unix", path)
		done()
	}
	if connected != nil {
		close(connected)
	}
	if err != nil {
		return 0, fmt.Errorf("attach to %.12s: %w", id, err)
	}
	defer conn.Close()
	var wmu sync.Mutex
	send := func(kind byte, data []byte) {
		wmu.Lock()
		defer wmu.Unlock()
		_ = writeFrame(conn, kind, data)
	}
	if a.Stdin != nil {
		go copyInput(a.Stdin, send)
	}
	if a.Resize != nil {
		go func() {
			for size := range a.Resize {
				data := make([]byte, 4)
				binary.BigEndian.PutUint16(data, size[0])
				binary.BigEndian.PutUint16(data[2:], size[1])
				send(frameResize, data)
			}
		}()
	}
	for {
		kind, data, err := readFrame(conn)
		if err != nil {
			return 0, fmt.Errorf("attach to %.12s: the supervisor went away: %w", id, err)
		}
		switch kind {
		case frameStdout:
			_, _ = a.Stdout.Write(data)
		case frameStderr:
			_, _ = a.Stderr.Write(data)
		case frameExit:
			return int(int32(binary.BigEndian.Uint32(data))), nil
		}
	}
}

func copyInput(r io.Reader, send func(byte, []byte)) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			send(frameStdin, append([]byte{}, buf[:n]...))
		}
		if err != nil {
			send(frameClose, nil)
			return
		}
	}
}

// setWinsize sets a terminal's size (ioctl TIOCSWINSZ), through the raw
// descriptor: f.Fd would make it blocking, and a deadline could then no
// longer stop its pump (handOver).
func setWinsize(f *os.File, rows, cols uint16) {
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
		})
	}
}
