//go:build linux

package e2e_test

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/endpoints/hostudp"
)

// kernelRuns and kernelSegRuns are the "kernel" and "kernel-segmented"
// results of BenchmarkHostUDP so far (with -count, each case runs count
// times in a row): the hostudp cases of the same run are compared with
// their medians, not with whichever run came last.
var kernelRuns, kernelSegRuns []float64

// median returns the median of xs, 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// benchKernelVXLAN is the "kernel" case of BenchmarkHostUDP and
// BenchmarkTUN: one TCP stream through the kernel's VXLAN on both ends of a
// veth pair between two namespaces, with its default offloads. It reports
// Gbit/s and vA's packets per second and returns the Gbit/s, the reference
// the other cases of the same run are compared with. With segmented, the
// sending VXLAN device has its checksum offload, and with it TSO, off
// (ethtool -K vA tx off): the kernel cuts the stream into MTU-sized
// datagrams before the veth, as every path through a UDP socket must.
func benchKernelVXLAN(b *testing.B, segmented bool) float64 {
	p := newVethPair(b, false)
	addKernelVXLAN(b, p.nsA, "vA", p.a.Addr(), p.b.Addr(), hostOverlayUs, true)
	addKernelVXLAN(b, p.nsB, "vB", p.b.Addr(), p.a.Addr(), hostOverlayKernel, true)
	if segmented {
		p.nsA.Run(b, "ethtool", "-K", "vA", "tx", "off")
	}
	groOn(b, p)
	dst := netip.AddrPortFrom(hostOverlayKernel.Addr(), 5001)
	ln := listenIn(b, p.nsB, dst)
	pkts0 := sysCounter(b, p.nsA, "vA", "tx_packets")
	res := benchTransfer(b, ln, func(ctx context.Context) (c net.Conn, err error) {
		err = p.nsA.Do(func() error {
			c, err = new(net.Dialer).DialContext(ctx, "tcp", dst.String())
			return err
		})
		return c, err
	})
	pkts := sysCounter(b, p.nsA, "vA", "tx_packets") - pkts0
	b.ReportMetric(res.Gbps(), "Gbit/s")
	b.ReportMetric(float64(pkts)/res.Duration.Seconds(), "pkts/s")
	return res.Gbps()
}

// BenchmarkHostUDP moves one TCP stream through VXLAN across a veth pair
// between two namespaces it creates, at underlay MTU 1500, with GRO on at
// both ends of the veth (groOn):
//
//   - kernel: the kernel's VXLAN on both ends with its default offloads
//     (GSO/TSO through the tunnel, checksum offload), a Go client in
//     namespace A and server in B (the target's reference): 64 KiB
//     packets cross the veth whole, never cut to the MTU;
//   - kernel-segmented: the same with the sender's TSO off, so that the
//     kernel sends MTU-sized datagrams, as a UDP socket path must;
//   - hostudp-tx: our stack (hostudp underlay, its socket in A) sends to a
//     server behind the kernel's VXLAN in B;
//   - hostudp-rx: a client behind the kernel's VXLAN in B sends to our
//     stack; the kernel peer keeps its default offloads, so that it sends
//     us one 64 KiB datagram per TSO burst, inner checksums partial
//     (completed by our device);
//   - the same with "-inner-gso": the endpoint's inner-offload path
//     (hostudp.Config.InnerOffset) under a device with GSO and checksum
//     offload, so that our TCP hands 64 KiB segments to the endpoint,
//     which segments them into UDP GSO trains (and completes the peer's
//     partial checksums itself);
//   - "-peer-segmented": the receive cases against a peer with TSO and
//     checksum offload off, which sends finished MTU-sized datagrams, as
//     a peer on another machine does; the inner-offload path merges them.
//
// It reports Gbit/s, outer packets per second on A's side and, for the
// hostudp cases, the ratios to the medians of the kernel cases of the same
// run (x-kernel, x-kernel-seg).
func BenchmarkHostUDP(b *testing.B) {
	if _, err := exec.LookPath("ethtool"); err != nil {
		b.Skip("needs ethtool")
	}
	b.Run("kernel", func(b *testing.B) { kernelRuns = append(kernelRuns, benchKernelVXLAN(b, false)) })
	b.Run("kernel-segmented", func(b *testing.B) { kernelSegRuns = append(kernelSegRuns, benchKernelVXLAN(b, true)) })
	for _, c := range []struct {
		name  string
		tx    bool
		inner int
		// peerOffloads keeps the kernel peer's default offloads: its TSO
		// sends one datagram per 64 KiB burst, with inner checksums
		// left partial, which our device or endpoint completes. Without
		// them the peer finishes its checksums and sends MTU-sized
		// datagrams (ethtool -K vx42 tx off), as a remote peer would.
		peerOffloads bool
	}{
		{"hostudp-tx", true, 0, true}, {"hostudp-rx", false, 0, true},
		{"hostudp-tx-inner-gso", true, vxlanInnerOffset, true}, {"hostudp-rx-inner-gso", false, vxlanInnerOffset, true},
		{"hostudp-rx-peer-segmented", false, 0, false}, {"hostudp-rx-inner-gso-peer-segmented", false, vxlanInnerOffset, false},
	} {
		tx, inner, peerOffloads := c.tx, c.inner, c.peerOffloads
		b.Run(c.name, func(b *testing.B) {
			p := newVethPair(b, false)
			addKernelVXLAN(b, p.nsB, "vB", p.b.Addr(), p.a.Addr(), hostOverlayKernel, peerOffloads)
			groOn(b, p)
			v := newHostVTEPIn(b, p.nsA, p.a, p.b.Addr(), hostudp.Config{InnerOffset: inner, InnerEthernet: inner > 0})
			var res e2e.TransferResult
			s0 := v.ep.Stats()
			if tx {
				dst := netip.AddrPortFrom(hostOverlayKernel.Addr(), 5001)
				ln := listenIn(b, p.nsB, dst)
				res = benchTransfer(b, ln, func(ctx context.Context) (net.Conn, error) { return v.st.DialTCP(ctx, dst) })
			} else {
				dst := netip.AddrPortFrom(hostOverlayUs.Addr(), 5001)
				ln, err := v.st.ListenTCP(dst)
				if err != nil {
					b.Fatal(err)
				}
				res = benchTransfer(b, ln, func(ctx context.Context) (c net.Conn, err error) {
					err = p.nsB.Do(func() error {
						c, err = new(net.Dialer).DialContext(ctx, "tcp", dst.String())
						return err
					})
					return c, err
				})
			}
			s := v.ep.Stats()
			pkts := s.TxPackets - s0.TxPackets
			if !tx {
				pkts = s.RxPackets - s0.RxPackets
			}
			b.ReportMetric(res.Gbps(), "Gbit/s")
			b.ReportMetric(float64(pkts)/res.Duration.Seconds(), "pkts/s")
			if k := median(kernelRuns); k > 0 {
				b.ReportMetric(res.Gbps()/k, "x-kernel")
			}
			if k := median(kernelSegRuns); k > 0 {
				b.ReportMetric(res.Gbps()/k, "x-kernel-seg")
			}
			b.Logf("endpoint: %v; TCP retransmits %d; netns A: %s", s, v.st.GVisor().Stats().TCP.Retransmits.Value(), udpErrors(b, p.nsA))
		})
	}
}

