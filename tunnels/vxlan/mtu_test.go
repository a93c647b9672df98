package vxlan_test

// MTU: the device MTU derived from the underlay, path MTU updates, and what
// happens when the configured underlay MTU is wrong.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// nicMTU returns the MTU gVisor's inner IP layer sees on nic.
func nicMTU(t testing.TB, st *stack.Stack, nic stack.NICID) uint32 {
	t.Helper()
	info, ok := st.GVisor().NICInfo()[nic]
	if !ok {
		t.Fatalf("no NIC %d", nic)
	}
	return info.MTU
}

func TestDerivedMTU(t *testing.T) {
	v4, v6 := []netip.Addr{netip.MustParseAddr("10.99.0.1")}, []netip.Addr{netip.MustParseAddr("fd00::1")}
	for _, tc := range []struct {
		name string
		cfg  vxlan.Config
		want uint32
	}{
		{"IPv4 underlay", vxlan.Config{Remotes: v4}, 1500 - 20 - 8 - 8 - 14},
		{"IPv6 underlay", vxlan.Config{Remotes: v6}, 1500 - 40 - 8 - 8 - 14},
		{"IPv4 local, no remotes", vxlan.Config{Local: netip.MustParseAddr("10.99.0.2")}, 1450},
		{"IPv6 local, no remotes", vxlan.Config{Local: netip.MustParseAddr("fd00::2")}, 1430},
		{"IPv4 jumbo underlay", vxlan.Config{Remotes: v4, UnderlayMTU: 9000}, 8950},
		{"IPv6 jumbo underlay", vxlan.Config{Remotes: v6, UnderlayMTU: 9000}, 8930},
		{"IPv4 small underlay", vxlan.Config{Remotes: v4, UnderlayMTU: 1400}, 1350},
		{"configured", vxlan.Config{Remotes: v6, MTU: 1280}, 1280},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := bareHost(t)
			tc.cfg.VNI = 42
			dev := h.addDevice(t, tc.cfg)
			if got := dev.InnerMTU(); got != tc.want {
				t.Errorf("InnerMTU() = %d, want %d", got, tc.want)
			}
			if got := nicMTU(t, h.st, dev.NIC()); got != tc.want {
				t.Errorf("inner NIC MTU = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestUpdatePathMTU: a path MTU lowers a derived device MTU (never below
// 1280 when it started above, never up) and leaves a configured one alone;
// TCP then still gets through.
func TestUpdatePathMTU(t *testing.T) {
	hs := pair(t, topo{outer4: true}, func(i int, c *vxlan.Config) {
		if i == 1 {
			c.MTU = 1450 // configured: path MTU updates do not touch it
		}
	})
	a, b := hs[0], hs[1]
	for _, step := range []struct {
		pathMTU uint32
		want    uint32
	}{
		{1500, 1450}, // no change
		{1400, 1350},
		{1450, 1350}, // never raised
		{1330, 1280}, // the IPv6 minimum: lower would end IPv6 on the device
	} {
		a.dev.UpdatePathMTU(step.pathMTU)
		b.dev.UpdatePathMTU(step.pathMTU)
		if got := a.dev.InnerMTU(); got != step.want {
			t.Errorf("after UpdatePathMTU(%d): InnerMTU() = %d, want %d", step.pathMTU, got, step.want)
		}
		if got := nicMTU(t, a.st, a.dev.NIC()); got != step.want {
			t.Errorf("after UpdatePathMTU(%d): NIC MTU = %d, want %d", step.pathMTU, got, step.want)
		}
		if got := b.dev.InnerMTU(); got != 1450 {
			t.Errorf("configured MTU after UpdatePathMTU(%d) = %d, want 1450", step.pathMTU, got)
		}
	}
	transfer(t, a, b, b.inner[0].Addr(), 1<<20)
	transfer(t, b, a, a.inner[1].Addr(), 1<<20)
	if st := a.dev.Counters().Stats(); st.TotalDrops() != 0 {
		t.Errorf("device drops: %v", st)
	}

	h := bareHost(t)
	d := h.addDevice(t, vxlan.Config{VNI: 7, Remotes: []netip.Addr{netip.MustParseAddr("10.99.0.1")}})
	d.UpdatePathMTU(60)
	if got := d.InnerMTU(); got != 1280 {
		t.Errorf("after UpdatePathMTU(60): InnerMTU() = %d, want the IPv6 minimum 1280", got)
	}
}

// icmpTooBig returns the ICMP error a router on the path sends for the
// outer packet orig: IPv4 "fragmentation needed" or IPv6 "packet too big",
// quoting the start of orig as a Linux router does (its IP, UDP and VXLAN
// headers and some of the inner frame), which the VXLAN socket needs to
// match the error to a device, as vxlan_err_lookup does.
func icmpTooBig(router netip.Addr, orig []byte, mtu uint32) (tcpip.NetworkProtocolNumber, []byte) {
	return icmpTooBigQuoting(router, orig, mtu, 64)
}

// icmpTooBigQuoting is icmpTooBig quoting n bytes beyond orig's IP header.
func icmpTooBigQuoting(router netip.Addr, orig []byte, mtu uint32, n int) (tcpip.NetworkProtocolNumber, []byte) {
	if router.Is4() {
		quoted := orig[:int(header.IPv4(orig).HeaderLength())+n]
		b := make([]byte, header.IPv4MinimumSize+header.ICMPv4MinimumSize+len(quoted))
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(header.ICMPv4ProtocolNumber),
			SrcAddr: tcpip.AddrFrom4(router.As4()), DstAddr: header.IPv4(orig).SourceAddress()})
		ip.SetChecksum(^ip.CalculateChecksum())
		ic := header.ICMPv4(b[header.IPv4MinimumSize:])
		ic.SetType(header.ICMPv4DstUnreachable)
		ic.SetCode(header.ICMPv4FragmentationNeeded)
		ic.SetMTU(uint16(mtu))
		copy(ic.Payload(), quoted)
		ic.SetChecksum(^checksum.Checksum(ic, 0))
		return header.IPv4ProtocolNumber, b
	}
	quoted := orig[:header.IPv6MinimumSize+n]
	icmpLen := header.ICMPv6PacketTooBigMinimumSize + len(quoted)
	b := make([]byte, header.IPv6MinimumSize+icmpLen)
	src, dst := tcpip.AddrFrom16(router.As16()), header.IPv6(orig).SourceAddress()
	header.IPv6(b).Encode(&header.IPv6Fields{PayloadLength: uint16(icmpLen), TransportProtocol: header.ICMPv6ProtocolNumber, HopLimit: 64,
		SrcAddr: src, DstAddr: dst})
	ic := header.ICMPv6(b[header.IPv6MinimumSize:])
	ic.SetType(header.ICMPv6PacketTooBig)
	ic.SetMTU(mtu)
	copy(ic.Payload(), quoted)
	ic.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: ic, Src: src, Dst: dst}))
	return header.IPv6ProtocolNumber, b
}

