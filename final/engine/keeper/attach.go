package keeper

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
	"sync"
	"time"
)

// Frame kinds.
const (
	FrameStdin  = 0 // client → container
	FrameStdout = 1 // container → client
	FrameStderr = 2
	FrameExit   = 3 // the exit status, 4 bytes
	FrameResize = 4 // rows, cols: 2 bytes each
	FrameClose  = 5 // client: end of stdin
)

// WriteFrame writes one frame.
func WriteFrame(w io.Writer, kind byte, data []byte) error {
	head := make([]byte, 5)
	head[0] = kind
	binary.BigEndian.PutUint32(head[1:], uint32(len(data)))
	_, err := w.Write(append(head, data...))
	return err
}

// ReadFrame reads one frame.
func ReadFrame(r io.Reader) (byte, []byte, error) {
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

// AttachServer is the supervisor's side of the attach socket.
type AttachServer struct {
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
	ready     chan struct{}
	readyOnce sync.Once
	// l is the socket clients connect to; served is closed when serve
	// has stopped accepting (l closed, or its deadline passed).
	l      *net.UnixListener
	served chan struct{}
}

// NewAttachServer returns a server with no clients, not yet listening.
func NewAttachServer() *AttachServer {
	return &AttachServer{clients: map[net.Conn]bool{}, first: make(chan struct{}), ready: make(chan struct{})}
}

// SetInput gives the clients' input a destination: stdin, and resize for
// their terminal's size (nil: none).
func (s *AttachServer) SetInput(stdin io.WriteCloser, resize func(rows, cols uint16)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stdin, s.resize = stdin, resize
}

// Stdin is the container's stdin as SetInput gave it, or nil.
func (s *AttachServer) Stdin() io.WriteCloser {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stdin
}

// SetReady says that SetInput has been called, if it ever will be.
func (s *AttachServer) SetReady() { s.readyOnce.Do(func() { close(s.ready) }) }

// Ready is closed once SetReady has been called.
func (s *AttachServer) Ready() <-chan struct{} { return s.ready }

// First is closed when the first client has connected.
func (s *AttachServer) First() <-chan struct{} { return s.first }

// Listener is the socket Listen was given, or nil.
func (s *AttachServer) Listener() *net.UnixListener { return s.l }

// Listen serves clients on l.
func (s *AttachServer) Listen(l *net.UnixListener) {
	s.l, s.served = l, make(chan struct{})
	go s.serve(l, s.served)
}

// serve accepts clients until the listener closes or its deadline.
func (s *AttachServer) serve(l net.Listener, served chan struct{}) {
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

// StopServing stops accepting clients (connections wait in the socket's
// backlog meanwhile) and reports whether none is attached; if one is,
// it goes on serving.
func (s *AttachServer) StopServing() bool {
	if !s.pause() {
		return false
	}
	s.mu.Lock()
	none := len(s.clients) == 0
	s.mu.Unlock()
	if !none {
		s.Resume()
	}
	return none
}

// pause stops accepting clients, and reports whether it did.
func (s *AttachServer) pause() bool {
	if s.l == nil {
		return true
	}
	if err := s.l.SetDeadline(time.Now()); err != nil {
		return false
	}
	<-s.served
	return true
}

// Resume accepts clients again after StopServing.
func (s *AttachServer) Resume() {
	if s.l != nil {
		_ = s.l.SetDeadline(time.Time{})
		s.Listen(s.l)
	}
}

// readClient passes a client's input to the container.
func (s *AttachServer) readClient(conn net.Conn) {
	<-s.ready // frames wait in the socket meanwhile
	for {
		kind, data, err := ReadFrame(conn)
		if err != nil {
			s.drop(conn)
			return
		}
		s.mu.Lock()
		stdin, resize := s.stdin, s.resize
		s.mu.Unlock()
		switch {
		case kind == FrameStdin && stdin != nil:
			_, _ = stdin.Write(data)
		case kind == FrameClose && stdin != nil:
			_ = stdin.Close()
		case kind == FrameResize && len(data) == 4 && resize != nil:
			resize(binary.BigEndian.Uint16(data), binary.BigEndian.Uint16(data[2:]))
		}
	}
}

func (s *AttachServer) drop(conn net.Conn) {
	s.mu.Lock()
	delete(s.clients, conn)
	s.mu.Unlock()
	conn.Close()
}

// Broadcast sends a frame to every client; a slow client is dropped
// rather than stall the container's output.
func (s *AttachServer) Broadcast(kind byte, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for conn := range s.clients {
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if WriteFrame(conn, kind, data) != nil {
			delete(s.clients, conn)
			conn.Close()
		}
	}
}

// BroadcastExit tells every client the container's exit status.
func (s *AttachServer) BroadcastExit(status int) {
	data := make([]byte, 4)
	binary.BigEndian.PutUint32(data, uint32(status))
	s.Broadcast(FrameExit, data)
}
