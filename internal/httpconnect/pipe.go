package httpconnect

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// closeWriter is the half-close of *net.TCPConn and gVisor's gonet.TCPConn.
type closeWriter interface{ CloseWrite() error }

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// pipe copies client→up (reading from clientR, which buffers c) and up→c
// until both directions end. A direction that ends with EOF half-closes its
// destination, so the other direction keeps going; one that fails closes
// both connections so that the other stops too.
func pipe(c net.Conn, clientR io.Reader, up net.Conn, upCount, downCount *atomic.Uint64) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		copyHalf(up, clientR, upCount, c)
	}()
	copyHalf(c, up, downCount, up)
	wg.Wait()
}

// copyHalf copies src to dst, counting bytes into n, then half-closes dst
// on EOF or closes dst and srcConn on error.
func copyHalf(dst net.Conn, src io.Reader, n *atomic.Uint64, srcConn net.Conn) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n.Add(uint64(nw))
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
