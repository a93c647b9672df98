package vxlan_test

// The ARP/ND proxy (Config.Proxy, the neighbour table) and the local
// neighbour hook, end to end over a memlink pair with a sniffer on both
// devices, and through crafted frames.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// sniffer records the whole Ethernet frames a tunnel device delivers to
// its inner stack (rx) and the inner stack writes to it (tx). Install it
// with stack.Options.WrapDevice.
type sniffer struct {
	mu     sync.Mutex
	rx, tx [][]byte
}

func (s *sniffer) wrap(_ string, _ stack.Layer, ep stack.LinkEndpoint) (stack.LinkEndpoint, error) {
	return &sniffEndpoint{LinkEndpoint: ep, s: s}, nil
}

func (s *sniffer) record(to *[][]byte, b []byte) {
	s.mu.Lock()
	*to = append(*to, b)
	s.mu.Unlock()
}

// frames returns copies of the frames recorded so far.
func (s *sniffer) frames() (rx, tx [][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.rx...), append([][]byte(nil), s.tx...)
}

type sniffEndpoint struct {
	stack.LinkEndpoint
	s *sniffer
}

func (e *sniffEndpoint) Attach(d gstack.NetworkDispatcher) {
	if d == nil {
		e.LinkEndpoint.Attach(nil)
		return
	}
	e.LinkEndpoint.Attach(&sniffDispatcher{NetworkDispatcher: d, s: e.s})
}

func (e *sniffEndpoint) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	for _, pkt := range pkts.AsSlice() {
		v := pkt.ToView()
		e.s.record(&e.s.tx, append([]byte(nil), v.AsSlice()...))
		v.Release()
	}
	return e.LinkEndpoint.WritePackets(pkts)
}

type sniffDispatcher struct {
	gstack.NetworkDispatcher
	s *sniffer
}

func (d *sniffDispatcher) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	d.s.record(&d.s.rx, pkt.Data().AsRange().ToSlice())
	d.NetworkDispatcher.DeliverNetworkPacket(proto, pkt)
}

// neighborRequests counts the ARP requests and neighbour solicitations
// with a specified source (no DAD probes) among frames.
func neighborRequests(frames [][]byte) (arpReqs, nss int) {
	for _, f := range frames {
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		if a, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP); ok && a.Operation == layers.ARPRequest {
			arpReqs++
		}
		if _, ok := p.Layer(layers.LayerTypeICMPv6NeighborSolicitation).(*layers.ICMPv6NeighborSolicitation); ok {
			if ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6); !ip.SrcIP.IsUnspecified() {
				nss++
			}
		}
	}
	return arpReqs, nss
}

