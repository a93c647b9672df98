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
	"encoding/binary"
	"net/netip"
	"slices"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
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
		so.counters.Pass()
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
// quoting one of our outer datagrams, found by its source port (the
// kernel's __udp4_lib_err). Datagrams sent from flow-hashed source ports
// are matched by icmpTap instead.
func (e *socketEndpoint) HandleError(terr gstack.TransportError, pkt *PacketBuffer) {
	so := (*Socket)(e)
	ie := ICMPError{Dst: quotedDst(pkt)}
	switch terr.Kind() {
	case gstack.PacketTooBigTransportError:
		ie.Kind = ICMPPacketTooBig
		// gVisor reports the network MTU (the IP payload); a path MTU is
		// the IP packet size.
		if terr.Info() > 0 {
			ie.MTU = terr.Info() + uint32(ipHeaderLen(pkt.NetworkProtocolNumber))
		}
	case gstack.DestinationPortUnreachableTransportError:
		ie.Kind = ICMPPortUnreachable
	case gstack.DestinationHostUnreachableTransportError, gstack.DestinationNetworkUnreachableTransportError:
		ie.Kind = ICMPUnreachable
	default:
		ie.Kind = ICMPOther
	}
	var quoted []byte
	if b, ok := pkt.Data().PullUp(pkt.Data().Size()); ok && len(b) > header.UDPMinimumSize {
		quoted = b[header.UDPMinimumSize:]
	}
	so.receiveError(ie, quoted)
}

// Path MTUs below these are raised to them, as the kernel does (IPv4's
// ip_rt_min_pmtu; IPv6's minimum link MTU, RFC 8201): an ICMP error, true
// or forged, cannot shrink a path further.
const (
	minPathMTU4 = 552
	minPathMTU6 = header.IPv6MinimumMTU
)

// receiveError is err_rcv: check that the quoted datagram is the encap's
// (encap_err_lookup), count the error, learn a path MTU from it and pass it
// to an ErrorReceiver encap. quoted is the UDP payload the error quotes.
func (so *Socket) receiveError(ie ICMPError, quoted []byte) {
	if ie.Dst.Addr().Is4In6() {
		// We never send to IPv4-mapped addresses (gVisor refuses them);
		// an error quoting one is forged.
		return
	}
	if el, ok := so.encap.(ErrorLookup); ok && !el.LookupError(quoted) {
		return
	}
	so.icmpErrors.Add(1)
	if ie.Kind == ICMPPacketTooBig && ie.MTU > 0 && ie.Dst.Addr().IsValid() {
		if ie.Dst.Addr().Is6() {
			ie.MTU = max(ie.MTU, minPathMTU6)
		} else {
			ie.MTU = max(ie.MTU, minPathMTU4)
		}
		so.pmtu.update(ie.Dst.Addr(), ie.MTU)
	}
	if er, ok := so.encap.(ErrorReceiver); ok {
		er.ReceiveError(ie)
	}
}

// icmpTap sees every ICMP and ICMPv6 packet the stack receives (as a raw
// endpoint) and delivers "fragmentation needed" and "packet too big"
// errors for tunnel datagrams that gVisor cannot match to a socket: a
// tunnel sends from a flow-hashed source port, while gVisor, like a plain
// UDP stack, looks the socket up by the quoted source port. As the
// kernel's __udp4_lib_err_encap does, the error then goes to the tunnel
// socket bound to the quoted destination port, since tunnel endpoints use
// the same well-known port. Other ICMP errors for such datagrams are not
// matched, as in the kernel.
type icmpTap Stack

