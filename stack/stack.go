package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// PacketBuffer is gVisor's packet buffer, re-exported so that protocol
// packages need not import gVisor's stack package next to this one.
type PacketBuffer = gstack.PacketBuffer

// LinkEndpoint is gVisor's link endpoint interface, re-exported.
type LinkEndpoint = gstack.LinkEndpoint

// NICID identifies a NIC within a Stack.
type NICID = tcpip.NICID

// Options configure a Stack. The zero value is a usable default.
type Options struct {
	// Logger receives control-plane events (never per-packet ones).
	// Nil discards.
	Logger *slog.Logger

	// TCPBufferSize is the TCP send and receive buffer in bytes (0 = 4
	// MiB, at least 64 KiB). Large buffers matter for throughput over fast
	// in-process wires.
	TCPBufferSize int

	// TCPAutoTune starts TCP buffers at a quarter of TCPBufferSize and
	// lets gVisor's receive-buffer moderation grow them, which saves memory
	// with many connections. Off by default: buffers are fixed at
	// TCPBufferSize, since the moderation made single-stream throughput
	// over in-process wires bimodal on these 2-core machines (about 10 or
	// 25 Gbit/s, from run to run).
	TCPAutoTune bool

	// WrapDevice, if set, wraps the link endpoint of every tunnel device
	// created in this stack (NewDevice) before it is attached: for L2
	// devices below gVisor's Ethernet wrapper, so the wrapper sees whole
	// frames. It is the place for a packet capture of the inner traffic
	// (endpoints/capture: LinkEthernet for L2, LinkRaw for L3).
	WrapDevice func(name string, layer Layer, ep LinkEndpoint) (LinkEndpoint, error)
}

// Stack is a gVisor network stack with IPv4, IPv6, ARP, UDP, TCP and ICMP,
// plus the registries the tunnel framework needs: tunnel sockets, devices and
// IP protocol handlers for resubmitted packets. The kernel analog is one
// network namespace.
type Stack struct {
	gs         *gstack.Stack
	log        *slog.Logger
	wrapDevice func(name string, layer Layer, ep LinkEndpoint) (LinkEndpoint, error)

	// routeGen is bumped whenever routes, addresses or NICs change through
	// this type, invalidating the sockets' route caches.
	routeGen atomic.Uint64

	// ipProtos are the handlers for "resubmit as IP protocol N" verdicts
	// (the kernel's inet_protos table), indexed by protocol number.
	ipProtos [256]atomic.Pointer[ipProtoEntry]

	icmpTapOnce sync.Once

	mu      sync.Mutex
	sockets map[*Socket]struct{}
	devices map[*Device]struct{}
	closed  bool
}

type ipProtoEntry struct{ h IPProtocolHandler }

// IPProtocolHandler receives packets resubmitted as IP protocol N by an
// Encap's Resubmit verdict (FOU's IPIP, IPv6-in-IP, GRE). It is the analog
// of a struct net_protocol handler.
type IPProtocolHandler interface {
	// ReceiveIP is called with pkt's data positioned at the inner protocol's
	// header; src and dst are the outer addresses. pkt is borrowed.
	ReceiveIP(pkt *PacketBuffer, src, dst netip.Addr)
}