// sniffedPair is pair over an IPv4 underlay with a sniffer on each device.
// cfg adjusts host i's device configuration; setup, if not nil, runs on
// each device before its inner addresses are assigned.
func sniffedPair(t *testing.T, cfg func(i int, c *vxlan.Config), setup func(i int, d *vxlan.Device)) ([2]*host, [2]*sniffer) {
	t.Helper()
	a, b, err := memlink.NewPair(memlink.Options{MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	var hs [2]*host
	var sn [2]*sniffer
	outer := tunneltest.Outer4
	for i, ep := range []*memlink.Endpoint{a, b} {
		sn[i] = &sniffer{}
		st := stack.New(stack.Options{WrapDevice: sn[i].wrap})
		t.Cleanup(st.Close)
		nic, err := st.AddNIC(ep, stack.NICOptions{Name: "underlay"})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.AddAddress(nic, outer[i]); err != nil {
			t.Fatal(err)
		}
		h := withSocket(t, st, nic, outer[i].Addr())
		h.wire = ep
		c := vxlan.Config{VNI: 42, Remotes: []netip.Addr{outer[1-i].Addr()}}
		if cfg != nil {
			cfg(i, &c)
		}
		d := h.addDevice(t, c)
		if setup != nil {
			setup(i, d)
		}
		h.inner = []netip.Prefix{
			netip.MustParsePrefix(fmt.Sprintf("192.168.42.%d/24", i+1)),
			netip.MustParsePrefix(fmt.Sprintf("fd42::%d/64", i+1)),
		}
		for _, p := range h.inner {
			if err := st.AddAddress(d.NIC(), p); err != nil {
				t.Fatal(err)
			}
		}
		hs[i] = h
	}
	t.Cleanup(func() { a.Close(); b.Close() }) // the wire closes before the stacks
	return hs, sn
}

func devMAC(d *vxlan.Device) vxlan.MAC { return vxlan.MAC(d.MAC()) }

// tryPing pings dst from h once, waiting at most timeout.
func tryPing(h *host, dst netip.Addr, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := h.st.Ping(ctx, dst, 1, 56)
	return err
}

// TestProxySuppresses: with B's addresses in A's table, A's ARP request and
// NS never reach B, A's inner stack gets the device's answers, and the
// ping that needed them works.
func TestProxySuppresses(t *testing.T) {
	hs, sn := sniffedPair(t, func(i int, c *vxlan.Config) { c.Proxy = i == 0 }, nil)
	a, b := hs[0], hs[1]
	for _, p := range b.inner {
		if err := a.dev.AddNeighbor(p.Addr(), devMAC(b.dev)); err != nil {
			t.Fatal(err)
		}
	}
	for i, family := range []string{"IPv4", "IPv6"} {
		ping(t, a, b.inner[i].Addr())
		want := vxlan.ProxyStats{Replies: uint64(i + 1)}
		if diff := cmp.Diff(want, a.dev.ProxyStats()); diff != "" {
			t.Errorf("after the %s ping, A's proxy stats (-want +got):\n%s", family, diff)
		}
	}
	settleCounters(t, a.dev.Counters(), b.dev.Counters())
	bRx, _ := sn[1].frames()
	if arps, nss := neighborRequests(bRx); arps != 0 || nss != 0 {
		t.Errorf("B's device received %d ARP requests and %d neighbour solicitations, want none (suppressed)", arps, nss)
	}
	_, aTx := sn[0].frames()
	if arps, nss := neighborRequests(aTx); arps != 1 || nss != 1 {
		t.Errorf("A's inner stack sent %d ARP requests and %d solicitations, want 1 and 1 (answered by the device)", arps, nss)
	}
	if d := a.dev.Counters().Stats().TotalDrops(); d != 0 {
		t.Errorf("A's device dropped %d frames: %v", d, a.dev.Counters().Stats())
	}
	// B is proxied for nothing: its own requests for A went out.
	if got := b.dev.ProxyStats(); got != (vxlan.ProxyStats{}) {
		t.Errorf("B (no proxy) stats %+v, want zero", got)
	}
}

// TestProxyWrongMAC: an entry with a MAC nobody has is believed, so the
// ping goes nowhere: the proxied answer is what the inner stack uses.
func TestProxyWrongMAC(t *testing.T) {
	wrong := vxlan.MAC{0x02, 0xde, 0xad, 0xbe, 0xef, 0x01}
	for i, family := range []string{"IPv4", "IPv6"} {
		t.Run(family, func(t *testing.T) {
			hs, _ := sniffedPair(t, func(i int, c *vxlan.Config) { c.Proxy = i == 0 }, nil)
			a, b := hs[0], hs[1]
			dst := b.inner[i].Addr()
			if err := a.dev.AddNeighbor(dst, wrong); err != nil {
				t.Fatal(err)
			}
			if err := tryPing(a, dst, time.Second); err == nil {
				t.Fatalf("ping %v worked with the proxy saying %v lives at %v", dst, dst, wrong)
			}
			if mac, ok := neighbor(t, a.st, a.dev.NIC(), dst); !ok || net.HardwareAddr(mac).String() != wrong.String() {
				t.Errorf("A resolves %v to %v (usable %v), want the table's %v", dst, net.HardwareAddr(mac), ok, wrong)
			}
			if got := a.dev.ProxyStats().Replies; got == 0 {
				t.Error("no proxy reply counted")
			}
		})
	}
}

// TestProxyMiss: a request for an address not in the table is flooded as
// without the proxy, counted as a miss, and resolution works.
func TestProxyMiss(t *testing.T) {
	hs, sn := sniffedPair(t, func(i int, c *vxlan.Config) { c.Proxy = i == 0 }, nil)
	a, b := hs[0], hs[1]
	// A neighbour, but not the one asked for.
	if err := a.dev.AddNeighbor(netip.MustParseAddr("192.168.42.99"), vxlan.MAC{2, 0, 0, 0, 0, 0x99}); err != nil {
		t.Fatal(err)
	}
	ping(t, a, b.inner[0].Addr())
	ping(t, a, b.inner[1].Addr())
	st := a.dev.ProxyStats()
	if st.Replies != 0 || st.Misses < 2 {
		t.Errorf("proxy stats %+v, want no replies and at least 2 misses", st)
	}
	settleCounters(t, a.dev.Counters(), b.dev.Counters())
	bRx, _ := sn[1].frames()
	if arps, nss := neighborRequests(bRx); arps == 0 || nss == 0 {
		t.Errorf("B's device received %d ARP requests and %d solicitations, want the flooded ones", arps, nss)
	}
}

// TestProxyOff: with Proxy false a full table changes nothing on
// transmit.
func TestProxyOff(t *testing.T) {
	hs, sn := sniffedPair(t, nil, nil)
	a, b := hs[0], hs[1]
	for _, p := range b.inner {
		if err := a.dev.AddNeighbor(p.Addr(), vxlan.MAC{2, 0xde, 0xad, 0, 0, 1}); err != nil {
			t.Fatal(err)
		}
	}
	ping(t, a, b.inner[0].Addr())
	ping(t, a, b.inner[1].Addr())
	if got := a.dev.ProxyStats(); got != (vxlan.ProxyStats{}) {
		t.Errorf("proxy stats %+v without Proxy, want zero", got)
	}
	settleCounters(t, a.dev.Counters(), b.dev.Counters())
	bRx, _ := sn[1].frames()
	if arps, nss := neighborRequests(bRx); arps == 0 || nss == 0 {
		t.Errorf("B's device received %d ARP requests and %d solicitations, want A's", arps, nss)
	}
}

// TestProxyReplyBytes decodes the answers A's inner stack received from
// the proxy with gopacket and checks every field, the ICMPv6 checksum
// included.
func TestProxyReplyBytes(t *testing.T) {
	hs, sn := sniffedPair(t, func(i int, c *vxlan.Config) { c.Proxy = i == 0 }, nil)
	a, b := hs[0], hs[1]
	aMAC, bMAC := a.dev.MAC(), b.dev.MAC()
	for _, p := range b.inner {
		if err := a.dev.AddNeighbor(p.Addr(), devMAC(b.dev)); err != nil {
			t.Fatal(err)
		}
	}
	ping(t, a, b.inner[0].Addr())
	ping(t, a, b.inner[1].Addr())
	aRx, _ := sn[0].frames()

	var arpReply, na []byte
	for _, f := range aRx {
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		if l, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP); ok && l.Operation == layers.ARPReply {
			if arpReply != nil {
				t.Errorf("a second ARP reply: %x", f)
			}
			arpReply = f
		}
		if p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement) != nil {
			if na != nil {
				t.Errorf("a second neighbour advertisement: %x", f)
			}
			na = f
		}
	}
	if arpReply == nil || na == nil {
		t.Fatalf("A received ARP reply %x and NA %x, want both", arpReply, na)
	}

	t.Run("ARP", func(t *testing.T) {
		if len(arpReply) != 14+28 {
			t.Errorf("ARP reply is %d bytes, want 42 (no padding)", len(arpReply))
		}
		p := gopacket.NewPacket(arpReply, layers.LayerTypeEthernet, gopacket.Default)
		eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		arp := p.Layer(layers.LayerTypeARP).(*layers.ARP)
		got := []any{eth.SrcMAC.String(), eth.DstMAC.String(), eth.EthernetType,
			arp.AddrType, arp.Protocol, arp.HwAddressSize, arp.ProtAddressSize, arp.Operation,
			net.HardwareAddr(arp.SourceHwAddress).String(), net.IP(arp.SourceProtAddress).String(),
			net.HardwareAddr(arp.DstHwAddress).String(), net.IP(arp.DstProtAddress).String()}
		want := []any{bMAC.String(), aMAC.String(), layers.EthernetTypeARP,
			layers.LinkTypeEthernet, layers.EthernetTypeIPv4, uint8(6), uint8(4), uint16(layers.ARPReply),
			bMAC.String(), b.inner[0].Addr().String(),
			aMAC.String(), a.inner[0].Addr().String()}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ARP reply fields (-want +got):\n%s", diff)
		}
	})

	t.Run("NA", func(t *testing.T) {
		if len(na) != 14+40+32 {
			t.Errorf("NA is %d bytes, want 86", len(na))
		}
		p := gopacket.NewPacket(na, layers.LayerTypeEthernet, gopacket.Default)
		eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		icmp := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
		adv := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
		var opts []string
		for _, o := range adv.Options {
			opts = append(opts, fmt.Sprintf("%v=%v", o.Type, net.HardwareAddr(o.Data)))
		}
		got := []any{eth.SrcMAC.String(), eth.DstMAC.String(), eth.EthernetType,
			ip.Version, ip.TrafficClass, ip.FlowLabel, ip.Length, ip.NextHeader, ip.HopLimit, ip.SrcIP.String(), ip.DstIP.String(),
			icmp.TypeCode, adv.Router(), adv.Solicited(), adv.Override(), adv.Flags, adv.TargetAddress.String(), opts}
		want := []any{bMAC.String(), aMAC.String(), layers.EthernetTypeIPv6,
			uint8(6), uint8(0), uint32(0), uint16(32), layers.IPProtocolICMPv6, uint8(255), b.inner[1].Addr().String(), a.inner[1].Addr().String(),
			layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborAdvertisement, 0), false, true, true, uint8(0x60), b.inner[1].Addr().String(),
			[]string{fmt.Sprintf("%v=%v", layers.ICMPv6OptTargetAddress, bMAC)}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("NA fields (-want +got):\n%s", diff)
		}
		if sum := icmpv6Sum(ip.SrcIP, ip.DstIP, na[14+40:]); sum != 0xffff {
			t.Errorf("ICMPv6 checksum %#04x does not verify (sum %#04x)", icmp.Checksum, sum)
		}
	})
}

