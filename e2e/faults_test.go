package e2e_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/stack"
)

// The fault cells of the interop matrix: every registered protocol's
// tunnel carries a TCP transfer, checked by hash, through a lossy,
// duplicating, reordering or slow underlay; across a router whose next hop
// has a smaller MTU (path MTU discovery through ICMP); while the peer's
// tunnel restarts; and while the underlay goes down and comes back.

// pairTopology declares two hosts on one wire (10.99.0.1-2/24) with a
// tunnel of proto between them (192.168.42.1-2/24, fd00:42::1-2/64).
func pairTopology(t *testing.T, proto string, w e2e.WireOptions) (*e2e.Topology, *e2e.Wire, *e2e.Tunnel) {
	t.Helper()
	f, err := e2e.Protocol(proto)
	if err != nil {
		t.Fatal(err)
	}
	topo := e2e.NewTopology()
	a, b := topo.Host("a"), topo.Host("b")
	a.StackOptions, b.StackOptions = faultStack, faultStack
	wire := topo.Wire(a, b, w)
	topo.Address(a, wire, mp("10.99.0.1/24"))
	topo.Address(b, wire, mp("10.99.0.2/24"))
	tun := topo.Tunnel(a, b, f, e2e.TunnelOptions{
		OuterA: ma("10.99.0.1"), OuterB: ma("10.99.0.2"),
		InnerA: []netip.Prefix{mp("192.168.42.1/24"), mp("fd00:42::1/64")},
		InnerB: []netip.Prefix{mp("192.168.42.2/24"), mp("fd00:42::2/64")},
	})
	startTopology(t, topo)
	return topo, wire, tun
}

// faultStack keeps TCP windows small (64 KiB, about 45 segments): the
// wire's queue holds little, so round trip times and retransmission
// timeouts stay short, and a window lost whole to a link outage is
// recovered in about a second. With 4 MiB windows, queueing under the race
// detector made for second-long RTOs, and gVisor's TCP took several RTOs to
// recover a lost 256 KiB window, longer than a cell may take.
var faultStack = stack.Options{TCPBufferSize: 64 << 10}

// startTopology starts topo, closes it when t ends and logs its counters
// if t failed.
func startTopology(t *testing.T, topo *e2e.Topology) {
	t.Helper()
	if err := topo.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("counters:\n" + topo.Counters())
		}
		topo.Close()
	})
}

// TestFaultImpairedUnderlay: a TCP transfer through every protocol's tunnel
// completes with the right hash over an underlay that loses, duplicates,
// reorders or delays packets (in both directions).
func TestFaultImpairedUnderlay(t *testing.T) {
	impairments := []struct {
		name string
		imp  memlink.Impairment
	}{
		{"loss-3pct", memlink.Impairment{Loss: 0.03, Seed: 1}},
		{"duplicate-5pct", memlink.Impairment{Duplicate: 0.05, Seed: 2}},
		{"reorder-5pct", memlink.Impairment{Reorder: 0.05, Seed: 3}},
		{"delay-2ms-jitter-1ms", memlink.Impairment{Delay: 2 * time.Millisecond, Jitter: time.Millisecond, Seed: 4}},
	}
	for _, proto := range e2e.Protocols() {
		for _, im := range impairments {
			t.Run(proto+"/"+im.name, func(t *testing.T) {
				t.Parallel()
				_, wire, tun := pairTopology(t, proto, e2e.WireOptions{Impairment: im.imp})
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				const size = 512 << 10
				if _, err := e2e.TransferTCP(ctx, tun.A.Stack, tun.B.Stack, netip.AddrPortFrom(tun.B.Inner4, 5001), size, nil); err != nil {
					t.Fatal(err)
				}
				// The wire really mistreated the transfer.
				st := wire.Endpoint(wire.Nodes[0]).Stats()
				switch {
				case im.imp.Loss > 0 && st.Dropped.Loss == 0,
					im.imp.Duplicate > 0 && st.Duplicated == 0,
					im.imp.Reorder > 0 && wire.Endpoint(wire.Nodes[1]).Stats().Reordered == 0:
					t.Errorf("the wire did not impair the transfer: %v", st)
				}
			})
		}
	}
}

