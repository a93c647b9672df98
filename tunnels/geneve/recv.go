package geneve

// The Geneve receive path (geneve_udp_encap_recv, geneve_rx): UDP payload
// from the socket -> header and options validated -> device by VNI ->
// protocol type against the device's layer -> critical options and OAM
// policy -> metadata hook -> header consumed -> stack.Device.Deliver.

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/udptunnel/udptunnel/stack"
)

// encap is the Socket's stack.Encap face.
type encap Socket

// BindSocket implements stack.EncapBinder: the socket is known before its
// first datagram.
func (e *encap) BindSocket(so *stack.Socket) { e.sock = so }

var _ stack.Encap = (*encap)(nil)
var _ stack.ErrorReceiver = (*encap)(nil)
var _ stack.ErrorLookup = (*encap)(nil)
var _ stack.EncapCloser = (*encap)(nil)

// Receive implements stack.Encap: geneve_udp_encap_recv and geneve_rx.
func (e *encap) Receive(pkt *stack.PacketBuffer, src, dst netip.AddrPort) stack.Verdict {
	s := (*Socket)(e)
	c := s.sock.Counters()
	base, ok := pkt.Data().PullUp(HeaderLen)
	if !ok {
		c.Drop(stack.DropTruncated)
		return stack.Consumed
	}
	if Header(base).Version() != Version {
		// RFC 8926 §3.4; geneve_udp_encap_recv drops unknown versions.
		c.Drop(stack.DropBadHeader)
		return stack.Consumed
	}
	b, ok := pkt.Data().PullUp(Header(base).Len())
	if !ok {
		c.Drop(stack.DropTruncated)
		return stack.Consumed
	}
	h := Header(b)
	if h.Options().Validate() != nil {
		// An option overruns Opt Len (RFC 8926 §3.5).
		c.Drop(stack.DropBadHeader)
		return stack.Consumed
	}
	d := s.devs.Get(h.VNI())
	if d == nil {
		c.Drop(stack.DropUnknownTunnel)
		return stack.Consumed
	}
	dc := d.Counters()
	hlen := h.Len()
	size := pkt.Data().Size()
	// The protocol type must be the device's (geneve_udp_encap_recv:
	// ETH_P_TEB unless innerprotoinherit, then IPv4 or IPv6).
	switch proto := h.Protocol(); {
	case !d.cfg.InnerProtoInherit && proto != ProtoTEB,
		d.cfg.InnerProtoInherit && proto != ProtoIPv4 && proto != ProtoIPv6:
		dc.Drop(stack.DropNotForUs)
		return stack.Consumed
	case d.cfg.InnerProtoInherit:
		first, ok := pkt.Data().PullUp(hlen + 1)
		if !ok {
			dc.Drop(stack.DropTruncated)
			return stack.Consumed
		}
		if v := first[hlen] >> 4; (proto == ProtoIPv4) != (v == 4) || (proto == ProtoIPv6) != (v == 6) {
			dc.Drop(stack.DropBadHeader)
			return stack.Consumed
		}
		h = Header(first)
	}
	// RFC 8926 §3.5.1: a critical option the receiver does not understand
	// drops the packet. Linux (without collect_md) checks only the C bit;
	// every option's own bit is checked here, so a sender that forgot the
	// C bit cannot smuggle one through.
	if _, bad := h.Options().UnknownCritical(d.cfg.Options); bad {
		dc.Drop(stack.DropPolicy)
		return stack.Consumed
	}
	if h.OAM() {
		// OAM packets are control messages, never tenant data (§3.4).
		if d.cfg.OnReceive == nil {
			dc.Drop(stack.DropPolicy)
			return stack.Consumed
		}
		d.hook(pkt, h, src, dst, size)
		dc.Rx(size - hlen)
		return stack.Consumed
	}
	if d.cfg.OnReceive != nil {
		d.hook(pkt, h, src, dst, size)
	}
	pkt.Data().Consume(hlen)
	d.Deliver(pkt)
	return stack.Consumed
}

// hook calls the device's OnReceive with pkt's metadata and inner frame.
func (d *Device) hook(pkt *stack.PacketBuffer, h Header, src, dst netip.AddrPort, size int) {
	all, ok := pkt.Data().PullUp(size)
	if !ok {
		return
	}
	h = Header(all)
	md := Metadata{
		VNI:      h.VNI(),
		Src:      src,
		Dst:      dst,
		OAM:      h.OAM(),
		Critical: h.Critical(),
		Protocol: h.Protocol(),
		Options:  h.Options(),
	}
	nh := pkt.NetworkHeader().Slice()
	switch {
	case len(nh) >= header.IPv4MinimumSize && nh[0]>>4 == 4:
		md.TOS, _ = header.IPv4(nh).TOS()
		md.TTL = header.IPv4(nh).TTL()
	case len(nh) >= header.IPv6MinimumSize && nh[0]>>4 == 6:
		md.TOS, _ = header.IPv6(nh).TOS()
		md.TTL = header.IPv6(nh).HopLimit()
	}
	d.cfg.OnReceive(md, h.Payload())
}

// ReceiveError implements stack.ErrorReceiver: a "fragmentation needed" or
// "packet too big" for a remote lowers the MTU of the devices sending to it
// (the kernel's tunnel PMTU update).
func (e *encap) ReceiveError(ie stack.ICMPError) {
	dst, mtu, ok := ie.PathMTU()
	if !ok {
		return
	}
	for _, d := range (*Socket)(e).devs.All() {
		if d.cfg.Remote.Unmap() == dst {
			d.UpdatePathMTU(mtu)
		}
	}
}

// LookupError implements stack.ErrorLookup (geneve_udp_encap_err_lookup):
// the ICMP error must quote at least the fixed Geneve header, of version
// 0, whose VNI has a device on this socket. Options may be cut off.
func (e *encap) LookupError(quoted []byte) bool {
	if len(quoted) < HeaderLen || Header(quoted).Version() != Version {
		return false
	}
	return (*Socket)(e).devs.Get(Header(quoted).VNI()) != nil
}

// CloseEncap implements stack.EncapCloser (encap_destroy): the socket is
// closing, so its devices go too, also those in another stack.
func (e *encap) CloseEncap() {
	for _, d := range (*Socket)(e).devs.All() {
		d.Close()
	}
}
