package bareudp_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/bareudp"
)

// withConfig returns a TunnelFunc like e2e.BareUDP's that builds each
// host's device from cfg (Remote, UnderlayMTU and offloads filled in), on
// port 6635.
func withConfig(cfg bareudp.Config) e2e.TunnelFunc {
	return func(h *e2e.Host, oc e2e.OverlayConfig) (e2e.TunnelEnd, error) {
		s, err := bareudp.OpenSocket(h.Stack, bareudp.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, bareudp.MPLSPort)})
		if err != nil {
			return e2e.TunnelEnd{}, err
		}
		c := cfg
		c.Remote = h.Peer().Outer
		c.UnderlayMTU = oc.UnderlayMTU
		c.ChecksumOffload, c.GSO = oc.ChecksumOffload, oc.GSO
		d, err := s.AddDevice(nil, c)
		if err != nil {
			s.Close()
			return e2e.TunnelEnd{}, err
		}
		socketsMu.Lock()
		sockets[s.Tunnel()] = s
		socketsMu.Unlock()
		return e2e.TunnelEnd{Device: d.Device, Socket: s.Tunnel()}, nil
	}
}

// sockets maps the tunnel sockets withConfig opened to their bareudp
// sockets.
var (
	socketsMu sync.Mutex
	sockets   = map[*stack.Socket]*bareudp.Socket{}
)

// mplsLabel42 is e2e.MPLSUDP's device for VNI 42: label 1042 both ways.
var mplsLabel42 = bareudp.Config{EtherType: bareudp.EtherTypeMPLSUnicast, Labels: []bareudp.Label{1042}, LocalLabels: []bareudp.Label{1042}}

// overlay builds a two-host overlay with tunnel over an IPv4 or IPv6
// underlay, closed with the test.
func overlay(t testing.TB, tunnel e2e.TunnelFunc, v6 bool, sync bool) *e2e.Overlay {
	t.Helper()
	o, err := e2e.NewOverlay(e2e.OverlayConfig{Tunnel: tunnel, IPv6Underlay: v6, SyncWire: sync})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

func underlays() []bool { return []bool{false, true} }

func underlayName(v6 bool) string {
	if v6 {
		return "ipv6-underlay"
	}
	return "ipv4-underlay"
}

// TestRoundTrip pings and moves TCP with a hash through IP-in-UDP and
// MPLS-in-UDP tunnels, over IPv4 and IPv6 underlays, to both inner
// families, and checks that nothing was dropped.
func TestRoundTrip(t *testing.T) {
	for _, p := range []struct {
		name   string
		tunnel e2e.TunnelFunc
	}{{"ip", e2e.BareUDP}, {"mpls", e2e.MPLSUDP}} {
		for _, v6 := range underlays() {
			t.Run(p.name+"/"+underlayName(v6), func(t *testing.T) {
				o := overlay(t, p.tunnel, v6, false)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				const size = 1 << 20
				a, b := o.A, o.B
				for _, dst := range []netip.Addr{b.Inner4, b.Inner6} {
					r, err := e2e.Ping(ctx, a.Stack, dst, 2, time.Second)
					if err != nil || r.Received != r.Sent {
						t.Fatalf("ping %v: %v %v", dst, r, err)
					}
					res, err := e2e.TransferTCP(ctx, a.Stack, b.Stack, netip.AddrPortFrom(dst, 5001), size, nil)
					if err != nil || res.Bytes != size {
						t.Fatalf("TCP to %v: %+v %v", dst, res, err)
					}
				}
				for _, h := range o.Hosts() {
					if ds := h.Tunnel.Counters().Stats(); ds.TotalDrops() != 0 || ds.RxBytes+ds.TxBytes < size {
						t.Errorf("%s device: %v", h.Name, ds)
					}
					if ss := h.TunnelSocket.Counters().Stats(); ss.TotalDrops() != 0 {
						t.Errorf("%s socket: %v", h.Name, ss)
					}
				}
			})
		}
	}
}

// innerIPv4 returns an IPv4/UDP packet of 8 payload bytes to dst.
func innerIPv4(src, dst netip.Addr) []byte {
	b := make([]byte, header.IPv4MinimumSize+header.UDPMinimumSize+8)
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src.As4()), DstAddr: tcpip.AddrFrom4(dst.As4())})
	ip.SetChecksum(^ip.CalculateChecksum())
	header.UDP(b[header.IPv4MinimumSize:]).Encode(&header.UDPFields{SrcPort: 1, DstPort: 9, Length: 16})
	return b
}

