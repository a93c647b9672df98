package e2e_test

import (
	"context"
	"fmt"
	"hash"
	"hash/crc32"
	"net/netip"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/e2e"
)

// The benchmarks run each path twice in the same process, through the
// overlay and through the same stacks without a tunnel, so that the ratio
// between the two is measured under the same machine noise. Compare runs
// with benchstat.

// BenchmarkTCP moves one TCP stream through the overlay ("vxlan") and the
// baseline ("direct") at underlay MTUs 1500 and 65000.
func BenchmarkTCP(b *testing.B) {
	for _, mtu := range []uint32{1500, 65000} {
		for _, tunnel := range []bool{true, false} {
			name := fmt.Sprintf("mtu=%d/%s", mtu, map[bool]string{true: "vxlan", false: "direct"}[tunnel])
			b.Run(name, func(b *testing.B) { benchTCP(b, e2e.OverlayConfig{UnderlayMTU: mtu, NoTunnel: !tunnel}) })
		}
	}
}

// BenchmarkTCPOffload is BenchmarkTCP with checksum offload on the wire and
// the tunnel devices, as the kernel's VXLAN over a veth runs.
func BenchmarkTCPOffload(b *testing.B) {
	for _, mtu := range []uint32{1500, 65000} {
		for _, tunnel := range []bool{true, false} {
			name := fmt.Sprintf("mtu=%d/%s", mtu, map[bool]string{true: "vxlan", false: "direct"}[tunnel])
			b.Run(name, func(b *testing.B) {
				benchTCP(b, e2e.OverlayConfig{UnderlayMTU: mtu, NoTunnel: !tunnel, ChecksumOffload: true})
			})
		}
	}
}

// BenchmarkTCPGSO is BenchmarkTCP with segmentation offload on the wire
// and the tunnel devices: TCP hands 64 KiB segments down whatever the MTU,
// as the kernel's stack does over veth and VXLAN.
func BenchmarkTCPGSO(b *testing.B) {
	for _, mtu := range []uint32{1500, 65000} {
		for _, tunnel := range []bool{true, false} {
			name := fmt.Sprintf("mtu=%d/%s", mtu, map[bool]string{true: "vxlan", false: "direct"}[tunnel])
			b.Run(name, func(b *testing.B) {
				benchTCP(b, e2e.OverlayConfig{UnderlayMTU: mtu, NoTunnel: !tunnel, GSO: true})
			})
		}
	}
}

func benchTCP(b *testing.B, cfg e2e.OverlayConfig) {
	o, err := e2e.NewOverlay(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	const chunk = 1 << 20
	size := int64(b.N) * chunk
	b.SetBytes(chunk)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tx0 := o.A.Wire.Stats().TxPackets // after the handshake, so nearly all data
	b.ResetTimer()
	res, err := e2e.TransferTCP(ctx, o.A.Stack, o.B.Stack, netip.AddrPortFrom(o.B.Inner4, 5001), size, crc32c)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	pkts := o.A.Wire.Stats().TxPackets - tx0
	var drops uint64
	for _, h := range o.Hosts() {
		d := h.Wire.Stats().Dropped
		drops += d.Loss + d.TooBig + d.QueueFull + d.LinkDown + d.NotAttached + d.Malformed
	}
	b.ReportMetric(float64(drops), "wire-drops")
	b.ReportMetric(res.Gbps(), "Gbit/s")
	b.ReportMetric(float64(pkts)/res.Duration.Seconds(), "pkts/s")
	b.ReportMetric(float64(res.Duration.Nanoseconds())/float64(pkts), "ns/pkt")
}

// BenchmarkUDPRoundTrip sends one 64-byte datagram from a to b and reads it
// there, on a synchronous wire: the per-packet cost of the whole path, IP
// and UDP layers included. The difference between "vxlan" and "direct" is
// what encapsulation and decapsulation add per packet.
func BenchmarkUDPRoundTrip(b *testing.B) {
	for _, tunnel := range []bool{true, false} {
		b.Run(map[bool]string{true: "vxlan", false: "direct"}[tunnel], func(b *testing.B) {
			benchUDPRoundTrip(b, e2e.OverlayConfig{NoTunnel: !tunnel, SyncWire: true})
		})
	}
}

// BenchmarkProtocols compares every registered protocol with the same
// stacks without a tunnel ("direct"), in one run: "tcp" is one TCP stream
// at underlay MTU 1500 with checksums computed (as BenchmarkTCP), "rtt" the
// 64-byte UDP round of BenchmarkUDPRoundTrip.
func BenchmarkProtocols(b *testing.B) {
	for _, name := range append(e2e.Protocols(), "direct") {
		cfg := e2e.OverlayConfig{NoTunnel: name == "direct"}
		if !cfg.NoTunnel {
			var err error
			if cfg.Tunnel, err = e2e.Protocol(name); err != nil {
				b.Fatal(err)
			}
		}
		b.Run("tcp/"+name, func(b *testing.B) { benchTCP(b, cfg) })
		cfg.SyncWire = true
		b.Run("rtt/"+name, func(b *testing.B) { benchUDPRoundTrip(b, cfg) })
	}
}

func benchUDPRoundTrip(b *testing.B, cfg e2e.OverlayConfig) {
	o, err := e2e.NewOverlay(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	dst := netip.AddrPortFrom(o.B.Inner4, 7)
	rx, err := o.B.Stack.ListenUDP(dst)
	if err != nil {
		b.Fatal(err)
	}
	defer rx.Close()
	tx, err := o.A.Stack.DialUDP(dst)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Close()
	msg := make([]byte, 64)
	buf := make([]byte, 2048)
	// Resolve neighbours before measuring.
	if _, err := tx.Write(msg); err != nil {
		b.Fatal(err)
	}
	rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := rx.ReadFrom(buf); err != nil {
		b.Fatal(err)
	}
	rx.SetReadDeadline(time.Time{})
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := tx.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, _, err := rx.ReadFrom(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

// crc32c is the benchmarks' integrity check: CRC-32C runs in hardware at
// many GB/s, so the hash does not cap the throughput being measured.
func crc32c() hash.Hash { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) }
