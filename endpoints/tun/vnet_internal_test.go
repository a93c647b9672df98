//go:build linux

package tun

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// udp4 builds an IPv4 UDP packet from 10.0.0.1:1000 to 10.0.0.2:4789 with
// a complete UDP checksum.
func udp4(payload []byte) []byte {
	p := make([]byte, header.IPv4MinimumSize+header.UDPMinimumSize+len(payload))
	src, dst := tcpip.AddrFrom4(netip.MustParseAddr("10.0.0.1").As4()), tcpip.AddrFrom4(netip.MustParseAddr("10.0.0.2").As4())
	header.IPv4(p).Encode(&header.IPv4Fields{TotalLength: uint16(len(p)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber), SrcAddr: src, DstAddr: dst})
	header.IPv4(p).SetChecksum(^header.IPv4(p).CalculateChecksum())
	u := header.UDP(p[header.IPv4MinimumSize:])
	u.Encode(&header.UDPFields{SrcPort: 1000, DstPort: 4789, Length: uint16(len(u))})
	copy(u.Payload(), payload)
	sum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, uint16(len(u)))
	u.SetChecksum(^checksum.Checksum(u, sum))
	return p
}

// TestFinishRxPartialChecksum: a packet the kernel hands over with
// NEEDS_CSUM (the pseudo-header sum in the field) comes out with the
// checksum a sender would have computed.
func TestFinishRxPartialChecksum(t *testing.T) {
	for _, n := range []int{0, 1, 7, 1400} {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(i*7 + n)
		}
		want := udp4(payload)
		p := append([]byte(nil), want...)
		u := header.UDP(p[header.IPv4MinimumSize:])
		ip := header.IPv4(p)
		u.SetChecksum(header.PseudoHeaderChecksum(header.UDPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(u))))
		h := virtioNetHdr{flags: virtioNetHdrFNeedsCsum, csumStart: header.IPv4MinimumSize, csumOffset: 6}
		e := &vnetEndpoint{}
		if !e.finishRx(&h, p) {
			t.Fatalf("%d bytes: finishRx refused the packet", n)
		}
		if got, w := header.UDP(p[header.IPv4MinimumSize:]).Checksum(), header.UDP(want[header.IPv4MinimumSize:]).Checksum(); got != w {
			t.Errorf("%d bytes: finished checksum %#04x, want %#04x", n, got, w)
		}
	}
	// A checksum field beyond the packet is refused, and so is a GSO type
	// the endpoint did not ask for (UDP_L4).
	e := &vnetEndpoint{}
	p := udp4(nil)
	if e.finishRx(&virtioNetHdr{flags: virtioNetHdrFNeedsCsum, csumStart: uint16(len(p)), csumOffset: 6}, p) {
		t.Error("finishRx accepted a checksum field beyond the packet")
	}
	if e.finishRx(&virtioNetHdr{gsoType: virtioNetHdrGSOUDPL4, gsoSize: 100}, p) {
		t.Error("finishRx accepted a UDP GSO packet")
	}
}

func TestVirtioNetHdrRoundTrip(t *testing.T) {
	h := virtioNetHdr{flags: 1, gsoType: 5, hdrLen: 28, gsoSize: 1472, csumStart: 20, csumOffset: 6}
	var b [virtioNetHdrSize]byte
	h.marshal(b[:])
	if got := parseVirtioNetHdr(b[:]); got != h {
		t.Errorf("round trip: %+v, want %+v", got, h)
	}
}