// innerIPv6 returns an IPv6/UDP packet of 8 payload bytes to dst.
func innerIPv6(src, dst netip.Addr) []byte {
	b := make([]byte, header.IPv6MinimumSize+header.UDPMinimumSize+8)
	header.IPv6(b).Encode(&header.IPv6Fields{PayloadLength: 16, TransportProtocol: header.UDPProtocolNumber, HopLimit: 64,
		SrcAddr: tcpip.AddrFrom16(src.As16()), DstAddr: tcpip.AddrFrom16(dst.As16())})
	header.UDP(b[header.IPv6MinimumSize:]).Encode(&header.UDPFields{SrcPort: 1, DstPort: 9, Length: 16})
	return b
}

// entries returns a raw label stack: each entry given as label, S and TTL.
func entries(es ...[3]uint32) []byte {
	var b []byte
	for _, e := range es {
		en := bareudp.MakeEntry(bareudp.EntryFields{Label: bareudp.Label(e[0]), BottomOfStack: e[1] == 1, TTL: uint8(e[2])})
		b = append(b, byte(en>>24), byte(en>>16), byte(en>>8), byte(en))
	}
	return b
}

// TestMalformedDatagrams sends crafted datagrams to the bareudp port from
// an ordinary UDP socket of the peer, over both underlay families, and
// checks the exact counter each one moves: a socket drop with its reason
// and nothing delivered, or a delivery by the device.
func TestMalformedDatagrams(t *testing.T) {
	drop := func(r stack.DropReason) tunneltest.Counts {
		return tunneltest.Counts{Rx: 1, Drops: map[stack.DropReason]uint64{r: 1}}
	}
	delivered := tunneltest.Counts{Rx: 1}
	type tcase struct {
		name    string
		payload func(o *e2e.Overlay) []byte
		fromAlt bool              // from a second address of the peer, not the remote
		sock    tunneltest.Counts // socket delta
		devRx   uint64            // device packets delivered
	}
	v4 := func(o *e2e.Overlay) []byte { return innerIPv4(o.A.Inner4, o.B.Inner4) }
	v6 := func(o *e2e.Overlay) []byte { return innerIPv6(o.A.Inner6, o.B.Inner6) }
	raw := func(b []byte) func(*e2e.Overlay) []byte { return func(*e2e.Overlay) []byte { return b } }
	over := func(stack []byte, inner func(*e2e.Overlay) []byte) func(*e2e.Overlay) []byte {
		return func(o *e2e.Overlay) []byte { return slices.Concat(stack, inner(o)) }
	}
	const L = 1042 // the label e2e.MPLSUDP pushes and accepts with VNI 42
	deep := make([][3]uint32, bareudp.MaxLabelDepth+1)
	for i := range deep {
		deep[i] = [3]uint32{L, 0, 64}
	}
	deep[bareudp.MaxLabelDepth] = [3]uint32{L, 1, 64}
	for _, mode := range []struct {
		name   string
		tunnel e2e.TunnelFunc
		cases  []tcase
	}{
		{"ipv4-multiproto", e2e.BareUDP, []tcase{
			{name: "empty", payload: raw(nil), sock: drop(stack.DropTruncated)},
			{name: "version 5", payload: raw([]byte{0x50, 0, 0, 0}), sock: drop(stack.DropBadHeader)},
			{name: "version 0", payload: raw(make([]byte, 20)), sock: drop(stack.DropBadHeader)},
			{name: "MPLS entry", payload: over(entries([3]uint32{L, 1, 64}), v4), sock: drop(stack.DropBadHeader)},
			{name: "from another address", payload: v4, fromAlt: true, sock: drop(stack.DropPolicy)},
			{name: "IPv4", payload: v4, sock: delivered, devRx: 1},
			{name: "IPv6 (multiproto)", payload: v6, sock: delivered, devRx: 1},
			{name: "truncated IPv4 header goes to the inner stack", payload: raw([]byte{0x45, 0}), sock: delivered, devRx: 1},
		}},
		{"ipv6-only", withConfig(bareudp.Config{EtherType: bareudp.EtherTypeIPv6}), []tcase{
			{name: "IPv4", payload: v4, sock: drop(stack.DropBadHeader)},
			{name: "IPv6", payload: v6, sock: delivered, devRx: 1},
		}},
		{"ipv4-only", withConfig(bareudp.Config{EtherType: bareudp.EtherTypeIPv4}), []tcase{
			{name: "IPv6 without multiproto", payload: v6, sock: drop(stack.DropBadHeader)},
			{name: "IPv4", payload: v4, sock: delivered, devRx: 1},
		}},
		{"mpls", e2e.MPLSUDP, []tcase{
			{name: "empty", payload: raw(nil), sock: drop(stack.DropTruncated)},
			{name: "3 bytes", payload: raw([]byte{0, 0x41, 0x21}), sock: drop(stack.DropTruncated)},
			{name: "no bottom of stack before the end", payload: raw(entries([3]uint32{L, 0, 64}, [3]uint32{L, 0, 64})), sock: drop(stack.DropTruncated)},
			{name: "deeper than MaxLabelDepth", payload: over(entries(deep...), v4), sock: drop(stack.DropBadHeader)},
			{name: "stack without payload", payload: raw(entries([3]uint32{L, 1, 64})), sock: drop(stack.DropTruncated)},
			{name: "unknown label", payload: over(entries([3]uint32{2000, 1, 64}), v4), sock: drop(stack.DropUnknownTunnel)},
			{name: "unknown label below ours", payload: over(entries([3]uint32{L, 0, 64}, [3]uint32{2000, 1, 64}), v4), sock: drop(stack.DropUnknownTunnel)},
			{name: "implicit null on the wire", payload: over(entries([3]uint32{3, 1, 64}), v4), sock: drop(stack.DropBadHeader)},
			{name: "unassigned reserved label 4", payload: over(entries([3]uint32{4, 1, 64}), v4), sock: drop(stack.DropBadHeader)},
			{name: "router alert", payload: over(entries([3]uint32{1, 0, 64}, [3]uint32{L, 1, 64}), v4), sock: drop(stack.DropPolicy)},
			{name: "GAL", payload: over(entries([3]uint32{L, 0, 64}, [3]uint32{13, 1, 64}), v4), sock: drop(stack.DropPolicy)},
			{name: "extension label", payload: over(entries([3]uint32{15, 0, 64}, [3]uint32{L, 1, 64}), v4), sock: drop(stack.DropPolicy)},
			{name: "TTL 0", payload: over(entries([3]uint32{L, 1, 0}), v4), sock: drop(stack.DropPolicy)},
			{name: "TTL 1", payload: over(entries([3]uint32{L, 1, 1}), v4), sock: drop(stack.DropPolicy)},
			{name: "entropy indicator at the bottom", payload: over(entries([3]uint32{L, 0, 64}, [3]uint32{7, 1, 0}), v4), sock: drop(stack.DropBadHeader)},
			{name: "IPv6 explicit null over IPv4", payload: over(entries([3]uint32{L, 0, 64}, [3]uint32{2, 1, 64}), v4), sock: drop(stack.DropBadHeader)},
			{name: "IPv4 explicit null over IPv6", payload: over(entries([3]uint32{0, 1, 64}), v6), sock: drop(stack.DropBadHeader)},
			{name: "payload version 5", payload: over(entries([3]uint32{L, 1, 64}), raw([]byte{0x50, 0, 0, 0})), sock: drop(stack.DropBadHeader)},
			{name: "from another address", payload: over(entries([3]uint32{L, 1, 64}), v4), fromAlt: true, sock: drop(stack.DropPolicy)},
			{name: "our label over IPv4", payload: over(entries([3]uint32{L, 1, 64}), v4), sock: delivered, devRx: 1},
			{name: "our label over IPv6", payload: over(entries([3]uint32{L, 1, 64}), v6), sock: delivered, devRx: 1},
			{name: "IPv4 explicit null alone", payload: over(entries([3]uint32{0, 1, 64}), v4), sock: delivered, devRx: 1},
			{name: "ours then IPv6 explicit null", payload: over(entries([3]uint32{L, 0, 64}, [3]uint32{2, 1, 64}), v6), sock: delivered, devRx: 1},
			{name: "entropy label pair", payload: over(entries([3]uint32{L, 0, 64}, [3]uint32{7, 0, 0}, [3]uint32{99999, 1, 0}), v4), sock: delivered, devRx: 1},
		}},
	} {
		for _, v6u := range underlays() {
			t.Run(mode.name+"/"+underlayName(v6u), func(t *testing.T) {
				o := overlay(t, mode.tunnel, v6u, true)
				from, to := o.A, o.B
				alt := netip.MustParsePrefix("10.99.0.3/24")
				if v6u {
					alt = netip.MustParsePrefix("fd00:99::3/64")
				}
				if err := from.Stack.AddAddress(from.Underlay, alt); err != nil {
					t.Fatal(err)
				}
				dst := netip.AddrPortFrom(to.Outer, bareudp.MPLSPort)
				for _, tc := range mode.cases {
					t.Run(tc.name, func(t *testing.T) {
						sockBefore, devBefore := to.TunnelSocket.Counters().Stats(), to.Tunnel.Counters().Stats()
						src := from.Outer
						if tc.fromAlt {
							src = alt.Addr()
						}
						tunneltest.SendUDPFrom(t, from.Stack, src, dst, tc.payload(o))
						deadline := time.Now().Add(5 * time.Second)
						for {
							s := to.TunnelSocket.Counters().Stats()
							if s.RxPackets > sockBefore.RxPackets || time.Now().After(deadline) {
								break
							}
							time.Sleep(time.Millisecond)
						}
						if diff := cmp.Diff(tc.sock, tunneltest.Since(sockBefore, to.TunnelSocket.Counters()).RxOnly()); diff != "" {
							t.Errorf("socket counters (-want +got):\n%s", diff)
						}
						if diff := cmp.Diff(tunneltest.Counts{Rx: tc.devRx}, tunneltest.Since(devBefore, to.Tunnel.Counters()).RxOnly()); diff != "" {
							t.Errorf("device counters (-want +got):\n%s", diff)
						}
					})
				}
			})
		}
	}
}

