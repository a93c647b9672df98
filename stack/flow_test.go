package stack_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/udptunnel/udptunnel/stack"
)

// flowPacket returns an inner packet as the inner stack hands it to a
// device: transport ports and the IP header pushed in front of the data.
func flowPacket(src, dst netip.AddrPort, proto tcpip.TransportProtocolNumber) *stack.PacketBuffer {
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{
		ReserveHeaderBytes: 128,
		Payload:            buffer.MakeWithData([]byte("flow payload")),
	})
	th := pkt.TransportHeader().Push(header.UDPMinimumSize)
	binary.BigEndian.PutUint16(th[0:], src.Port())
	binary.BigEndian.PutUint16(th[2:], dst.Port())
	pkt.TransportProtocolNumber = proto
	srcA, dstA := tcpip.AddrFromSlice(src.Addr().AsSlice()), tcpip.AddrFromSlice(dst.Addr().AsSlice())
	if src.Addr().Is4() {
		header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize)).Encode(&header.IPv4Fields{
			TotalLength: uint16(pkt.Size()),
			TTL:         64,
			Protocol:    uint8(proto),
			SrcAddr:     srcA,
			DstAddr:     dstA,
		})
		pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	} else {
		header.IPv6(pkt.NetworkHeader().Push(header.IPv6MinimumSize)).Encode(&header.IPv6Fields{
			PayloadLength:     uint16(pkt.Size()),
			TransportProtocol: proto,
			HopLimit:          64,
			SrcAddr:           srcA,
			DstAddr:           dstA,
		})
		pkt.NetworkProtocolNumber = header.IPv6ProtocolNumber
	}
	return pkt
}

// flow returns the i-th of a family of distinct flows.
func flow(i int, v6 bool) (src, dst netip.AddrPort) {
	if v6 {
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte{0: 0xfd, 14: byte(i >> 8), 15: byte(i)}), uint16(30000+i%7919)),
			netip.AddrPortFrom(netip.MustParseAddr("fd00::99"), 443)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), uint16(30000+i%7919)),
		netip.AddrPortFrom(netip.MustParseAddr("10.2.0.1"), 443)
}

// flowPort returns FlowHash and FlowSrcPort of flow i.
func flowPort(i int, v6 bool, min, max uint16) (uint32, uint16) {
	src, dst := flow(i, v6)
	pkt := flowPacket(src, dst, header.TCPProtocolNumber)
	defer pkt.DecRef()
	return stack.FlowHash(pkt), stack.FlowSrcPort(pkt, min, max)
}

func TestFlowSrcPortRange(t *testing.T) {
	for _, tc := range []struct {
		name               string
		min, max           uint16
		wantMin, wantLimit int // want wantMin <= port < wantLimit
	}{
		{"kernel default range", 32768, 61000, 32768, 61000},
		{"narrow", 10000, 10010, 10000, 10010},
		{"one port", 4789, 4790, 4789, 4790},
		{"top of the port space", 65000, 65535, 65000, 65535},
		{"empty", 5000, 5000, 49152, 65535},
		{"inverted", 6000, 5000, 49152, 65535},
		{"zero", 0, 0, 49152, 65535},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[uint16]bool{}
			for i := range 2000 {
				for _, v6 := range []bool{false, true} {
					_, p := flowPort(i, v6, tc.min, tc.max)
					if int(p) < tc.wantMin || int(p) >= tc.wantLimit {
						t.Fatalf("flow %d: port %d outside [%d, %d)", i, p, tc.wantMin, tc.wantLimit)
					}
					seen[p] = true
				}
			}
			if span := tc.wantLimit - tc.wantMin; span > 1 && len(seen) < min(span, 2000)/2 {
				t.Errorf("4000 flows used only %d ports of %d", len(seen), span)
			}
		})
	}
}

func TestFlowSrcPortStablePerFlow(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for i := range 200 {
			h1, p1 := flowPort(i, v6, 32768, 61000)
			h2, p2 := flowPort(i, v6, 32768, 61000)
			if h1 != h2 || p1 != p2 {
				t.Fatalf("flow %d (v6=%v): hash %#x/%#x, port %d/%d for two packets of one flow", i, v6, h1, h2, p1, p2)
			}
		}
	}
}

