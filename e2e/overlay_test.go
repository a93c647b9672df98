package e2e_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/endpoints/memlink"
)

func TestOverlay(t *testing.T) {
	tests := []struct {
		name string
		cfg  e2e.OverlayConfig
		size int64
	}{
		{"ipv4-underlay", e2e.OverlayConfig{}, 8 << 20},
		{"ipv6-underlay", e2e.OverlayConfig{IPv6Underlay: true}, 8 << 20},
		{"jumbo-underlay", e2e.OverlayConfig{UnderlayMTU: 65000}, 8 << 20},
		{"no-tunnel-baseline", e2e.OverlayConfig{NoTunnel: true}, 8 << 20},
		{"checksum-offload", e2e.OverlayConfig{ChecksumOffload: true}, 8 << 20},
		{"checksum-offload-ipv6-underlay", e2e.OverlayConfig{ChecksumOffload: true, IPv6Underlay: true}, 8 << 20},
		{"gso", e2e.OverlayConfig{GSO: true}, 16 << 20},
		{"gso-ipv6-underlay", e2e.OverlayConfig{GSO: true, IPv6Underlay: true}, 16 << 20},
		{"impaired", e2e.OverlayConfig{Impairment: memlink.Impairment{Loss: 0.02, Duplicate: 0.01, Reorder: 0.02, Delay: 200 * time.Microsecond, Seed: 7}}, 2 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := e2e.NewOverlay(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			for _, dst := range []netip.Addr{o.B.Inner4, o.B.Inner6} {
				r, err := e2e.Ping(ctx, o.A.Stack, dst, 3, time.Second)
				if err != nil {
					t.Fatalf("ping %v: %v", dst, err)
				}
				if tt.cfg.Impairment == (memlink.Impairment{}) && r.Received != r.Sent {
					t.Errorf("ping %v on a perfect wire: %v", dst, r)
				}
			}
			for _, dst := range []netip.Addr{o.B.Inner4, o.B.Inner6} {
				res, err := e2e.TransferTCP(ctx, o.A.Stack, o.B.Stack, netip.AddrPortFrom(dst, 5001), tt.size, nil)
				if err != nil {
					t.Fatalf("TCP to %v: %v", dst, err)
				}
				if res.Bytes != tt.size {
					t.Errorf("TCP to %v moved %d bytes, want %d", dst, res.Bytes, tt.size)
				}
			}
			if tt.cfg.NoTunnel {
				if o.A.Tunnel != nil || o.A.Device != nil {
					t.Error("NoTunnel overlay has a device")
				}
				return
			}
			ds := o.B.Tunnel.Counters().Stats()
			if ds.RxPackets == 0 || ds.RxBytes < uint64(2*tt.size) {
				t.Errorf("B's device received %d packets, %d bytes; want at least %d bytes", ds.RxPackets, ds.RxBytes, 2*tt.size)
			}
			if ds.TotalDrops() != 0 {
				t.Errorf("B's device dropped packets: %v", ds)
			}
			if ss := o.B.TunnelSocket.Counters().Stats(); ss.RxPackets < ds.RxPackets {
				t.Errorf("B's socket received %d datagrams, fewer than its device's %d frames", ss.RxPackets, ds.RxPackets)
			}
		})
	}
}
