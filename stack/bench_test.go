package stack_test

import (
	"net/netip"
	"sync/atomic"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/stack"
)

// sink is a NetworkDispatcher that counts and discards what the far end of
// a wire receives.
type sink struct{ n atomic.Int64 }

func (s *sink) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) { s.n.Add(1) }
func (s *sink) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer)    {}

// BenchmarkXmit measures NewTunnelPacket + Xmit: UDP header, checksum,
// cached outer route, outer IP, to a synchronous memlink wire whose far end
// discards. The inner packet is built once and borrowed, as a device's
// Transmit borrows the inner stack's packet.
func BenchmarkXmit(b *testing.B) {
	for _, bc := range []struct {
		name string
		v6   bool
		size int
	}{
		{"ipv4/64B", false, 64},
		{"ipv4/1400B", false, 1400},
		{"ipv6/1400B", true, 1400},
	} {
		b.Run(bc.name, func(b *testing.B) {
			st := newStack(b)
			ea, eb, err := memlink.NewPair(memlink.Options{Sync: true})
			if err != nil {
				b.Fatal(err)
			}
			var far sink
			eb.Attach(&far)
			b.Cleanup(eb.Close)
			nic, err := st.AddNIC(ea, stack.NICOptions{Name: "underlay"})
			if err != nil {
				b.Fatal(err)
			}
			local, dst := netip.MustParsePrefix("198.18.0.1/24"), netip.MustParseAddr("198.18.0.2")
			if bc.v6 {
				local, dst = netip.MustParsePrefix("fd00::1/64"), netip.MustParseAddr("fd00::2")
			}
			if err := st.AddAddress(nic, local); err != nil {
				b.Fatal(err)
			}
			so, err := st.OpenTunnelSocket(stack.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, 7000)}, &recorder{})
			if err != nil {
				b.Fatal(err)
			}
			defer so.Close()
			inner := innerPacket(pattern(bc.size, 0), 256)
			defer inner.DecRef()
			p := stack.XmitParams{Dst: dst, DstPort: 7000, SrcPort: stack.FlowSrcPort(inner, 0, 0)}
			hdr := ttHeader(1)

			b.SetBytes(int64(bc.size))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				out, th := stack.NewTunnelPacket(inner, ttHeaderLen)
				copy(th, hdr)
				if err := so.Xmit(out, p); err != nil {
					b.Fatalf("Xmit: %v", err)
				}
			}
			b.StopTimer()
			if got := far.n.Load(); got != int64(b.N) {
				b.Fatalf("the far end received %d of %d datagrams", got, b.N)
			}
		})
	}
}

// countingEncap consumes every datagram.
type countingEncap struct{ n atomic.Int64 }

func (e *countingEncap) Receive(pkt *stack.PacketBuffer, _, _ netip.AddrPort) stack.Verdict {
	e.n.Add(1)
	return stack.Consumed
}

// BenchmarkReceive measures an outer datagram from the underlay NIC
// through gVisor's IPv4/IPv6 and UDP demux into HandlePacket (length and
// checksum checks) to a Consumed verdict. Each iteration builds the packet
// from its bytes, as a NIC driver does.
func BenchmarkReceive(b *testing.B) {
	for _, bc := range []struct {
		name string
		v6   bool
		size int
	}{
		{"ipv4/64B", false, 64},
		{"ipv4/1400B", false, 1400},
		{"ipv6/1400B", true, 1400},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := newWireHost(b, 0)
			enc := &countingEncap{}
			so, err := h.st.OpenTunnelSocket(stack.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, 7000)}, enc)
			if err != nil {
				b.Fatal(err)
			}
			defer so.Close()
			src, dst := netip.AddrPortFrom(peer4, 40000), netip.AddrPortFrom(local4, 7000)
			proto := header.IPv4ProtocolNumber
			if bc.v6 {
				src, dst = netip.AddrPortFrom(peer6, 40000), netip.AddrPortFrom(local6, 7000)
				proto = header.IPv6ProtocolNumber
			}
			wire := udpPacket(src, dst, append(ttHeader(1), pattern(bc.size, 0)...), csumGood)

			b.SetBytes(int64(bc.size))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(wire)})
				h.ep.InjectInbound(proto, pkt)
				pkt.DecRef()
			}
			b.StopTimer()
			if got := enc.n.Load(); got != int64(b.N) {
				b.Fatalf("the encap received %d of %d datagrams (%v)", got, b.N, so.Counters().Stats())
			}
		})
	}
}
