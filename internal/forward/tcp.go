package forward

import (
	"context"
	"net"

	"github.com/udptunnel/udptunnel/internal/relay"
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
	relay.Pipe(c, nil, up, &f.bytesUp, &f.bytesDown)
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
