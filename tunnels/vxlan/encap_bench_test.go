package vxlan

// Encapsulation and decapsulation measured at the hook boundaries, without
// the inner stack: encap from the device's Transmit to the underlay link
// (the outer IP write included, and measured alone for subtraction), decap
// from the tunnel socket's HandlePacket to the device's dispatcher (the
// inner Ethernet header parsed, the inner IP layer not run).

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
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

// TestEncapNoAllocs guards the transmit path: encapsulating and sending a
// frame allocates nothing beyond what gVisor's outer IP write of the same
// datagram allocates by itself, also on a device that proxies ARP/ND and
// has a local neighbour hook (which look only at ARP and NDP frames), for
// IPv4 and for ICMPv6 that is not NDP.
func TestEncapNoAllocs(t *testing.T) {
	st, s, d := voidHost(t, Config{VNI: 42, Remotes: []netip.Addr{netip.MustParseAddr("10.99.0.2")}, ZeroChecksum: true, Proxy: true})
	if err := d.AddNeighbor(netip.MustParseAddr("192.168.42.2"), MAC{2, 0, 0, 0, 0, 2}); err != nil {
		t.Fatal(err)
	}
	d.SetLocalNeighborHook(func(MAC, netip.Addr) { t.Error("hook called for a data frame") })
	v4 := innerFrame(d)
	defer v4.DecRef()
	v6 := innerICMPv6(d, benchPayload)
	defer v6.DecRef()
	base := tunneltest.OuterWrite(t, st, DefaultPort, v4.Size()+HeaderLen)
	base()
	sends := []func(){tunneltest.Transmit(t, (*transmitter)(d), v4), tunneltest.Transmit(t, (*transmitter)(d), v6)}
	for _, send := range sends {
		send()
	}
	tunneltest.SkipIfRace(t)
	const runs = 4096
	outer := testing.AllocsPerRun(runs, base)
	for i, send := range sends {
		if tunnel := testing.AllocsPerRun(runs, send); tunnel > outer {
			t.Errorf("%s: encapsulation allocates %v times per packet, gVisor's outer write alone %v: the tunnel adds %v, want 0",
				[]string{"IPv4", "ICMPv6"}[i], tunnel, outer, tunnel-outer)
		}
	}
	if got := s.Tunnel().Counters().Stats().TxPackets; got != 2*(runs+2) {
		t.Errorf("socket sent %d datagrams, want %d", got, 2*(runs+2))
	}
	if got := d.ProxyStats(); got != (ProxyStats{}) {
		t.Errorf("proxy stats %+v after data frames, want zero", got)
	}
}

// innerICMPv6 is an outbound ICMPv6 echo request of n payload bytes (hop
// limit 64: not NDP) from fd42::1 to fd42::2 in an Ethernet frame from
// d's MAC, as the inner stack hands it to d.
func innerICMPv6(d *Device, n int) *stack.PacketBuffer {
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{
		ReserveHeaderBytes: 8 + HeaderLen + stack.DefaultOuterHeadroom + header.EthernetMinimumSize + header.IPv6MinimumSize + header.ICMPv6EchoMinimumSize,
		Payload:            buffer.MakeWithData(make([]byte, n)),
	})
	icmp := header.ICMPv6(pkt.TransportHeader().Push(header.ICMPv6EchoMinimumSize))
	icmp.SetType(header.ICMPv6EchoRequest)
	pkt.TransportProtocolNumber = header.ICMPv6ProtocolNumber
	header.IPv6(pkt.NetworkHeader().Push(header.IPv6MinimumSize)).Encode(&header.IPv6Fields{
		PayloadLength: uint16(header.ICMPv6EchoMinimumSize + n), TransportProtocol: header.ICMPv6ProtocolNumber, HopLimit: 64,
		SrcAddr: tcpip.AddrFrom16(netip.MustParseAddr("fd42::1").As16()), DstAddr: tcpip.AddrFrom16(netip.MustParseAddr("fd42::2").As16()),
	})
	pkt.NetworkProtocolNumber = header.IPv6ProtocolNumber
	header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize)).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(d.MAC()), DstAddr: "\x02\x00\x00\x00\x00\x02", Type: header.IPv6ProtocolNumber,
	})
	return pkt
}
