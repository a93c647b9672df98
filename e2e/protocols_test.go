package e2e_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/e2e"
)

// TestProtocols runs every registered protocol end to end over an IPv4 and
// an IPv6 underlay: ping and a hashed TCP transfer to both inner addresses,
// in both directions, then checks that the tunnel devices counted the
// traffic and dropped nothing.
func TestProtocols(t *testing.T) {
	for _, name := range e2e.Protocols() {
		tunnel, err := e2e.Protocol(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, v6 := range []bool{false, true} {
			underlay := "ipv4-underlay"
			if v6 {
				underlay = "ipv6-underlay"
			}
			t.Run(name+"/"+underlay, func(t *testing.T) {
				t.Parallel()
				o, err := e2e.NewOverlay(e2e.OverlayConfig{Tunnel: tunnel, IPv6Underlay: v6})
				if err != nil {
					t.Fatal(err)
				}
				defer o.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				const size = 4 << 20
				for _, h := range o.Hosts() {
					peer := h.Peer()
					for _, dst := range []netip.Addr{peer.Inner4, peer.Inner6} {
						r, err := e2e.Ping(ctx, h.Stack, dst, 3, time.Second)
						if err != nil {
							t.Fatalf("%s: ping %v: %v", h.Name, dst, err)
						}
						if r.Received != r.Sent {
							t.Errorf("%s: ping %v on a perfect wire: %v", h.Name, dst, r)
						}
						res, err := e2e.TransferTCP(ctx, h.Stack, peer.Stack, netip.AddrPortFrom(dst, 5001), size, nil)
						if err != nil {
							t.Fatalf("%s: TCP to %v: %v", h.Name, dst, err)
						}
						if res.Bytes != size {
							t.Errorf("%s: TCP to %v moved %d bytes, want %d", h.Name, dst, res.Bytes, size)
						}
					}
				}
				for _, h := range o.Hosts() {
					ds := h.Tunnel.Counters().Stats()
					if ds.RxBytes < 2*size || ds.TxBytes < 2*size {
						t.Errorf("%s's device moved too little (want over %d bytes each way): %v", h.Name, 2*size, ds)
					}
					if ds.TotalDrops() != 0 {
						t.Errorf("%s's device dropped packets: %v", h.Name, ds)
					}
					if ss := h.TunnelSocket.Counters().Stats(); ss.RxPackets < ds.RxPackets {
						t.Errorf("%s's socket received %d datagrams, fewer than its device's %d packets", h.Name, ss.RxPackets, ds.RxPackets)
					}
				}
			})
		}
	}
}
