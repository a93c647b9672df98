package tunneltest

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

// The void host's underlay: its own address and the peer its devices send
// to, on 10.99.0.0/24.
var (
	VoidLocal = netip.MustParseAddr("10.99.0.1")
	VoidPeer  = netip.MustParseAddr("10.99.0.2")
)

// VoidStack returns a stack whose underlay NIC ("underlay", VoidLocal/24)
// writes into the void: one end of a pipe with nothing attached at the
// other. Benchmarks and allocation guards open their tunnel socket on it
// and measure no underlay work beyond gVisor's outer IP write. The stack is
// closed when tb ends.
func VoidStack(tb testing.TB) *stack.Stack {
	tb.Helper()
	void, _ := pipe.New("\x02\x00\x00\x00\x00\x01", "\x02\x00\x00\x00\x00\x02", 65000)
	st, _ := NewStack(tb, void, netip.PrefixFrom(VoidLocal, 24))
	return st
}

// InnerIPv4 builds an outbound inner IPv4/UDP packet from src to dst with
// n zero bytes of payload, as the inner stack hands it to a device:
// headroom bytes reserved, UDP (1000 to 2000) and IPv4 headers pushed.
// Devices that carry Ethernet push their link header on top.
func InnerIPv4(headroom int, src, dst netip.Addr, n int) *stack.PacketBuffer {
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{
		ReserveHeaderBytes: headroom + header.IPv4MinimumSize + header.UDPMinimumSize,
		Payload:            buffer.MakeWithData(make([]byte, n)),
	})
	udp := header.UDP(pkt.TransportHeader().Push(header.UDPMinimumSize))
	udp.Encode(&header.UDPFields{SrcPort: 1000, DstPort: 2000, Length: uint16(header.UDPMinimumSize + n)})
	pkt.TransportProtocolNumber = header.UDPProtocolNumber
	ip := header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize))
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + header.UDPMinimumSize + n), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src.As4()), DstAddr: tcpip.AddrFrom4(dst.As4())})
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	return pkt
}

// InnerFrame is InnerIPv4 from 192.168.42.1 to 192.168.42.2 with an
// Ethernet header from mac to 02:00:00:00:00:99 pushed on top, as the
// inner stack hands it to an L2 device; headroom (the device's
// MaxHeaderLength) includes the Ethernet header.
func InnerFrame(headroom int, mac tcpip.LinkAddress, n int) *stack.PacketBuffer {
	pkt := InnerIPv4(headroom, netip.AddrFrom4([4]byte{192, 168, 42, 1}), netip.AddrFrom4([4]byte{192, 168, 42, 2}), n)
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{SrcAddr: mac, DstAddr: "\x02\x00\x00\x00\x00\x99", Type: header.IPv4ProtocolNumber})
	return pkt
}

// Datagram4 wraps payload in IPv4 and UDP from VoidPeer:srcPort to
// VoidLocal:dstPort (no UDP checksum, as IPv4 allows): a datagram the void
// host's tunnel socket receives.
func Datagram4(srcPort, dstPort uint16, payload []byte) []byte {
	b := make([]byte, header.IPv4MinimumSize+header.UDPMinimumSize, header.IPv4MinimumSize+header.UDPMinimumSize+len(payload))
	header.IPv4(b).Encode(&header.IPv4Fields{TotalLength: uint16(cap(b)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(VoidPeer.As4()), DstAddr: tcpip.AddrFrom4(VoidLocal.As4())})
	header.UDP(b[header.IPv4MinimumSize:]).Encode(&header.UDPFields{SrcPort: srcPort, DstPort: dstPort, Length: uint16(header.UDPMinimumSize + len(payload))})
	return append(b, payload...)
}

// Received returns wire (an IPv4 datagram, as Datagram4 builds) as the UDP
// demux hands it to a transport endpoint: a fresh, singly owned buffer (as
// a NIC's receive gives) with the IPv4 and UDP headers parsed.
func Received(wire []byte) *stack.PacketBuffer {
	return ReceivedAs(wire, header.IPv4ProtocolNumber, header.IPv4MinimumSize)
}

// ReceivedAs is Received for a network header of ipLen bytes of proto.
func ReceivedAs(wire []byte, proto tcpip.NetworkProtocolNumber, ipLen int) *stack.PacketBuffer {
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithView(buffer.NewViewWithData(wire))})
	pkt.NetworkHeader().Consume(ipLen)
	pkt.NetworkProtocolNumber = proto
	pkt.TransportHeader().Consume(header.UDPMinimumSize)
	pkt.TransportProtocolNumber = header.UDPProtocolNumber
	return pkt
}

// TunnelEndpoint returns the transport endpoint of st's only tunnel socket
// (registered once per network protocol): where Received packets are
// handed with HandlePacket.
func TunnelEndpoint(tb testing.TB, st *stack.Stack) gstack.TransportEndpoint {
	tb.Helper()
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

// CountingDispatcher stands in for the inner stack: it counts what a
// device delivers.
type CountingDispatcher struct{ n atomic.Uint64 }

// DeliverNetworkPacket implements stack.NetworkDispatcher: it counts.
func (c *CountingDispatcher) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {
	c.n.Add(1)
}

// DeliverLinkPacket implements stack.NetworkDispatcher: it ignores pkt.
func (c *CountingDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {
}

// Delivered returns the number of packets delivered so far.
func (c *CountingDispatcher) Delivered() uint64 { return c.n.Load() }

// Count attaches a CountingDispatcher to the link endpoint of st's NIC
// named nic (a device's Name) in place of the inner stack, and returns it.
func Count(st *stack.Stack, nic string) *CountingDispatcher {
	var cd CountingDispatcher
	st.GVisor().GetLinkEndpointByName(nic).Attach(&cd)
	return &cd
}

// OuterWrite returns a function that sends one UDP datagram of n payload
// bytes (to VoidPeer:dstPort) from st straight through a cached route and
// gVisor's outer IPv4 layer, without the tunnel: the baseline whose cost
// (the NIC queueing discipline's packet list, now and then the IPv4 ID
// generator) is gVisor's own, to subtract from an encapsulating write. The
// route and buffer are released when tb ends.
func OuterWrite(tb testing.TB, st *stack.Stack, dstPort uint16, n int) func() {
	tb.Helper()
	r, terr := st.GVisor().FindRoute(0, tcpip.Address{}, tcpip.AddrFrom4(VoidPeer.As4()), header.IPv4ProtocolNumber, false)
	if terr != nil {
		tb.Fatal(terr)
	}
	tb.Cleanup(r.Release)
	data := buffer.MakeWithData(make([]byte, n))
	tb.Cleanup(data.Release)
	return func() {
		pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{ReserveHeaderBytes: int(r.MaxHeaderLength()) + header.UDPMinimumSize, Payload: data.Clone()})
		header.UDP(pkt.TransportHeader().Push(header.UDPMinimumSize)).Encode(&header.UDPFields{SrcPort: 1, DstPort: dstPort, Length: uint16(header.UDPMinimumSize + data.Size())})
		pkt.TransportProtocolNumber = header.UDPProtocolNumber
		if err := r.WritePacket(gstack.NetworkHeaderParams{Protocol: header.UDPProtocolNumber, TTL: 64}, pkt); err != nil {
			tb.Fatal(err)
		}
		pkt.DecRef()
	}
}
