package e2e_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/udptunnel/udptunnel/e2e"
	"go.uber.org/goleak"
)

var (
	mp = netip.MustParsePrefix
	ma = netip.MustParseAddr
)

// routedTopology declares A —ar— R —rb— B, with A and B routed through R,
// and a tunnel A↔B of proto with inner addresses 192.168.42.1-2/24 and
// fd00:42::1-2/64. The underlay is IPv4 (10.1.0.0/24, 10.2.0.0/24) or IPv6
// (fd00:1::/64, fd00:2::/64).
type routedTopology struct {
	*e2e.Topology
	A, R, B *e2e.Node
	AR, RB  *e2e.Wire
	Tunnel  *e2e.Tunnel
}

func newRoutedTopology(proto e2e.TunnelFunc, v6 bool, ar, rb e2e.WireOptions, cfg e2e.OverlayConfig) *routedTopology {
	t := &routedTopology{Topology: e2e.NewTopology()}
	t.A, t.R, t.B = t.Host("a"), t.Router("r"), t.Host("b")
	t.AR = t.Wire(t.A, t.R, ar)
	t.RB = t.Wire(t.R, t.B, rb)
	a, ra, rb2, b := mp("10.1.0.1/24"), mp("10.1.0.254/24"), mp("10.2.0.254/24"), mp("10.2.0.1/24")
	if v6 {
		a, ra, rb2, b = mp("fd00:1::1/64"), mp("fd00:1::fe/64"), mp("fd00:2::fe/64"), mp("fd00:2::1/64")
	}
	t.Address(t.A, t.AR, a)
	t.Address(t.R, t.AR, ra)
	t.Address(t.R, t.RB, rb2)
	t.Address(t.B, t.RB, b)
	t.Route(t.A, b.Masked(), ra.Addr())
	t.Route(t.B, a.Masked(), rb2.Addr())
	if proto != nil {
		t.Tunnel = t.Topology.Tunnel(t.A, t.B, proto, e2e.TunnelOptions{
			OuterA: a.Addr(), OuterB: b.Addr(),
			InnerA: []netip.Prefix{mp("192.168.42.1/24"), mp("fd00:42::1/64")},
			InnerB: []netip.Prefix{mp("192.168.42.2/24"), mp("fd00:42::2/64")},
			Config: cfg,
		})
	}
	return t
}

