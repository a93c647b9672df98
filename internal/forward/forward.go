// Package forward provides static TCP and UDP port forwards between the
// host's own network and a udptunnel overlay stack, in both directions:
// a host port to an overlay address (HostToOverlay), and an overlay port to
// a host address (OverlayToHost).
//
// A TCP forward accepts connections and pipes each to a new connection to
// the target, with half-close. A UDP forward keeps a session table keyed by
// the client's address: each session is a connected upstream socket whose
// replies go back to that client, and ends after IdleTimeout without
// traffic either way. Expiry is deadline-based: each session's reader
// waits on a read deadline, so there are no timers per datagram and no
// janitor goroutine. A cap on sessions drops new clients beyond it.
//
// It is not a NAT and does not look inside the payloads. The kernel
// analog is an iptables DNAT rule with its conntrack entries, done here in
// userspace with sockets on either side. It lives next to the CLI, which
// wires it from configuration; both sides are Networks so that tests can
// put two in-process stacks face to face.
package forward

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/udptunnel/udptunnel/stack"
)

// Network is one side of a forward: a stack.Stack for the overlay, or
// HostNetwork for the host's own sockets.
type Network interface {
	DialTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error)
	ListenTCP(addr netip.AddrPort) (net.Listener, error)
	DialUDP(addr netip.AddrPort) (net.Conn, error)
	ListenUDP(addr netip.AddrPort) (net.PacketConn, error)
}

var _ Network = (*stack.Stack)(nil)

// HostNetwork is the host's own network, through package net.
var HostNetwork Network = hostNetwork{}

type hostNetwork struct{}

func (hostNetwork) DialTCP(ctx context.Context, a netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", a.String())
}

func (hostNetwork) ListenTCP(a netip.AddrPort) (net.Listener, error) {
	return net.ListenTCP("tcp", net.TCPAddrFromAddrPort(a))
}

func (hostNetwork) DialUDP(a netip.AddrPort) (net.Conn, error) {
	return net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(a))
}

func (hostNetwork) ListenUDP(a netip.AddrPort) (net.PacketConn, error) {
	return net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
}

// Proto is the transport a forward carries.
type Proto uint8

// Protocols. The zero value is invalid, so a forward must say which.
const (
	TCP Proto = iota + 1
	UDP
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("Proto(%d)", uint8(p))
}

// ParseProto parses "tcp" or "udp".
func ParseProto(s string) (Proto, error) {
	switch s {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	}
	return 0, fmt.Errorf("%w: protocol %q is not tcp or udp", ErrInvalid, s)
}

// Direction says which side listens and which side is dialled.
type Direction uint8

// Directions. The zero value is invalid, so a forward must say which.
const (
	// HostToOverlay listens on the host and dials into the overlay.
	HostToOverlay Direction = iota + 1
	// OverlayToHost listens in the overlay and dials on the host.
	OverlayToHost
)

