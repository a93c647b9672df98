package stack

// The transmit half of the tunnel framework, in the order a packet meets
// it:
//
//	inner IP (ip_local_out #1) -> tunnel Device.WritePackets (device.go)
//	-> the protocol's Transmitter: forwarding lookup, NewTunnelPacket
//	   (iptunnel_handle_offloads + skb_push of the tunnel header)
//	-> Socket.Xmit (udp_tunnel_xmit_skb / udp_tunnel6_xmit_skb): outer
//	   route (ip_route_output_key, cached like dst_cache), loop and nesting
//	   checks, PMTU/DF policy, UDP header and checksum (udp_set_csum)
//	-> Route.WritePacket: outer IP (iptunnel_xmit -> ip_local_out #2)
//	-> underlay NIC

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// MaxNesting is how deep tunnels may nest on one packet's path, the
// kernel's XMIT_RECURSION_LIMIT. A packet nested deeper is dropped and
// counted as DropNestingLimit, on transmit and on receive.
const MaxNesting = 8

// DefaultOuterHeadroom is the headroom a tunnel device reserves below its
// own encapsulation for the outer IP header and the underlay's link header,
// when it cannot know the underlay in advance. Packets that meet a deeper
// underlay are moved to a larger buffer (counted by nothing: it is correct,
// only slower).
const DefaultOuterHeadroom = 128

// The nesting depth of a packet rides in the top bits of
// PacketBuffer.Mark, since a goroutine has no per-CPU recursion counter to
// borrow as the kernel's dev_xmit_recursion does. The mark is the one field
// gVisor carries through every path a looping packet can take: Clone,
// CloneToInbound and IP fragmentation copy it (PacketBuffer.Owner, the
// first choice, is lost in fragmentation, which let a fragmenting loop
// recurse without end). The low 28 bits stay the application's SO_MARK.
const (
	nestShift = 28
	nestMask  = 0xf << nestShift
)

// NestingDepth returns how many tunnel encapsulations pkt is inside: 0 for
// a packet from an application, 1 after one encapsulation, and on receive
// 1 for a packet one tunnel deep.
func NestingDepth(pkt *PacketBuffer) int {
	return int(pkt.Mark&nestMask) >> nestShift
}

func setNestingDepth(pkt *PacketBuffer, d int) {
	if d > nestMask>>nestShift {
		d = nestMask >> nestShift
	}
	pkt.Mark = pkt.Mark&^nestMask | uint32(d)<<nestShift
}

// NewTunnelPacket starts an outer packet around inner, which is borrowed:
// the result shares inner's bytes (no copy) and uses the headroom that the
// upper layers reserved because the tunnel device's MaxHeaderLength
// included the encapsulation. Its transport header is tunnelHeaderLen bytes
// of tunnel header preceded by room for the UDP header, which Xmit fills;
// the returned slice is the tunnel header, for the caller to encode.
// tunnelHeaderLen must be even (all UDP tunnel headers are).
//
// The caller owns the result and passes it to Socket.Xmit (which consumes
// it) or DecRefs it.
func NewTunnelPacket(inner *PacketBuffer, tunnelHeaderLen int) (pkt *PacketBuffer, tunnelHeader []byte) {
	n := header.UDPMinimumSize + tunnelHeaderLen
	if inner.AvailableHeaderBytes() >= n+header.IPv6MinimumSize {
		pkt = inner.CloneToInbound()
	} else {
		// Not enough headroom (the packet did not come through our
		// device's MaxHeaderLength): the skb_cow_head slow path.
		pkt = gstack.NewPacketBuffer(gstack.PacketBufferOptions{
			ReserveHeaderBytes: n + DefaultOuterHeadroom,
			Payload:            inner.ToBuffer(),
		})
	}
	setNestingDepth(pkt, NestingDepth(inner)+1)
	// A GSO super-packet stays one: the outer IP layer must not fragment
	// it (Xmit drops the mark where the underlay cannot take it). The
	// descriptor still describes the inner TCP segment; memlink only reads
	// the mark, but an underlay that segments in the host (fdbased with a
	// virtio header) would need a UDP-tunnel GSO type, which gVisor lacks:
	// such underlays must not advertise host GSO to tunnels.
	pkt.GSOOptions = inner.GSOOptions
	th := pkt.TransportHeader().Push(n)
	pkt.TransportProtocolNumber = header.UDPProtocolNumber
	return pkt, th[header.UDPMinimumSize:]
}

