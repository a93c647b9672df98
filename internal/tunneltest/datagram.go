package tunneltest

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// OuterDatagram returns an IPv4 or IPv6 packet (by src's family; TTL or
// hop limit 64, TOS or traffic class tos) carrying a UDP datagram from src
// to dst with payload and a correct checksum, or csum(correct) if csum is
// not nil: what a peer puts on the wire, for injecting into an underlay
// link. It returns the network protocol and the packet.
func OuterDatagram(src, dst netip.AddrPort, tos uint8, payload []byte, csum func(correct uint16) uint16) (tcpip.NetworkProtocolNumber, []byte) {
	udpLen := header.UDPMinimumSize + len(payload)
	srcA, dstA := tcpip.AddrFromSlice(src.Addr().AsSlice()), tcpip.AddrFromSlice(dst.Addr().AsSlice())
	ipLen, proto := header.IPv4MinimumSize, header.IPv4ProtocolNumber
	if src.Addr().Is6() {
		ipLen, proto = header.IPv6MinimumSize, header.IPv6ProtocolNumber
	}
	b := make([]byte, ipLen+udpLen)
	if proto == header.IPv4ProtocolNumber {
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, TOS: tos, Protocol: uint8(header.UDPProtocolNumber), SrcAddr: srcA, DstAddr: dstA})
		ip.SetChecksum(^ip.CalculateChecksum())
	} else {
		header.IPv6(b).Encode(&header.IPv6Fields{PayloadLength: uint16(udpLen), TransportProtocol: header.UDPProtocolNumber, HopLimit: 64, TrafficClass: tos, SrcAddr: srcA, DstAddr: dstA})
	}
	u := header.UDP(b[ipLen:])
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(udpLen)})
	copy(u.Payload(), payload)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, srcA, dstA, uint16(udpLen))
	xsum = checksum.Checksum(payload, xsum)
	c := ^u.CalculateChecksum(xsum)
	if c == 0 {
		c = 0xffff
	}
	if csum != nil {
		c = csum(c)
	}
	u.SetChecksum(c)
	return proto, b
}
