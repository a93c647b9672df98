package evpn_test

import (
	"flag"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
	"github.com/udptunnel/udptunnel/tunnels/vxlan/evpn"
)

var scaleRoutes = flag.Int("evpn.routes", 100000, "MAC routes BenchmarkScale originates")

// heap returns the live heap after a full collection.
func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkScale measures a full table: speaker A originates
// -evpn.routes MAC routes (type 2, MAC only) for VNI 100 before speaker B
// connects; then B's session comes up over loopback and B installs them
// all into its device's FDB. It reports
//
//   - routes/s: B's install rate, from its first route installed to the
//     last;
//   - s-full-table: from B's session Established to the whole table
//     installed;
//   - A-B/route and B-B/route: live heap per route on A (GoBGP's RIB and
//     the binding's local routes) and on B (GoBGP's RIBs, the received
//     routes, the FDB), after garbage collection;
//   - s-originate: A's time to originate them (one AddPath each).
//
// Run it once: go test -run=^$ -bench=Scale -benchtime=1x ./tunnels/vxlan/evpn
func BenchmarkScale(b *testing.B) {
	n := *scaleRoutes
	for range b.N {
		b.StopTimer()
		hosts := tunneltest.Pair(b, memlink.Options{}, tunneltest.Outer4)
		a, bb := newDevice(b, hosts[0], innerA), newDevice(b, hosts[1], innerB)
		port := freePort(b)
		lo1, lo2 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
		base := heap()
		a.sp = startSpeaker(b, evpn.Config{
			ASN: asn, VTEP: hosts[0].Outer, ListenPort: port, ListenAddresses: []netip.Addr{lo1},
			Neighbors: []evpn.Neighbor{{Address: lo2, ASN: asn, Passive: true}},
		})
		a.b = bind(b, a)
		b.StartTimer()
		t0 := time.Now()
		for i := range n {
			mac := vxlan.MAC{0x02, 0x5c, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
			if err := a.b.AddLocalMAC(mac); err != nil {
				b.Fatal(err)
			}
		}
		originate := time.Since(t0)
		b.StopTimer()
		aHeap := heap() - base

		base = heap()
		bb.sp = startSpeaker(b, evpn.Config{
			ASN: asn, VTEP: hosts[1].Outer,
			Neighbors: []evpn.Neighbor{{Address: lo1, ASN: asn, Port: port, LocalAddress: lo2}},
		})
		bb.b = bind(b, bb)
		b.StartTimer()
		var first time.Time
		want := n + 2 // and A's device MAC and the all-zeros flood entry
		deadline := time.Now().Add(10 * time.Minute)
		for bb.dev.FDB().Len() < want {
			if first.IsZero() && bb.dev.FDB().Len() > 0 {
				first = time.Now()
			}
			if time.Now().After(deadline) {
				b.Fatalf("B installed %d of %d entries in 10 minutes", bb.dev.FDB().Len(), want)
			}
			time.Sleep(time.Millisecond)
		}
		last := time.Now()
		b.StopTimer()
		up := bb.sp.Status().Peers[0].Since
		bHeap := heap() - base
		if first.IsZero() {
			first = up
		}
		b.ReportMetric(float64(n)/last.Sub(first).Seconds(), "routes/s")
		b.ReportMetric(last.Sub(up).Seconds(), "s-full-table")
		b.ReportMetric(originate.Seconds(), "s-originate")
		b.ReportMetric(float64(aHeap)/float64(n), "A-B/route")
		b.ReportMetric(float64(bHeap)/float64(n), "B-B/route")
		b.Logf("%d routes: A originated in %v (%.0f MiB live), B installed at %.0f routes/s, full table %v after Established (%.0f MiB live on B)",
			n, originate.Round(time.Millisecond), float64(aHeap)/(1<<20), float64(n)/last.Sub(first).Seconds(),
			last.Sub(up).Round(time.Millisecond), float64(bHeap)/(1<<20))
		bb.sp.Close()
		a.sp.Close()
	}
}