// icmpv6Sum is the ones' complement sum of msg with its IPv6 pseudo header
// (RFC 8200 section 8.1): 0xffff when msg's checksum is right. Written
// here independently of the package's own checksum code.
func icmpv6Sum(src, dst net.IP, msg []byte) uint16 {
	var b []byte
	b = append(b, src.To16()...)
	b = append(b, dst.To16()...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(msg)))
	b = append(b, 0, 0, 0, 58)
	b = append(b, msg...)
	if len(b)%2 == 1 {
		b = append(b, 0)
	}
	var s uint32
	for i := 0; i < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// TestLocalNeighborHook: the hook sees A's own (MAC, IP) pairs from the
// ARP and NDP frames A's inner stack sends, and never a DAD probe's.
func TestLocalNeighborHook(t *testing.T) {
	type pair struct {
		mac vxlan.MAC
		ip  netip.Addr
	}
	var mu sync.Mutex
	seen := map[pair]int{}
	hs, _ := sniffedPair(t, nil, func(i int, d *vxlan.Device) {
		if i == 0 {
			// Before the addresses exist, so that DAD would be seen.
			d.SetLocalNeighborHook(func(mac vxlan.MAC, ip netip.Addr) {
				mu.Lock()
				seen[pair{mac, ip}]++
				mu.Unlock()
			})
		}
	})
	a, b := hs[0], hs[1]
	ping(t, a, b.inner[0].Addr())
	ping(t, a, b.inner[1].Addr())
	ping(t, b, a.inner[1].Addr()) // A answers B's NS with an NA
	mu.Lock()
	defer mu.Unlock()
	for _, p := range a.inner {
		if seen[pair{devMAC(a.dev), p.Addr()}] == 0 {
			t.Errorf("hook never saw (%v, %v); saw %v", a.dev.MAC(), p.Addr(), seen)
		}
	}
	for p := range seen {
		if p.mac != devMAC(a.dev) || p.ip.IsUnspecified() || !p.ip.IsValid() {
			t.Errorf("hook saw (%v, %v), want only A's own MAC with an address", p.mac, p.ip)
		}
	}
}