// XmitParams are the outer header fields of one Xmit, the arguments of the
// kernel's udp_tunnel_xmit_skb.
type XmitParams struct {
	// Src is the outer source address; zero lets the route choose (or the
	// socket's bound address, when it has one).
	Src netip.Addr
	// Dst is the outer destination; zero uses the socket's peer.
	Dst netip.Addr
	// SrcPort is the UDP source port; 0 uses the socket's own port.
	SrcPort uint16
	// DstPort is the UDP destination port; 0 uses the peer's port.
	DstPort uint16
	// TOS is the IPv4 TOS or IPv6 traffic class.
	TOS uint8
	// TTL is the IPv4 TTL or IPv6 hop limit; 0 uses the route's default.
	TTL uint8
	// DF sets IPv4's don't-fragment bit; the packet is then dropped with
	// ErrTooBig (DropTooBig) when it exceeds the path MTU, which gVisor
	// would otherwise fragment.
	DF bool
	// FlowLabel is the IPv6 flow label (20 bits).
	FlowLabel uint32
	// NoChecksum sends this datagram without a UDP checksum. Over IPv6 that
	// is RFC 6935's zero checksum: set it only where the tunnel is
	// configured for it (the kernel's udp6zerocsumtx).
	NoChecksum bool
	// Device is the NIC of the tunnel device sending the packet: an outer
	// route through it is refused with ErrLoop (the kernel's ELOOP).
	Device NICID
}

// TooBigError is the error of an Xmit refused for the path MTU. It wraps
// ErrTooBig.
type TooBigError struct {
	// MTU is the path MTU (IP packet size) the packet exceeded.
	MTU uint32
}

// Error implements error.
func (e *TooBigError) Error() string { return fmt.Sprintf("%v (path MTU %d)", ErrTooBig, e.MTU) }

// Unwrap returns ErrTooBig.
func (e *TooBigError) Unwrap() error { return ErrTooBig }