// TestPathMTUFromICMP sends one frame through a device on a channel
// underlay, reads the outer datagram off the wire and injects the ICMP
// error that a router on the path would send for it: the socket learns the
// path MTU and the device lowers its MTU to fit.
func TestPathMTUFromICMP(t *testing.T) {
	// With a flow-hashed source port gVisor finds no socket for the error
	// (it looks up the quoted source port); the stack's ICMP tap finds the
	// tunnel socket by the quoted destination port, as the kernel's
	// __udp4_lib_err_encap does. With the port pinned, gVisor's own
	// HandleError path delivers it.
	pinned := func(c *vxlan.Config) { c.SrcPortMin, c.SrcPortMax = vxlan.DefaultPort, vxlan.DefaultPort+1 }
	for _, tc := range []struct {
		name    string
		v6      bool
		pinned  bool
		router  netip.Addr
		wantMTU uint32 // device MTU after a path MTU of 1400
	}{
		{name: "IPv4, flow-hashed source port", router: netip.MustParseAddr("10.99.0.254"), wantMTU: 1400 - 50},
		{name: "IPv4, source port pinned to 4789", pinned: true, router: netip.MustParseAddr("10.99.0.254"), wantMTU: 1400 - 50},
		{name: "IPv6, flow-hashed source port", v6: true, router: netip.MustParseAddr("fd00::fe"), wantMTU: 1400 - 70},
		{name: "IPv6, source port pinned to 4789", v6: true, pinned: true, router: netip.MustParseAddr("fd00::fe"), wantMTU: 1400 - 70},
	} {
		t.Run(tc.name, func(t *testing.T) {
			remote := injectPeer4
			if tc.v6 {
				remote = injectPeer6
			}
			h := newInjectHost(t, func(c *vxlan.Config) {
				c.Remotes = []netip.Addr{remote}
				if tc.pinned {
					pinned(c)
				}
			})
			peerIn := netip.MustParseAddr("192.168.42.1")
			addStaticNeighbor(t, h.st, h.dev.NIC(), peerIn, someMAC)
			tunneltest.SendUDP(t, h.st, netip.AddrPortFrom(peerIn, 9), make([]byte, 1000))
			pkt := h.ep.Read()
			if pkt == nil {
				t.Fatal("the device sent nothing")
			}
			outer := pkt.ToView().AsSlice()
			pkt.DecRef()

			// A forged error (its ICMP checksum broken by a changed MTU)
			// must change nothing.
			before, mtuBefore := h.sock.Tunnel().ICMPErrors(), h.dev.InnerMTU()
			proto, forged := icmpTooBig(tc.router, outer, 1400)
			icmpOff := header.IPv4MinimumSize
			if tc.v6 {
				icmpOff = header.IPv6MinimumSize
			}
			forged[icmpOff+6]--
			h.inject(proto, forged)
			if got := h.sock.Tunnel().ICMPErrors(); got != before || h.dev.InnerMTU() != mtuBefore {
				t.Fatalf("a forged ICMP error was taken: ICMP errors %d -> %d, device MTU %d", before, got, h.dev.InnerMTU())
			}
			// An error quoting only the UDP header (RFC 792's minimum)
			// cannot be matched to a device, as in the kernel: ignored.
			h.inject(icmpTooBigQuoting(tc.router, outer, 1400, header.UDPMinimumSize))
			// Nor can one quoting a VNI this socket has no device for.
			otherVNI := append([]byte(nil), outer...)
			ipLen := header.IPv4MinimumSize
			if tc.v6 {
				ipLen = header.IPv6MinimumSize
			}
			vxlan.Header(otherVNI[ipLen+header.UDPMinimumSize:]).SetVNI(4242)
			h.inject(icmpTooBig(tc.router, otherVNI, 1400))
			if got := h.sock.Tunnel().ICMPErrors(); got != before || h.dev.InnerMTU() != mtuBefore {
				t.Fatalf("an ICMP error that names no device of ours was taken: ICMP errors %d -> %d, device MTU %d", before, got, h.dev.InnerMTU())
			}
			h.inject(icmpTooBig(tc.router, outer, 1400))
			gotErrs := h.sock.Tunnel().ICMPErrors() - before
			gotMTU, gotPMTU := h.dev.InnerMTU(), h.sock.Tunnel().PathMTU(remote)
			if gotErrs != 1 || gotMTU != tc.wantMTU || gotPMTU != 1400 {
				t.Errorf("ICMP errors +%d (want 1), device InnerMTU %d (want %d), socket PathMTU(%v) %d (want 1400)",
					gotErrs, gotMTU, tc.wantMTU, remote, gotPMTU)
			}
			if got := nicMTU(t, h.st, h.dev.NIC()); got != gotMTU {
				t.Errorf("inner NIC MTU %d, device InnerMTU %d", got, gotMTU)
			}
			// An absurd MTU: IPv4's is raised to the minimum path MTU
			// (552), and the device keeps 1280 for inner IPv6; an ICMPv6
			// error below IPv6's minimum MTU is ignored (RFC 8201).
			h.inject(icmpTooBig(tc.router, outer, 100))
			wantPMTU, wantDev := uint32(552), uint32(1280)
			if tc.v6 {
				wantPMTU, wantDev = 1400, tc.wantMTU
			}
			if got := h.sock.Tunnel().PathMTU(remote); got != wantPMTU {
				t.Errorf("after an ICMP error with MTU 100: socket PathMTU %d, want %d", got, wantPMTU)
			}
			if got := h.dev.InnerMTU(); got != wantDev {
				t.Errorf("after an ICMP error with MTU 100: device MTU %d, want %d", got, wantDev)
			}
		})
	}
}