func (d Direction) String() string {
	switch d {
	case HostToOverlay:
		return "host-to-overlay"
	case OverlayToHost:
		return "overlay-to-host"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// Defaults for zero Forward fields.
const (
	DefaultIdleTimeout = 60 * time.Second
	DefaultMaxSessions = 1024
	DefaultDialTimeout = 10 * time.Second
)

// ErrInvalid is wrapped by every configuration error; the message names
// the field.
var ErrInvalid = errors.New("invalid forward configuration")

// Forward describes one port forward.
type Forward struct {
	// Proto is TCP or UDP.
	Proto Proto
	// Direction is HostToOverlay or OverlayToHost.
	Direction Direction
	// Listen is where clients connect. Without an address it is the
	// loopback address 127.0.0.1 on the host, or every overlay address
	// (IPv4 and IPv6) in the overlay. Port 0 picks a free port: see
	// Forwarder.Addr.
	Listen netip.AddrPort
	// Target is where clients are forwarded to: an address and port.
	Target netip.AddrPort
	// IdleTimeout ends a UDP session after this long without a datagram
	// either way (0 = DefaultIdleTimeout). TCP connections have none:
	// setting it for TCP is an error.
	IdleTimeout time.Duration
	// MaxSessions caps UDP sessions or TCP connections open at once
	// (0 = DefaultMaxSessions); clients beyond it are dropped and counted.
	MaxSessions int
	// DialTimeout bounds a TCP connect to Target (0 = DefaultDialTimeout).
	DialTimeout time.Duration
	// Host is the host side (nil = HostNetwork). Tests set another stack.
	Host Network
	// Logger receives session and connection events at debug level, and
	// listener failures at error level (nil = discard).
	Logger *slog.Logger
}

// Validate checks f and returns an error that names the first bad field.
func (f *Forward) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
	}
	switch {
	case f.Proto != TCP && f.Proto != UDP:
		return bad("Proto", "%v is not tcp or udp", f.Proto)
	case f.Direction != HostToOverlay && f.Direction != OverlayToHost:
		return bad("Direction", "%v is not host-to-overlay or overlay-to-host", f.Direction)
	case f.Listen.Addr().Zone() != "":
		return bad("Listen", "zoned address %v is not supported", f.Listen)
	case !f.Target.Addr().IsValid():
		return bad("Target", "no address")
	case f.Target.Addr().IsUnspecified():
		return bad("Target", "%v is unspecified", f.Target.Addr())
	case f.Target.Addr().Zone() != "":
		return bad("Target", "zoned address %v is not supported", f.Target)
	case f.Target.Port() == 0:
		return bad("Target", "port 0")
	case f.IdleTimeout < 0:
		return bad("IdleTimeout", "negative (%v)", f.IdleTimeout)
	case f.IdleTimeout != 0 && f.Proto == TCP:
		return bad("IdleTimeout", "only UDP forwards have one")
	case f.MaxSessions < 0:
		return bad("MaxSessions", "negative (%d)", f.MaxSessions)
	case f.DialTimeout < 0:
		return bad("DialTimeout", "negative (%v)", f.DialTimeout)
	}
	return nil
}

// Stats are a forwarder's counters since Start.
type Stats struct {
	// Sessions counts UDP sessions or TCP connections created, Active those
	// open now, Expired the UDP sessions ended by IdleTimeout.
	Sessions, Active, Expired uint64
	// Datagrams and bytes from clients to the target (Up) and back (Down).
	// TCP counts bytes only.
	DatagramsUp, DatagramsDown, BytesUp, BytesDown uint64
	// Drops by reason: a new client beyond MaxSessions (a TCP connection
	// closed at once, or a UDP datagram dropped), a failed dial or
	// upstream socket, a datagram that could not be written either way.
	DropSessionCap, DropDial, DropWrite uint64
}

// Forwarder runs one Forward. Close stops it.
type Forwarder struct {
	cfg      Forward
	log      *slog.Logger
	listen   Network // the side with the listener
	dial     Network // the side that is dialled
	addr     net.Addr
	ctx      context.Context
	cancel   context.CancelFunc
	stopCtx  func() bool
	closer   func() error // closes the listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	closed   bool                  // Close was called
	stopping bool                  // Shutdown was called: the listener is closed
	conns    map[net.Conn]struct{} // TCP: both ends of every connection
	sessions map[netip.AddrPort]*session

	sessionsN, active, expired               atomic.Uint64
	dgramsUp, dgramsDown, bytesUp, bytesDown atomic.Uint64
	dropCap, dropDial, dropWrite             atomic.Uint64
}

