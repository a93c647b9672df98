package vxlan_test

// Malformed input on the tunnel port: every datagram is either delivered or
// dropped and counted under its reason; nothing panics.

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// rawHeader returns a VXLAN header with every field as given, valid or not.
func rawHeader(flags byte, reserved24 uint32, vni uint32, reserved8 byte) []byte {
	b := make([]byte, vxlan.HeaderLen)
	binary.BigEndian.PutUint32(b[0:], uint32(flags)<<24|reserved24&0xffffff)
	binary.BigEndian.PutUint32(b[4:], vni<<8|uint32(reserved8))
	return b
}

// ethFrame returns an Ethernet frame from src to dst.
func ethFrame(dst, src vxlan.MAC, etherType uint16, payload []byte) []byte {
	return vxlanFrame(0, dst, src, etherType, payload)[vxlan.HeaderLen:]
}

var (
	macBroadcast = vxlan.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	macStranger  = vxlan.MAC{0x02, 0xbb, 0, 0, 0, 1} // no device has it
	macPeer      = vxlan.MAC{0x02, 0xcc, 0, 0, 0, 1} // a host behind the sending VTEP
)

// TestMalformedDatagrams sends crafted datagrams to the VXLAN port of a host
// from an ordinary UDP socket of another stack, over both underlay
// families, and checks which counter each one moves.
func TestMalformedDatagrams(t *testing.T) {
	sock := func(r stack.DropReason) tunneltest.Counts {
		return tunneltest.Counts{Rx: 1, Drops: map[stack.DropReason]uint64{r: 1}}
	}
	devDrop := func(r stack.DropReason) tunneltest.Counts {
		return tunneltest.Counts{Drops: map[stack.DropReason]uint64{r: 1}}
	}
	for _, outer4 := range []bool{true, false} {
		t.Run(map[bool]string{true: "outer4", false: "outer6"}[outer4], func(t *testing.T) {
			hs := pair(t, topo{outer4: outer4, opts: memlink.Options{Sync: true}}, nil)
			from, to := hs[0], hs[1]
			self := macOf(to.dev)
			frame14 := ethFrame(self, macPeer, etherExperimental, nil)
			valid42 := rawHeader(vxlan.FlagI, 0, 42, 0)
			for _, tc := range []struct {
				name    string
				payload []byte
				sock    tunneltest.Counts // socket counter delta
				dev     tunneltest.Counts // device counter delta
			}{
				{name: "empty", payload: nil, sock: sock(stack.DropTruncated)},
				{name: "3 bytes", payload: []byte{8, 0, 0}, sock: sock(stack.DropTruncated)},
				{name: "7 bytes of header", payload: valid42[:7], sock: sock(stack.DropTruncated)},
				{name: "header without frame", payload: valid42, sock: sock(stack.DropTruncated)},
				{name: "header and 13 bytes of frame", payload: slices.Concat(valid42, frame14[:13]), sock: sock(stack.DropTruncated)},
				{name: "unknown VNI", payload: slices.Concat(rawHeader(vxlan.FlagI, 0, 4242, 0), frame14), sock: sock(stack.DropUnknownTunnel)},
				{name: "VNI 0 without device", payload: slices.Concat(rawHeader(vxlan.FlagI, 0, 0, 0), frame14), sock: sock(stack.DropUnknownTunnel)},
				{name: "largest VNI", payload: slices.Concat(rawHeader(vxlan.FlagI, 0, vxlan.MaxVNI, 0), frame14), sock: sock(stack.DropUnknownTunnel)},
				{name: "I flag clear", payload: slices.Concat(rawHeader(0, 0, 42, 0), frame14), sock: sock(stack.DropBadHeader)},
				{name: "reserved flag instead of I", payload: slices.Concat(rawHeader(0x80, 0, 42, 0), frame14), sock: sock(stack.DropBadHeader)},
				{name: "GBP G flag", payload: slices.Concat(rawHeader(0x88, 0, 42, 0), frame14), sock: sock(stack.DropBadHeader)},
				{name: "GPE P flag", payload: slices.Concat(rawHeader(0x0c, 0x000003, 42, 0), frame14), sock: sock(stack.DropBadHeader)},
				{name: "reserved 24 bits", payload: slices.Concat(rawHeader(vxlan.FlagI, 0x000100, 42, 0), frame14), sock: sock(stack.DropBadHeader)},
				{name: "reserved last byte", payload: slices.Concat(rawHeader(vxlan.FlagI, 0, 42, 1), frame14), sock: sock(stack.DropBadHeader)},
				{name: "frame for another MAC", payload: slices.Concat(valid42, ethFrame(macStranger, macPeer, etherExperimental, nil)),
					sock: tunneltest.Counts{Rx: 1}, dev: devDrop(stack.DropNotForUs)},
				{name: "frame from the device's own MAC", payload: slices.Concat(valid42, ethFrame(macBroadcast, self, etherExperimental, nil)),
					sock: tunneltest.Counts{Rx: 1}, dev: devDrop(stack.DropLoop)},
				{name: "bare Ethernet header", payload: slices.Concat(valid42, frame14), sock: tunneltest.Counts{Rx: 1}, dev: tunneltest.Counts{Rx: 1}},
				{name: "truncated ARP", payload: slices.Concat(valid42, ethFrame(macBroadcast, macPeer, uint16(header.ARPProtocolNumber), []byte{0, 1, 8})),
					sock: tunneltest.Counts{Rx: 1}, dev: tunneltest.Counts{Rx: 1}},
				{name: "IPv4 claiming 60000 bytes", payload: slices.Concat(valid42, ethFrame(self, macPeer, uint16(header.IPv4ProtocolNumber), ipv4Claiming(60000))),
					sock: tunneltest.Counts{Rx: 1}, dev: tunneltest.Counts{Rx: 1}},
				{name: "IPv6 with a bad payload length", payload: slices.Concat(valid42, ethFrame(self, macPeer, uint16(header.IPv6ProtocolNumber), ipv6Claiming(9000))),
					sock: tunneltest.Counts{Rx: 1}, dev: tunneltest.Counts{Rx: 1}},
				{name: "VLAN tagged", payload: slices.Concat(valid42, ethFrame(self, macPeer, 0x8100, []byte{0, 42, 0x08, 0, 0x45})),
					sock: tunneltest.Counts{Rx: 1}, dev: tunneltest.Counts{Rx: 1}},
				// Receive does not drop on MTU (a GSO peer sends ~64 KB).
				{name: "9000-byte frame", payload: slices.Concat(valid42, ethFrame(self, macPeer, etherExperimental, make([]byte, 9000))),
					sock: tunneltest.Counts{Rx: 1}, dev: tunneltest.Counts{Rx: 1}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					sockBefore, devBefore := to.sock.Tunnel().Counters().Stats(), to.dev.Counters().Stats()
					tunneltest.SendUDP(t, from.st, netip.AddrPortFrom(to.outer, vxlan.DefaultPort), tc.payload)
					tunneltest.Eventually(t, "the datagram to reach the socket", func() bool {
						s := to.sock.Tunnel().Counters().Stats()
						return s.RxPackets+s.TotalDrops() > sockBefore.RxPackets+sockBefore.TotalDrops()
					})
					tunneltest.CheckCounts(t, "socket", tunneltest.Since(sockBefore, to.sock.Tunnel().Counters()), tc.sock)
					tunneltest.CheckCounts(t, "device", tunneltest.Since(devBefore, to.dev.Counters()), tc.dev)
				})
			}
		})
	}
}