func TestFlowSrcPortSpreadsFlows(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		ports := map[uint16]bool{}
		for i := range 1000 {
			_, p := flowPort(i, v6, 20000, 21000)
			ports[p] = true
		}
		// 1000 random draws over 1000 ports hit about 632 of them.
		if len(ports) <= 500 {
			t.Errorf("v6=%v: 1000 flows hit %d of 1000 ports, want more than 500", v6, len(ports))
		}
	}
}

func TestFlowHash(t *testing.T) {
	t.Run("never zero", func(t *testing.T) {
		for _, v6 := range []bool{false, true} {
			for i := range 20000 {
				if h, _ := flowPort(i, v6, 0, 0); h == 0 {
					t.Fatalf("FlowHash of flow %d (v6=%v) is 0", i, v6)
				}
			}
		}
	})
	t.Run("every field counts", func(t *testing.T) {
		base := func() (netip.AddrPort, netip.AddrPort, tcpip.TransportProtocolNumber) {
			return netip.MustParseAddrPort("10.0.0.1:1000"), netip.MustParseAddrPort("10.0.0.2:2000"), header.TCPProtocolNumber
		}
		hash := func(src, dst netip.AddrPort, proto tcpip.TransportProtocolNumber) uint32 {
			pkt := flowPacket(src, dst, proto)
			defer pkt.DecRef()
			return stack.FlowHash(pkt)
		}
		s, d, p := base()
		h0 := hash(s, d, p)
		for name, h := range map[string]uint32{
			"source address":      hash(netip.MustParseAddrPort("10.0.0.3:1000"), d, p),
			"destination address": hash(s, netip.MustParseAddrPort("10.0.0.4:2000"), p),
			"source port":         hash(netip.MustParseAddrPort("10.0.0.1:1001"), d, p),
			"destination port":    hash(s, netip.MustParseAddrPort("10.0.0.2:2001"), p),
			"protocol":            hash(s, d, header.UDPProtocolNumber),
			"direction":           hash(d, s, p),
		} {
			if h == h0 {
				t.Errorf("changing the %s leaves the hash at %#x", name, h)
			}
		}
	})
	t.Run("uses pkt.Hash", func(t *testing.T) {
		a := flowPacket(netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2"), header.UDPProtocolNumber)
		defer a.DecRef()
		b := flowPacket(netip.MustParseAddrPort("10.9.9.9:9"), netip.MustParseAddrPort("10.8.8.8:8"), header.TCPProtocolNumber)
		defer b.DecRef()
		a.Hash, b.Hash = 0xdeadbeef, 0xdeadbeef
		if ha, hb := stack.FlowHash(a), stack.FlowHash(b); ha != 0xdeadbeef || hb != 0xdeadbeef {
			t.Errorf("FlowHash = %#x, %#x; want the socket's hash 0xdeadbeef", ha, hb)
		}
		if pa, pb := stack.FlowSrcPort(a, 1000, 2000), stack.FlowSrcPort(b, 1000, 2000); pa != pb {
			t.Errorf("equal pkt.Hash, ports %d and %d", pa, pb)
		}
	})
	t.Run("link header only", func(t *testing.T) {
		// ARP over an L2 tunnel: no network header, the Ethernet header is
		// hashed.
		hash := func(src byte) uint32 {
			pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{ReserveHeaderBytes: 64, Payload: buffer.MakeWithData(make([]byte, 28))})
			defer pkt.DecRef()
			header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize)).Encode(&header.EthernetFields{
				SrcAddr: tcpip.LinkAddress([]byte{2, 0, 0, 0, 0, src}),
				DstAddr: header.EthernetBroadcastAddress,
				Type:    header.ARPProtocolNumber,
			})
			return stack.FlowHash(pkt)
		}
		if hash(1) != hash(1) {
			t.Error("two ARP frames of one host hash differently")
		}
		if hash(1) == hash(2) {
			t.Error("ARP frames of two hosts hash alike")
		}
		if hash(1) == 0 {
			t.Error("hash is 0")
		}
	})
}

func TestFlowSrcPortNoAllocs(t *testing.T) {
	pkt := flowPacket(netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2"), header.UDPProtocolNumber)
	defer pkt.DecRef()
	if n := testing.AllocsPerRun(100, func() { stack.FlowSrcPort(pkt, 32768, 61000) }); n != 0 {
		t.Errorf("FlowSrcPort allocates %v times", n)
	}
}