// TestTopologyRouted builds A —— R —— B with a VXLAN tunnel A↔B over R,
// routes a third prefix through the tunnel, and checks ping, UDP
// request/response and a TCP transfer across it, and that a capture on A's
// wire decodes as VXLAN.
func TestTopologyRouted(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4-underlay"
		if v6 {
			name = "ipv6-underlay"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			topo := newRoutedTopology(e2e.VXLAN, v6, e2e.WireOptions{}, e2e.WireOptions{MTU: 1400}, e2e.OverlayConfig{})
			// B also reaches 172.16.0.0/24 through the tunnel, via A.
			topo.Route(topo.B, mp("172.16.0.0/24"), ma("192.168.42.1"))
			capt := topo.Capture(topo.A, topo.AR)
			if err := topo.Start(); err != nil {
				t.Fatal(err)
			}
			defer topo.Close()
			defer func() {
				if t.Failed() {
					t.Log(topo.Counters())
				}
			}()
			a, b := topo.Tunnel.A, topo.Tunnel.B
			if b.Peer() != a || a.Stack != topo.A.Stack || b.Underlay != topo.RB.NIC(topo.B) {
				t.Fatalf("tunnel ends are not wired to their nodes: %+v %+v", a, b)
			}
			// Each end derives its MTU from its own first wire.
			if a.Tunnel.InnerMTU() <= b.Tunnel.InnerMTU() {
				t.Errorf("A's device MTU %d (1500 wire) should exceed B's %d (1400 wire)", a.Tunnel.InnerMTU(), b.Tunnel.InnerMTU())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			// The underlay itself is routed through R.
			if _, err := e2e.Ping(ctx, topo.A.Stack, b.Outer, 2, time.Second); err != nil {
				t.Fatalf("underlay ping through R: %v", err)
			}
			for _, dst := range []netip.Addr{b.Inner4, b.Inner6} {
				r, err := e2e.Ping(ctx, a.Stack, dst, 3, time.Second)
				if err != nil || r.Received != r.Sent {
					t.Fatalf("ping %v: %v, %v", dst, r, err)
				}
				echo, err := e2e.UDPEcho(b.Stack, netip.AddrPortFrom(dst, 7))
				if err != nil {
					t.Fatal(err)
				}
				r, err = e2e.RequestResponse(ctx, a.Stack, netip.AddrPortFrom(dst, 7), 20, 1000, time.Second)
				echo.Close()
				if err != nil || r.Received != r.Sent {
					t.Fatalf("UDP request/response to %v: %v, %v", dst, r, err)
				}
				if _, err := e2e.TransferTCP(ctx, a.Stack, b.Stack, netip.AddrPortFrom(dst, 5001), 1<<20, nil); err != nil {
					t.Fatal(err)
				}
			}
			// The route through the tunnel: B's ping to A's extra address.
			if err := topo.A.Stack.AddAddress(a.Tunnel.NIC(), mp("172.16.0.1/32")); err != nil {
				t.Fatal(err)
			}
			if _, err := e2e.Ping(ctx, b.Stack, ma("172.16.0.1"), 2, time.Second); err != nil {
				t.Fatalf("ping over the route through the tunnel: %v", err)
			}

			var vxlanPkts int
			for _, p := range capt.Packets() {
				if l, ok := p.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN); ok {
					vxlanPkts++
					if l.VNI != 42 {
						t.Fatalf("captured VXLAN VNI %d, want 42", l.VNI)
					}
				}
			}
			if vxlanPkts < 100 {
				t.Errorf("capture on A's wire decoded %d VXLAN packets, want the transfers' (over 100)", vxlanPkts)
			}
		})
	}
}

// TestTopologyLAN joins three hosts on a switched Ethernet segment (a
// memlink Hub, ARP) and runs a Geneve tunnel between two of them.
func TestTopologyLAN(t *testing.T) {
	t.Parallel()
	topo := e2e.NewTopology()
	a, b, c := topo.Host("a"), topo.Host("b"), topo.Host("c")
	lan := topo.LAN(e2e.WireOptions{}, a, b, c)
	for i, n := range []*e2e.Node{a, b, c} {
		topo.Address(n, lan, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 24))
	}
	geneve, err := e2e.Protocol("geneve")
	if err != nil {
		t.Fatal(err)
	}
	tun := topo.Tunnel(a, c, geneve, e2e.TunnelOptions{
		OuterA: ma("10.0.0.1"), OuterB: ma("10.0.0.3"),
		InnerA: []netip.Prefix{mp("192.168.7.1/24")}, InnerB: []netip.Prefix{mp("192.168.7.3/24")},
	})
	capt := topo.Capture(b, lan)
	if err := topo.Start(); err != nil {
		t.Fatal(err)
	}
	defer topo.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, dst := range []netip.Addr{ma("10.0.0.2"), ma("10.0.0.3")} {
		if _, err := e2e.Ping(ctx, a.Stack, dst, 2, time.Second); err != nil {
			t.Fatalf("LAN ping %v: %v", dst, err)
		}
	}
	if _, err := e2e.TransferTCP(ctx, a.Stack, c.Stack, netip.AddrPortFrom(tun.B.Inner4, 5001), 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	// B saw the broadcast ARP requests, and no Geneve: the hub learned
	// where A and C live.
	var arp, geneveSeen int
	for _, p := range capt.Packets() {
		if p.Layer(layers.LayerTypeARP) != nil {
			arp++
		}
		if p.Layer(layers.LayerTypeGeneve) != nil {
			geneveSeen++
		}
	}
	if arp == 0 || geneveSeen > 1 {
		t.Errorf("B's port saw %d ARP and %d Geneve packets; want some ARP and (past the first flood) no Geneve", arp, geneveSeen)
	}
}