// Start validates cfg, opens its listener on the listening side (overlay
// is the overlay stack) and starts forwarding. The forwarder stops when
// Close is called or ctx is done.
func Start(ctx context.Context, overlay Network, cfg Forward) (*Forwarder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if overlay == nil {
		return nil, fmt.Errorf("%w: overlay network is nil", ErrInvalid)
	}
	f := &Forwarder{
		cfg:      cfg,
		log:      cfg.Logger,
		conns:    make(map[net.Conn]struct{}),
		sessions: make(map[netip.AddrPort]*session),
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	host := cmp.Or[Network](cfg.Host, HostNetwork)
	f.cfg.IdleTimeout = cmp.Or(cfg.IdleTimeout, DefaultIdleTimeout)
	f.cfg.MaxSessions = cmp.Or(cfg.MaxSessions, DefaultMaxSessions)
	f.cfg.DialTimeout = cmp.Or(cfg.DialTimeout, DefaultDialTimeout)
	listen := cfg.Listen
	if cfg.Direction == HostToOverlay {
		f.listen, f.dial = host, overlay
		if !listen.Addr().IsValid() {
			listen = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), listen.Port())
		}
	} else {
		f.listen, f.dial = overlay, host
		if !listen.Addr().IsValid() {
			listen = netip.AddrPortFrom(netip.IPv6Unspecified(), listen.Port())
		}
	}
	f.log = f.log.With("forward", fmt.Sprintf("%v %v %v->%v", cfg.Proto, cfg.Direction, listen, cfg.Target))
	f.ctx, f.cancel = context.WithCancel(context.Background())
	switch cfg.Proto {
	case TCP:
		ln, err := f.listen.ListenTCP(listen)
		if err != nil {
			f.cancel()
			return nil, fmt.Errorf("forward: listen tcp %v: %w", listen, err)
		}
		f.addr, f.closer = ln.Addr(), ln.Close
		f.wg.Add(1)
		go f.acceptTCP(ln)
	case UDP:
		pc, err := f.listen.ListenUDP(listen)
		if err != nil {
			f.cancel()
			return nil, fmt.Errorf("forward: listen udp %v: %w", listen, err)
		}
		f.addr, f.closer = pc.LocalAddr(), pc.Close
		f.wg.Add(1)
		go f.serveUDP(pc)
	}
	// Held so that a ctx already done cannot run Close before stopCtx is set.
	f.mu.Lock()
	f.stopCtx = context.AfterFunc(ctx, func() { f.Close() })
	f.mu.Unlock()
	return f, nil
}

// Addr returns the address the forwarder listens on (with the port picked
// when Listen's was 0).
func (f *Forwarder) Addr() net.Addr { return f.addr }

// AddrPort is Addr as a netip.AddrPort.
func (f *Forwarder) AddrPort() netip.AddrPort {
	switch a := f.addr.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(f.addr.String())
	return ap
}

// Close stops the listener, closes every connection and session, and
// waits for the forwarder's goroutines to end. It is safe to call more
// than once.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		f.wg.Wait()
		return nil
	}
	f.closed = true
	f.cancel()
	f.closer()
	for c := range f.conns {
		c.Close()
	}
	for _, s := range f.sessions {
		s.up.Close()
	}
	stop := f.stopCtx
	f.mu.Unlock()
	if stop != nil {
		stop()
	}
	f.wg.Wait()
	return nil
}

// Stats returns a snapshot of the counters.
func (f *Forwarder) Stats() Stats {
	return Stats{
		Sessions:       f.sessionsN.Load(),
		Active:         f.active.Load(),
		Expired:        f.expired.Load(),
		DatagramsUp:    f.dgramsUp.Load(),
		DatagramsDown:  f.dgramsDown.Load(),
		BytesUp:        f.bytesUp.Load(),
		BytesDown:      f.bytesDown.Load(),
		DropSessionCap: f.dropCap.Load(),
		DropDial:       f.dropDial.Load(),
		DropWrite:      f.dropWrite.Load(),
	}
}

// Shutdown closes the listener, lets open TCP connections finish until ctx
// is done, then closes everything as Close does (UDP sessions have nothing
// in flight to wait for). It returns ctx's error if connections had to be
// cut.
func (f *Forwarder) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	if !f.closed && !f.stopping {
		f.stopping = true
		f.closer()
	}
	f.mu.Unlock()
	var err error
	if f.cfg.Proto == TCP {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for err == nil && f.active.Load() != 0 {
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case <-t.C:
			}
		}
	}
	f.Close()
	return err
}

// isClosed reports whether the listener was closed on purpose.
func (f *Forwarder) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed || f.stopping
}