// TestLocalNeighborHookFrames feeds crafted frames to the transmit path:
// which pairs the hook gets, and what the proxy does with each.
func TestLocalNeighborHookFrames(t *testing.T) {
	self := vxlan.MAC{0x02, 0, 0, 0, 0, 0x01}
	peer := vxlan.MAC{0x02, 0, 0, 0, 0, 0x02}
	v4a, v4b := netip.MustParseAddr("192.168.42.1"), netip.MustParseAddr("192.168.42.2")
	v6a, v6b := netip.MustParseAddr("fd42::1"), netip.MustParseAddr("fd42::2")
	type seen struct {
		MAC vxlan.MAC
		IP  netip.Addr
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		hook  []seen
		stats vxlan.ProxyStats
	}{
		{name: "ARP request for a known address", frame: arpFrame(1, self, v4a, vxlan.MAC{}, v4b), hook: []seen{{self, v4a}}, stats: vxlan.ProxyStats{Replies: 1}},
		{name: "ARP request for an unknown address", frame: arpFrame(1, self, v4a, vxlan.MAC{}, netip.MustParseAddr("192.168.42.7")), hook: []seen{{self, v4a}}, stats: vxlan.ProxyStats{Misses: 1}},
		{name: "ARP reply", frame: arpFrame(2, self, v4a, peer, v4b), hook: []seen{{self, v4a}}},
		{name: "gratuitous ARP", frame: arpFrame(1, self, v4a, vxlan.MAC{}, v4a), hook: []seen{{self, v4a}}},
		{name: "ARP probe", frame: arpFrame(1, self, netip.IPv4Unspecified(), vxlan.MAC{}, v4b)},
		{name: "ARP from a multicast MAC", frame: arpFrame(2, vxlan.MAC{1, 0, 0x5e, 0, 0, 1}, v4a, peer, v4b)},
		{name: "NS with SLLA", frame: nsFrame(self, v6a, v6b, &self), hook: []seen{{self, v6a}}, stats: vxlan.ProxyStats{Replies: 1}},
		{name: "NS without SLLA", frame: nsFrame(self, v6a, v6b, nil), stats: vxlan.ProxyStats{Replies: 1}},
		{name: "NS for an unknown address", frame: nsFrame(self, v6a, netip.MustParseAddr("fd42::7"), &self), hook: []seen{{self, v6a}}, stats: vxlan.ProxyStats{Misses: 1}},
		{name: "DAD probe", frame: nsFrame(self, netip.IPv6Unspecified(), v6b, nil)},
		{name: "NA with TLLA", frame: naFrame(self, v6a, v6b, &peer), hook: []seen{{peer, v6a}}},
		{name: "NA without TLLA", frame: naFrame(self, v6a, v6b, nil), hook: []seen{{self, v6a}}},
		{name: "IPv4 data", frame: ipv4Frame(self)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, channelEndpoint(), netip.MustParsePrefix("10.99.0.1/24"))
			d := h.addDevice(t, vxlan.Config{VNI: 42, Proxy: true, Remotes: []netip.Addr{netip.MustParseAddr("10.99.0.2")}})
			for _, ip := range []netip.Addr{v4b, v6b} {
				if err := d.AddNeighbor(ip, peer); err != nil {
					t.Fatal(err)
				}
			}
			var got []seen
			d.SetLocalNeighborHook(func(mac vxlan.MAC, ip netip.Addr) { got = append(got, seen{mac, ip}) })
			vxlan.TransmitFrame(d, tc.frame)
			if diff := cmp.Diff(tc.hook, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("hook calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.stats, d.ProxyStats()); diff != "" {
				t.Errorf("proxy stats (-want +got):\n%s", diff)
			}
		})
	}
}