// New returns a Stack.
func New(opts Options) *Stack {
	gs := gstack.New(gstack.Options{
		NetworkProtocols:   []gstack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []gstack.TransportProtocolFactory{udp.NewProtocol, tcp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
		HandleLocal:        true,
	})
	bufSize := opts.TCPBufferSize
	if bufSize <= 0 {
		bufSize = 4 << 20
	}
	bufSize = max(bufSize, 64<<10) // gVisor refuses ranges whose default is below its minimum
	def := bufSize
	if opts.TCPAutoTune {
		def = bufSize / 4
	}
	sack := tcpip.TCPSACKEnabled(true)
	gs.SetTransportProtocolOption(tcp.ProtocolNumber, &sack)
	gs.SetTransportProtocolOption(tcp.ProtocolNumber, &tcpip.TCPSendBufferSizeRangeOption{Min: 4096, Default: def, Max: bufSize})
	gs.SetTransportProtocolOption(tcp.ProtocolNumber, &tcpip.TCPReceiveBufferSizeRangeOption{Min: 4096, Default: def, Max: bufSize})
	moderate := tcpip.TCPModerateReceiveBufferOption(opts.TCPAutoTune)
	gs.SetTransportProtocolOption(tcp.ProtocolNumber, &moderate)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Stack{
		gs:         gs,
		log:        log,
		wrapDevice: opts.WrapDevice,
		sockets:    make(map[*Socket]struct{}),
		devices:    make(map[*Device]struct{}),
	}
}

// GVisor returns the underlying gVisor stack, for what this type does not
// wrap. Route or address changes made there must be followed by
// InvalidateRoutes so that tunnel sockets drop their cached routes.
func (s *Stack) GVisor() *gstack.Stack { return s.gs }

// InvalidateRoutes drops the route caches of all tunnel sockets. The helpers
// of this type call it themselves.
func (s *Stack) InvalidateRoutes() { s.routeGen.Add(1) }

// Close closes every tunnel socket and device of the stack, then the gVisor
// stack itself, and waits for their goroutines to stop.
func (s *Stack) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	socks := make([]*Socket, 0, len(s.sockets))
	for so := range s.sockets {
		socks = append(socks, so)
	}
	devs := make([]*Device, 0, len(s.devices))
	for d := range s.devices {
		devs = append(devs, d)
	}
	s.mu.Unlock()
	for _, d := range devs {
		d.Close()
	}
	for _, so := range socks {
		so.Close()
	}
	// Remove the NICs before gVisor's Destroy: Destroy waits for link
	// endpoints while holding the stack lock, which an endpoint's delivery
	// goroutine may be waiting for. RemoveNIC closes each endpoint outside
	// that lock, and a well-behaved endpoint's Close waits for its own
	// goroutines.
	for id := range s.gs.NICInfo() {
		s.gs.RemoveNIC(id)
	}
	s.gs.Destroy()
}

// NICOptions configure AddNIC.
type NICOptions struct {
	// Name is the NIC's name; empty picks "nicN".
	Name string
	// Promiscuous makes the NIC accept packets for any address (a router
	// port). Off by default.
	Promiscuous bool
}

// AddNIC attaches a link endpoint as a new NIC and returns its ID.
func (s *Stack) AddNIC(ep LinkEndpoint, opts NICOptions) (NICID, error) {
	id := s.gs.NextNICID()
	name := opts.Name
	if name == "" {
		name = fmt.Sprintf("nic%d", id)
	}
	if _, ok := s.NICByName(name); ok {
		return 0, fmt.Errorf("NIC name %q: %w", name, ErrExists)
	}
	if err := s.gs.CreateNICWithOptions(id, ep, gstack.NICOptions{Name: name}); err != nil {
		return 0, fmt.Errorf("create NIC %q: %w", name, tcpipErr(err))
	}
	if opts.Promiscuous {
		s.gs.SetPromiscuousMode(id, true)
	}
	s.InvalidateRoutes()
	return id, nil
}

// RemoveNIC removes a NIC with its addresses and routes.
func (s *Stack) RemoveNIC(id NICID) error {
	s.gs.RemoveRoutes(func(r tcpip.Route) bool { return r.NIC == id })
	defer s.InvalidateRoutes()
	if err := s.gs.RemoveNIC(id); err != nil {
		return fmt.Errorf("remove NIC %d: %w", id, tcpipErr(err))
	}
	return nil
}

// NICByName returns the ID of the NIC called name.
func (s *Stack) NICByName(name string) (NICID, bool) {
	for id, info := range s.gs.NICInfo() {
		if info.Name == name {
			return id, true
		}
	}
	return 0, false
}

// NICName returns the name of NIC id, or "" if there is none.
func (s *Stack) NICName(id NICID) string { return s.gs.FindNICNameFromID(id) }

// AddAddress assigns p.Addr() to NIC nic and, as the kernel does, adds the
// connected route for p's subnet through that NIC.
func (s *Stack) AddAddress(nic NICID, p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("address %v: %w", p, ErrInvalid)
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return fmt.Errorf("address %v: %w: an IPv4-mapped prefix needs at least 96 bits", p, ErrInvalid)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	pa := tcpip.ProtocolAddress{
		Protocol: netProto(p.Addr()),
		AddressWithPrefix: tcpip.AddressWithPrefix{
			Address:   tcpipAddr(p.Addr()),
			PrefixLen: p.Bits(),
		},
	}
	if err := s.gs.AddProtocolAddress(nic, pa, gstack.AddressProperties{}); err != nil {
		return fmt.Errorf("add address %v to NIC %d: %w", p, nic, tcpipErr(err))
	}
	if err := s.AddRoute(p.Masked(), netip.Addr{}, nic); err != nil {
		return err
	}
	return nil
}

