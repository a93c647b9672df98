package socks5

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// maxUDPHeaderLen is the longest header the server writes towards a client:
// RSV FRAG ATYP, an IPv6 address and a port (sources are always IPs).
const maxUDPHeaderLen = 3 + 1 + 16 + 2

// association is one UDP ASSOCIATE: a host socket facing the client (relay)
// and, created on first use, one overlay socket per address family.
type association struct {
	s        *Server
	log      *slog.Logger
	ctrl     net.Conn
	relay    *net.UDPConn
	clientIP netip.Addr

	// client is the client's UDP address once known: its declared port, or
	// the port of the first datagram from its IP if it declared 0.
	client atomic.Pointer[netip.AddrPort]
	// lastActive is the time of the last datagram either way (UnixNano).
	lastActive atomic.Int64

	mu       sync.Mutex
	closed   bool
	overlay4 net.PacketConn
	overlay6 net.PacketConn
	wg       sync.WaitGroup // the overlay readers
}

// associate serves UDP ASSOCIATE until the control connection closes or the
// association is idle for UDPIdleTimeout.
func (s *Server) associate(conn net.Conn, req request, log *slog.Logger) {
	s.mu.Lock()
	full := s.cfg.MaxUDPAssociations > 0 && s.udpCount >= s.cfg.MaxUDPAssociations
	if !full {
		s.udpCount++
	}
	s.mu.Unlock()
	if full {
		s.reply(conn, ReplyGeneralFailure, Addr{})
		log.Debug("socks5: UDP association cap reached", "max", s.cfg.MaxUDPAssociations)
		return
	}
	defer func() {
		s.mu.Lock()
		s.udpCount--
		s.mu.Unlock()
	}()

	bind := s.cfg.UDPBind
	if !bind.IsValid() {
		bind = addrPortOf(conn.LocalAddr()).Addr()
	}
	relay, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(bind, 0)))
	if err != nil {
		s.reply(conn, ReplyGeneralFailure, Addr{})
		log.Debug("socks5: UDP relay socket", "err", err)
		return
	}
	if !s.track(relay) {
		relay.Close()
		return
	}
	defer s.release(relay)

	a := &association{
		s:        s,
		log:      log,
		ctrl:     conn,
		relay:    relay,
		clientIP: addrPortOf(conn.RemoteAddr()).Addr(),
	}
	if req.Dst.Name == "" && req.Dst.Port != 0 {
		client := netip.AddrPortFrom(a.clientIP, req.Dst.Port)
		a.client.Store(&client)
	}
	a.touch()
	s.c.udpAssociations.Add(1)
	s.c.udpActive.Add(1)
	defer s.c.udpActive.Add(^uint64(0))

	if err := s.reply(conn, ReplySucceeded, AddrFromAddrPort(addrPortOf(relay.LocalAddr()))); err != nil {
		return
	}
	conn.SetDeadline(time.Time{})

	done := make(chan struct{})
	go func() {
		defer close(done)
		a.fromClient()
	}()
	// The association lives as long as the control connection (RFC 1928
	// §7); the client sends nothing more on it.
	io.Copy(io.Discard, conn)
	a.close()
	<-done
	a.wg.Wait()
}

func (a *association) touch() { a.lastActive.Store(time.Now().UnixNano()) }

// close ends the association: every socket is closed, which ends every
// goroutine reading one.
func (a *association) close() {
	a.mu.Lock()
	a.closed = true
	pc4, pc6 := a.overlay4, a.overlay6
	a.mu.Unlock()
	a.ctrl.Close()
	a.relay.Close()
	if pc4 != nil {
		pc4.Close()
	}
	if pc6 != nil {
		pc6.Close()
	}
}