// TestUnderlayMTUMismatch: the device believes the underlay carries 1500
// bytes, the wire carries 1400. gVisor fragments the outer packets
// (IPv4 and IPv6 alike) and the transfer completes, the wire dropping
// nothing; with DF set the too-big outer packets are refused and counted
// instead (DropTooBig), while small ones pass. Told the truth, the device
// fits its frames in the wire with DF set.
func TestUnderlayMTUMismatch(t *testing.T) {
	for _, tc := range []struct {
		name        string
		outer4      bool
		underlayMTU uint32
		df          bool
		wantTooBig  bool
	}{
		{name: "IPv4 underlay, device assumes 1500", outer4: true, underlayMTU: 1500},
		{name: "IPv6 underlay, device assumes 1500", outer4: false, underlayMTU: 1500},
		{name: "IPv4 underlay, device assumes 1500, DF", outer4: true, underlayMTU: 1500, df: true, wantTooBig: true},
		{name: "IPv4 underlay, device told 1400, DF", outer4: true, underlayMTU: 1400, df: true},
		{name: "IPv6 underlay, device told 1400", outer4: false, underlayMTU: 1400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := pair(t, topo{outer4: tc.outer4, mtu: 1400}, func(_ int, c *vxlan.Config) {
				c.UnderlayMTU, c.DF = tc.underlayMTU, tc.df
			})
			a, b := hs[0], hs[1]
			ping(t, a, b.inner[0].Addr())
			if !tc.wantTooBig {
				transfer(t, a, b, b.inner[0].Addr(), 1<<20)
				settle(t, func() [2]memlink.Stats { return [2]memlink.Stats{a.wire.Stats(), b.wire.Stats()} })
				for i, h := range hs {
					if st := h.sock.Tunnel().Counters().Stats(); st.TotalDrops() != 0 {
						t.Errorf("%v socket drops: %v", h.outer, st)
					}
					// The outer stack sends nothing but VXLAN datagrams:
					// more packets on the wire than datagrams means
					// fragments, which only the sender of full-size
					// frames (A) needs when the device overestimates.
					wantFrags := i == 0 && tc.underlayMTU > 1400
					wire, sent := h.wire.Stats(), h.sock.Tunnel().Counters().Stats().TxPackets
					if wire.Dropped != (memlink.Drops{}) {
						t.Errorf("%v wire drops: %+v", h.outer, wire.Dropped)
					}
					if fragmented := wire.TxPackets > sent; fragmented != wantFrags {
						t.Errorf("%v sent %d datagrams as %d packets; want fragments: %v", h.outer, sent, wire.TxPackets, wantFrags)
					}
				}
				return
			}
			// A full-size inner packet makes a 1500-byte outer packet.
			settleCounters(t, a.sock.Tunnel().Counters())
			before := a.sock.Tunnel().Counters().Stats()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			_, err := a.st.Ping(ctx, b.inner[0].Addr(), 2, 1450-20-8)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("full-size ping with DF over a smaller underlay: %v, want %v", err, context.DeadlineExceeded)
			}
			tunneltest.CheckCounts(t, "A socket", tunneltest.Since(before, a.sock.Tunnel().Counters()), tunneltest.Counts{Drops: map[stack.DropReason]uint64{stack.DropTooBig: 1}})
		})
	}
}