// TestFaultPathMTU: A —1500— R —1400— B, a tunnel A↔B whose MTU is derived
// from 1500 and whose outer IPv4 packets carry DF. R, a gVisor stack
// forwarding, answers A's oversized outer packets with ICMP "fragmentation
// needed" (IPv4) or "packet too big" (IPv6); A's tunnel socket must count
// the error, A's device MTU must drop to fit 1400, and the TCP transfer
// that ran into it must complete with the right hash.
//
// Over IPv4 the cell needs the protocol's TunnelFunc to set DF from
// OverlayConfig.DF; where it does not, R fragments instead and the cell
// skips, saying so.
func TestFaultPathMTU(t *testing.T) {
	for _, proto := range e2e.Protocols() {
		for _, v6 := range []bool{false, true} {
			name := proto + "/ipv4-underlay-df"
			if v6 {
				name = proto + "/ipv6-underlay"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				f, err := e2e.Protocol(proto)
				if err != nil {
					t.Fatal(err)
				}
				topo := newRoutedTopology(f, v6, e2e.WireOptions{MTU: 1500}, e2e.WireOptions{MTU: 1400},
					e2e.OverlayConfig{DF: true, UnderlayMTU: 1500})
				topo.A.StackOptions, topo.B.StackOptions = faultStack, faultStack
				capt := topo.Capture(topo.A, topo.AR)
				startTopology(t, topo.Topology)
				a, b := topo.Tunnel.A, topo.Tunnel.B
				mtu0 := a.Tunnel.InnerMTU()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, err := e2e.Ping(ctx, a.Stack, b.Inner4, 1, 2*time.Second); err != nil {
					t.Fatal(err)
				}
				if !v6 && !outerDF(t, capt) {
					t.Skipf("%s's TunnelFunc does not set the outer DF bit from OverlayConfig.DF: pass it to the protocol's Config in its e2e file", proto)
				}
				if _, err := e2e.TransferTCP(ctx, a.Stack, b.Stack, netip.AddrPortFrom(b.Inner4, 5001), 1<<20, nil); err != nil {
					t.Fatal(err)
				}
				if n := a.TunnelSocket.ICMPErrors(); n == 0 {
					t.Error("A's tunnel socket counted no ICMP error")
				}
				overhead := 1500 - mtu0
				if got := a.Tunnel.InnerMTU(); got+overhead > 1400 {
					t.Errorf("A's device MTU is %d after the ICMP error (was %d): %d with the %d bytes of encapsulation exceeds the path's 1400", got, mtu0, got+overhead, overhead)
				}
				// The error came from R's own forwarding path.
				icmp := topo.R.Stack.GVisor().Stats().ICMP
				if sent := icmp.V4.PacketsSent.DstUnreachable.Value() + icmp.V6.PacketsSent.PacketTooBig.Value(); sent == 0 {
					t.Error("R sent no ICMP destination unreachable / packet too big")
				}
			})
		}
	}
}

// outerDF reports whether the IPv4 packets A sent on the captured wire
// carry DF.
func outerDF(t *testing.T, c *e2e.Capture) bool {
	t.Helper()
	for _, p := range c.Packets() {
		if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok && ip.SrcIP.Equal(ma("10.1.0.1").AsSlice()) && p.Layer(layers.LayerTypeUDP) != nil {
			return ip.Flags&layers.IPv4DontFragment != 0
		}
	}
	t.Fatal("no outer UDP packet from A in the capture")
	return false
}

