package vxlan

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
)

// TestInvalidSourceMAC follows the kernel's vxlan_set_mac: with learning
// on, a frame from a multicast or all-zeros source MAC is dropped (and not
// learned); with learning off it is delivered. A sender of the other
// address family than the device's is not learned.
func TestInvalidSourceMAC(t *testing.T) {
	for _, tc := range []struct {
		name     string
		learning bool
		srcMAC   tcpip.LinkAddress
		from6    bool
		dropped  bool
		learned  bool
	}{
		{"multicast source, learning", true, "\x01\x00\x5e\x00\x00\x01", false, true, false},
		{"zero source, learning", true, "\x00\x00\x00\x00\x00\x00", false, true, false},
		{"multicast source, no learning", false, "\x01\x00\x5e\x00\x00\x01", false, false, false},
		{"unicast source, learning", true, "\x02\x00\x00\x00\x00\x99", false, false, true},
		{"unicast source from IPv6, IPv4 device", true, "\x02\x00\x00\x00\x00\x99", true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _, d := voidHost(t, Config{VNI: 42, Remotes: []netip.Addr{netip.MustParseAddr("10.99.0.2")}, Learning: tc.learning})
			cd := tunneltest.Count(st, d.Name())
			frame := vxlanFrame(42, tc.srcMAC, tcpip.LinkAddress(d.MAC()), 64)
			var pkt *stack.PacketBuffer
			if tc.from6 {
				wire := make([]byte, header.IPv6MinimumSize+header.UDPMinimumSize)
				ip := header.IPv6(wire)
				ip.Encode(&header.IPv6Fields{PayloadLength: uint16(header.UDPMinimumSize + len(frame)), TransportProtocol: header.UDPProtocolNumber, HopLimit: 64,
					SrcAddr: tcpip.AddrFrom16(netip.MustParseAddr("fd00::2").As16()), DstAddr: tcpip.AddrFrom16(netip.MustParseAddr("fd00::1").As16())})
				uh := header.UDP(wire[header.IPv6MinimumSize:])
				uh.Encode(&header.UDPFields{SrcPort: 40000, DstPort: DefaultPort, Length: uint16(header.UDPMinimumSize + len(frame))})
				// IPv6 needs a checksum (RFC 8200).
				xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uh.Length())
				uh.SetChecksum(^uh.CalculateChecksum(checksum.Checksum(frame, xsum)))
				pkt = tunneltest.ReceivedAs(append(wire, frame...), header.IPv6ProtocolNumber, header.IPv6MinimumSize)
			} else {
				pkt = tunneltest.Received(datagram4(frame))
			}
			tunneltest.TunnelEndpoint(t, st).HandlePacket(gstack.TransportEndpointID{}, pkt)
			pkt.DecRef()

			ds := d.Counters().Stats()
			if got := ds.Dropped(stack.DropPolicy) == 1; got != tc.dropped {
				t.Errorf("dropped: %v, want %v (%v)", got, tc.dropped, ds)
			}
			if got := cd.Delivered() == 1; got == tc.dropped {
				t.Errorf("delivered: %v, want %v", got, !tc.dropped)
			}
			var src MAC
			copy(src[:], tc.srcMAC)
			remotes, flood := d.FDB().Lookup(src)
			if got := len(remotes) > 0 && !flood; got != tc.learned {
				t.Errorf("learned: %v, want %v (FDB %v)", got, tc.learned, d.FDB().Entries())
			}
		})
	}
}
