//go:build linux

package e2e_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/endpoints/hostudp"
)

// vethPair is two network namespaces made for a test, joined by a veth
// pair: vA (underlay address a) in A, vB (address b) in B. Nothing of it
// touches the test process's own namespace.
type vethPair struct {
	nsA, nsB *e2e.Netns
	a, b     netip.Prefix
}

func newVethPair(t testing.TB, ipv6 bool) *vethPair {
	t.Helper()
	p := &vethPair{nsA: e2e.NewNetns(t, "ut-hua"), nsB: e2e.NewNetns(t, "ut-hub"),
		a: netip.MustParsePrefix("10.211.0.1/24"), b: netip.MustParsePrefix("10.211.0.2/24")}
	if ipv6 {
		p.a, p.b = netip.MustParsePrefix("fd00:211::1/64"), netip.MustParsePrefix("fd00:211::2/64")
	}
	p.nsA.Run(t, "ip", "link", "add", "vA", "type", "veth", "peer", "name", "vB", "netns", p.nsB.Name())
	for _, s := range []struct {
		ns   *e2e.Netns
		dev  string
		addr netip.Prefix
	}{{p.nsA, "vA", p.a}, {p.nsB, "vB", p.b}} {
		add := []string{"ip", "addr", "add", s.addr.String(), "dev", s.dev}
		if ipv6 {
			add = append(add, "nodad")
		}
		s.ns.Run(t, add...)
		s.ns.Run(t, "ip", "link", "set", s.dev, "up")
		s.ns.Run(t, "ip", "link", "set", "lo", "up")
	}
	return p
}

// addKernelVXLAN creates vx42 (VNI 42, port 4789) in ns with the overlay
// address inner, sending to remote, with inner checksums finished in
// software (`ethtool -K vx42 tx off`): over a veth the kernel would leave
// them for an offload that a UDP socket never performs (DESIGN.md, traps).
// It returns vx42's MAC. kernelOffloads keeps the kernel's default
// offloads instead, for a kernel-to-kernel overlay.
func addKernelVXLAN(t testing.TB, ns *e2e.Netns, dev string, local, remote netip.Addr, inner netip.Prefix, kernelOffloads ...bool) string {
	t.Helper()
	ns.Run(t, "ip", "link", "add", "vx42", "type", "vxlan", "id", "42", "dstport", "4789",
		"local", local.String(), "remote", remote.String(), "dev", dev, "udpcsum")
	if len(kernelOffloads) == 0 || !kernelOffloads[0] {
		ns.Run(t, "ethtool", "-K", "vx42", "tx", "off")
	}
	ns.Run(t, "ip", "addr", "add", inner.String(), "dev", "vx42")
	ns.Run(t, "ip", "link", "set", "vx42", "up")
	out := ns.Run(t, "cat", "/sys/class/net/vx42/address")
	return strings.TrimSpace(out)
}

// vxlanInnerOffset is hostudp.Config.InnerOffset for VXLAN: its header
// and the inner Ethernet header.
const vxlanInnerOffset = 8 + 14

var (
	hostOverlayUs     = netip.MustParsePrefix("10.213.0.1/24")
	hostOverlayKernel = netip.MustParsePrefix("10.213.0.2/24")
)