// transferAsync starts a TCP transfer of size bytes from a to b's inner
// IPv4 address and returns its result channel.
func transferAsync(ctx context.Context, tun *e2e.Tunnel, port uint16, size int64) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := e2e.TransferTCP(ctx, tun.A.Stack, tun.B.Stack, netip.AddrPortFrom(tun.B.Inner4, port), size, nil)
		done <- err
	}()
	return done
}

// waitRx waits until B's tunnel device has received n bytes.
func waitRx(t *testing.T, tun *e2e.Tunnel, n uint64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); tun.B.Tunnel.Counters().Stats().RxBytes < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("B's device received only %d bytes in 5s", tun.B.Tunnel.Counters().Stats().RxBytes)
		}
	}
}

// TestFaultPeerRestart: B's end of the tunnel (socket and device, with the
// inner addresses on it) closes and comes back while a transfer runs. The
// transfer completes with the right hash or fails with an error (never
// with different bytes), and a new transfer afterwards succeeds.
func TestFaultPeerRestart(t *testing.T) {
	for _, proto := range e2e.Protocols() {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			_, wire, tun := pairTopology(t, proto, e2e.WireOptions{})
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			done := transferAsync(ctx, tun, 5001, 8<<20)
			waitRx(t, tun, 1<<20)
			// B is off the wire while its tunnel re-opens, and what was in
			// flight has arrived: every protocol's OpenSocket registers its
			// port before it records the socket that its receive path
			// reads, so a datagram arriving in between is a data race (a
			// nil dereference at worst).
			bEnd := wire.Endpoint(wire.Nodes[1])
			bEnd.SetLinkUp(false)
			time.Sleep(50 * time.Millisecond)
			err := tun.Restart(tun.B)
			bEnd.SetLinkUp(true)
			if err != nil {
				t.Fatalf("restart: %v", err)
			}
			// A restarted L2 device has a new MAC address, which A learns
			// when B speaks first (an ARP request carries it), as from a
			// kernel host's gratuitous ARP on boot (arp_notify); a
			// restarted L2TP session with sequence numbers starts again at
			// 0, which A accepts after a few packets in a row.
			ctx2, cancel2 := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel2()
			var pingErr error
			for range 10 {
				if _, pingErr = e2e.Ping(ctx2, tun.B.Stack, tun.A.Inner4, 1, time.Second); pingErr == nil {
					break
				}
			}
			if pingErr != nil {
				t.Errorf("B cannot reach A after the restart: %v", pingErr)
			}
			switch err := <-done; {
			case err == nil:
				t.Log("the transfer survived the restart")
			case errors.Is(err, e2e.ErrHashMismatch):
				t.Fatalf("transfer across the restart delivered wrong bytes: %v", err)
			default:
				t.Logf("the transfer across the restart failed: %v", err)
			}
			if _, err := e2e.TransferTCP(ctx2, tun.A.Stack, tun.B.Stack, netip.AddrPortFrom(tun.B.Inner4, 5002), 1<<20, nil); err != nil {
				t.Fatalf("transfer after the restart: %v", err)
			}
		})
	}
}

// TestFaultLinkFlap: the underlay goes down for a quarter second in the middle
// of a transfer and comes back; TCP retransmits and the transfer completes
// with the right hash.
func TestFaultLinkFlap(t *testing.T) {
	for _, proto := range e2e.Protocols() {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			_, wire, tun := pairTopology(t, proto, e2e.WireOptions{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done := transferAsync(ctx, tun, 5001, 4<<20)
			waitRx(t, tun, 1<<20)
			wire.SetLinkUp(false)
			time.Sleep(250 * time.Millisecond)
			wire.SetLinkUp(true)
			if err := <-done; err != nil {
				t.Fatalf("transfer across the link flap: %v", err)
			}
			if st := wire.Endpoint(wire.Nodes[0]).Stats(); st.Dropped.LinkDown == 0 {
				t.Errorf("the wire dropped nothing while down: %v", st)
			}
		})
	}
}