// ipv4Claiming returns a 20-byte IPv4 header whose total length says n.
func ipv4Claiming(n uint16) []byte {
	b := make([]byte, header.IPv4MinimumSize)
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: n, TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 9}), DstAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 2})})
	ip.SetChecksum(^ip.CalculateChecksum())
	return b
}

// ipv6Claiming returns a 40-byte IPv6 header whose payload length says n.
func ipv6Claiming(n uint16) []byte {
	b := make([]byte, header.IPv6MinimumSize)
	header.IPv6(b).Encode(&header.IPv6Fields{PayloadLength: n, TransportProtocol: header.UDPProtocolNumber, HopLimit: 64,
		SrcAddr: tcpip.AddrFrom16(netip.MustParseAddr("fd42::9").As16()), DstAddr: tcpip.AddrFrom16(netip.MustParseAddr("ff02::1").As16())})
	return b
}

// channelEndpoint returns an underlay that carries nothing anywhere.
func channelEndpoint() *channel.Endpoint { return channel.New(64, 1500, "") }

// injectHost is a host whose underlay is a gVisor channel endpoint: the test
// writes whole outer IP packets into the stack and reads what it sends.
type injectHost struct {
	*host
	ep *channel.Endpoint
}

var (
	injectPeer4 = netip.MustParseAddr("10.99.0.1") // the imaginary remote VTEP
	injectPeer6 = netip.MustParseAddr("fd00::1")
)

// newInjectHost makes a host with outer addresses 10.99.0.2/24 and
// fd00::2/64 on a channel endpoint, and a VNI 42 device (Remotes
// [10.99.0.1], inner 192.168.42.2/24 and fd42::2/64) adjusted by cfg.
func newInjectHost(t testing.TB, cfg func(c *vxlan.Config)) *injectHost {
	t.Helper()
	ep := channel.New(4096, 1500, "")
	h := newHost(t, ep, netip.MustParsePrefix("10.99.0.2/24"))
	if err := h.st.AddAddress(h.under, netip.MustParsePrefix("fd00::2/64")); err != nil {
		t.Fatal(err)
	}
	c := vxlan.Config{VNI: 42, Remotes: []netip.Addr{injectPeer4}}
	if cfg != nil {
		cfg(&c)
	}
	h.addDevice(t, c, netip.MustParsePrefix("192.168.42.2/24"), netip.MustParsePrefix("fd42::2/64"))
	return &injectHost{host: h, ep: ep}
}

