package stack

// The receive half of a tunnel socket, in the order a datagram meets it:
//
//	underlay NIC -> outer IP (ip_local_deliver #1) -> UDP demux
//	-> HandlePacket: nesting check, UDP length and checksum (udp_queue_rcv_one_skb)
//	-> Encap.Receive (encap_rcv)
//	-> verdict: consumed | PassToUDP (the socket's own queue) | Resubmit (ip_protocol_deliver_rcu)
//
// A protocol's Receive ends in Device.Deliver (device.go), which re-enters
// the stack at the inner IP layer (ip_local_deliver #2).

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// HandlePacket implements stack.TransportEndpoint.HandlePacket: the outer IP
// and UDP headers are parsed (the UDP payload is already trimmed to the UDP
// length) and the packet is borrowed for the duration of the call.
func (e *socketEndpoint) HandlePacket(_ gstack.TransportEndpointID, pkt *PacketBuffer) {
	so := (*Socket)(e)
	if so.closed.Load() {
		so.counters.Drop(DropDeviceDown)
		return
	}
	// Receive nests through the stack synchronously; a crafted packet of
	// tunnels in tunnels must not recurse without bound.
	if NestingDepth(pkt) >= MaxNesting {
		so.counters.Drop(DropNestingLimit)
		return
	}
	uh := header.UDP(pkt.TransportHeader().Slice())
	if len(uh) < header.UDPMinimumSize {
		so.counters.Drop(DropTruncated)
		return
	}
	srcIP, dstIP := outerAddrs(pkt)
	if !so.checksumOK(pkt, uh, srcIP, dstIP) {
		so.counters.Drop(DropBadChecksum)
		return
	}
	so.counters.Rx(pkt.Data().Size())
	src := netip.AddrPortFrom(netipAddr(srcIP), uh.SourcePort())
	dst := netip.AddrPortFrom(netipAddr(dstIP), uh.DestinationPort())

	v := so.encap.Receive(pkt, src, dst)
	switch {
	case v == Consumed:
	case v > 0: // PassToUDP
		if !so.queue.push(src, pkt.Data().AsRange().ToSlice()) {
			so.counters.Drop(DropQueueFull)
		}
	default:
		proto, _ := v.ResubmitProtocol()
		h := so.st.ipProtos[proto].Load()
		if h == nil {
			so.counters.Drop(DropNoHandler)
			return
		}
		h.h.ReceiveIP(pkt, src.Addr(), dst.Addr())
	}
}

// checksumOK verifies the outer UDP checksum before the encap sees the
// datagram, as the kernel does before encap_rcv (gVisor leaves it to the
// endpoint). A zero checksum means "none": always allowed over IPv4,
// allowed over IPv6 only with ChecksumPolicy.ZeroRx6 (RFC 6936).
func (so *Socket) checksumOK(pkt *PacketBuffer, uh header.UDP, src, dst tcpip.Address) bool {
	if uh.Checksum() == 0 {
		return pkt.NetworkProtocolNumber == header.IPv4ProtocolNumber || so.cfg.Checksum.ZeroRx6
	}
	if pkt.RXChecksumValidated {
		return true
	}
	return uh.IsChecksumValid(src, dst, pkt.Data().Checksum())
}

// outerAddrs returns the outer source and destination addresses. It reads
// the header directly: PacketBuffer.Network allocates (it boxes the header
// in an interface) and this runs for every packet.
func outerAddrs(pkt *PacketBuffer) (src, dst tcpip.Address) {
	nh := pkt.NetworkHeader().Slice()
	if pkt.NetworkProtocolNumber == header.IPv6ProtocolNumber {
		h := header.IPv6(nh)
		return h.SourceAddress(), h.DestinationAddress()
	}
	h := header.IPv4(nh)
	return h.SourceAddress(), h.DestinationAddress()
}

// HandleError implements stack.TransportEndpoint.HandleError: an ICMP error
// quoting one of our outer datagrams (the kernel's encap_err_lookup and
// err_rcv). "Fragmentation needed" and "packet too big" lower the path MTU
// to the quoted destination; every error goes to an ErrorReceiver encap.
func (e *socketEndpoint) HandleError(terr gstack.TransportError, pkt *PacketBuffer) {
	so := (*Socket)(e)
	so.icmpErrors.Add(1)
	dst := quotedDst(pkt)
	ie := ICMPError{Dst: dst}
	switch terr.Kind() {
	case gstack.PacketTooBigTransportError:
		ie.Kind = ICMPPacketTooBig
		// gVisor reports the network MTU (the IP payload); a path MTU is
		// the IP packet size.
		ie.MTU = terr.Info() + uint32(ipHeaderLen(pkt.NetworkProtocolNumber))
		if dst.Addr().IsValid() && terr.Info() > 0 {
			so.pmtu.update(dst.Addr(), ie.MTU)
		}
	case gstack.DestinationPortUnreachableTransportError:
		ie.Kind = ICMPPortUnreachable
	case gstack.DestinationHostUnreachableTransportError, gstack.DestinationNetworkUnreachableTransportError:
		ie.Kind = ICMPUnreachable
	default:
		ie.Kind = ICMPOther
	}
	if er, ok := so.encap.(ErrorReceiver); ok {
		er.ReceiveError(ie)
	}
}

// quotedDst returns the destination of the datagram an ICMP error quotes.
// gVisor passes the ICMP message itself: its network and transport headers
// are the ICMP packet's (router to us), the quoted IP header has been
// consumed right after the ICMP header, and the data starts at the quoted
// UDP header.
func quotedDst(pkt *PacketBuffer) netip.AddrPort {
	var port uint16
	if uh, ok := pkt.Data().PullUp(header.UDPMinimumSize); ok {
		port = header.UDP(uh).DestinationPort()
	}
	start := len(pkt.LinkHeader().Slice()) + len(pkt.NetworkHeader().Slice()) + len(pkt.TransportHeader().Slice())
	v := pkt.ToView()
	defer v.Release()
	b := v.AsSlice()
	if end := pkt.HeaderSize(); end <= len(b) && start < end {
		b = b[start:end]
	} else {
		b = nil
	}
	var a netip.Addr
	switch {
	case len(b) >= header.IPv4MinimumSize && b[0]>>4 == 4:
		a = netipAddr(header.IPv4(b).DestinationAddress())
	case len(b) >= header.IPv6MinimumSize && b[0]>>4 == 6:
		a = netipAddr(header.IPv6(b).DestinationAddress())
	}
	return netip.AddrPortFrom(a, port)
}

func ipHeaderLen(p tcpip.NetworkProtocolNumber) int {
	if p == header.IPv6ProtocolNumber {
		return header.IPv6MinimumSize
	}
	return header.IPv4MinimumSize
}
