//go:build linux

package e2e_test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/stack"
)

// TestTUNTunnelGSO proves the TUN's UDP-tunnel GSO (Linux 6.17+) against
// the kernel's VXLAN, over an IPv4 and an IPv6 underlay: the kernel's
// super-packets arrive whole (RxTunnelGSO); over IPv4 ours are written
// whole (VnetStats.TxTunnelGSO, tun.Config.TunnelGSOWrites) and the kernel
// neither refuses them (ut0's rx_frame_errors, which counts a virtio-net
// header it rejects) nor segments them before its VXLAN (vx42 receives no
// more packets than we write), over IPv6 they leave as UDP GSO trains;
// a SHA-256-hashed TCP transfer each way arrives intact.
func TestTUNTunnelGSO(t *testing.T) {
	for _, tc := range []kernelCase{
		{name: "ipv4", kernelArgs: []string{"udpcsum"}},
		{name: "ipv4-zerocsum", kernelArgs: []string{"noudpcsum"}, ourZero: true},
		{name: "ipv6", ipv6: true},
		{name: "ipv6-zerocsum", ipv6: true, kernelArgs: []string{"udp6zerocsumtx", "udp6zerocsumrx"},
			ourChecksum: stack.ChecksumPolicy{ZeroTx6: true, ZeroRx6: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.offload = true
			p := newKernelPeer(t, tc)
			if !p.tun.TunnelGSO() {
				t.Skip("the kernel refuses TUNSETOFFLOAD(TUN_F_UDP_TUNNEL_GSO) (Linux < 6.17): UDP GSO trains only, covered by TestKernelVXLAN")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			frameErrors0 := sysCounter(t, p.ns, "ut0", "rx_frame_errors")
			utRx0, vxRx0 := sysCounter(t, p.ns, "ut0", "rx_packets"), sysCounter(t, p.ns, "vx42", "rx_packets")
			const size = 32 << 20
			hashes := func(res e2e.TransferResult) {
				t.Helper()
				// Transfer fails unless the receiver's hash equals the
				// sender's.
				if res.Bytes != size || len(res.Sum) == 0 {
					t.Fatalf("moved %d of %d bytes (hash %x)", res.Bytes, size, res.Sum)
				}
			}
			t.Run("stack-to-kernel", func(t *testing.T) {
				dst := netip.AddrPortFrom(overlayKernel.Addr(), 5003)
				ln := listenIn(t, p.ns, dst)
				res, err := e2e.Transfer(ctx, ln, func() (net.Conn, error) { return p.st.DialTCP(ctx, dst) }, size, nil)
				if err != nil {
					t.Fatal(err)
				}
				hashes(res)
			})
			t.Run("kernel-to-stack", func(t *testing.T) {
				dst := netip.AddrPortFrom(overlayUs.Addr(), 5004)
				ln, err := p.st.ListenTCP(dst)
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				res, err := e2e.Transfer(ctx, ln, dialIn(ctx, p.ns, dst), size, nil)
				if err != nil {
					t.Fatal(err)
				}
				hashes(res)
			})
			vs := p.tun.VnetStats()
			t.Logf("tun offload: %+v", vs)
			if tc.ipv6 {
				if vs.TxTunnelGSO != 0 || vs.TxTrainSegments == 0 {
					t.Errorf("IPv6 underlay: %d tunnel GSO writes, %d train segments: want trains only", vs.TxTunnelGSO, vs.TxTrainSegments)
				}
			} else if vs.TxTunnelGSO == 0 {
				t.Error("no tunnel GSO write: our super-packets were not written whole")
			}
			if vs.RxTunnelGSO == 0 {
				t.Error("no tunnel GSO packet received: the kernel's vx42 super-packets were segmented before ut0")
			}
			if vs.TxErrors != 0 || vs.RxDropped != 0 || (!tc.ipv6 && vs.TxTrains != 0) {
				t.Errorf("%d write errors, %d received packets dropped, %d UDP GSO trains", vs.TxErrors, vs.RxDropped, vs.TxTrains)
			}
			if n := sysCounter(t, p.ns, "ut0", "rx_frame_errors") - frameErrors0; n != 0 {
				t.Errorf("the kernel refused %d of our virtio-net headers (ut0 rx_frame_errors)", n)
			}
			// One skb per write all the way: the kernel's vx42 received
			// no more packets than we wrote into ut0 (segmenting our
			// super-packets would multiply them by about 40).
			if ut, vx := sysCounter(t, p.ns, "ut0", "rx_packets")-utRx0, sysCounter(t, p.ns, "vx42", "rx_packets")-vxRx0; !tc.ipv6 && vx > ut {
				t.Errorf("vx42 received %d packets from our %d writes into ut0: the kernel segmented our super-packets before its VXLAN", vx, ut)
			}
			gs := p.st.GVisor().Stats()
			if n := gs.TCP.ChecksumErrors.Value(); n != 0 {
				t.Errorf("%d inner TCP checksum errors", n)
			}
			if n := gs.UDP.ChecksumErrors.Value(); n != 0 {
				t.Errorf("%d outer UDP checksum errors", n)
			}
		})
	}
}