// newHostVTEPIn opens a hostudp endpoint inside ns (its host sockets live
// there) and builds our VTEP around it.
func newHostVTEPIn(t testing.TB, ns *e2e.Netns, under netip.Prefix, remote netip.Addr, cfg hostudp.Config) *hostVTEP {
	t.Helper()
	cfg.Addrs = []netip.Addr{under.Addr()}
	cfg.Ports = []uint16{4789}
	var ep *hostudp.Endpoint
	if err := ns.Do(func() (err error) {
		ep, err = hostudp.New(cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return attachHostVTEP(t, ep, hostVTEPConfig{under: under, remote: remote, port: 4789, inner: hostOverlayUs, gso: cfg.InnerOffset > 0})
}

// TestHostUDPKernelVXLAN joins our VTEP, whose underlay is a hostudp
// endpoint with its host socket in namespace A, to the Linux kernel's
// VXLAN in namespace B across a veth pair: ping both ways, a hashed TCP
// transfer both ways, each side learns the other's MAC, and no drops.
func TestHostUDPKernelVXLAN(t *testing.T) {
	for _, tc := range []struct {
		name        string
		ipv6        bool
		innerOffset int
		// kernelOffloads keeps the kernel's default offloads on vx42:
		// its TSO sends one 64 KiB datagram per burst and its inner
		// checksums arrive partial, which the endpoint completes.
		kernelOffloads bool
	}{
		{"ipv4", false, 0, false}, {"ipv6", true, 0, false},
		// The plain path: the device completes the partial checksums.
		{"ipv4-kernel-offloads", false, 0, true}, {"ipv6-kernel-offloads", true, 0, true},
		// The inner-offload path: our device hands 64 KiB TCP segments
		// to the endpoint, which segments them (the kernel verifies
		// every inner checksum it finished).
		{"ipv4-inner-gso", false, vxlanInnerOffset, false}, {"ipv6-inner-gso", true, vxlanInnerOffset, false},
		{"ipv4-inner-gso-kernel-offloads", false, vxlanInnerOffset, true}, {"ipv6-inner-gso-kernel-offloads", true, vxlanInnerOffset, true},
	} {
		ipv6 := tc.ipv6
		t.Run(tc.name, func(t *testing.T) {
			if _, err := exec.LookPath("ethtool"); err != nil && !tc.kernelOffloads {
				t.Skip("needs ethtool (the kernel's vx42 must finish inner checksums)")
			}
			p := newVethPair(t, ipv6)
			kernelMAC := addKernelVXLAN(t, p.nsB, "vB", p.b.Addr(), p.a.Addr(), hostOverlayKernel, tc.kernelOffloads)
			v := newHostVTEPIn(t, p.nsA, p.a, p.b.Addr(), hostudp.Config{InnerOffset: tc.innerOffset, InnerEthernet: tc.innerOffset > 0})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()

			r, err := e2e.Ping(ctx, v.st, hostOverlayKernel.Addr(), 3, 2*time.Second)
			if err != nil || r.Received != r.Sent {
				t.Fatalf("stack pings kernel: %v, %v", r, err)
			}
			p.nsB.Run(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", hostOverlayUs.Addr().String())

			const size = 8 << 20
			dst := netip.AddrPortFrom(hostOverlayUs.Addr(), 5001)
			ln, err := v.st.ListenTCP(dst)
			if err != nil {
				t.Fatal(err)
			}
			res, err := e2e.Transfer(ctx, ln, func() (c net.Conn, err error) {
				err = p.nsB.Do(func() error {
					c, err = new(net.Dialer).DialContext(ctx, "tcp", dst.String())
					return err
				})
				return c, err
			}, size, nil)
			ln.Close()
			if err != nil {
				t.Fatalf("TCP kernel to stack: %v", err)
			}
			t.Logf("kernel to stack: %v", res)
			kdst := netip.AddrPortFrom(hostOverlayKernel.Addr(), 5002)
			var kln net.Listener
			if err := p.nsB.Do(func() (err error) { kln, err = net.Listen("tcp", kdst.String()); return err }); err != nil {
				t.Fatal(err)
			}
			res, err = e2e.Transfer(ctx, kln, func() (net.Conn, error) { return v.st.DialTCP(ctx, kdst) }, size, nil)
			kln.Close()
			if err != nil {
				t.Fatalf("TCP stack to kernel: %v", err)
			}
			t.Logf("stack to kernel: %v", res)

			fdb := p.nsB.Run(t, "bridge", "fdb", "show", "dev", "vx42")
			if !strings.Contains(fdb, v.dev.MAC().String()+" dst "+p.a.Addr().String()) {
				t.Errorf("the kernel did not learn our MAC %v at %v:\n%s", v.dev.MAC(), p.a.Addr(), fdb)
			}
			var learned bool
			for _, e := range v.dev.FDB().Entries() {
				learned = learned || e.MAC.String() == kernelMAC
			}
			if !learned {
				t.Errorf("we did not learn the kernel's MAC %s: %+v", kernelMAC, v.dev.FDB().Entries())
			}
			s := v.ep.Stats()
			t.Logf("endpoint: %v", s)
			if d := s.Dropped; d.Malformed+d.NoSocket+d.QueueFull+d.TooBig+d.SendError+d.Truncated+d.BadSource+d.InnerChecksum != 0 {
				t.Errorf("endpoint drops: %v", s)
			}
			// With the kernel's offloads, its inner checksums arrive
			// partial (and its TSO bursts whole): completed by the
			// endpoint (inner-offload path) or the device (plain path).
			if completed := s.RxChecksumCompleted + v.dev.Counters().Stats().Completed; tc.kernelOffloads && completed == 0 {
				t.Errorf("no partial inner checksum completed with the kernel's offloads on: %v; device %v", s, v.dev.Counters().Stats())
			}
			if ss := v.sock.Tunnel().Counters().Stats(); ss.TotalDrops() != 0 {
				t.Errorf("tunnel socket drops: %v", ss)
			}
			if n := v.st.GVisor().Stats().TCP.ChecksumErrors.Value(); n != 0 {
				t.Errorf("%d inner TCP checksum errors", n)
			}
		})
	}
}

// TestHostUDPPathMTU lowers the host's path MTU towards the kernel peer
// below our outer packets (`ip route ... mtu lock 1400` in namespace A):
// the host refuses them with EMSGSIZE, and the endpoint must turn that
// into an ICMP "fragmentation needed" ("packet too big") that reaches the
// tunnel socket, so that the device lowers its MTU, and a TCP transfer
// towards the kernel must still complete.
func TestHostUDPPathMTU(t *testing.T) {
	for _, ipv6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "ipv4", true: "ipv6"}[ipv6], func(t *testing.T) {
			if _, err := exec.LookPath("ethtool"); err != nil {
				t.Skip("needs ethtool (the kernel's vx42 must finish inner checksums)")
			}
			p := newVethPair(t, ipv6)
			addKernelVXLAN(t, p.nsB, "vB", p.b.Addr(), p.a.Addr(), hostOverlayKernel)
			const pathMTU = 1400
			p.nsA.Run(t, "ip", "route", "add", netip.PrefixFrom(p.b.Addr(), p.b.Addr().BitLen()).String(), "dev", "vA", "mtu", "lock", fmt.Sprint(pathMTU))
			v := newHostVTEPIn(t, p.nsA, p.a, p.b.Addr(), hostudp.Config{})
			before := v.dev.InnerMTU()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()

			kdst := netip.AddrPortFrom(hostOverlayKernel.Addr(), 5002)
			var kln net.Listener
			if err := p.nsB.Do(func() (err error) { kln, err = net.Listen("tcp", kdst.String()); return err }); err != nil {
				t.Fatal(err)
			}
			defer kln.Close()
			res, err := e2e.Transfer(ctx, kln, func() (net.Conn, error) { return v.st.DialTCP(ctx, kdst) }, 4<<20, nil)
			if err != nil {
				t.Fatalf("TCP stack to kernel: %v", err)
			}
			t.Logf("stack to kernel: %v", res)
			s := v.ep.Stats()
			t.Logf("endpoint: %v; socket ICMP errors %d; device MTU %d -> %d; socket path MTU %d",
				s, v.sock.Tunnel().ICMPErrors(), before, v.dev.InnerMTU(), v.sock.Tunnel().PathMTU(p.b.Addr()))
			if s.Dropped.TooBig == 0 || s.ICMPErrors == 0 {
				t.Errorf("no EMSGSIZE refusals or no synthesized ICMP: %v", s)
			}
			if v.sock.Tunnel().ICMPErrors() == 0 {
				t.Errorf("the tunnel socket received no ICMP error")
			}
			if got := v.sock.Tunnel().PathMTU(p.b.Addr()); got != pathMTU {
				t.Errorf("tunnel socket path MTU %d, want %d", got, pathMTU)
			}
			if after := v.dev.InnerMTU(); after >= before || after > pathMTU-50 {
				t.Errorf("device MTU %d -> %d, want at most %d", before, after, pathMTU-50)
			}
		})
	}
}

// TestHostUDPPathMTURouter puts a router namespace between us (A) and the
// kernel peer (B), with a 1400-byte link on B's side: our first large
// datagrams reach the router, whose ICMP "fragmentation needed" ("packet
// too big") lands in our host socket's error queue. The endpoint must
// inject it with the router as its source, the tunnel socket must learn
// the path MTU from it, and TCP towards the kernel must complete.
func TestHostUDPPathMTURouter(t *testing.T) {
	for _, ipv6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "ipv4", true: "ipv6"}[ipv6], func(t *testing.T) {
			if _, err := exec.LookPath("ethtool"); err != nil {
				t.Skip("needs ethtool (the kernel's vx42 must finish inner checksums)")
			}
			nsA, nsR, nsB := e2e.NewNetns(t, "ut-hua"), e2e.NewNetns(t, "ut-hur"), e2e.NewNetns(t, "ut-hub")
			a, ra := netip.MustParsePrefix("10.211.0.1/24"), netip.MustParsePrefix("10.211.0.254/24")
			b, rb := netip.MustParsePrefix("10.212.0.2/24"), netip.MustParsePrefix("10.212.0.254/24")
			fwd := "net.ipv4.ip_forward=1"
			if ipv6 {
				a, ra = netip.MustParsePrefix("fd00:211::1/64"), netip.MustParsePrefix("fd00:211::fe/64")
				b, rb = netip.MustParsePrefix("fd00:212::2/64"), netip.MustParsePrefix("fd00:212::fe/64")
				fwd = "net.ipv6.conf.all.forwarding=1"
			}
			const pathMTU = 1400
			nsA.Run(t, "ip", "link", "add", "vA", "type", "veth", "peer", "name", "rA", "netns", nsR.Name())
			nsB.Run(t, "ip", "link", "add", "vB", "mtu", fmt.Sprint(pathMTU), "type", "veth", "peer", "name", "rB", "mtu", fmt.Sprint(pathMTU), "netns", nsR.Name())
			nsR.Run(t, "sysctl", "-q", "-w", fwd)
			for _, s := range []struct {
				ns   *e2e.Netns
				dev  string
				addr netip.Prefix
			}{{nsA, "vA", a}, {nsR, "rA", ra}, {nsR, "rB", rb}, {nsB, "vB", b}} {
				add := []string{"ip", "addr", "add", s.addr.String(), "dev", s.dev}
				if ipv6 {
					add = append(add, "nodad")
				}
				s.ns.Run(t, add...)
				s.ns.Run(t, "ip", "link", "set", s.dev, "up")
			}
			nsA.Run(t, "ip", "route", "add", b.Masked().String(), "via", ra.Addr().String())
			nsB.Run(t, "ip", "route", "add", a.Masked().String(), "via", rb.Addr().String())
			// vx42 without "dev vB", so that its MTU is not derived from
			// vB's 1400 (nor its TCP MSS): as large as ours, so that our
			// outer packets meet the router's smaller link.
			innerMTU := 1450
			if ipv6 {
				innerMTU = 1430
			}
			nsB.Run(t, "ip", "link", "add", "vx42", "mtu", fmt.Sprint(innerMTU), "type", "vxlan", "id", "42", "dstport", "4789",
				"local", b.Addr().String(), "remote", a.Addr().String(), "udpcsum")
			nsB.Run(t, "ethtool", "-K", "vx42", "tx", "off")
			nsB.Run(t, "ip", "addr", "add", hostOverlayKernel.String(), "dev", "vx42")
			nsB.Run(t, "ip", "link", "set", "vx42", "up")
			// Our stack reaches B through its connected route: the
			// host does the routing.
			v := newHostVTEPIn(t, nsA, a, b.Addr(), hostudp.Config{})
			if err := v.st.AddRoute(b.Masked(), netip.Addr{}, 1); err != nil {
				t.Fatal(err)
			}
			before := v.dev.InnerMTU()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			kdst := netip.AddrPortFrom(hostOverlayKernel.Addr(), 5002)
			var kln net.Listener
			if err := nsB.Do(func() (err error) { kln, err = net.Listen("tcp", kdst.String()); return err }); err != nil {
				t.Fatal(err)
			}
			defer kln.Close()
			res, err := e2e.Transfer(ctx, kln, func() (net.Conn, error) { return v.st.DialTCP(ctx, kdst) }, 4<<20, nil)
			if err != nil {
				t.Fatalf("TCP stack to kernel: %v", err)
			}
			t.Logf("stack to kernel: %v", res)
			s := v.ep.Stats()
			t.Logf("endpoint: %v; socket ICMP errors %d; device MTU %d -> %d; socket path MTU %d",
				s, v.sock.Tunnel().ICMPErrors(), before, v.dev.InnerMTU(), v.sock.Tunnel().PathMTU(b.Addr()))
			icmpIn := v.st.GVisor().Stats().ICMP.V4.PacketsReceived.DstUnreachable.Value()
			if ipv6 {
				icmpIn = v.st.GVisor().Stats().ICMP.V6.PacketsReceived.PacketTooBig.Value()
			}
			if icmpIn == 0 {
				t.Errorf("the stack received no ICMP error from the router (error queue path)")
			}
			if got := v.sock.Tunnel().PathMTU(b.Addr()); got != pathMTU {
				t.Errorf("tunnel socket path MTU %d, want %d", got, pathMTU)
			}
			if after := v.dev.InnerMTU(); after > pathMTU-50 {
				t.Errorf("device MTU %d -> %d, want at most %d", before, after, pathMTU-50)
			}
		})
	}
}
