package forward

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"
)

// maxDatagram is the largest UDP payload, so that nothing is truncated.
const maxDatagram = 65535

// session is one UDP client: its upstream socket, connected to the target,
// and the time of its last datagram either way.
type session struct {
	client net.Addr // as the listener reported it, for WriteTo
	key    netip.AddrPort
	up     net.Conn
	last   atomic.Int64 // unix nanoseconds
}

// serveUDP reads datagrams from clients on pc and sends each through its
// client's session, creating the session on a client's first datagram.
func (f *Forwarder) serveUDP(pc net.PacketConn) {
	defer f.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if !f.isClosed() {
				f.log.Error("read failed, forward stopped", "err", err)
			}
			return
		}
		s := f.session(pc, from)
		if s == nil {
			continue
		}
		if _, err := s.up.Write(buf[:n]); err != nil {
			f.dropWrite.Add(1)
			continue
		}
		f.dgramsUp.Add(1)
		f.bytesUp.Add(uint64(n))
	}
}

// session returns from's session, touched, creating it if there is room;
// nil means the datagram is dropped (and counted).
func (f *Forwarder) session(pc net.PacketConn, from net.Addr) *session {
	key := addrPortOf(from)
	now := time.Now().UnixNano()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	if s, ok := f.sessions[key]; ok {
		// Touched under f.mu, so that expire, which decides under f.mu too,
		// cannot end a session that is about to be used.
		s.last.Store(now)
		return s
	}
	if len(f.sessions) >= f.cfg.MaxSessions {
		f.dropCap.Add(1)
		return nil
	}
	up, err := f.dial.DialUDP(f.cfg.Target)
	if err != nil {
		f.dropDial.Add(1)
		f.log.Debug("cannot open upstream socket", "client", from.String(), "err", err)
		return nil
	}
	s := &session{client: from, key: key, up: up}
	s.last.Store(now)
	f.sessions[key] = s
	f.sessionsN.Add(1)
	f.active.Add(1)
	f.wg.Add(1)
	go f.relayReplies(pc, s)
	f.log.Debug("session open", "client", from.String(), "via", up.LocalAddr().String())
	return s
}

// relayReplies sends what the target answers on s back to its client, and
// ends s when it has been idle for IdleTimeout: the read deadline is the
// session's expiry, pushed back whenever a datagram went either way.
func (f *Forwarder) relayReplies(pc net.PacketConn, s *session) {
	defer f.wg.Done()
	buf := make([]byte, maxDatagram)
	idle := f.cfg.IdleTimeout
	for {
		s.up.SetReadDeadline(time.Unix(0, s.last.Load()).Add(idle))
		n, err := s.up.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err) {
				if f.expire(s) {
					return
				}
				continue
			}
			// Closed, or an error such as ICMP port unreachable: the
			// session ends; the client's next datagram starts a new one.
			f.remove(s, false)
			return
		}
		s.last.Store(time.Now().UnixNano())
		if _, err := pc.WriteTo(buf[:n], s.client); err != nil {
			f.dropWrite.Add(1)
			continue
		}
		f.dgramsDown.Add(1)
		f.bytesDown.Add(uint64(n))
	}
}

// expire ends s if it has been idle for IdleTimeout, and reports whether
// it did.
func (f *Forwarder) expire(s *session) bool {
	if time.Since(time.Unix(0, s.last.Load())) < f.cfg.IdleTimeout {
		return false
	}
	return f.remove(s, true)
}

// remove takes s out of the table and closes it. With ifIdle it does so
// only if s is still idle, checked under f.mu.
func (f *Forwarder) remove(s *session, ifIdle bool) bool {
	f.mu.Lock()
	if ifIdle && time.Since(time.Unix(0, s.last.Load())) < f.cfg.IdleTimeout {
		f.mu.Unlock()
		return false
	}
	if f.sessions[s.key] == s {
		delete(f.sessions, s.key)
	}
	f.mu.Unlock()
	s.up.Close()
	f.active.Add(^uint64(0))
	if ifIdle {
		f.expired.Add(1)
		f.log.Debug("session expired", "client", s.client.String())
	}
	return true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// addrPortOf returns a's address and port; the key of a session.
func addrPortOf(a net.Addr) netip.AddrPort {
	if ua, ok := a.(*net.UDPAddr); ok {
		return ua.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