// fromClient relays datagrams from the client into the overlay and enforces
// the idle timeout.
func (a *association) fromClient() {
	s := a.s
	idle := s.cfg.UDPIdleTimeout
	buf := make([]byte, 64<<10)
	for {
		a.relay.SetReadDeadline(time.Unix(0, a.lastActive.Load()).Add(idle))
		n, from, err := a.relay.ReadFromUDPAddrPort(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if time.Since(time.Unix(0, a.lastActive.Load())) >= idle {
					a.log.Debug("socks5: UDP association idle", "timeout", idle)
					a.close()
					return
				}
				continue
			}
			a.close()
			return
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if from.Addr() != a.clientIP {
			s.c.udpDropForeign.Add(1)
			continue
		}
		if c := a.client.Load(); c == nil {
			a.client.Store(&from)
		} else if *c != from {
			s.c.udpDropForeign.Add(1)
			continue
		}
		h, payload, err := ParseUDPHeader(buf[:n])
		if err != nil {
			s.c.udpDropMalformed.Add(1)
			continue
		}
		if h.Frag != 0 {
			s.c.udpDropFrag.Add(1)
			continue
		}
		dst, ok := a.resolve(h.Addr)
		if !ok {
			s.c.udpDropAddress.Add(1)
			continue
		}
		pc, err := a.overlay(dst.Addr())
		if err != nil {
			s.c.udpDropSend.Add(1)
			a.log.Debug("socks5: overlay UDP socket", "err", err)
			continue
		}
		if _, err := pc.WriteTo(payload, net.UDPAddrFromAddrPort(dst)); err != nil {
			s.c.udpDropSend.Add(1)
			continue
		}
		a.touch()
		s.c.udpUp.Add(1)
		s.c.bytesUp.Add(uint64(len(payload)))
	}
}

// resolve returns the destination of a datagram as an IP and port.
func (a *association) resolve(dst Addr) (netip.AddrPort, bool) {
	if dst.Name == "" {
		return netip.AddrPortFrom(dst.IP.Unmap(), dst.Port), true
	}
	r := a.s.cfg.Resolver
	if r == nil {
		return netip.AddrPort{}, false
	}
	ctx, cancel := context.WithTimeout(a.s.ctx, a.s.cfg.HandshakeTimeout)
	defer cancel()
	ips, err := r.LookupNetIP(ctx, "ip", dst.Name)
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ips[0].Unmap(), dst.Port), true
}

// overlay returns the overlay socket for ip's family, opening it and
// starting its reader on first use.
func (a *association) overlay(ip netip.Addr) (net.PacketConn, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, net.ErrClosed
	}
	pc, unspec := &a.overlay4, netip.IPv4Unspecified()
	if ip.Is6() {
		pc, unspec = &a.overlay6, netip.IPv6Unspecified()
	}
	if *pc != nil {
		return *pc, nil
	}
	c, err := a.s.cfg.Dialer.ListenUDP(netip.AddrPortFrom(unspec, 0))
	if err != nil {
		return nil, err
	}
	*pc = c
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.toClient(c)
	}()
	return c, nil
}

// toClient relays datagrams from the overlay socket pc to the client, each
// behind a SOCKS UDP header naming its source. The header is written into
// headroom in front of the payload: no copy.
func (a *association) toClient(pc net.PacketConn) {
	s := a.s
	buf := make([]byte, maxUDPHeaderLen+64<<10)
	for {
		n, from, err := pc.ReadFrom(buf[maxUDPHeaderLen:])
		if err != nil {
			return
		}
		client := a.client.Load()
		if client == nil {
			continue // no datagram from the client yet: nowhere to send
		}
		h := UDPHeader{Addr: AddrFromAddrPort(addrPortOf(from))}
		start := maxUDPHeaderLen - h.Len()
		h.Encode(buf[start:])
		if _, err := a.relay.WriteToUDPAddrPort(buf[start:maxUDPHeaderLen+n], *client); err != nil {
			s.c.udpDropSend.Add(1)
			continue
		}
		a.touch()
		s.c.udpDown.Add(1)
		s.c.bytesDown.Add(uint64(n))
	}
}