// HandlePacket implements stack.RawTransportEndpoint.HandlePacket. pkt's
// data is the ICMP message.
func (t *icmpTap) HandlePacket(pkt *PacketBuffer) {
	// gVisor has parsed the ICMP header into the transport header; the
	// data is the quoted datagram.
	//
	// The header is copied first: pulling the data up may merge the chunk
	// the header view points into and release it to the pool, after which
	// the view would read another packet's bytes (the race detector caught
	// exactly that).
	var icmpHdr [header.ICMPv4MinimumSize]byte // ICMPv6's is the same size
	th := pkt.TransportHeader().Slice()
	if len(th) != len(icmpHdr) {
		return
	}
	copy(icmpHdr[:], th)
	icmp := icmpHdr[:]
	data, ok := pkt.Data().PullUp(pkt.Data().Size())
	if !ok {
		return
	}
	src, dst := outerAddrs(pkt)
	dataSum := checksum.Checksum(data, 0)
	var (
		mtu    uint32
		quoted []byte
		udp    []byte
		qDst   netip.Addr
	)
	switch pkt.NetworkProtocolNumber {
	case header.IPv4ProtocolNumber:
		// Type 3 code 4, checksummed, quoting IPv4/UDP.
		if len(data) < header.IPv4MinimumSize+header.UDPMinimumSize ||
			icmp[0] != byte(header.ICMPv4DstUnreachable) || icmp[1] != byte(header.ICMPv4FragmentationNeeded) ||
			checksum.Checksum(icmp, dataSum) != 0xffff {
			return
		}
		mtu = uint32(binary.BigEndian.Uint16(icmp[6:8]))
		quoted = data
		ihl := int(quoted[0]&0xf) * 4
		if quoted[0]>>4 != 4 || ihl < header.IPv4MinimumSize || len(quoted) < ihl+header.UDPMinimumSize ||
			header.IPv4(quoted).TransportProtocol() != header.UDPProtocolNumber || mtu < 68 {
			return
		}
		qDst, udp = netipAddr(header.IPv4(quoted).DestinationAddress()), quoted[ihl:]
	case header.IPv6ProtocolNumber:
		// Type 2, checksummed with the pseudo header, quoting IPv6/UDP
		// (no extension headers).
		if len(data) < header.IPv6MinimumSize+header.UDPMinimumSize || icmp[0] != byte(header.ICMPv6PacketTooBig) {
			return
		}
		xsum := header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, src, dst, uint16(len(icmp)+len(data)))
		if checksum.Checksum(icmp, checksum.Combine(xsum, dataSum)) != 0xffff {
			return
		}
		mtu = binary.BigEndian.Uint32(icmp[4:8])
		quoted = data
		if quoted[0]>>4 != 6 || header.IPv6(quoted).TransportProtocol() != header.UDPProtocolNumber || mtu < header.IPv6MinimumMTU {
			return
		}
		qDst, udp = netipAddr(header.IPv6(quoted).DestinationAddress()), quoted[header.IPv6MinimumSize:]
	default:
		return
	}
	srcPort, dstPort := header.UDP(udp).SourcePort(), header.UDP(udp).DestinationPort()
	if so := (*Stack)(t).tunnelSocket(srcPort, pkt.NetworkProtocolNumber); so != nil {
		return // gVisor matched it by source port: HandleError has it
	}
	if so := (*Stack)(t).tunnelSocket(dstPort, pkt.NetworkProtocolNumber); so != nil {
		so.receiveError(ICMPError{Kind: ICMPPacketTooBig, Dst: netip.AddrPortFrom(qDst, dstPort), MTU: mtu}, udp[header.UDPMinimumSize:])
	}
}

// tunnelSocket returns an open tunnel socket of s bound to port for proto.
// ICMP errors are rare; a scan under the lock is enough.
func (s *Stack) tunnelSocket(port uint16, proto tcpip.NetworkProtocolNumber) *Socket {
	s.mu.Lock()
	defer s.mu.Unlock()
	for so := range s.sockets {
		if so.id.LocalPort == port && slices.Contains(so.netProtos, proto) {
			return so
		}
	}
	return nil
}

// registerICMPTap makes icmpTap see the stack's ICMP traffic; Stack calls
// it once, when the first tunnel socket opens.
func (s *Stack) registerICMPTap() {
	s.gs.RegisterRawTransportEndpoint(header.IPv4ProtocolNumber, header.ICMPv4ProtocolNumber, (*icmpTap)(s))
	s.gs.RegisterRawTransportEndpoint(header.IPv6ProtocolNumber, header.ICMPv6ProtocolNumber, (*icmpTap)(s))
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