// Xmit sends pkt, made by NewTunnelPacket and with its tunnel header
// encoded, as one UDP datagram: the kernel's udp_tunnel_xmit_skb (IPv4) and
// udp_tunnel6_xmit_skb (IPv6). It consumes pkt whatever happens. Every
// failure is also counted on the socket under its DropReason.
func (so *Socket) Xmit(pkt *PacketBuffer, p XmitParams) error {
	defer pkt.DecRef()
	if so.closed.Load() {
		so.counters.Drop(DropDeviceDown)
		return ErrClosed
	}
	if NestingDepth(pkt) > MaxNesting {
		so.counters.Drop(DropNestingLimit)
		return ErrNestingLimit
	}
	th := pkt.TransportHeader().Slice()
	if len(th) < header.UDPMinimumSize || len(th)%2 != 0 {
		so.counters.Drop(DropBadHeader)
		return fmt.Errorf("transport header of %d bytes: %w: build packets with NewTunnelPacket", len(th), ErrInvalid)
	}
	dst := p.Dst
	if !dst.IsValid() {
		dst = so.cfg.Peer.Addr()
	}
	src := p.Src
	if !src.IsValid() && so.id.LocalAddress.Len() != 0 {
		src = netipAddr(so.id.LocalAddress)
	}
	r, err := so.route(src, dst)
	if err != nil {
		so.counters.Drop(DropNoRoute)
		return err
	}
	if p.Device != 0 && r.NICID() == p.Device {
		so.counters.Drop(DropLoop)
		return fmt.Errorf("outer route to %v via NIC %d: %w", dst, p.Device, ErrLoop)
	}

	udpLen := len(th) + pkt.Data().Size()
	v6 := r.NetProto() == header.IPv6ProtocolNumber
	hdrLen := header.IPv4MinimumSize
	if v6 {
		hdrLen = header.IPv6MinimumSize
	}
	if udpLen+hdrLen > 0xffff && !v6 || udpLen > 0xffff {
		so.counters.Drop(DropTooBig)
		return &TooBigError{MTU: 0xffff}
	}
	if pkt.GSOOptions.Type != gstack.GSONone && !r.HasHostGSOCapability() {
		// The underlay cannot carry the super-packet whole: let the outer
		// IP layer fragment it (the kernel would segment the inner TCP
		// packet instead; fragments are correct, only slower).
		pkt.GSOOptions = gstack.GSO{}
	}
	if p.DF && !v6 && pkt.GSOOptions.Type == gstack.GSONone {
		mtu := r.MTU() + uint32(hdrLen)
		if pm := so.pmtu.get(dst); pm != 0 && pm < mtu {
			mtu = pm
		}
		if uint32(udpLen+hdrLen) > mtu {
			so.counters.Drop(DropTooBig)
			return &TooBigError{MTU: mtu}
		}
	}
	if int(r.MaxHeaderLength()) > pkt.AvailableHeaderBytes() {
		pkt = withHeadroom(pkt, int(r.MaxHeaderLength()))
		defer pkt.DecRef()
		th = pkt.TransportHeader().Slice()
	}

	srcPort, dstPort := p.SrcPort, p.DstPort
	if srcPort == 0 {
		srcPort = so.id.LocalPort
	}
	if dstPort == 0 {
		dstPort = so.cfg.Peer.Port()
	}
	uh := header.UDP(th)
	uh.Encode(&header.UDPFields{SrcPort: srcPort, DstPort: dstPort, Length: uint16(udpLen)})
	noCsum := p.NoChecksum || (!v6 && so.cfg.Checksum.ZeroTx4) || (v6 && so.cfg.Checksum.ZeroTx6)
	switch {
	case noCsum:
	case r.RequiresTXTransportChecksum():
		// udp_set_csum: pseudo header + UDP header + tunnel header + data.
		xsum := r.PseudoHeaderChecksum(header.UDPProtocolNumber, uint16(udpLen))
		xsum = checksum.Combine(xsum, pkt.Data().Checksum())
		xsum = checksum.Checksum(th[header.UDPMinimumSize:], xsum)
		xsum = ^uh.CalculateChecksum(xsum)
		if xsum == 0 {
			xsum = 0xffff // RFC 768: a computed zero is sent as all ones
		}
		uh.SetChecksum(xsum)
	default:
		// The NIC offloads checksums (CHECKSUM_PARTIAL): leave the
		// pseudo-header sum for it, never the zero that means "none".
		if xsum := r.PseudoHeaderChecksum(header.UDPProtocolNumber, uint16(udpLen)); xsum != 0 {
			uh.SetChecksum(xsum)
		} else {
			uh.SetChecksum(0xffff)
		}
	}

	ttl := p.TTL
	if ttl == 0 {
		ttl = r.DefaultTTL()
	}
	var terr tcpip.Error
	if v6 && p.FlowLabel != 0 {
		terr = writeWithFlowLabel(r, pkt, ttl, p.TOS, p.FlowLabel)
	} else {
		terr = r.WritePacket(gstack.NetworkHeaderParams{Protocol: header.UDPProtocolNumber, TTL: ttl, TOS: p.TOS, DF: p.DF}, pkt)
	}
	if terr != nil {
		so.counters.Drop(DropWriteError)
		return fmt.Errorf("write to %v: %w", dst, tcpipErr(terr))
	}
	so.counters.Tx(udpLen - header.UDPMinimumSize)
	return nil
}

// route returns the cached outer route from src to dst.
func (so *Socket) route(src, dst netip.Addr) (*gstack.Route, error) {
	if !dst.IsValid() || dst.IsUnspecified() {
		return nil, fmt.Errorf("destination %v: %w", dst, ErrNoRoute)
	}
	k := routeKey{src: tcpipAddr(src), dst: tcpipAddr(dst)}
	gen := so.st.routeGen.Load()
	if r := so.routes.get(gen, k); r != nil {
		return r, nil
	}
	r, terr := so.st.gs.FindRoute(so.cfg.NIC, k.src, k.dst, netProto(dst), false)
	if terr != nil {
		return nil, fmt.Errorf("route to %v: %w", dst, tcpipErr(terr))
	}
	return so.routes.put(gen, k, r), nil
}

// withHeadroom returns a new packet holding pkt's data, with pkt's
// transport header pushed again under need bytes of fresh headroom. It
// consumes nothing: the caller still owns pkt and the result.
func withHeadroom(pkt *PacketBuffer, need int) *PacketBuffer {
	th := pkt.TransportHeader().Slice()
	out := gstack.NewPacketBuffer(gstack.PacketBufferOptions{
		ReserveHeaderBytes: need + len(th),
		Payload:            pkt.Data().ToBuffer(),
	})
	copy(out.TransportHeader().Push(len(th)), th)
	out.TransportProtocolNumber = pkt.TransportProtocolNumber
	out.Mark = pkt.Mark
	out.GSOOptions = pkt.GSOOptions
	out.Hash = pkt.Hash
	return out
}

