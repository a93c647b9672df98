package stack

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/ports"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// SocketConfig configures a tunnel socket; it is the kernel's struct
// udp_port_cfg plus the checksum flags of struct udp_tunnel_sock_cfg.
type SocketConfig struct {
	// Local is the address and port to bind. A zero address binds the
	// port on every address of both families; an IPv4 or IPv6 address
	// binds that family only. Port 0 picks an ephemeral port.
	Local netip.AddrPort
	// Peer, when valid, connects the socket: only datagrams from Peer are
	// accepted (the kernel's udp_port_cfg.peer_ip/peer_udp_port).
	Peer netip.AddrPort
	// NIC, when non-zero, binds the socket to that NIC for receive and
	// transmit (SO_BINDTODEVICE).
	NIC NICID
	// Checksum is the UDP checksum policy.
	Checksum ChecksumPolicy
	// QueueLen bounds the queue of datagrams an Encap passes to normal UDP
	// (PassToUDP), read through PacketConn. 0 means 256.
	QueueLen int
}

// ChecksumPolicy is the outer UDP checksum policy of a tunnel socket.
//
// By default checksums are computed on transmit and verified on receive;
// IPv4's zero checksum ("no checksum", RFC 768) is always accepted, IPv6's
// only where ZeroRx6 allows it (RFC 6935, RFC 6936).
type ChecksumPolicy struct {
	// ZeroTx4 sends IPv4 datagrams without a checksum (the kernel's
	// udp_set_no_check_tx; `ip link add type vxlan noudpcsum`).
	ZeroTx4 bool
	// ZeroTx6 sends IPv6 datagrams with a zero checksum (RFC 6935;
	// `udp6zerocsumtx`).
	ZeroTx6 bool
	// ZeroRx6 accepts IPv6 datagrams with a zero checksum (RFC 6936;
	// `udp6zerocsumrx`). Without it they are dropped as DropBadChecksum.
	ZeroRx6 bool
}

// Encap receives the datagrams of a tunnel socket: it is the kernel's
// encap_rcv. Implementations may also implement ErrorReceiver and
// EncapCloser.
type Encap interface {
	// Receive is called on the delivering goroutine for every datagram
	// that passed the UDP length and checksum checks. pkt's transport
	// header is the UDP header and its data the UDP payload; src and dst
	// are the outer addresses and ports. pkt is borrowed: IncRef it to
	// keep it. An Encap that returns PassToUDP must not have consumed any
	// of pkt's data.
	Receive(pkt *PacketBuffer, src, dst netip.AddrPort) Verdict
}

// ErrorReceiver is implemented by an Encap that wants the ICMP errors of
// its outer flows (the kernel's encap_err_rcv).
type ErrorReceiver interface {
	ReceiveError(e ICMPError)
}

// ErrorLookup is implemented by an Encap that can tell whether the
// datagram an ICMP error quotes is one of its own (the kernel's
// encap_err_lookup): quoted is the quoted UDP payload, often truncated by
// the router. Errors it rejects are ignored, so that a forged ICMP message
// must at least name a tunnel that exists.
type ErrorLookup interface {
	LookupError(quoted []byte) bool
}

// EncapCloser is implemented by an Encap that must release resources when
// its socket is closed (the kernel's encap_destroy).
type EncapCloser interface {
	CloseEncap()
}

// EncapBinder is implemented by an Encap that keeps its socket: BindSocket
// is called once by OpenTunnelSocket, before the port can deliver a
// datagram, so that Receive never sees the socket unset. (Assigning the
// socket after OpenTunnelSocket returns races with the first datagram.)
type EncapBinder interface {
	BindSocket(so *Socket)
}

// ICMPErrorKind classifies an ICMP error for an outer flow.
type ICMPErrorKind int

// ICMP error kinds.
const (
	// ICMPPacketTooBig is IPv4 "fragmentation needed" or IPv6 "packet too
	// big"; ICMPError.MTU carries the path MTU.
	ICMPPacketTooBig ICMPErrorKind = iota
	// ICMPUnreachable is any other destination unreachable error.
	ICMPUnreachable
	// ICMPPortUnreachable: nothing listens on the remote port.
	ICMPPortUnreachable
	// ICMPOther is any other error (time exceeded, parameter problem).
	ICMPOther
)

