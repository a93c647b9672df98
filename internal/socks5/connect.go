package socks5

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/udptunnel/udptunnel/internal/relay"
)

// connect serves CONNECT: dial the destination, reply with the overlay-side
// local address, then copy both ways.
func (s *Server) connect(conn net.Conn, req request, deadline time.Time, log *slog.Logger) {
	ctx, cancel := context.WithDeadline(s.ctx, deadline)
	target, rep, err := s.dial(ctx, req.Dst)
	cancel()
	// The dial may have used up the handshake's time: give the reply its own.
	conn.SetWriteDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	if err != nil {
		s.reply(conn, rep, Addr{})
		log.Debug("socks5: dial", "err", err, "reply", rep.String())
		return
	}
	if !s.track(target) {
		target.Close()
		return
	}
	defer s.release(target)
	if err := s.reply(conn, ReplySucceeded, AddrFromAddrPort(addrPortOf(target.LocalAddr()))); err != nil {
		return
	}
	conn.SetDeadline(time.Time{})
	relay.Pipe(conn, nil, target, &s.c.bytesUp, &s.c.bytesDown)
}

// dial connects to dst, resolving a name with the Resolver, and returns the
// reply code that describes a failure.
func (s *Server) dial(ctx context.Context, dst Addr) (net.Conn, Reply, error) {
	if dst.Name == "" {
		c, err := s.cfg.Dialer.DialTCP(ctx, netip.AddrPortFrom(dst.IP.Unmap(), dst.Port))
		if err != nil {
			return nil, replyFor(err), err
		}
		return c, ReplySucceeded, nil
	}
	if s.cfg.Resolver == nil {
		return nil, ReplyAddrTypeNotSupported, errors.New("socks5: no resolver for domain names")
	}
	ips, err := s.cfg.Resolver.LookupNetIP(ctx, "ip", dst.Name)
	if err == nil && len(ips) == 0 {
		err = errors.New("socks5: name has no address")
	}
	if err != nil {
		return nil, ReplyHostUnreachable, err
	}
	rep := ReplyHostUnreachable
	for _, ip := range ips {
		var c net.Conn
		c, err = s.cfg.Dialer.DialTCP(ctx, netip.AddrPortFrom(ip.Unmap(), dst.Port))
		if err == nil {
			return c, ReplySucceeded, nil
		}
		rep = replyFor(err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, rep, err
}

// replyFor maps a dial error to a reply code. The host's errors carry an
// errno; stack.DialTCP's come from gVisor's gonet, which flattens a
// tcpip.Error to errors.New(err.String()), so for those the message is all
// that is left to go by (tcpip.ErrConnectionRefused, ErrNetworkUnreachable,
// ErrHostUnreachable, ErrHostDown, ErrTimeout, ErrNotPermitted; the stack
// package's ErrNoRoute has the same text as ErrHostUnreachable).
func replyFor(err error) Reply {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReplyConnectionRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return ReplyNetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.EHOSTDOWN), errors.Is(err, syscall.ETIMEDOUT):
		return ReplyHostUnreachable
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return ReplyNotAllowed
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return ReplyHostUnreachable
	}
	msg := err.Error()
	for _, m := range gvisorReplies {
		if strings.HasSuffix(msg, m.text) {
			return m.rep
		}
	}
	return ReplyGeneralFailure
}

// gvisorReplies are the texts of gVisor's tcpip errors that a connect can
// fail with (pkg/tcpip/errors.go).
var gvisorReplies = []struct {
	text string
	rep  Reply
}{
	{"connection was refused", ReplyConnectionRefused},
	{"network is unreachable", ReplyNetworkUnreachable},
	{"no route to host", ReplyHostUnreachable},
	{"host is down", ReplyHostUnreachable},
	{"operation timed out", ReplyHostUnreachable},
	{"operation not permitted", ReplyNotAllowed},
}
