package vxlan

// Encapsulation and decapsulation measured at the hook boundaries, without
// the inner stack: encap from the device's Transmit to the underlay link
// (the outer IP write included, and measured alone for subtraction), decap
// from the tunnel socket's HandlePacket to the device's dispatcher (the
// inner Ethernet header parsed, the inner IP layer not run).

import (
	"net/netip"
	"sync/atomic"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/pipe"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

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
	st := stack.New(stack.Options{})
	b.Cleanup(st.Close)
	void, _ := pipe.New("\x02\x00\x00\x00\x00\x01", "\x02\x00\x00\x00\x00\x02", 65000)
	nic, err := st.AddNIC(void, stack.NICOptions{Name: "underlay"})
	if err != nil {
		b.Fatal(err)
	}
	if err := st.AddAddress(nic, netip.MustParsePrefix("10.99.0.1/24")); err != nil {
		b.Fatal(err)
	}
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
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{
		ReserveHeaderBytes: 8 + HeaderLen + stack.DefaultOuterHeadroom + header.EthernetMinimumSize + header.IPv4MinimumSize + header.UDPMinimumSize,
		Payload:            buffer.MakeWithData(make([]byte, benchPayload)),
	})
	udp := header.UDP(pkt.TransportHeader().Push(header.UDPMinimumSize))
	udp.Encode(&header.UDPFields{SrcPort: 1000, DstPort: 2000, Length: header.UDPMinimumSize + benchPayload})
	pkt.TransportProtocolNumber = header.UDPProtocolNumber
	ip := header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize))
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + header.UDPMinimumSize + benchPayload), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 1}), DstAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 2})})
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{SrcAddr: tcpip.LinkAddress(d.MAC()), DstAddr: "\x02\x00\x00\x00\x00\x99", Type: header.IPv4ProtocolNumber})
	return pkt
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
		tx := (*transmitter)(d)
		b.ReportAllocs()
		for b.Loop() {
			if err := tx.Transmit(pkt); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("outer-ip-only", func(b *testing.B) {
		r, terr := st.GVisor().FindRoute(0, tcpip.Address{}, tcpip.AddrFrom4([4]byte{10, 99, 0, 2}), header.IPv4ProtocolNumber, false)
		if terr != nil {
			b.Fatal(terr)
		}
		defer r.Release()
		data := buffer.MakeWithData(make([]byte, benchPayload+header.EthernetMinimumSize+header.IPv4MinimumSize+header.UDPMinimumSize+HeaderLen))
		defer data.Release()
		b.ReportAllocs()
		for b.Loop() {
			pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{ReserveHeaderBytes: int(r.MaxHeaderLength()) + 8, Payload: data.Clone()})
			header.UDP(pkt.TransportHeader().Push(8)).Encode(&header.UDPFields{SrcPort: 1, DstPort: 4789, Length: uint16(8 + data.Size())})
			pkt.TransportProtocolNumber = header.UDPProtocolNumber
			if err := r.WritePacket(gstack.NetworkHeaderParams{Protocol: header.UDPProtocolNumber, TTL: 64}, pkt); err != nil {
				b.Fatal(err)
			}
			pkt.DecRef()
		}
	})
	_ = s
}

// countingDispatcher stands in for the inner stack: it counts what the
// device delivers.
type countingDispatcher struct{ n atomic.Uint64 }

func (c *countingDispatcher) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {
	c.n.Add(1)
}
func (c *countingDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {}

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
	b := make([]byte, header.IPv4MinimumSize+header.UDPMinimumSize, header.IPv4MinimumSize+header.UDPMinimumSize+len(payload))
	header.IPv4(b).Encode(&header.IPv4Fields{TotalLength: uint16(cap(b)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{10, 99, 0, 2}), DstAddr: tcpip.AddrFrom4([4]byte{10, 99, 0, 1})})
	header.UDP(b[header.IPv4MinimumSize:]).Encode(&header.UDPFields{SrcPort: 40000, DstPort: DefaultPort, Length: uint16(header.UDPMinimumSize + len(payload))})
	return append(b, payload...)
}

// received returns wire as the UDP demux hands it to a transport endpoint:
// a fresh, singly owned buffer (as a NIC's receive gives) with the network
// header (ipLen bytes of proto) and the UDP header parsed.
func received(wire []byte, proto tcpip.NetworkProtocolNumber, ipLen int) *stack.PacketBuffer {
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithView(buffer.NewViewWithData(wire))})
	pkt.NetworkHeader().Consume(ipLen)
	pkt.NetworkProtocolNumber = proto
	pkt.TransportHeader().Consume(header.UDPMinimumSize)
	pkt.TransportProtocolNumber = header.UDPProtocolNumber
	return pkt
}

// tunnelEndpoint returns the transport endpoint of st's only tunnel socket
// (registered once per network protocol).
func tunnelEndpoint(tb testing.TB, st *stack.Stack) gstack.TransportEndpoint {
	eps := st.GVisor().RegisteredEndpoints()
	if len(eps) == 0 {
		tb.Fatal("no tunnel socket registered")
	}
	for _, e := range eps {
		if e != eps[0] {
			tb.Fatalf("registered endpoints %v, want the tunnel socket alone", eps)
		}
	}
	return eps[0]
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
			var cd countingDispatcher
			st.GVisor().GetLinkEndpointByName(d.Name()).Attach(&cd)

			wire := datagram4(vxlanFrame(42, "\x02\x00\x00\x00\x00\x99", tcpip.LinkAddress(d.MAC()), header.IPv4MinimumSize+header.UDPMinimumSize+benchPayload))
			sockEP := tunnelEndpoint(b, st)
			b.ReportAllocs()
			for b.Loop() {
				pkt := received(wire, header.IPv4ProtocolNumber, header.IPv4MinimumSize)
				if mode != "packet-only" {
					sockEP.HandlePacket(gstack.TransportEndpointID{}, pkt)
				}
				pkt.DecRef()
			}
			if mode != "packet-only" && cd.n.Load() == 0 {
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
	var cd countingDispatcher
	st.GVisor().GetLinkEndpointByName(d.Name()).Attach(&cd)
	wire := datagram4(vxlanFrame(42, "\x02\x00\x00\x00\x00\x99", tcpip.LinkAddress(d.MAC()), 100))
	sockEP := tunnelEndpoint(t, st)
	receive := func() {
		pkt := received(wire, header.IPv4ProtocolNumber, header.IPv4MinimumSize)
		sockEP.HandlePacket(gstack.TransportEndpointID{}, pkt)
		pkt.DecRef()
	}
	receive() // learn the source first: a new FDB entry allocates, once
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items)")
	}
	if n := testing.AllocsPerRun(1000, receive); n != 0 {
		t.Errorf("decapsulation allocates %v times per packet, want 0", n)
	}
	if got := cd.n.Load(); got != 1002 { // AllocsPerRun runs once more to warm up
		t.Errorf("delivered %d frames, want 1002", got)
	}
}