// ICMPError is an ICMP error for one outer flow of a tunnel socket.
type ICMPError struct {
	Kind ICMPErrorKind
	// Dst is the outer destination of the packet that caused the error.
	Dst netip.AddrPort
	// MTU is the path MTU (IP packet size) for ICMPPacketTooBig.
	MTU uint32
}

// Verdict is what an Encap decided for a datagram: the kernel's encap_rcv
// return value (0 consumed, > 0 pass on to UDP, < 0 resubmit as IP protocol
// -ret).
type Verdict int

const (
	// Consumed: the Encap took the datagram (delivered or dropped it).
	Consumed Verdict = 0
	// PassToUDP: deliver the datagram to the socket's own UDP queue, read
	// through PacketConn (L2TP control messages, GTP-U for unknown TEIDs).
	PassToUDP Verdict = 1
)

// Resubmit returns the verdict that hands the packet, with data positioned
// after whatever the Encap consumed, to the handler registered for IP
// protocol proto (see Stack.RegisterIPProtocol). FOU uses it.
//
// The kernel's encap_rcv returns -proto, which leaves no way to resubmit
// protocol 0 (it reads as "consumed"); here a verdict is -(proto+1), so that
// a protocol field of 0 taken from a header (GUE's, say) is no silent
// "consumed" but reaches the missing handler and is counted as
// DropNoHandler.
func Resubmit(proto tcpip.TransportProtocolNumber) Verdict { return Verdict(-int(proto) - 1) }

// ResubmitProtocol reports whether v is a resubmit verdict, and for which
// IP protocol.
func (v Verdict) ResubmitProtocol() (tcpip.TransportProtocolNumber, bool) {
	if v < 0 && v >= -256 {
		return tcpip.TransportProtocolNumber(-v - 1), true
	}
	return 0, false
}

// RegisterIPProtocol installs the handler for packets resubmitted as IP
// protocol proto. It fails if proto already has a handler.
func (s *Stack) RegisterIPProtocol(proto tcpip.TransportProtocolNumber, h IPProtocolHandler) error {
	if proto == 0 || proto > 255 || h == nil {
		return fmt.Errorf("IP protocol %d: %w", proto, ErrInvalid)
	}
	if !s.ipProtos[proto].CompareAndSwap(nil, &ipProtoEntry{h}) {
		return fmt.Errorf("IP protocol %d: %w", proto, ErrExists)
	}
	return nil
}

// UnregisterIPProtocol removes the handler for IP protocol proto.
func (s *Stack) UnregisterIPProtocol(proto tcpip.TransportProtocolNumber) {
	if proto <= 255 {
		s.ipProtos[proto].Store(nil)
	}
}

// Socket is a tunnel socket: a UDP port of a Stack whose datagrams go to an
// Encap (the kernel's UDP socket after setup_udp_tunnel_sock). Create one
// with Stack.OpenTunnelSocket; it is safe for concurrent use.
type Socket struct {
	st        *Stack
	cfg       SocketConfig
	encap     Encap
	netProtos []tcpip.NetworkProtocolNumber
	id        gstack.TransportEndpointID
	res       ports.Reservation

	counters   Counters
	icmpErrors atomic.Uint64

	routes routeCache
	pmtu   pmtuCache
	queue  *datagramQueue

	closeOnce sync.Once
	closed    atomic.Bool
}