// TestMPLSRoutes checks that transmit picks the longest matching route's
// label stack over the device labels, lock-free updates included: a route
// to the peer's address with a label the peer does not accept makes the
// peer drop (DropUnknownTunnel), and deleting it restores delivery.
func TestMPLSRoutes(t *testing.T) {
	o := overlay(t, withConfig(mplsLabel42), false, true)
	a, b := o.A, o.B
	s := socketOf(t, a)
	d := s.Device()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ping := func() error { _, err := e2e.Ping(ctx, a.Stack, b.Inner4, 1, 200*time.Millisecond); return err }
	if err := ping(); err != nil {
		t.Fatal(err)
	}
	wide := netip.MustParsePrefix("192.168.0.0/16")
	if err := d.AddRoute(bareudp.Route{Prefix: wide, Labels: []bareudp.Label{1042}}); err != nil {
		t.Fatal(err)
	}
	narrow := netip.PrefixFrom(b.Inner4, 32)
	if err := d.AddRoute(bareudp.Route{Prefix: narrow, Labels: []bareudp.Label{777}}); err != nil {
		t.Fatal(err)
	}
	if got := d.LabelsFor(b.Inner4); !cmp.Equal(got, []bareudp.Label{777}) {
		t.Errorf("LabelsFor(%v) = %v, want the /32's [777]", b.Inner4, got)
	}
	if got := d.LabelsFor(netip.MustParseAddr("192.168.1.1")); !cmp.Equal(got, []bareudp.Label{1042}) {
		t.Errorf("LabelsFor(192.168.1.1) = %v, want the /16's [1042]", got)
	}
	if got := d.LabelsFor(b.Inner6); !cmp.Equal(got, []bareudp.Label{1042}) {
		t.Errorf("LabelsFor(%v) = %v, want the device labels [1042]", b.Inner6, got)
	}
	before := b.TunnelSocket.Counters().Stats()
	if err := ping(); err == nil {
		t.Error("ping answered through label 777, which the peer does not accept")
	}
	if n := b.TunnelSocket.Counters().Stats().Dropped(stack.DropUnknownTunnel) - before.Dropped(stack.DropUnknownTunnel); n == 0 {
		t.Error("the peer counted no DropUnknownTunnel for label 777")
	}
	if err := d.DeleteRoute(narrow); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteRoute(narrow); !errors.Is(err, stack.ErrNotFound) {
		t.Errorf("second DeleteRoute: %v, want ErrNotFound", err)
	}
	if err := ping(); err != nil {
		t.Errorf("ping after DeleteRoute: %v", err)
	}
	if got := d.Routes(); len(got) != 1 || got[0].Prefix != wide {
		t.Errorf("Routes() = %v, want only %v", got, wide)
	}
	if err := d.AddRoute(bareudp.Route{Prefix: wide, Labels: []bareudp.Label{1, 2}}); !errors.Is(err, stack.ErrInvalid) {
		t.Errorf("route deeper than LabelDepth 1: %v, want ErrInvalid", err)
	}
}

// TestMPLSNoLabel: an MPLS device with neither labels nor a route drops
// what it cannot label, as DropNoRemote.
func TestMPLSNoLabel(t *testing.T) {
	o := overlay(t, withConfig(bareudp.Config{EtherType: bareudp.EtherTypeMPLSUnicast, LocalLabels: []bareudp.Label{1042}}), false, true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e2e.Ping(ctx, o.A.Stack, o.B.Inner4, 1, 200*time.Millisecond); err == nil {
		t.Fatal("ping answered without labels")
	}
	if n := o.A.Tunnel.Counters().Stats().Dropped(stack.DropNoRemote); n == 0 {
		t.Errorf("device counted no DropNoRemote: %v", o.A.Tunnel.Counters().Stats())
	}
}

// socketOf finds h's bareudp socket through the device registered on it.
func socketOf(t testing.TB, h *e2e.Host) *bareudp.Socket {
	t.Helper()
	socketsMu.Lock()
	defer socketsMu.Unlock()
	s, ok := sockets[h.TunnelSocket]
	if !ok {
		t.Fatal("no bareudp socket recorded for host " + h.Name)
	}
	return s
}
