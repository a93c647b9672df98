//go:build linux

package e2e_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/endpoints/memlink"
)

// Topologies that mix in-process and kernel nodes. Each needs root and the
// ip command; Start skips the test, saying which is missing.

var (
	ktInnerA = mp("192.168.77.1/24")
	ktInnerK = mp("192.168.77.2/24")
)

// vxlanOptions is a VXLAN tunnel between outer addresses a and b with the
// inner addresses ktInnerA and ktInnerK.
func vxlanOptions(a, b netip.Addr) e2e.TunnelOptions {
	return e2e.TunnelOptions{OuterA: a, OuterB: b,
		InnerA: []netip.Prefix{ktInnerA}, InnerB: []netip.Prefix{ktInnerK}}
}

// checkStackKernel checks the overlay between in-process node a (inner
// address ktInnerA) and kernel node k (ktInnerK): ping both ways and a
// hashed TCP transfer both ways, the kernel's sockets opened in its
// namespace.
func checkStackKernel(t *testing.T, topo *e2e.Topology, a, k *e2e.Node) {
	t.Helper()
	defer func() {
		if t.Failed() {
			t.Log("counters:\n" + topo.Counters())
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := e2e.Ping(ctx, a.Stack, ktInnerK.Addr(), 3, 2*time.Second)
	if err != nil || r.Received != r.Sent {
		t.Fatalf("stack pings kernel %v: %v, %v", ktInnerK.Addr(), r, err)
	}
	if _, err := exec.LookPath("ping"); err == nil {
		k.Netns().Run(t, "ping", "-c", "2", "-i", "0.2", "-W", "2", ktInnerA.Addr().String())
	}
	const size = 2 << 20
	dst := netip.AddrPortFrom(ktInnerA.Addr(), 5001)
	ln, err := a.Stack.ListenTCP(dst)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e2e.Transfer(ctx, ln, func() (c net.Conn, err error) {
		err = k.Netns().Do(func() error {
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
	kdst := netip.AddrPortFrom(ktInnerK.Addr(), 5002)
	var kln net.Listener
	if err := k.Netns().Do(func() (err error) { kln, err = net.Listen("tcp", kdst.String()); return err }); err != nil {
		t.Fatal(err)
	}
	res, err = e2e.Transfer(ctx, kln, func() (net.Conn, error) { return a.Stack.DialTCP(ctx, kdst) }, size, nil)
	kln.Close()
	if err != nil {
		t.Fatalf("TCP stack to kernel: %v", err)
	}
	t.Logf("stack to kernel: %v", res)
	if n := a.Stack.GVisor().Stats().TCP.ChecksumErrors.Value(); n != 0 {
		t.Errorf("%d inner TCP segments with bad checksums", n)
	}
}

// TestKernelTopologyTUN: in-process host A joined to kernel host K by a
// TUN device in K's namespace, the kernel's VXLAN on K and ours on A, over
// an IPv4 and an IPv6 underlay.
//
//	A (stack) 10.71.0.1 ==TUN== 10.71.0.2 K (netns)   (fd00:71::1, fd00:71::2)
//	VXLAN 42: 192.168.77.1 (A) <-> 192.168.77.2 (K's vx42)
func TestKernelTopologyTUN(t *testing.T) {
	for _, tc := range []struct {
		name     string
		a, k     netip.Prefix
		innerMTU uint32
	}{
		{"ipv4-underlay", mp("10.71.0.1/24"), mp("10.71.0.2/24"), 1450},
		{"ipv6-underlay", mp("fd00:71::1/64"), mp("fd00:71::2/64"), 1430},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topo := e2e.NewTopologyT(t)
			a, k := topo.Host("a"), topo.KernelHost("k")
			w := topo.Wire(a, k, e2e.WireOptions{})
			topo.Address(a, w, tc.a)
			topo.Address(k, w, tc.k)
			tu := topo.Tunnel(a, k, e2e.VXLAN, vxlanOptions(tc.a.Addr(), tc.k.Addr()))
			if err := topo.Start(); err != nil {
				t.Fatal(err)
			}
			defer topo.Close()
			if got := tu.Interface(k); got != "vx42" {
				t.Errorf("kernel VXLAN device %q, want vx42", got)
			}
			// Both ends derive the overlay MTU from the 1500-byte underlay.
			out := strings.TrimSpace(k.Netns().Run(t, "cat", "/sys/class/net/vx42/mtu"))
			if out != fmt.Sprint(tc.innerMTU) || tu.A.Tunnel.InnerMTU() != tc.innerMTU {
				t.Errorf("overlay MTU: kernel %s, ours %d, want %d both", out, tu.A.Tunnel.InnerMTU(), tc.innerMTU)
			}
			checkStackKernel(t, topo, a, k)
		})
	}
}

// TestKernelTopologyRouted: two kernel hosts joined by a veth pair, an
// in-process host behind a TUN on K1 (a kernel router), and the kernel's
// VXLAN on K2 talking to the in-process host's across K1, by the routes on
// both sides.
//
//	U (stack) 10.72.1.1 ==TUN== 10.72.1.254 K1 10.72.2.254 ==veth== 10.72.2.2 K2
//	VXLAN 42: 192.168.77.1 (U) <-> 192.168.77.2 (K2's vx42)
func TestKernelTopologyRouted(t *testing.T) {
	topo := e2e.NewTopologyT(t)
	u, k1, k2 := topo.Host("u"), topo.KernelRouter("k1"), topo.KernelHost("k2")
	uk := topo.Wire(u, k1, e2e.WireOptions{})
	kk := topo.Wire(k1, k2, e2e.WireOptions{MTU: 1500})
	topo.Address(u, uk, mp("10.72.1.1/24"))
	topo.Address(k1, uk, mp("10.72.1.254/24"))
	topo.Address(k1, kk, mp("10.72.2.254/24"))
	topo.Address(k2, kk, mp("10.72.2.2/24"))
	topo.Route(u, mp("10.72.2.0/24"), ma("10.72.1.254"))
	topo.Route(k2, mp("10.72.1.0/24"), ma("10.72.2.254"))
	// A route on K2 whose gateway is across the tunnel: U's inner side
	// stands for 172.16.77.0/24.
	topo.Route(k2, mp("172.16.77.0/24"), ktInnerA.Addr())
	tu := topo.Tunnel(u, k2, e2e.VXLAN, vxlanOptions(ma("10.72.1.1"), ma("10.72.2.2")))
	// And a kernel-to-kernel VXLAN (VNI 43) across the veth.
	kt := topo.Tunnel(k1, k2, e2e.VXLAN, e2e.TunnelOptions{OuterA: ma("10.72.2.254"), OuterB: ma("10.72.2.2"),
		InnerA: []netip.Prefix{mp("192.168.78.1/24")}, InnerB: []netip.Prefix{mp("192.168.78.2/24")},
		Config: e2e.OverlayConfig{VNI: 43}})
	if err := topo.Start(); err != nil {
		t.Fatal(err)
	}
	defer topo.Close()
	if got := kk.Interface(k1); got != "k1-k2" || kk.Interface(k2) != "k1-k2" || uk.Interface(k1) != "u-k1" {
		t.Errorf("interfaces: veth %q/%q, TUN %q; want k1-k2 both, u-k1", got, kk.Interface(k2), uk.Interface(k1))
	}
	// The underlay is routed through K1.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e2e.Ping(ctx, u.Stack, ma("10.72.2.2"), 2, time.Second); err != nil {
		t.Fatalf("underlay ping through K1: %v", err)
	}
	checkStackKernel(t, topo, u, k2)
	// The route through the tunnel: K2 reaches U's extra address.
	if err := u.Stack.AddAddress(tu.A.Tunnel.NIC(), mp("172.16.77.1/32")); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("ping"); err == nil {
		k2.Netns().Run(t, "ping", "-c", "2", "-i", "0.2", "-W", "2", "172.16.77.1")
	}
	if !strings.Contains(k2.Netns().Run(t, "ip", "route", "show", "172.16.77.0/24"), "via "+ktInnerA.Addr().String()+" dev vx42") {
		t.Errorf("K2's route to 172.16.77.0/24 is not via the tunnel")
	}
	if kt.Interface(k1) != "vx43" || kt.Interface(k2) != "vx43" {
		t.Errorf("kernel-to-kernel VXLAN devices %q and %q, want vx43", kt.Interface(k1), kt.Interface(k2))
	}
	if _, err := exec.LookPath("ping"); err == nil {
		k1.Netns().Run(t, "ping", "-c", "2", "-i", "0.2", "-W", "2", "192.168.78.2")
	}
}

// TestKernelTopologyHostUDP: in-process host A whose underlay is a hostudp
// endpoint with its sockets in kernel host K's namespace (A's address is
// K's too, on its loopback), and the kernel's VXLAN on K2 behind K. The
// VXLAN cannot end on K itself (see e2e.WireHostUDP).
//
//	A (stack, sockets in K) 10.73.9.1 --hostudp-- K 10.73.0.1 ==veth== 10.73.0.2 K2
//	VXLAN 42: 192.168.77.1 (A) <-> 192.168.77.2 (K2's vx42)
func TestKernelTopologyHostUDP(t *testing.T) {
	topo := e2e.NewTopologyT(t)
	a, k, k2 := topo.Host("a"), topo.KernelHost("k"), topo.KernelHost("k2")
	ak := topo.Wire(a, k, e2e.WireOptions{Kind: e2e.WireHostUDP})
	kk := topo.Wire(k, k2, e2e.WireOptions{})
	topo.Address(a, ak, mp("10.73.9.1/24"))
	topo.Address(k, kk, mp("10.73.0.1/24"))
	topo.Address(k2, kk, mp("10.73.0.2/24"))
	topo.Route(a, mp("10.73.0.0/24"), ma("10.73.9.254")) // any gateway: the host routes
	topo.Route(k2, mp("10.73.9.1/32"), ma("10.73.0.1"))
	topo.Tunnel(a, k2, e2e.VXLAN, vxlanOptions(ma("10.73.9.1"), ma("10.73.0.2")))
	if err := topo.Start(); err != nil {
		t.Fatal(err)
	}
	defer topo.Close()
	if out := k.Netns().Run(t, "ip", "-br", "addr", "show", "dev", "lo"); !strings.Contains(out, "10.73.9.1/32") {
		t.Errorf("A's address is not on K's loopback: %s", out)
	}
	if out := k.Netns().Run(t, "ss", "-Hlun"); !strings.Contains(out, "10.73.9.1:4789") {
		t.Errorf("no hostudp socket on 10.73.9.1:4789 in K:\n%s", out)
	}
	checkStackKernel(t, topo, a, k2)
	if !strings.Contains(topo.Counters(), "wire a-k (hostudp)") {
		t.Errorf("Counters has no line for the hostudp wire:\n%s", topo.Counters())
	}
}

// TestKernelTopologyErrors: what a kernel node cannot do, Start refuses,
// naming it.
func TestKernelTopologyErrors(t *testing.T) {
	tests := []struct {
		name  string
		build func(*e2e.Topology)
		want  string
	}{
		{"geneve-on-kernel-end", func(topo *e2e.Topology) {
			a, k := topo.Host("a"), topo.KernelHost("k")
			w := topo.Wire(a, k, e2e.WireOptions{})
			topo.Address(a, w, mp("10.74.0.1/24"))
			topo.Address(k, w, mp("10.74.0.2/24"))
			geneve, err := e2e.Protocol("geneve")
			if err != nil {
				t.Fatal(err)
			}
			topo.Tunnel(a, k, geneve, vxlanOptions(ma("10.74.0.1"), ma("10.74.0.2")))
		}, "tunnel a-k (10.74.0.1-10.74.0.2): protocol geneve on a kernel node: only vxlan is supported"},
		{"vxlan-across-own-hostudp-wire", func(topo *e2e.Topology) {
			a, k := topo.Host("a"), topo.KernelHost("k")
			w := topo.Wire(a, k, e2e.WireOptions{Kind: e2e.WireHostUDP})
			topo.Address(a, w, mp("10.74.9.1/24"))
			kk := topo.Wire(k, topo.KernelHost("k2"), e2e.WireOptions{})
			topo.Address(k, kk, mp("10.74.0.1/24"))
			topo.Tunnel(a, k, e2e.VXLAN, vxlanOptions(ma("10.74.9.1"), ma("10.74.0.1")))
		}, "tunnel a-k (10.74.9.1-10.74.0.1): node k's VXLAN cannot reach node a over their hostudp wire"},
		{"kernel-address-on-hostudp-wire", func(topo *e2e.Topology) {
			a, k := topo.Host("a"), topo.KernelHost("k")
			w := topo.Wire(a, k, e2e.WireOptions{Kind: e2e.WireHostUDP})
			topo.Address(a, w, mp("10.74.9.1/24"))
			topo.Address(k, w, mp("10.74.9.2/24"))
		}, "node k: address 10.74.9.2/24: a hostudp wire has no interface on the kernel node"},
		{"hostudp-between-stacks", func(topo *e2e.Topology) {
			topo.Wire(topo.Host("a"), topo.Host("b"), e2e.WireOptions{Kind: e2e.WireHostUDP})
		}, "wire a-b: a hostudp wire joins an in-process node to a kernel node"},
		{"lan-with-kernel-node", func(topo *e2e.Topology) {
			topo.LAN(e2e.WireOptions{}, topo.Host("a"), topo.KernelHost("k"), topo.Host("b"))
		}, "wire a-k-b: a LAN joins in-process nodes only"},
		{"capture-on-kernel-end", func(topo *e2e.Topology) {
			a, k := topo.Host("a"), topo.KernelHost("k")
			topo.Capture(k, topo.Wire(a, k, e2e.WireOptions{}))
		}, "wire a-k: capture on kernel node k"},
		{"impaired-tun", func(topo *e2e.Topology) {
			topo.Wire(topo.Host("a"), topo.KernelHost("k"), e2e.WireOptions{Impairment: memlink.Impairment{Loss: 0.01}})
		}, "wire a-k: impairment on a TUN wire is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topo := e2e.NewTopologyT(t)
			tt.build(topo)
			err := topo.Start()
			if err == nil {
				t.Fatal("Start succeeded")
			}
			if got := err.Error(); !strings.HasPrefix(got, tt.want) {
				t.Errorf("Start error %q, want it to start with %q", got, tt.want)
			}
		})
	}
	t.Run("no-test", func(t *testing.T) {
		topo := e2e.NewTopology()
		topo.KernelHost("k")
		err := topo.Start()
		if want := "kernel nodes k: need a test to skip and to clean up after: make the topology with NewTopologyT"; err == nil || err.Error() != want {
			t.Errorf("Start error %v, want %q", err, want)
		}
	})
}

// TestKernelTopologyNetem: an impaired veth pair is a `tc qdisc netem` on
// both ends, or, on a kernel without sch_netem (as here), an error that
// says so.
func TestKernelTopologyNetem(t *testing.T) {
	topo := e2e.NewTopologyT(t)
	k1, k2 := topo.KernelHost("k1"), topo.KernelHost("k2")
	w := topo.Wire(k1, k2, e2e.WireOptions{Impairment: memlink.Impairment{Loss: 0.02, Delay: time.Millisecond}})
	err := topo.Start()
	if err != nil {
		if strings.Contains(err.Error(), "sch_netem") || strings.Contains(err.Error(), "needs the tc command") {
			t.Skipf("no netem here: %v", err)
		}
		t.Fatal(err)
	}
	defer topo.Close()
	for _, n := range []*e2e.Node{k1, k2} {
		if out := n.Netns().Run(t, "tc", "qdisc", "show", "dev", w.Interface(n)); !strings.Contains(out, "netem") || !strings.Contains(out, "loss 2%") {
			t.Errorf("qdisc on %s's %s: %s", n.Name, w.Interface(n), out)
		}
	}
}

// TestKernelTopologyCleanup: a topology's namespaces are gone after Close,
// and after a test that failed without closing it (the subtest of
// TestKernelTopologyCleanupChild, run in a child process so that its
// failure is its own).
func TestKernelTopologyCleanup(t *testing.T) {
	if os.Getenv("E2E_KTOPO_CHILD") != "" {
		t.Skip("the child's run")
	}
	gone := func(t *testing.T, names []string) {
		t.Helper()
		for _, name := range names {
			if _, err := os.Stat("/var/run/netns/" + name); !os.IsNotExist(err) {
				t.Errorf("namespace %s still exists (stat: %v)", name, err)
			}
		}
	}
	t.Run("close", func(t *testing.T) {
		topo := e2e.NewTopologyT(t)
		k1, k2 := topo.KernelHost("k1"), topo.KernelHost("k2")
		topo.Wire(k1, k2, e2e.WireOptions{})
		if err := topo.Start(); err != nil {
			t.Fatal(err)
		}
		names := []string{k1.Netns().Name(), k2.Netns().Name()}
		for _, name := range names {
			if _, err := os.Stat("/var/run/netns/" + name); err != nil {
				t.Fatalf("namespace %s missing after Start: %v", name, err)
			}
		}
		if err := topo.Close(); err != nil {
			t.Fatal(err)
		}
		gone(t, names)
		if err := topo.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
	t.Run("failed-subtest", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root (kernel nodes)")
		}
		if _, err := exec.LookPath("ip"); err != nil {
			t.Skip("needs the ip command (iproute2), not found in PATH")
		}
		namesFile := t.TempDir() + "/names"
		cmd := exec.Command(os.Args[0], "-test.run", "^TestKernelTopologyCleanupChild$/^fails$", "-test.v")
		cmd.Env = append(os.Environ(), "E2E_KTOPO_CHILD="+namesFile)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "--- FAIL: TestKernelTopologyCleanupChild/fails") {
			t.Fatalf("the child's subtest did not fail (%v):\n%s", err, out)
		}
		b, err := os.ReadFile(namesFile)
		if err != nil {
			t.Fatalf("the child recorded no namespaces: %v\n%s", err, out)
		}
		names := strings.Fields(string(b))
		if len(names) != 2 {
			t.Fatalf("the child recorded %q, want 2 namespaces\n%s", names, out)
		}
		gone(t, names)
	})
}

// TestKernelTopologyCleanupChild is TestKernelTopologyCleanup's child: its
// subtest starts a topology of a TUN-joined and a veth-joined kernel host,
// records their namespaces and fails without closing it.
func TestKernelTopologyCleanupChild(t *testing.T) {
	namesFile := os.Getenv("E2E_KTOPO_CHILD")
	if namesFile == "" {
		t.Skip("run by TestKernelTopologyCleanup")
	}
	t.Run("fails", func(t *testing.T) {
		topo := e2e.NewTopologyT(t)
		a, k1, k2 := topo.Host("a"), topo.KernelHost("k1"), topo.KernelHost("k2")
		topo.Wire(a, k1, e2e.WireOptions{})
		topo.Wire(k1, k2, e2e.WireOptions{})
		if err := topo.Start(); err != nil {
			t.Fatal(err)
		}
		names := k1.Netns().Name() + " " + k2.Netns().Name()
		if err := os.WriteFile(namesFile, []byte(names), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Fatal("failing on purpose, with the topology open")
	})
}