// groOn turns GRO on at both ends of p's veth, as NICs run it by default
// (veth only when asked). The kernel's UDP tunnel GRO then merges a run
// of VXLAN datagrams into one before vxlan_rcv, as on a real host; 64 KiB
// TSO datagrams pass as they are.
func groOn(b *testing.B, p *vethPair) {
	p.nsA.Run(b, "ethtool", "-K", "vA", "gro", "on")
	p.nsB.Run(b, "ethtool", "-K", "vB", "gro", "on")
}

// listenIn listens on dst inside ns; the listener closes with tb.
func listenIn(tb testing.TB, ns *e2e.Netns, dst netip.AddrPort) net.Listener {
	tb.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", dst.String()); return err }); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	return ln
}

// dialIn returns a dial function for e2e.Transfer that connects to dst
// over TCP from inside ns.
func dialIn(ctx context.Context, ns *e2e.Netns, dst netip.AddrPort) func() (net.Conn, error) {
	return func() (c net.Conn, err error) {
		err = ns.Do(func() error {
			c, err = new(net.Dialer).DialContext(ctx, "tcp", dst.String())
			return err
		})
		return c, err
	}
}

// benchTransfer moves b.N MiB from dial's end to ln's, timed.
func benchTransfer(b *testing.B, ln net.Listener, dial func(ctx context.Context) (net.Conn, error)) e2e.TransferResult {
	b.Helper()
	const chunk = 1 << 20
	b.SetBytes(chunk)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b.ResetTimer()
	res, err := e2e.Transfer(ctx, ln, func() (net.Conn, error) { return dial(ctx) }, int64(b.N)*chunk, crc32c)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	return res
}

// sysCounter reads a statistics counter of dev in ns.
func sysCounter(b testing.TB, ns *e2e.Netns, dev, name string) uint64 {
	b.Helper()
	n, err := strconv.ParseUint(strings.TrimSpace(ns.Run(b, "cat", "/sys/class/net/"+dev+"/statistics/"+name)), 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// udpErrors returns the UDP error counters of ns (/proc/net/snmp), for the
// benchmark's log: receive buffer overruns limit a userspace receiver.
func udpErrors(b *testing.B, ns *e2e.Netns) string {
	var names, values []string
	for l := range strings.Lines(ns.Run(b, "cat", "/proc/net/snmp")) {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "Udp:" {
			if names == nil {
				names = f[1:]
			} else {
				values = f[1:]
			}
		}
	}
	var out []string
	for i, n := range names {
		if i < len(values) && strings.Contains(n, "Errors") {
			out = append(out, n+"="+values[i])
		}
	}
	return strings.Join(out, " ")
}
