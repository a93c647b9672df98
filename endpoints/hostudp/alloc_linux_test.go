//go:build linux

package hostudp

import (
	"net"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// outgoingPacket returns an IPv4/UDP packet as the stack writes it, from
// src to dst with n bytes of payload.
func outgoingPacket(src, dst netip.AddrPort, n int) *stack.PacketBuffer {
	b := make([]byte, 28+n)
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpipAddr(src.Addr()), DstAddr: tcpipAddr(dst.Addr())})
	ip.SetChecksum(^ip.CalculateChecksum())
	header.UDP(b[20:]).Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(8 + n)})
	return stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
}

// TestNoAllocsTransmit: parsing, batching (with GSO trains) and sendmmsg
// of written packets allocate nothing.
func TestNoAllocsTransmit(t *testing.T) {
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	dst := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	e, err := New(Config{Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Ports: []uint16{freePortInternal(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	src := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 50000)
	var pkts []*stack.PacketBuffer
	for i := range 64 {
		n := 1400
		if i%16 == 15 {
			n = 100 // ends a GSO train
		}
		pkts = append(pkts, outgoingPacket(src, dst, n))
	}
	defer func() {
		for _, p := range pkts {
			p.DecRef()
		}
	}()
	tb := newTxBatch(e.cfg.Batch)
	allocs := testing.AllocsPerRun(50, func() { e.transmit(tb, pkts) })
	if allocs != 0 {
		t.Errorf("transmit of %d packets: %v allocations, want 0", len(pkts), allocs)
	}
	if s := e.Stats(); s.TxPackets == 0 || s.Dropped.SendError != 0 {
		t.Errorf("nothing sent: %v", s)
	}
}

func freePortInternal(t *testing.T) uint16 {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

// TestNoAllocsInbound: rebuilding a received datagram takes its memory
// from gVisor's pools only.
func TestNoAllocsInbound(t *testing.T) {
	src, dst := netip.MustParseAddrPort("192.0.2.2:40000"), netip.MustParseAddrPort("192.0.2.1:4789")
	payload := make([]byte, 1450)
	allocs := testing.AllocsPerRun(100, func() {
		pkt, _ := newInbound(src, dst, payload, true)
		pkt.DecRef()
	})
	if allocs != 0 {
		t.Errorf("newInbound: %v allocations, want 0", allocs)
	}
}
