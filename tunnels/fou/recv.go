package fou

// The receive path, in the order a datagram meets it:
//
//	tunnel socket (UDP port) -> fouEncap.Receive (fou_udp_recv) or
//	gueEncap.Receive (gue_udp_recv): header consumed, verdict Resubmit(N)
//	-> stack -> Handler.ReceiveIP for N (ipip_rcv, ip6_tnl's ipxip6_rcv,
//	gre_rcv): device by outer (source, destination) [and GRE key],
//	inner version checked -> stack.Device.Deliver (ip_local_deliver #2).

import (
	"net/netip"

	"github.com/udptunnel/udptunnel/stack"
)

// fouEncap is a FOU Socket's stack.Encap face.
type fouEncap Socket

// BindSocket implements stack.EncapBinder: the socket is known before its
// first datagram.
func (e *fouEncap) BindSocket(so *stack.Socket) { e.sock = so }

// gueEncap is a GUE Socket's stack.Encap face.
type gueEncap Socket

// BindSocket implements stack.EncapBinder: the socket is known before its
// first datagram.
func (e *gueEncap) BindSocket(so *stack.Socket) { e.sock = so }

var (
	_ stack.Encap         = (*fouEncap)(nil)
	_ stack.ErrorReceiver = (*fouEncap)(nil)
	_ stack.EncapCloser   = (*fouEncap)(nil)
	_ stack.Encap         = (*gueEncap)(nil)
	_ stack.ErrorReceiver = (*gueEncap)(nil)
	_ stack.EncapCloser   = (*gueEncap)(nil)
)

// Receive implements stack.Encap: fou_udp_recv. FOU has no header: the
// UDP payload is a packet of the port's protocol, resubmitted as it is.
func (e *fouEncap) Receive(*stack.PacketBuffer, netip.AddrPort, netip.AddrPort) stack.Verdict {
	return stack.Resubmit(tcpipProto(e.cfg.Proto))
}

// Receive implements stack.Encap: gue_udp_recv. Variant 1 resubmits the
// payload as IPIP or IPv6 by its IP version; variant 0 consumes the header
// and its extension fields and resubmits by the Proto field. Control
// messages are dropped and counted as DropPolicy: this package implements
// none (draft-ietf-intarea-gue §3.2.2 leaves their processing to the
// receiver; the kernel drops them too).
func (e *gueEncap) Receive(pkt *stack.PacketBuffer, _, _ netip.AddrPort) stack.Verdict {
	c := e.sock.Counters()
	b, ok := pkt.Data().PullUp(1)
	if !ok {
		c.Drop(stack.DropTruncated)
		return stack.Consumed
	}
	if GUE(b).Variant() == 0 {
		if b, ok = pkt.Data().PullUp(GUEHeaderLen); !ok {
			c.Drop(stack.DropTruncated)
			return stack.Consumed
		}
		n := GUE(b).HeaderLen()
		if n > pkt.Data().Size() {
			c.Drop(stack.DropBadHeader) // Hlen overrun
			return stack.Consumed
		}
		b, _ = pkt.Data().PullUp(n)
	}
	h, err := ParseGUE(b)
	switch {
	case err == ErrTruncated:
		c.Drop(stack.DropTruncated)
		return stack.Consumed
	case err != nil:
		c.Drop(stack.DropBadHeader)
		return stack.Consumed
	case h.Variant() == 0 && h.Control():
		c.Drop(stack.DropPolicy)
		return stack.Consumed
	}
	// A protocol without a handler (0, say) is counted by the socket as
	// DropNoHandler.
	proto := h.InnerProto()
	if n := h.HeaderLen(); n > 0 {
		pkt.Data().Consume(n)
	}
	return stack.Resubmit(tcpipProto(Proto(proto)))
}

