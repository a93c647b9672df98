package vxlan

// The VXLAN receive path (vxlan_rcv): UDP payload from the socket -> VXLAN
// header validated -> device by VNI -> source MAC learned (vxlan_snoop)
// -> header consumed -> stack.Device.Deliver (inner Ethernet, inner IP).

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

// Receive implements stack.Encap: vxlan_rcv.
func (e *encap) Receive(pkt *stack.PacketBuffer, src, _ netip.AddrPort) stack.Verdict {
	s := (*Socket)(e)
	c := s.sock.Counters()
	b, ok := pkt.Data().PullUp(HeaderLen + header.EthernetMinimumSize)
	if !ok {
		c.Drop(stack.DropTruncated)
		return stack.Consumed
	}
	h, err := Parse(b)
	if err != nil {
		c.Drop(stack.DropBadHeader)
		return stack.Consumed
	}
	d := s.devs.Get(h.VNI())
	if d == nil {
		c.Drop(stack.DropUnknownTunnel)
		return stack.Consumed
	}
	if d.cfg.Learning {
		var srcMAC MAC
		copy(srcMAC[:], h.Payload()[6:12])
		switch {
		case srcMAC.IsMulticast() || srcMAC.IsZero():
			// vxlan_set_mac: in learning mode a frame from an invalid
			// source address is dropped, so that it is never learned.
			d.Counters().Drop(stack.DropPolicy)
			return stack.Consumed
		case srcMAC == d.mac:
			// Our own frame back: a loop, which Deliver counts; it must
			// not be learned first.
		case src.Addr().Unmap().Is4() == d.v6:
			// The socket serves both families; the device's remotes
			// are of its own (the kernel's sockets are per family).
		case d.fdb.Learn(srcMAC, Remote{Addr: src.Addr()}) == LearnStaticConflict:
			// vxlan_snoop: a static entry says the MAC lives elsewhere;
			// the frame is dropped rather than let it move.
			d.Counters().Drop(stack.DropPolicy)
			return stack.Consumed
		}
	}
	pkt.Data().Consume(HeaderLen)
	d.Deliver(pkt)
	return stack.Consumed
}

// ReceiveError implements stack.ErrorReceiver: a "fragmentation needed" or
// "packet too big" for a remote lowers the MTU of the devices that send to
// it.
func (e *encap) ReceiveError(ie stack.ICMPError) {
	dst, mtu, ok := ie.PathMTU()
	if !ok {
		return
	}
	for _, d := range (*Socket)(e).devs.All() {
		if d.sendsTo(dst) {
			d.UpdatePathMTU(mtu)
		}
	}
}

// LookupError implements stack.ErrorLookup (vxlan_err_lookup): an ICMP
// error counts only if it quotes a whole VXLAN header whose VNI has a
// device on this socket.
func (e *encap) LookupError(quoted []byte) bool {
	h, err := Parse(quoted)
	return err == nil && (*Socket)(e).devs.Get(h.VNI()) != nil
}

// sendsTo reports whether any FDB entry of d points at addr.
func (d *Device) sendsTo(addr netip.Addr) bool { return d.fdb.HasRemote(addr) }

// CloseEncap implements stack.EncapCloser (encap_destroy): the tunnel
// socket is closing, by Socket.Close or with its stack, so its devices go
// too, also those living in another (inner) stack: their ageing timers stop
// and no device is left sending through a closed socket.
func (e *encap) CloseEncap() {
	for _, d := range (*Socket)(e).devs.All() {
		d.Close()
	}
}
