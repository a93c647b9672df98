package vxlan

// Encapsulation and decapsulation measured at the hook boundaries, without
// the inner stack: encap from the device's Transmit to the underlay link
// (the outer IP write included, and measured alone for subtraction), decap
// from the tunnel socket's HandlePacket to the device's dispatcher (the
// inner Ethernet header parsed, the inner IP layer not run).

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
)

const benchPayload = 1400 // inner UDP payload: a full 1500-byte inner frame

// benchSetup returns a stack whose underlay writes into the void (a pipe
// end with nothing attached at the other side) and a VXLAN device on it
// with one remote.
func benchSetup(b testing.TB) (*stack.Stack, *Socket, *Device) {
	return voidHost(b, Config{VNI: 42, Remotes: []netip.Addr{netip.MustParseAddr("10.99.0.2")}, ZeroChecksum: true})
}

// voidHost is a stack with an underlay that leads nowhere (10.99.0.1/24)
// and a VXLAN socket with one device configured by cfg.
func voidHost(b testing.TB, cfg Config) (*stack.Stack, *Socket, *Device) {
	st := tunneltest.VoidStack(b)
	s, err := OpenSocket(st, SocketConfig{})
	if err != nil {
		b.Fatal(err)
	}
	d, err := s.AddDevice(nil, cfg)
	if err != nil {
		b.Fatal(err)
	}
	return st, s, d
}

// innerFrame builds an outbound inner packet as the inner stack hands it
// to the device: headroom reserved from the device's MaxHeaderLength, UDP,
// IPv4 and Ethernet headers pushed.
func innerFrame(d *Device) *stack.PacketBuffer {
	return tunneltest.InnerFrame(8+HeaderLen+stack.DefaultOuterHeadroom+header.EthernetMinimumSize, tcpip.LinkAddress(d.MAC()), benchPayload)
}

// BenchmarkEncap is the device's transmit path for one 1500-byte inner
// frame: FDB lookup, flow source port, tunnel packet (no copy), VXLAN and
// UDP headers, route cache, outer IPv4 header and the underlay NIC write.
// "outer-ip-only" is the same outer write of a same-sized UDP datagram
// without the tunnel, to subtract.
func BenchmarkEncap(b *testing.B) {
	st, s, d := benchSetup(b)
	b.Run("vxlan", func(b *testing.B) {
		pkt := innerFrame(d)
		defer pkt.DecRef()
		tunneltest.Loop(b, tunneltest.Transmit(b, (*transmitter)(d), pkt))
	})
	b.Run("outer-ip-only", func(b *testing.B) {
		tunneltest.Loop(b, tunneltest.OuterWrite(b, st, DefaultPort, benchPayload+header.EthernetMinimumSize+header.IPv4MinimumSize+header.UDPMinimumSize+HeaderLen))
	})
	_ = s
}

// vxlanFrame returns a VXLAN header for vni and an inner Ethernet header
// from src to dst carrying IPv4, followed by n zero bytes.
func vxlanFrame(vni VNI, src, dst tcpip.LinkAddress, n int) []byte {
	b := make([]byte, HeaderLen+header.EthernetMinimumSize+n)
	Header(b).Encode(&Fields{VNI: vni})
	header.Ethernet(b[HeaderLen:]).Encode(&header.EthernetFields{SrcAddr: src, DstAddr: dst, Type: header.IPv4ProtocolNumber})
	return b
}

// datagram4 wraps payload in IPv4 and UDP from 10.99.0.2:40000 to
// 10.99.0.1:4789 (no UDP checksum, as IPv4 allows).
func datagram4(payload []byte) []byte {
	return tunneltest.Datagram4(40000, DefaultPort, payload)
}

// BenchmarkDecap is the receive path for one datagram carrying a
// 1500-byte inner frame, from the UDP demux to the inner Ethernet layer:
// UDP checks, VXLAN header, VNI lookup, learning, header consumed, inner
// packet built and dispatched. "packet-only" builds and frees the same
// received packet (as a NIC would hand it over) without the tunnel, to
// subtract.
func BenchmarkDecap(b *testing.B) {
	for _, mode := range []string{"static", "learning", "packet-only"} {
		b.Run(mode, func(b *testing.B) {
			st, _, d := benchSetup(b)
			d.cfg.Learning = mode == "learning"
			cd := tunneltest.Count(st, d.Name())

			wire := datagram4(vxlanFrame(42, "\x02\x00\x00\x00\x00\x99", tcpip.LinkAddress(d.MAC()), header.IPv4MinimumSize+header.UDPMinimumSize+benchPayload))
			sockEP := tunneltest.TunnelEndpoint(b, st)
			b.ReportAllocs()
			for b.Loop() {
				pkt := tunneltest.Received(wire)
				if mode != "packet-only" {
					sockEP.HandlePacket(gstack.TransportEndpointID{}, pkt)
				}
				pkt.DecRef()
			}
			if mode != "packet-only" && cd.Delivered() == 0 {
				b.Fatal("nothing was delivered")
			}
		})
	}
}

// TestDecapNoAllocs guards the receive path: from the tunnel socket to the
// device's dispatcher, a datagram costs no allocation (the packet itself
// comes from gVisor's pools).
func TestDecapNoAllocs(t *testing.T) {
	st, _, d := voidHost(t, Config{VNI: 42, Remotes: []netip.Addr{netip.MustParseAddr("10.99.0.2")}, Learning: true})
	cd := tunneltest.Count(st, d.Name())
	wire := datagram4(vxlanFrame(42, "\x02\x00\x00\x00\x00\x99", tcpip.LinkAddress(d.MAC()), 100))
	sockEP := tunneltest.TunnelEndpoint(t, st)
	receive := tunneltest.Receive(sockEP, wire)
	receive() // learn the source first: a new FDB entry allocates, once
	tunneltest.SkipIfRace(t)
	if n := testing.AllocsPerRun(1000, receive); n != 0 {
		t.Errorf("decapsulation allocates %v times per packet, want 0", n)
	}
	if got := cd.Delivered(); got != 1002 { // AllocsPerRun runs once more to warm up
		t.Errorf("delivered %d frames, want 1002", got)
	}
}