// inject hands an outer IP packet to h's stack, as if it came off the wire;
// it is processed before inject returns. Whatever the stack sends in
// response is discarded.
func (h *injectHost) inject(proto tcpip.NetworkProtocolNumber, b []byte) {
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	h.ep.InjectInbound(proto, pkt)
	pkt.DecRef()
	h.ep.Drain()
}

// TestBadOuterChecksum injects outer datagrams with correct, wrong and zero
// UDP checksums: wrong ones are dropped as DropBadChecksum on the socket
// before the VXLAN header is looked at; zero is "no checksum", accepted
// over IPv4 and over IPv6 only where the socket allows it (RFC 6936).
func TestBadOuterChecksum(t *testing.T) {
	h := newInjectHost(t, nil)
	// A second socket with the RFC 6936 exception, port 4790.
	lax, err := vxlan.OpenSocket(h.st, vxlan.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, 4790), Checksum: stack.ChecksumPolicy{ZeroRx6: true}})
	if err != nil {
		t.Fatal(err)
	}
	laxDev, err := lax.AddDevice(nil, vxlan.Config{Name: "lax42", VNI: 42, Remotes: []netip.Addr{injectPeer6}})
	if err != nil {
		t.Fatal(err)
	}
	keep := func(c uint16) uint16 { return c }
	zero := func(uint16) uint16 { return 0 }
	offByOne := func(c uint16) uint16 { return c + 1 }
	delivered := tunneltest.Counts{Rx: 1}
	bad := tunneltest.Counts{Drops: map[stack.DropReason]uint64{stack.DropBadChecksum: 1}}
	for _, tc := range []struct {
		name    string
		peer    netip.Addr
		lax     bool // send to the ZeroRx6 socket
		csum    func(uint16) uint16
		corrupt bool // flip a payload bit after the checksum
		want    tunneltest.Counts
	}{
		{name: "IPv4 correct", peer: injectPeer4, csum: keep, want: delivered},
		{name: "IPv4 zero (none)", peer: injectPeer4, csum: zero, want: delivered},
		{name: "IPv4 wrong", peer: injectPeer4, csum: offByOne, want: bad},
		{name: "IPv4 corrupted payload", peer: injectPeer4, csum: keep, corrupt: true, want: bad},
		{name: "IPv6 correct", peer: injectPeer6, csum: keep, want: delivered},
		{name: "IPv6 wrong", peer: injectPeer6, csum: offByOne, want: bad},
		{name: "IPv6 corrupted payload", peer: injectPeer6, csum: keep, corrupt: true, want: bad},
		{name: "IPv6 zero refused", peer: injectPeer6, csum: zero, want: bad},
		{name: "IPv6 zero with ZeroRx6", peer: injectPeer6, lax: true, csum: zero, want: delivered},
		{name: "IPv6 wrong with ZeroRx6", peer: injectPeer6, lax: true, csum: offByOne, want: bad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock, dev, port := h.sock.Tunnel(), h.dev, uint16(vxlan.DefaultPort)
			if tc.lax {
				sock, dev, port = lax.Tunnel(), laxDev, 4790
			}
			local := netip.MustParseAddr("10.99.0.2")
			if tc.peer.Is6() {
				local = netip.MustParseAddr("fd00::2")
			}
			payload := vxlanFrame(42, macBroadcast, macPeer, etherExperimental, []byte("checksummed"))
			proto, b := tunneltest.OuterDatagram(netip.AddrPortFrom(tc.peer, 50000), netip.AddrPortFrom(local, port), 0, payload, tc.csum)
			if tc.corrupt {
				b[len(b)-1] ^= 0x10
			}
			sockBefore, devBefore := sock.Counters().Stats(), dev.Counters().Stats()
			h.inject(proto, b)
			tunneltest.CheckCounts(t, "socket", tunneltest.Since(sockBefore, sock.Counters()), tc.want)
			wantDev := tunneltest.Counts{}
			if tc.want.Rx == 1 {
				wantDev = tunneltest.Counts{Rx: 1}
			}
			tunneltest.CheckCounts(t, "device", tunneltest.Since(devBefore, dev.Counters()), wantDev)
		})
	}
}