// arpFrame is an ARP message (op 1 request, 2 reply) from sha/spa to
// tha/tpa, broadcast for a request.
func arpFrame(op uint16, sha vxlan.MAC, spa netip.Addr, tha vxlan.MAC, tpa netip.Addr) []byte {
	dst := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	if op == 2 {
		dst = tha[:]
	}
	return serialize(&layers.Ethernet{SrcMAC: sha[:], DstMAC: dst, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: op, SourceHwAddress: sha[:], SourceProtAddress: spa.AsSlice(), DstHwAddress: tha[:], DstProtAddress: tpa.AsSlice()})
}

// nsFrame is a neighbour solicitation from src (eth source mac) for
// target, with a source link-layer address option when sll is not nil.
func nsFrame(mac vxlan.MAC, src, target netip.Addr, sll *vxlan.MAC) []byte {
	ns := &layers.ICMPv6NeighborSolicitation{TargetAddress: target.AsSlice()}
	if sll != nil {
		ns.Options = layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: sll[:]}}
	}
	return icmpv6Frame(mac, src, layers.ICMPv6TypeNeighborSolicitation, ns)
}

// naFrame is a neighbour advertisement from src (eth source mac) for
// target, with a target link-layer address option when tll is not nil.
func naFrame(mac vxlan.MAC, target, dst netip.Addr, tll *vxlan.MAC) []byte {
	na := &layers.ICMPv6NeighborAdvertisement{Flags: 0x60, TargetAddress: target.AsSlice()}
	if tll != nil {
		na.Options = layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: tll[:]}}
	}
	_ = dst
	return icmpv6Frame(mac, target, layers.ICMPv6TypeNeighborAdvertisement, na)
}

