// Package relay is the bidirectional byte copy between two stream
// connections that the access components share (the SOCKS5 server, the
// HTTP CONNECT proxy and the TCP port forwards): each direction runs until
// its source ends; an end of stream is passed on as a half-close, so the
// other direction keeps going, and an error closes both connections, so the
// other direction stops too.
package relay

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// closeWriter is the half-close of *net.TCPConn and gVisor's gonet.TCPConn.
type closeWriter interface{ CloseWrite() error }

// bufSize is the copy buffer of one direction.
const bufSize = 32 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// Pipe copies client to target and target to client until both directions
// end, and returns then. clientR, when not nil, is read instead of client
// (a bufio.Reader that already holds the client's first bytes); up and down,
// when not nil, count the bytes written each way.
func Pipe(client net.Conn, clientR io.Reader, target net.Conn, up, down *atomic.Uint64) {
	if clientR == nil {
		clientR = client
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		copyHalf(target, clientR, client, up)
	}()
	copyHalf(client, target, target, down)
	wg.Wait()
}

// copyHalf copies src (the reading side of srcConn) to dst, counting the
// bytes written into n; on EOF it half-closes dst, on an error it closes
// both.
func copyHalf(dst net.Conn, src io.Reader, srcConn net.Conn, n *atomic.Uint64) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			if n != nil {
				n.Add(uint64(nw))
			}
			if werr != nil {
				dst.Close()
				srcConn.Close()
				return
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				if cw, ok := dst.(closeWriter); ok && cw.CloseWrite() == nil {
					return
				}
			}
			dst.Close()
			srcConn.Close()
			return
		}
	}
}