// TestTopologyErrors checks that Start names what it could not build.
func TestTopologyErrors(t *testing.T) {
	tests := []struct {
		name  string
		build func(*e2e.Topology)
		want  string
	}{
		{"gateway-off-link", func(topo *e2e.Topology) {
			a, b := topo.Host("a"), topo.Host("b")
			w := topo.Wire(a, b, e2e.WireOptions{})
			topo.Address(a, w, mp("10.0.0.1/24"))
			topo.Route(a, mp("10.9.0.0/24"), ma("10.5.0.1"))
		}, "node a: route 10.9.0.0/24 via 10.5.0.1: the gateway is on none of the node's subnets"},
		{"outer-not-on-node", func(topo *e2e.Topology) {
			a, b := topo.Host("a"), topo.Host("b")
			w := topo.Wire(a, b, e2e.WireOptions{})
			topo.Address(a, w, mp("10.0.0.1/24"))
			topo.Tunnel(a, b, nil, e2e.TunnelOptions{OuterA: ma("10.0.0.1"), OuterB: ma("10.0.0.2")})
		}, "tunnel a-b (10.0.0.1-10.0.0.2): outer address 10.0.0.2 is not an address of node b"},
		{"bad-mtu", func(topo *e2e.Topology) {
			a, b := topo.Host("a"), topo.Host("b")
			topo.Wire(a, b, e2e.WireOptions{MTU: 20})
		}, "wire a-b: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topo := e2e.NewTopology()
			tt.build(topo)
			err := topo.Start()
			if err == nil {
				topo.Close()
				t.Fatal("Start succeeded")
			}
			if got := err.Error(); len(got) < len(tt.want) || got[:len(tt.want)] != tt.want {
				t.Errorf("Start error %q, want it to start with %q", got, tt.want)
			}
		})
	}
}

// TestTopologyCloseLeaks: a topology with a router, a LAN, captures and a
// tunnel leaves no goroutine behind once closed.
func TestTopologyCloseLeaks(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	topo := newRoutedTopology(e2e.VXLAN, false, e2e.WireOptions{}, e2e.WireOptions{}, e2e.OverlayConfig{})
	c := topo.Host("c")
	lan := topo.LAN(e2e.WireOptions{}, topo.B, c)
	topo.Address(c, lan, mp("10.3.0.2/24"))
	topo.Address(topo.B, lan, mp("10.3.0.1/24"))
	topo.Capture(topo.R, topo.AR)
	if err := topo.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e2e.Ping(ctx, topo.A.Stack, topo.Tunnel.B.Inner4, 1, time.Second); err != nil {
		t.Error(err)
	}
	if _, err := e2e.Ping(ctx, topo.B.Stack, ma("10.3.0.2"), 1, time.Second); err != nil {
		t.Error(err)
	}
	if err := topo.Close(); err != nil {
		t.Error(err)
	}
}

// TestRequestResponseBadReply: a reply that differs from its request fails
// with ErrBadReply.
func TestRequestResponseBadReply(t *testing.T) {
	_, _, tun := pairTopology(t, "vxlan", e2e.WireOptions{})
	dst := netip.AddrPortFrom(tun.B.Inner4, 7)
	pc, err := tun.B.Stack.ListenUDP(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() { // an echo server that flips the last byte
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			buf[n-1] ^= 1
			pc.WriteTo(buf[:n], from)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e2e.RequestResponse(ctx, tun.A.Stack, dst, 3, 100, time.Second); !errors.Is(err, e2e.ErrBadReply) {
		t.Fatalf("RequestResponse to a corrupting echo: %v, want ErrBadReply", err)
	}
}
