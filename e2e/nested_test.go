package e2e_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/stack"
)

// nestedPairs are the stackings the nesting tests run, inner over outer.
var nestedPairs = []struct{ outer, inner string }{
	{"geneve", "vxlan"},  // VXLAN inside Geneve, as the issue asks
	{"vxlan", "l2tp"},    // an L2 pseudowire inside an L2 overlay
	{"mplsudp", "vxlan"}, // an L2 overlay over an L3 one
}

func nestedOverlay(t *testing.T, outer, inner string, v6 bool) *e2e.Overlay {
	t.Helper()
	of, err := e2e.Protocol(outer)
	if err != nil {
		t.Fatal(err)
	}
	inf, err := e2e.Protocol(inner)
	if err != nil {
		t.Fatal(err)
	}
	o, err := e2e.NewOverlay(e2e.OverlayConfig{Tunnel: e2e.Nested(of, inf), IPv6Underlay: v6})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// TestNested carries ping and a hashed TCP transfer through one protocol's
// tunnel inside another's, and checks that both layers counted every
// packet: each inner packet crossed the outer tunnel too.
func TestNested(t *testing.T) {
	for _, p := range nestedPairs {
		for _, v6 := range []bool{false, true} {
			name := p.inner + "-over-" + p.outer + map[bool]string{false: "/ipv4-underlay", true: "/ipv6-underlay"}[v6]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				o := nestedOverlay(t, p.outer, p.inner, v6)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				for _, dst := range []netip.Addr{o.B.Inner4, o.B.Inner6} {
					if r, err := e2e.Ping(ctx, o.A.Stack, dst, 2, time.Second); err != nil || r.Received != r.Sent {
						t.Fatalf("ping %v: %v %v", dst, r, err)
					}
					const size = 2 << 20
					res, err := e2e.TransferTCP(ctx, o.A.Stack, o.B.Stack, netip.AddrPortFrom(dst, 5001), size, nil)
					if err != nil || res.Bytes != size {
						t.Fatalf("TCP to %v: %v %v", dst, res, err)
					}
				}
				for _, h := range o.Hosts() {
					if len(h.Lower) != 1 {
						t.Fatalf("%s has %d lower tunnels, want 1", h.Name, len(h.Lower))
					}
					in, out := h.Tunnel.Counters().Stats(), h.Lower[0].Device.Counters().Stats()
					if in.RxPackets == 0 || out.RxPackets < in.RxPackets || out.TxPackets < in.TxPackets {
						t.Errorf("%s: inner device %v; outer device %v: want the outer to carry at least what the inner does", h.Name, in, out)
					}
					if in.TotalDrops()+out.TotalDrops() != 0 {
						t.Errorf("%s: drops: inner %v, outer %v", h.Name, in, out)
					}
				}
			})
		}
	}
}

// TestNestedLoop misroutes a nested overlay on host a: the route to b's
// underlay address goes into the inner tunnel, whose outer packets go to
// the outer tunnel, whose outer packets go to b's underlay address, and so
// on. Each pass adds an encapsulation, and the packet must be dropped at
// stack.MaxNesting, counted, without reaching the wire.
func TestNestedLoop(t *testing.T) {
	for _, p := range nestedPairs {
		t.Run(p.inner+"-over-"+p.outer, func(t *testing.T) {
			o := nestedOverlay(t, p.outer, p.inner, false)
			a := o.A
			// Resolve the neighbours of both layers while the routes are
			// sound.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if r, err := e2e.Ping(ctx, a.Stack, o.B.Inner4, 1, time.Second); err != nil || r.Received != 1 {
				t.Fatalf("ping before the loop: %v %v", r, err)
			}
			if err := a.Stack.AddRoute(netip.PrefixFrom(o.B.Outer, 32), netip.Addr{}, a.Tunnel.NIC()); err != nil {
				t.Fatal(err)
			}
			if mac := a.Tunnel.MAC(); mac != nil {
				// An L2 inner device would resolve b's underlay address
				// first, and that request would be parked for ever.
				if err := a.Stack.GVisor().AddStaticNeighbor(a.Tunnel.NIC(), header.IPv4ProtocolNumber,
					tcpip.AddrFrom4(o.B.Outer.As4()), tcpip.LinkAddress("\x02\x00\x00\x00\x00\x99")); err != nil {
					t.Fatalf("static neighbour: %v", err)
				}
			}
			devices := []*stack.Device{a.Tunnel, a.Lower[0].Device}
			sockets := []*stack.Socket{a.TunnelSocket, a.Lower[0].Socket}
			nestingDrops := func() (n uint64) {
				for _, d := range devices {
					n += d.Counters().Stats().Dropped(stack.DropNestingLimit)
				}
				for _, s := range sockets {
					n += s.Counters().Stats().Dropped(stack.DropNestingLimit)
				}
				return n
			}
			wire := a.Wire.Stats().TxPackets
			c, err := a.Stack.DialUDP(netip.AddrPortFrom(o.B.Inner4, 9))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte("loop")); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for nestingDrops() == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := nestingDrops(); n != 1 {
				t.Errorf("%d packets dropped at the nesting limit, want 1", n)
			}
			// Each layer encapsulated the datagram MaxNesting/2 times.
			for i, d := range devices {
				if tx := d.Counters().Stats().TxPackets; tx < stack.MaxNesting/2 {
					t.Errorf("device %d (%s) sent %d packets, want at least %d passes", i, d.Name(), tx, stack.MaxNesting/2)
				}
			}
			if got := a.Wire.Stats().TxPackets; got != wire {
				t.Errorf("the looped packet reached the wire: %d packets sent, want %d", got, wire)
			}
		})
	}
}