// TestDFOverSmallerUnderlay: with DF set and an underlay smaller than the
// device assumes, the kernel's vxlan_xmit_one calls skb_tunnel_check_pmtu,
// which lowers the path MTU for the inner flow, so TCP recovers. Here the
// first full-size frame is dropped as DropTooBig and the device shrinks to
// the path, after which the transfer completes.
func TestDFOverSmallerUnderlay(t *testing.T) {
	// 1200 is below 1280 + 50: the device must shrink below the floor
	// that ICMP errors get, since this path MTU was measured, not told.
	for _, wire := range []uint32{1400, 1200} {
		t.Run(fmt.Sprintf("underlay %d", wire), func(t *testing.T) {
			hs := pair(t, topo{outer4: true, mtu: wire}, func(_ int, c *vxlan.Config) { c.UnderlayMTU, c.DF = 1500, true })
			a, b := hs[0], hs[1]
			err := tryTransfer(a, b, b.inner[0].Addr(), 64<<10, 2*time.Second)
			if err != nil {
				t.Fatalf("TCP over a DF tunnel whose underlay is smaller than configured: %v; device MTU %d, socket %v",
					err, a.dev.InnerMTU(), a.sock.Tunnel().Counters().Stats())
			}
			if got, want := a.dev.InnerMTU(), wire-50; got != want {
				t.Errorf("device MTU after the too-big drops: %d, want %d", got, want)
			}
			if d := a.dev.Counters().Stats().Dropped(stack.DropTooBig); d == 0 {
				t.Error("no DropTooBig counted on the device before it shrank")
			}
		})
	}
}
