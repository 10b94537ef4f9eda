package engine

// Attaching, the client's side: `run` without -d (and wait) connects to
// the container's attach socket, containers/<id>/attach.sock, which its
// supervisor or keeper serves (package keeper, which also has the frames).

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/minibox-lab/minibox/final/engine/keeper"
)

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
		_ = keeper.WriteFrame(conn, kind, data)
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
				send(keeper.FrameResize, data)
			}
		}()
	}
	for {
		kind, data, err := keeper.ReadFrame(conn)
		if err != nil {
			return 0, fmt.Errorf("attach to %.12s: the supervisor went away: %w", id, err)
		}
		switch kind {
		case keeper.FrameStdout:
			_, _ = a.Stdout.Write(data)
		case keeper.FrameStderr:
			_, _ = a.Stderr.Write(data)
		case keeper.FrameExit:
			return int(int32(binary.BigEndian.Uint32(data))), nil
		}
	}
}

func copyInput(r io.Reader, send func(byte, []byte)) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			send(keeper.FrameStdin, append([]byte{}, buf[:n]...))
		}
		if err != nil {
			send(keeper.FrameClose, nil)
			return
		}
	}
}
