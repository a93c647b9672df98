//go:build linux

package e2e_test

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"testing"

	"github.com/udptunnel/udptunnel/e2e"
)

// tunKernelGbps is the last "kernel" result of BenchmarkTUN, which the TUN
// cases of the same run are compared with.
var tunKernelGbps float64

// BenchmarkTUN moves one TCP stream through VXLAN between our stack, whose
// underlay is a TUN device (endpoints/tun) into a network namespace, and
// the kernel's VXLAN in that namespace (TestKernelVXLAN's topology, IPv4
// underlay at MTU 1500, the kernel's default offloads on vx42):
//
//   - kernel: the kernel's VXLAN on both ends of a veth pair between two
//     namespaces (BenchmarkHostUDP's "kernel" case), the reference of the
//     same run;
//   - tun-tx: our stack sends to a server behind the kernel's vx42;
//   - tun-rx: a client behind the kernel's vx42 sends to our stack;
//   - tun-offload-tx, tun-offload-rx: the same with the TUN in its
//     offloaded mode (tun.Config.Offload: virtio-net header, TUN_F_CSUM
//     and TSO, inner checksums finished; GSO super-packets written whole
//     as UDP-tunnel GSO packets where the kernel takes them, Linux 6.17+,
//     and the kernel's read whole, else segmented into UDP GSO trains by
//     the endpoint) and our VXLAN device with checksum and segmentation
//     offload.
//
// It reports Gbit/s, outer packets per second through the TUN (ut0's
// counters in the data's direction; vA's tx for the kernel case) and the
// ratio to the kernel case (x-kernel).
func BenchmarkTUN(b *testing.B) {
	if _, err := exec.LookPath("ethtool"); err != nil {
		b.Skip("needs ethtool")
	}
	b.Run("kernel", func(b *testing.B) { tunKernelGbps = benchKernelVXLAN(b, false) })
	for _, c := range []struct {
		name        string
		tx, offload bool
	}{{"tun-tx", true, false}, {"tun-rx", false, false}, {"tun-offload-tx", true, true}, {"tun-offload-rx", false, true}} {
		b.Run(c.name, func(b *testing.B) {
			benchTUN(b, c.tx, kernelCase{kernelArgs: []string{"udpcsum"}, offload: c.offload})
		})
	}
}

// benchTUN is one TUN case of BenchmarkTUN: tx sends from our stack to the
// kernel, !tx from the kernel to our stack.
func benchTUN(b *testing.B, tx bool, tc kernelCase) {
	p := newKernelPeer(b, tc)
	// Resolve the overlay both ways before the clock starts.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if r, err := e2e.Ping(ctx, p.st, overlayKernel.Addr(), 1, 2e9); err != nil || r.Received != 1 {
		b.Fatalf("ping %v: %v, %v", overlayKernel.Addr(), r, err)
	}
	// Data leaving our stack is ut0's rx (the kernel receives what we
	// write), data reaching it ut0's tx.
	counter := "rx_packets"
	if !tx {
		counter = "tx_packets"
	}
	pkts0 := sysCounter(b, p.ns, "ut0", counter)
	var res e2e.TransferResult
	if tx {
		dst := netip.AddrPortFrom(overlayKernel.Addr(), 5001)
		ln := listenIn(b, p.ns, dst)
		res = benchTransfer(b, ln, func(ctx context.Context) (net.Conn, error) { return p.st.DialTCP(ctx, dst) })
	} else {
		dst := netip.AddrPortFrom(overlayUs.Addr(), 5001)
		ln, err := p.st.ListenTCP(dst)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ln.Close() })
		res = benchTransfer(b, ln, func(ctx context.Context) (c net.Conn, err error) {
			err = p.ns.Do(func() error {
				c, err = new(net.Dialer).DialContext(ctx, "tcp", dst.String())
				return err
			})
			return c, err
		})
	}
	pkts := sysCounter(b, p.ns, "ut0", counter) - pkts0
	b.ReportMetric(res.Gbps(), "Gbit/s")
	b.ReportMetric(float64(pkts)/res.Duration.Seconds(), "pkts/s")
	if tunKernelGbps > 0 {
		b.ReportMetric(res.Gbps()/tunKernelGbps, "x-kernel")
	}
	gs := p.st.GVisor().Stats()
	b.Logf("device: %v; TCP retransmits %d, inner TCP checksum errors %d; tun offload %+v",
		p.dev.Counters().Stats(), gs.TCP.Retransmits.Value(), gs.TCP.ChecksumErrors.Value(), p.tun.VnetStats())
}