// OpenTunnelSocket opens a tunnel socket (udp_sock_create followed by
// setup_udp_tunnel_sock): the port is reserved in the stack's port manager,
// so no other UDP socket can take it, and datagrams to it are handed to
// encap.
func (s *Stack) OpenTunnelSocket(cfg SocketConfig, encap Encap) (*Socket, error) {
	if encap == nil {
		return nil, fmt.Errorf("encap: %w: nil", ErrInvalid)
	}
	local := cfg.Local.Addr()
	if local.IsValid() && (local.IsMulticast() || local.Is4In6()) {
		return nil, fmt.Errorf("local address %v: %w", local, ErrInvalid)
	}
	if local.IsUnspecified() {
		local = netip.Addr{}
	}
	var protos []tcpip.NetworkProtocolNumber
	if local.IsValid() {
		protos = []tcpip.NetworkProtocolNumber{netProto(local)}
	} else {
		protos = []tcpip.NetworkProtocolNumber{header.IPv4ProtocolNumber, header.IPv6ProtocolNumber}
	}
	if cfg.Peer.IsValid() {
		if cfg.Peer.Port() == 0 || cfg.Peer.Addr().IsUnspecified() {
			return nil, fmt.Errorf("peer %v: %w: needs an address and a port", cfg.Peer, ErrInvalid)
		}
		if local.IsValid() && netProto(cfg.Peer.Addr()) != protos[0] {
			return nil, fmt.Errorf("peer %v: %w: address family differs from local %v", cfg.Peer, ErrInvalid, local)
		}
		if !local.IsValid() {
			protos = []tcpip.NetworkProtocolNumber{netProto(cfg.Peer.Addr())}
		}
	}
	if cfg.NIC != 0 && s.NICName(cfg.NIC) == "" {
		return nil, fmt.Errorf("NIC %d: %w", cfg.NIC, ErrNotFound)
	}
	if cfg.QueueLen < 0 {
		return nil, fmt.Errorf("queue length %d: %w", cfg.QueueLen, ErrInvalid)
	}
	if cfg.QueueLen == 0 {
		cfg.QueueLen = 256
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("stack: %w", ErrClosed)
	}

	so := &Socket{
		st:        s,
		cfg:       cfg,
		encap:     encap,
		netProtos: protos,
		queue:     newDatagramQueue(cfg.QueueLen),
	}
	so.res = ports.Reservation{
		Networks:     protos,
		Transport:    header.UDPProtocolNumber,
		Addr:         tcpipAddr(local),
		Port:         cfg.Local.Port(),
		BindToDevice: cfg.NIC,
		Dest:         fullAddr(cfg.Peer, 0),
	}
	port, terr := s.gs.PortManager.ReservePort(s.gs.SecureRNG(), so.res, nil)
	if terr != nil {
		return nil, fmt.Errorf("local port %d: %w", cfg.Local.Port(), tcpipErr(terr))
	}
	so.res.Port = port
	if b, ok := encap.(EncapBinder); ok {
		b.BindSocket(so)
	}
	so.id = gstack.TransportEndpointID{
		LocalPort:     port,
		LocalAddress:  tcpipAddr(local),
		RemotePort:    cfg.Peer.Port(),
		RemoteAddress: tcpipAddr(cfg.Peer.Addr()),
	}
	if terr := s.gs.RegisterTransportEndpoint(protos, header.UDPProtocolNumber, so.id, (*socketEndpoint)(so), ports.Flags{}, cfg.NIC); terr != nil {
		s.gs.PortManager.ReleasePort(so.res)
		return nil, fmt.Errorf("register port %d: %w", port, tcpipErr(terr))
	}
	s.icmpTapOnce.Do(s.registerICMPTap)
	s.mu.Lock()
	s.sockets[so] = struct{}{}
	s.mu.Unlock()
	s.log.Info("tunnel socket open", "local", so.LocalAddr(), "peer", cfg.Peer, "nic", cfg.NIC)
	return so, nil
}

// LocalAddr returns the bound address and port (the port is the one picked
// when the configured port was 0).
func (so *Socket) LocalAddr() netip.AddrPort {
	return netip.AddrPortFrom(netipAddr(so.id.LocalAddress), so.id.LocalPort)
}

// Stack returns the stack the socket lives in.
func (so *Socket) Stack() *Stack { return so.st }

// Config returns the socket's configuration.
func (so *Socket) Config() SocketConfig { return so.cfg }

// Counters returns the socket's counters: rx/tx datagrams and bytes of UDP
// payload, and drops by reason.
func (so *Socket) Counters() *Counters { return &so.counters }

// ICMPErrors returns the number of ICMP errors received for the socket's
// outer flows.
func (so *Socket) ICMPErrors() uint64 { return so.icmpErrors.Load() }

// Close releases the socket (udp_tunnel_sock_release): it unregisters and
// frees the port, releases cached routes, closes the PassToUDP queue and
// calls the Encap's CloseEncap. It is idempotent.
func (so *Socket) Close() error {
	so.closeOnce.Do(func() {
		so.closed.Store(true)
		so.st.gs.UnregisterTransportEndpoint(so.netProtos, header.UDPProtocolNumber, so.id, (*socketEndpoint)(so), ports.Flags{}, so.cfg.NIC)
		so.st.gs.PortManager.ReleasePort(so.res)
		so.routes.flush()
		so.queue.close()
		if c, ok := so.encap.(EncapCloser); ok {
			c.CloseEncap()
		}
		so.st.mu.Lock()
		delete(so.st.sockets, so)
		so.st.mu.Unlock()
		so.st.log.Info("tunnel socket closed", "local", so.LocalAddr())
	})
	return nil
}