// writeWithFlowLabel sends pkt with an IPv6 header built here, since
// gVisor's IPv6 header writer has no flow label: the header goes in front of
// the datagram and the route writes it as a header-included packet.
func writeWithFlowLabel(r *gstack.Route, pkt *PacketBuffer, ttl, tc uint8, label uint32) tcpip.Error {
	ip := buffer.NewViewSize(header.IPv6MinimumSize)
	header.IPv6(ip.AsSlice()).Encode(&header.IPv6Fields{
		TrafficClass:      tc,
		FlowLabel:         label & 0xfffff,
		PayloadLength:     uint16(pkt.Size()),
		TransportProtocol: header.UDPProtocolNumber,
		HopLimit:          ttl,
		SrcAddr:           r.LocalAddress(),
		DstAddr:           r.RemoteAddress(),
	})
	payload := buffer.MakeWithView(ip)
	rest := pkt.ToBuffer()
	payload.Merge(&rest)
	out := gstack.NewPacketBuffer(gstack.PacketBufferOptions{
		ReserveHeaderBytes: int(r.MaxHeaderLength()),
		Payload:            payload,
	})
	out.Mark = pkt.Mark
	defer out.DecRef()
	return r.WriteHeaderIncludedPacket(out)
}

// SendDatagram sends b as a plain UDP datagram from the socket's port to
// dst (the "normal UDP" face used by tunnel control planes).
func (so *Socket) SendDatagram(b []byte, dst netip.AddrPort) error {
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{
		ReserveHeaderBytes: header.UDPMinimumSize + DefaultOuterHeadroom,
		Payload:            buffer.MakeWithData(append([]byte(nil), b...)),
	})
	pkt.TransportHeader().Push(header.UDPMinimumSize)
	pkt.TransportProtocolNumber = header.UDPProtocolNumber
	return so.Xmit(pkt, XmitParams{Dst: dst.Addr(), DstPort: dst.Port()})
}

// flowHashSeed keys the flow hash per process, as the kernel's hashrnd
// does, so that remote hosts cannot aim flows at one ECMP path.
var flowHashSeed = rand.Uint32()

// FlowHash returns a hash of pkt's inner flow: gVisor's transport hash when
// the sending socket set one (the kernel's sk_txhash), else a hash of the
// network addresses, the protocol and the transport ports taken from the
// headers that the inner stack pushed (the kernel's flow dissector).
// Packets without a network header (ARP) hash their link header. It never
// returns 0.
func FlowHash(pkt *PacketBuffer) uint32 {
	if pkt.Hash != 0 {
		return pkt.Hash
	}
	h := flowHashSeed
	nh := pkt.NetworkHeader().Slice()
	switch {
	case pkt.NetworkProtocolNumber == header.IPv4ProtocolNumber && len(nh) >= header.IPv4MinimumSize:
		h = mix(h, binary.BigEndian.Uint32(nh[12:16]))
		h = mix(h, binary.BigEndian.Uint32(nh[16:20]))
		h = mix(h, uint32(nh[9]))
	case pkt.NetworkProtocolNumber == header.IPv6ProtocolNumber && len(nh) >= header.IPv6MinimumSize:
		for i := 8; i < 40; i += 4 {
			h = mix(h, binary.BigEndian.Uint32(nh[i:i+4]))
		}
		h = mix(h, uint32(nh[6]))
	default:
		for lh := pkt.LinkHeader().Slice(); len(lh) >= 4; lh = lh[4:] {
			h = mix(h, binary.BigEndian.Uint32(lh))
		}
	}
	if th := pkt.TransportHeader().Slice(); len(th) >= 4 {
		h = mix(h, binary.BigEndian.Uint32(th[:4])) // source and destination port
	}
	h = fmix(h)
	if h == 0 {
		h = 1
	}
	return h
}

func mix(h, w uint32) uint32 {
	h ^= w
	h *= 0x9e3779b1
	return h ^ h>>15
}

// fmix is MurmurHash3's finaliser.
func fmix(h uint32) uint32 {
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	return h ^ h>>16
}

// FlowSrcPort returns a UDP source port for pkt in [min, max): the
// kernel's udp_flow_src_port, which gives ECMP and RSS on the path entropy
// from the inner flow while keeping each flow on one port. An empty range
// uses the IANA ephemeral range 49152-65535.
func FlowSrcPort(pkt *PacketBuffer, min, max uint16) uint16 {
	if min >= max {
		min, max = 49152, 65535
	}
	h := FlowHash(pkt)
	h ^= h << 16 // as the kernel: use the upper 16 bits too
	return uint16(uint64(h)*uint64(max-min)>>32) + min
}
