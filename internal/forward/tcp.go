package forward

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// acceptTCP accepts connections until the listener is closed.
func (f *Forwarder) acceptTCP(ln net.Listener) {
	defer f.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if !f.isClosed() {
				f.log.Error("accept failed, forward stopped", "err", err)
			}
			return
		}
		if !f.trackConn(c) {
			c.Close()
			return
		}
		if f.active.Load() >= uint64(f.cfg.MaxSessions) {
			f.dropCap.Add(1)
			f.log.Debug("connection over the cap dropped", "client", c.RemoteAddr().String(), "max", f.cfg.MaxSessions)
			f.untrackConn(c)
			continue
		}
		f.sessionsN.Add(1)
		f.active.Add(1)
		f.wg.Add(1)
		go f.serveTCP(c)
	}
}

// serveTCP dials the target for client c and pipes the two together.
func (f *Forwarder) serveTCP(c net.Conn) {
	defer f.wg.Done()
	defer f.active.Add(^uint64(0))
	defer f.untrackConn(c)
	ctx, cancel := context.WithTimeout(f.ctx, f.cfg.DialTimeout)
	up, err := f.dial.DialTCP(ctx, f.cfg.Target)
	cancel()
	if err != nil {
		f.dropDial.Add(1)
		f.log.Debug("cannot reach target", "client", c.RemoteAddr().String(), "err", err)
		return
	}
	if !f.trackConn(up) {
		up.Close()
		return
	}
	defer f.untrackConn(up)
	f.log.Debug("connection open", "client", c.RemoteAddr().String())
	pipe(c, up, &f.bytesUp, &f.bytesDown)
}

// trackConn registers c so that Close closes it; false if closed already.
func (f *Forwarder) trackConn(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Forwarder) untrackConn(c net.Conn) {
	c.Close()
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

// closeWriter is the half-close of *net.TCPConn and gVisor's gonet.TCPConn.
type closeWriter interface{ CloseWrite() error }

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// pipe copies c→up and up→c until both directions end. A direction that
// ends with EOF half-closes its destination, so the other keeps going; one
// that fails closes both connections so that the other stops too.
func pipe(c, up net.Conn, upCount, downCount *atomic.Uint64) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		copyHalf(up, c, upCount)
	}()
	copyHalf(c, up, downCount)
	wg.Wait()
}

func copyHalf(dst, src net.Conn, n *atomic.Uint64) {
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
				src.Close()
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
			src.Close()
			return
		}
	}
}