// socketEndpoint is the face a Socket shows gVisor: a transport endpoint.
// Its methods are in recv.go.
type socketEndpoint Socket

var _ gstack.TransportEndpoint = (*socketEndpoint)(nil)

// Abort implements stack.TransportEndpoint.Abort; the stack calls it when
// it closes.
func (e *socketEndpoint) Abort() { (*Socket)(e).Close() }

// Wait implements stack.TransportEndpoint.Wait. A socket owns no goroutine.
func (*socketEndpoint) Wait() {}

// pmtuExpiry is how long a learned path MTU is kept (the kernel's
// ip_rt_mtu_expires, 10 minutes).
const pmtuExpiry = 10 * time.Minute

// pmtuCache holds the path MTUs learned from ICMP errors, per outer
// destination. Lookups cost one atomic load while it is empty.
type pmtuCache struct {
	n  atomic.Int32
	mu sync.Mutex
	m  map[netip.Addr]pmtuEntry
}

type pmtuEntry struct {
	mtu     uint32
	expires time.Time
}

func (c *pmtuCache) update(dst netip.Addr, mtu uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[netip.Addr]pmtuEntry)
	}
	if e, ok := c.m[dst]; ok && e.mtu <= mtu && time.Now().Before(e.expires) {
		return // never raise a PMTU from an ICMP error
	}
	c.m[dst] = pmtuEntry{mtu: mtu, expires: time.Now().Add(pmtuExpiry)}
	c.n.Store(int32(len(c.m)))
}

// get returns the path MTU to dst, or 0 if none is known.
func (c *pmtuCache) get(dst netip.Addr) uint32 {
	if c.n.Load() == 0 {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[dst]
	if !ok {
		return 0
	}
	if time.Now().After(e.expires) {
		delete(c.m, dst)
		c.n.Store(int32(len(c.m)))
		return 0
	}
	return e.mtu
}

// PathMTU returns the path MTU to dst learned from ICMP errors, or 0 when
// none is known (the route's MTU applies).
func (so *Socket) PathMTU(dst netip.Addr) uint32 { return so.pmtu.get(dst) }

// routeCache caches outer routes per (source, destination), like the
// kernel's dst_cache. Readers load an immutable snapshot without a lock;
// writers copy it (a socket talks to few remotes). Entries are dropped when
// the stack's route generation changes. As with the kernel's RCU-freed dst
// entries, a writer may still use a route that a concurrent flush has just
// released; its fields stay valid (Release only drops the local address
// reference), so that one write goes out or fails like any other. The flush
// at Close is final: a route an Xmit looks up afterwards is used once and
// released, never cached.
type routeCache struct {
	snap   atomic.Pointer[routeSnapshot]
	mu     sync.Mutex // serializes writers
	closed bool       // flushed for good: routes put now are released
}

type routeSnapshot struct {
	gen uint64
	m   map[routeKey]*gstack.Route
}

type routeKey struct {
	src, dst tcpip.Address
}

func (c *routeCache) get(gen uint64, k routeKey) *gstack.Route {
	if s := c.snap.Load(); s != nil && s.gen == gen {
		return s.m[k]
	}
	return nil
}

// put stores r and returns the route to use: r, or a route another
// goroutine stored first (then r is released).
func (c *routeCache) put(gen uint64, k routeKey, r *gstack.Route) *gstack.Route {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		// An Xmit racing Close: use the route once, keep nothing.
		r.Release()
		return r
	}
	old := c.snap.Load()
	next := &routeSnapshot{gen: gen, m: make(map[routeKey]*gstack.Route)}
	if old != nil && old.gen == gen {
		if cur := old.m[k]; cur != nil {
			r.Release()
			return cur
		}
		for ok, or := range old.m {
			next.m[ok] = or
		}
	} else if old != nil {
		releaseAll(old.m)
	}
	next.m[k] = r
	c.snap.Store(next)
	return r
}

func (c *routeCache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if old := c.snap.Swap(nil); old != nil {
		releaseAll(old.m)
	}
}

func releaseAll(m map[routeKey]*gstack.Route) {
	for _, r := range m {
		r.Release()
	}
}
