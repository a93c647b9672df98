package vxlan

import (
	"bytes"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
)

// FuzzProxy feeds arbitrary frames to the proxy's decision and reply
// builder and then to a proxying device's transmit path, and checks that
// nothing panics and that:
//
//   - a frame the proxy would answer gets a reply that parses back as the
//     answer (an ARP reply or NA, not a request) naming the table's MAC
//     for the asked address, with a correct ICMPv6 checksum;
//   - one frame moves the proxy's counters by at most one.
//
// More seeds live in testdata/fuzz/FuzzProxy.
func FuzzProxy(f *testing.F) {
	_, _, d := voidHost(f, Config{VNI: 42, Proxy: true, Remotes: []netip.Addr{netip.MustParseAddr("10.99.0.2")}})
	peer := MAC{0x02, 0, 0, 0, 0, 0x02}
	self := MAC(d.MAC())
	v4a, v4b := netip.MustParseAddr("192.168.42.1"), netip.MustParseAddr("192.168.42.2")
	v6a, v6b := netip.MustParseAddr("fd42::1"), netip.MustParseAddr("fd42::2")
	for _, ip := range []netip.Addr{v4b, v6b, netip.MustParseAddr("10.203.0.2")} {
		if err := d.AddNeighbor(ip, peer); err != nil {
			f.Fatal(err)
		}
	}

	// A Linux kernel ARP request from testdata/vxlan.pcap (10.203.0.1 asks
	// for 10.203.0.2, which the table knows): answered.
	f.Add(bytes.Clone(goldenARPRequest[goldenVXLANOffset+HeaderLen:]))
	// ARP request for a known address: answered.
	f.Add(seedARP(header.ARPRequest, self, v4a, v4b))
	// ARP request for an unknown address: a miss.
	f.Add(seedARP(header.ARPRequest, self, v4a, netip.MustParseAddr("192.168.42.7")))
	// ARP reply: seen by the hook, never answered.
	f.Add(seedARP(header.ARPReply, self, v4a, v4b))
	// ARP request one byte short: not ARP at all.
	f.Add(seedARP(header.ARPRequest, self, v4a, v4b)[:header.EthernetMinimumSize+header.ARPSize-1])
	// NS with a source link-layer option for a known address: answered.
	f.Add(seedNS(self, v6a, v6b, true))
	// DAD probe: never answered.
	f.Add(seedNS(self, netip.IPv6Unspecified(), v6b, false))
	// NS whose option has length zero: malformed, not answered.
	ns := seedNS(self, v6a, v6b, true)
	ns[len(ns)-7] = 0
	f.Add(ns)
	// NS claiming a payload longer than the frame: not valid IPv6.
	ns = seedNS(self, v6a, v6b, true)
	ns[header.EthernetMinimumSize+5]++
	f.Add(ns)
	// A plain 14-byte Ethernet header of type IPv6 and nothing else.
	f.Add([]byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd})

	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > tunneltest.MaxFuzzPayload {
			return
		}
		nf, ok := parseNeighborFrame(frame)
		if ok && nf.request {
			r := nf.reply(peer)
			back, ok := parseNeighborFrame(r)
			switch {
			case !ok:
				t.Fatalf("reply %x to %x does not parse", r, frame)
			case back.request:
				t.Fatalf("reply %x to %x is a request", r, frame)
			case !back.hasLocal || back.localMAC != peer || back.localIP != nf.target:
				t.Fatalf("reply %x to %x names (%v, %v), want (%v, %v)", r, frame, back.localMAC, back.localIP, peer, nf.target)
			}
			if nf.ipv6 {
				ip := header.IPv6(r[header.EthernetMinimumSize:])
				icmp := header.ICMPv6(ip.Payload())
				if want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: ip.SourceAddress(), Dst: ip.DestinationAddress()}); icmp.Checksum() != want {
					t.Fatalf("NA checksum %#04x, want %#04x", icmp.Checksum(), want)
				}
			}
		}
		before := d.ProxyStats()
		TransmitFrame(d, frame)
		after := d.ProxyStats()
		if n := after.Replies - before.Replies + after.Misses - before.Misses; n > 1 {
			t.Fatalf("one frame moved the proxy counters by %d: %+v -> %+v", n, before, after)
		}
	})
}

// seedARP is an ARP message from sha/spa about tpa, broadcast.
func seedARP(op header.ARPOp, sha MAC, spa, tpa netip.Addr) []byte {
	b := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: tcpip.LinkAddress(sha[:]), DstAddr: header.EthernetBroadcastAddress, Type: header.ARPProtocolNumber})
	a := header.ARP(b[header.EthernetMinimumSize:])
	a.SetIPv4OverEthernet()
	a.SetOp(op)
	copy(a.HardwareAddressSender(), sha[:])
	copy(a.ProtocolAddressSender(), spa.AsSlice())
	copy(a.ProtocolAddressTarget(), tpa.AsSlice())
	return b
}

// seedNS is a neighbour solicitation from src for target, with a source
// link-layer address option if sll.
func seedNS(mac MAC, src, target netip.Addr, sll bool) []byte {
	n := header.ICMPv6NeighborSolicitMinimumSize
	if sll {
		n += 8
	}
	b := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+n)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: tcpip.LinkAddress(mac[:]), DstAddr: "\x33\x33\xff\x00\x00\x02", Type: header.IPv6ProtocolNumber})
	s, dst := tcpip.AddrFrom16(src.As16()), tcpip.AddrFrom16(netip.MustParseAddr("ff02::1:ff00:2").As16())
	header.IPv6(b[header.EthernetMinimumSize:]).Encode(&header.IPv6Fields{PayloadLength: uint16(n), TransportProtocol: header.ICMPv6ProtocolNumber, HopLimit: 255, SrcAddr: s, DstAddr: dst})
	icmp := header.ICMPv6(b[header.EthernetMinimumSize+header.IPv6MinimumSize:])
	icmp.SetType(header.ICMPv6NeighborSolicit)
	ns := header.NDPNeighborSolicit(icmp.MessageBody())
	ns.SetTargetAddress(tcpip.AddrFrom16(target.As16()))
	if sll {
		ns.Options().Serialize(header.NDPOptionsSerializer{header.NDPSourceLinkLayerAddressOption(tcpip.LinkAddress(mac[:]))})
	}
	icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: s, Dst: dst}))
	return b
}