// ReceiveIP implements stack.IPProtocolHandler: the receive half of the
// kernel's ipip, ip6tnl/sit and gre devices for packets that FOU or GUE
// resubmitted. src and dst are the outer addresses.
func (h *Handler) ReceiveIP(pkt *stack.PacketBuffer, src, dst netip.Addr) {
	src, dst = src.Unmap(), dst.Unmap()
	if h.proto == ProtoGRE {
		h.receiveGRE(pkt, src, dst)
		return
	}
	b, ok := pkt.Data().PullUp(1)
	if !ok {
		h.counters.Drop(stack.DropTruncated)
		return
	}
	d := h.lookup(src, dst, false, 0)
	if d == nil {
		h.counters.Drop(stack.DropUnknownTunnel)
		return
	}
	if !versionIs(b[0], h.proto) {
		// An IPIP payload that is not IPv4 (or IPv6 in 41): malformed.
		d.Counters().Drop(stack.DropBadHeader)
		return
	}
	d.Deliver(pkt)
}

// receiveGRE is gre_rcv with gre_parse_header: RFC 2784/2890 GRE with an
// optional checksum (verified), key (part of the device's identity) and
// sequence number (ignored), carrying IPv4 or IPv6.
func (h *Handler) receiveGRE(pkt *stack.PacketBuffer, src, dst netip.Addr) {
	b, ok := pkt.Data().PullUp(GREHeaderLen)
	if !ok {
		h.counters.Drop(stack.DropTruncated)
		return
	}
	n := GRE(b).HeaderLen()
	if b, ok = pkt.Data().PullUp(n); !ok {
		h.counters.Drop(stack.DropTruncated)
		return
	}
	g, err := ParseGRE(b)
	if err != nil {
		if err == ErrTruncated {
			h.counters.Drop(stack.DropTruncated)
		} else {
			h.counters.Drop(stack.DropBadHeader)
		}
		return
	}
	d := h.lookup(src, dst, g.HasKey(), g.Key())
	if d == nil {
		h.counters.Drop(stack.DropUnknownTunnel)
		return
	}
	// RFC 2784 §2.5: the checksum covers the GRE header and payload.
	if g.HasChecksum() && pkt.Data().Checksum() != 0xffff {
		d.Counters().Drop(stack.DropBadChecksum)
		return
	}
	var want Proto
	switch g.Protocol() {
	case etherTypeIPv4:
		want = ProtoIPIP
	case etherTypeIPv6:
		want = ProtoIPv6
	default:
		d.Counters().Drop(stack.DropNotForUs)
		return
	}
	pkt.Data().Consume(n)
	b, ok = pkt.Data().PullUp(1)
	if !ok {
		d.Counters().Drop(stack.DropTruncated)
		return
	}
	if !versionIs(b[0], want) {
		d.Counters().Drop(stack.DropBadHeader)
		return
	}
	d.Deliver(pkt)
}

// versionIs reports whether an IP header's first byte has the version of
// proto (4 for IPIP, 6 for IPv6).
func versionIs(b0 byte, proto Proto) bool {
	if proto == ProtoIPIP {
		return b0>>4 == 4
	}
	return b0>>4 == 6
}

// ReceiveError implements stack.ErrorReceiver: a "fragmentation needed" or
// "packet too big" for a remote lowers the MTU of the devices sending to it.
func (e *fouEncap) ReceiveError(ie stack.ICMPError) { (*Socket)(e).receiveError(ie) }

// ReceiveError implements stack.ErrorReceiver, as for FOU.
func (e *gueEncap) ReceiveError(ie stack.ICMPError) { (*Socket)(e).receiveError(ie) }

func (s *Socket) receiveError(ie stack.ICMPError) {
	dst, mtu, ok := ie.PathMTU()
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for d := range s.devs {
		if d.cfg.Remote == dst {
			d.UpdatePathMTU(mtu)
		}
	}
}

// CloseEncap implements stack.EncapCloser (encap_destroy): the socket's
// devices close with it and the stack's handlers are released.
func (e *fouEncap) CloseEncap() { (*Socket)(e).closeEncap() }

// CloseEncap implements stack.EncapCloser, as for FOU.
func (e *gueEncap) CloseEncap() { (*Socket)(e).closeEncap() }