func icmpv6Frame(mac vxlan.MAC, src netip.Addr, typ uint8, body gopacket.SerializableLayer) []byte {
	ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: 255,
		SrcIP: src.AsSlice(), DstIP: net.ParseIP("ff02::1:ff00:2")}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	icmp.SetNetworkLayerForChecksum(ip)
	return serialize(&layers.Ethernet{SrcMAC: mac[:], DstMAC: net.HardwareAddr{0x33, 0x33, 0xff, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv6},
		ip, icmp, body)
}

func ipv4Frame(mac vxlan.MAC) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{192, 168, 42, 1}, DstIP: net.IP{192, 168, 42, 2}}
	udp := &layers.UDP{SrcPort: 1, DstPort: 2}
	udp.SetNetworkLayerForChecksum(ip)
	return serialize(&layers.Ethernet{SrcMAC: mac[:], DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4},
		ip, udp, gopacket.Payload("x"))
}

func serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func TestNeighborTableErrors(t *testing.T) {
	h := newHost(t, channelEndpoint(), netip.MustParsePrefix("10.99.0.1/24"))
	d := h.addDevice(t, vxlan.Config{VNI: 42})
	good := vxlan.MAC{2, 0, 0, 0, 0, 1}
	for _, tc := range []struct {
		name  string
		ip    netip.Addr
		mac   vxlan.MAC
		field string
	}{
		{name: "invalid IP", ip: netip.Addr{}, mac: good, field: "neighbour ip"},
		{name: "unspecified IPv4", ip: netip.IPv4Unspecified(), mac: good, field: "neighbour ip 0.0.0.0"},
		{name: "unspecified IPv6", ip: netip.IPv6Unspecified(), mac: good, field: "neighbour ip ::"},
		{name: "multicast IPv4", ip: netip.MustParseAddr("224.0.0.1"), mac: good, field: "neighbour ip 224.0.0.1"},
		{name: "multicast IPv6", ip: netip.MustParseAddr("ff02::1"), mac: good, field: "neighbour ip ff02::1"},
		{name: "multicast MAC", ip: netip.MustParseAddr("192.168.42.2"), mac: vxlan.MAC{1, 0, 0x5e, 0, 0, 1}, field: "neighbour mac 01:00:5e:00:00:01"},
		{name: "broadcast MAC", ip: netip.MustParseAddr("192.168.42.2"), mac: vxlan.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, field: "neighbour mac"},
		{name: "zero MAC", ip: netip.MustParseAddr("192.168.42.2"), mac: vxlan.MAC{}, field: "neighbour mac 00:00:00:00:00:00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := d.AddNeighbor(tc.ip, tc.mac)
			if !errors.Is(err, stack.ErrInvalid) {
				t.Fatalf("AddNeighbor(%v, %v) = %v, want an error wrapping %v", tc.ip, tc.mac, err, stack.ErrInvalid)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
			if ns := d.Neighbors(); len(ns) != 0 {
				t.Errorf("table %v after a failed AddNeighbor, want empty", ns)
			}
		})
	}

	t.Run("delete absent", func(t *testing.T) {
		err := d.DeleteNeighbor(netip.MustParseAddr("192.168.42.9"))
		if !errors.Is(err, vxlan.ErrNeighborNotFound) || !strings.Contains(err.Error(), "192.168.42.9") {
			t.Errorf("DeleteNeighbor of an absent entry = %v, want ErrNeighborNotFound naming the address", err)
		}
	})

	t.Run("add, replace, mapped, sorted, delete", func(t *testing.T) {
		other := vxlan.MAC{2, 0, 0, 0, 0, 2}
		for _, n := range []vxlan.Neighbor{
			{netip.MustParseAddr("fd42::2"), good},
			{netip.MustParseAddr("::ffff:192.168.42.3"), good},
			{netip.MustParseAddr("192.168.42.2"), good},
			{netip.MustParseAddr("192.168.42.3"), other}, // replaces the mapped one
		} {
			if err := d.AddNeighbor(n.IP, n.MAC); err != nil {
				t.Fatal(err)
			}
		}
		want := []vxlan.Neighbor{
			{netip.MustParseAddr("192.168.42.2"), good},
			{netip.MustParseAddr("192.168.42.3"), other},
			{netip.MustParseAddr("fd42::2"), good},
		}
		cmpAddr := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
		if diff := cmp.Diff(want, d.Neighbors(), cmpAddr); diff != "" {
			t.Errorf("Neighbors (-want +got):\n%s", diff)
		}
		if err := d.DeleteNeighbor(netip.MustParseAddr("::ffff:192.168.42.3")); err != nil {
			t.Errorf("DeleteNeighbor of the mapped form: %v", err)
		}
		if diff := cmp.Diff([]vxlan.Neighbor{want[0], want[2]}, d.Neighbors(), cmpAddr); diff != "" {
			t.Errorf("Neighbors after delete (-want +got):\n%s", diff)
		}
	})
}