// TestGarbageNeverPanics injects families of random datagrams, from plain
// noise to valid VXLAN headers around random inner IPv4, IPv6 and ARP
// packets for the device's own addresses. Each datagram must be accounted
// for exactly once: dropped by the socket, or delivered to or dropped by the
// device.
func TestGarbageNeverPanics(t *testing.T) {
	h := newInjectHost(t, nil)
	self := macOf(h.dev)
	const perKind = 300
	rng := rand.New(rand.NewPCG(7348, 4789))
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	dstMAC := func() vxlan.MAC {
		switch rng.IntN(3) {
		case 0:
			return self
		case 1:
			return macBroadcast
		}
		return vxlan.MAC(randBytes(6))
	}
	innerIPv4 := func() []byte {
		b := randBytes(header.IPv4MinimumSize + rng.IntN(80))
		b[0] = 0x40 | byte(rng.IntN(16)) // version 4, any IHL
		binary.BigEndian.PutUint16(b[2:], uint16(rng.IntN(len(b)+20)))
		b[9] = []byte{1, 6, 17, 2, byte(rng.Uint32())}[rng.IntN(5)]
		copy(b[12:], []byte{192, 168, 42, byte(rng.IntN(4))})
		copy(b[16:], []byte{192, 168, 42, 2})
		if ihl := int(b[0]&0xf) * 4; ihl >= header.IPv4MinimumSize && ihl <= len(b) && rng.IntN(2) == 0 {
			ip := header.IPv4(b[:ihl])
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
		}
		return b
	}
	innerIPv6 := func() []byte {
		b := randBytes(header.IPv6MinimumSize + rng.IntN(80))
		b[0] = 0x60 | b[0]&0x0f
		binary.BigEndian.PutUint16(b[4:], uint16(rng.IntN(len(b))))
		b[6] = []byte{0, 6, 17, 43, 44, 58, 59, 60, byte(rng.Uint32())}[rng.IntN(9)]
		src, dst := netip.MustParseAddr("fd42::9").As16(), netip.MustParseAddr("fd42::2").As16()
		if rng.IntN(3) == 0 {
			dst = netip.MustParseAddr("ff02::1").As16()
		}
		copy(b[8:], src[:])
		copy(b[24:], dst[:])
		return b
	}
	innerARP := func() []byte {
		b := randBytes(header.ARPSize - rng.IntN(10))
		if len(b) >= 8 {
			copy(b, []byte{0, 1, 8, 0, 6, 4, 0, byte(1 + rng.IntN(2))})
		}
		if len(b) >= 28 {
			copy(b[24:], []byte{192, 168, 42, 2})
		}
		return b
	}
	for _, kind := range []struct {
		name string
		gen  func() []byte
	}{
		{"noise", func() []byte { return randBytes(rng.IntN(64)) }},
		{"random flags", func() []byte {
			return slices.Concat(rawHeader(byte(rng.Uint32()), rng.Uint32()&1, 42, 0), randBytes(rng.IntN(40)))
		}},
		{"random VNI", func() []byte {
			return slices.Concat(rawHeader(vxlan.FlagI, 0, rng.Uint32()&vxlan.MaxVNI, 0), randBytes(rng.IntN(40)))
		}},
		{"random frame", func() []byte {
			return vxlanFrame(42, dstMAC(), vxlan.MAC(randBytes(6)), uint16(rng.Uint32()), randBytes(rng.IntN(100)))
		}},
		{"random IPv4", func() []byte {
			return vxlanFrame(42, dstMAC(), macPeer, uint16(header.IPv4ProtocolNumber), innerIPv4())
		}},
		{"random IPv6", func() []byte {
			return vxlanFrame(42, dstMAC(), macPeer, uint16(header.IPv6ProtocolNumber), innerIPv6())
		}},
		{"random ARP", func() []byte {
			return vxlanFrame(42, dstMAC(), macPeer, uint16(header.ARPProtocolNumber), innerARP())
		}},
	} {
		t.Run(kind.name, func(t *testing.T) {
			sockBefore, devBefore := h.sock.Tunnel().Counters().Stats(), h.dev.Counters().Stats()
			for i := range perKind {
				payload := kind.gen()
				proto, b := tunneltest.OuterDatagram(netip.AddrPortFrom(injectPeer4, uint16(40000+i)), netip.MustParseAddrPort("10.99.0.2:4789"), 0, payload, nil)
				h.inject(proto, b)
			}
			sock, dev := tunneltest.Since(sockBefore, h.sock.Tunnel().Counters()), tunneltest.Since(devBefore, h.dev.Counters())
			if sock.Rx != perKind {
				t.Errorf("socket received %d datagrams, want %d", sock.Rx, perKind)
			}
			accounted := dev.Rx
			for _, n := range sock.Drops {
				accounted += n
			}
			for _, n := range dev.Drops {
				accounted += n
			}
			if accounted != perKind {
				t.Errorf("%d of %d datagrams accounted for: socket %+v, device %+v", accounted, perKind, sock, dev)
			}
			t.Logf("socket %+v, device %+v", sock, dev)
		})
	}
}