// AddRoute adds a route to dst through NIC nic, via gateway gw if gw is
// valid. Longer prefixes win, as in the kernel.
func (s *Stack) AddRoute(dst netip.Prefix, gw netip.Addr, nic NICID) error {
	if !dst.IsValid() {
		return fmt.Errorf("route destination %v: %w", dst, ErrInvalid)
	}
	if gw.IsValid() && netProto(gw) != netProto(dst.Addr()) {
		return fmt.Errorf("route gateway %v for %v: %w: address families differ", gw, dst, ErrInvalid)
	}
	if s.NICName(nic) == "" {
		return fmt.Errorf("route NIC %d: %w", nic, ErrNotFound)
	}
	sn, err := subnet(dst)
	if err != nil {
		return fmt.Errorf("route destination %v: %w", dst, err)
	}
	s.gs.AddRoute(tcpip.Route{Destination: sn, Gateway: tcpipAddr(gw), NIC: nic})
	s.InvalidateRoutes()
	return nil
}

// DialTCP connects to addr over TCP.
func (s *Stack) DialTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	return gonet.DialContextTCP(ctx, s.gs, fullAddr(addr, 0), netProto(addr.Addr()))
}

// ListenTCP listens for TCP connections on addr (a zero address listens on
// all addresses of addr's family; use netip.IPv6Unspecified for both).
func (s *Stack) ListenTCP(addr netip.AddrPort) (net.Listener, error) {
	fa := fullAddr(addr, 0)
	if addr.Addr().IsUnspecified() {
		fa.Addr = tcpip.Address{}
	}
	return gonet.ListenTCP(s.gs, fa, netProto(addr.Addr()))
}

// ListenUDP opens a UDP socket bound to addr.
func (s *Stack) ListenUDP(addr netip.AddrPort) (net.PacketConn, error) {
	fa := fullAddr(addr, 0)
	if addr.Addr().IsUnspecified() {
		fa.Addr = tcpip.Address{}
	}
	return gonet.DialUDP(s.gs, &fa, nil, netProto(addr.Addr()))
}

// DialUDP opens a UDP socket connected to raddr.
func (s *Stack) DialUDP(raddr netip.AddrPort) (net.Conn, error) {
	fa := fullAddr(raddr, 0)
	return gonet.DialUDP(s.gs, nil, &fa, netProto(raddr.Addr()))
}

// Sentinel errors. Errors from this package wrap one of these (or a
// gVisor error converted by tcpipErr) with the field they concern.
var (
	// ErrInvalid: a configuration value is invalid.
	ErrInvalid = errors.New("invalid value")
	// ErrExists: the name, port or entry is already in use.
	ErrExists = errors.New("already exists")
	// ErrNotFound: the NIC, route or entry does not exist.
	ErrNotFound = errors.New("not found")
	// ErrClosed: the socket, device or stack is closed.
	ErrClosed = errors.New("closed")
	// ErrNoRoute: there is no route to the destination.
	ErrNoRoute = errors.New("no route to host")
	// ErrLoop: the outer route would send the packet into its own tunnel
	// (the kernel's ELOOP).
	ErrLoop = errors.New("tunnel route loop")
	// ErrNestingLimit: the packet is nested deeper than MaxNesting.
	ErrNestingLimit = errors.New("tunnel nesting limit reached")
	// ErrTooBig: the packet exceeds the path MTU and may not be fragmented.
	ErrTooBig = errors.New("packet too big for path MTU")
)

// tcpipErr converts a gVisor error into a Go error; tcpip.Error never
// escapes this package.
func tcpipErr(err tcpip.Error) error {
	if err == nil {
		return nil
	}
	switch err.(type) {
	case *tcpip.ErrPortInUse, *tcpip.ErrDuplicateAddress, *tcpip.ErrDuplicateNICID:
		return fmt.Errorf("%w (%s)", ErrExists, err)
	case *tcpip.ErrUnknownNICID, *tcpip.ErrBadLocalAddress:
		return fmt.Errorf("%w (%s)", ErrNotFound, err)
	case *tcpip.ErrHostUnreachable, *tcpip.ErrNetworkUnreachable:
		return fmt.Errorf("%w (%s)", ErrNoRoute, err)
	case *tcpip.ErrMessageTooLong:
		return fmt.Errorf("%w (%s)", ErrTooBig, err)
	case *tcpip.ErrClosedForSend, *tcpip.ErrClosedForReceive, *tcpip.ErrInvalidEndpointState:
		return fmt.Errorf("%w (%s)", ErrClosed, err)
	}
	return errors.New(err.String())
}
