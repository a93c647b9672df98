//go:build linux

package e2e_test

import (
	"context"
	"crypto/sha256"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/endpoints/hostudp"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
	"github.com/udptunnel/udptunnel/tunnels/vxlan/evpn"
)

// The EVPN interop tests: our userspace VTEPs (GoBGP in-process, hostudp
// underlay, as the rootless client runs) against FRR 8.4 with
// advertise-all-vni over a kernel VXLAN device in a bridge, learning off
// on every side. The test body runs in a namespace of its own (InNetns),
// so that GoBGP's and hostudp's sockets are the test's:
//
//	host 10.100.0.1 -- br100/vxlan100 [FRR 10.250.0.2] ==veth== [us 10.250.0.1, 10.250.0.3]

const evpnVNI = 100

var (
	evpnFRR      = netip.MustParsePrefix("10.250.0.2/24")
	evpnUs       = netip.MustParsePrefix("10.250.0.1/24")
	evpnUs2      = netip.MustParsePrefix("10.250.0.3/24")
	evpnHost     = netip.MustParsePrefix("10.100.0.1/24")
	evpnBridge   = netip.MustParsePrefix("10.100.0.254/24")
	evpnInnerUs  = netip.MustParsePrefix("10.100.0.10/24")
	evpnInnerUs2 = netip.MustParsePrefix("10.100.0.20/24")
)

// evpnVTEP is one userspace VTEP: a stack on a hostudp underlay, a VXLAN
// device for VNI 100 and a speaker bound to it.
type evpnVTEP struct {
	st    *stack.Stack
	sock  *vxlan.Socket
	dev   *vxlan.Device
	sp    *evpn.Speaker
	b     *evpn.Binding
	vtep  netip.Addr
	inner netip.Prefix
	mac   vxlan.MAC
}

// newEVPNVTEP builds a VTEP at under (an address of this namespace) with
// inner address inner, the device's MAC mac (zero: random), peering with
// FRR at evpnFRR by connecting out (no listener: the rootless way).
func newEVPNVTEP(t *testing.T, under, inner netip.Prefix, mac vxlan.MAC) *evpnVTEP {
	t.Helper()
	v := &evpnVTEP{vtep: under.Addr(), inner: inner, st: stack.New(stack.Options{})}
	ep, err := hostudp.New(hostudp.Config{Addrs: []netip.Addr{v.vtep}, Ports: []uint16{vxlan.DefaultPort}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ep.Close(); v.st.Close() })
	nic, err := v.st.AddNIC(ep, stack.NICOptions{Name: "underlay"})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.st.AddAddress(nic, under); err != nil {
		t.Fatal(err)
	}
	if v.sock, err = vxlan.OpenSocket(v.st, vxlan.SocketConfig{}); err != nil {
		t.Fatal(err)
	}
	cfg := vxlan.Config{VNI: evpnVNI, Local: v.vtep, Proxy: true}
	if mac != (vxlan.MAC{}) {
		cfg.MAC = mac[:]
	}
	v.attach(t, cfg)
	if v.sp, err = evpn.Start(evpn.Config{
		ASN: 65000, VTEP: v.vtep, ConnectRetry: time.Second, HoldTime: 9 * time.Second,
		Neighbors: []evpn.Neighbor{{Address: evpnFRR.Addr(), ASN: 65000, LocalAddress: v.vtep}},
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.sp.Close() })
	v.bind(t)
	return v
}

// attach opens the VNI's device with cfg and gives it the inner address.
func (v *evpnVTEP) attach(t *testing.T, cfg vxlan.Config) {
	t.Helper()
	var err error
	if v.dev, err = v.sock.AddDevice(nil, cfg); err != nil {
		t.Fatal(err)
	}
	if err := v.st.AddAddress(v.dev.NIC(), v.inner); err != nil {
		t.Fatal(err)
	}
	copy(v.mac[:], v.dev.MAC())
}

func (v *evpnVTEP) bind(t *testing.T) {
	t.Helper()
	var err error
	if v.b, err = v.sp.Bind(v.dev, evpn.BindConfig{}); err != nil {
		t.Fatal(err)
	}
}

// established returns when our session came up, once it has.
func (v *evpnVTEP) established(t *testing.T) time.Time {
	t.Helper()
	var at time.Time
	waitUntil(t, "our BGP session Established", func() bool {
		p := v.sp.Status().Peers
		if len(p) == 1 && p[0].State == "established" {
			at = p[0].Since
			return true
		}
		return false
	})
	return at
}

func (v *evpnVTEP) fdb(mac string) (netip.Addr, bool) {
	for _, e := range v.dev.FDB().Entries() {
		if e.MAC.String() == mac && len(e.Remotes) > 0 {
			return e.Remotes[0].Addr, true
		}
	}
	return netip.Addr{}, false
}

func (v *evpnVTEP) floods() []netip.Addr {
	rs, _ := v.dev.FDB().Lookup(vxlan.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	var out []netip.Addr
	for _, r := range rs {
		out = append(out, r.Addr)
	}
	return out
}

// waitUntil polls cond for up to 30 s: FRR and zebra take seconds under
// load.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// evpnSite is FRR's side: its namespace, kernel VTEP, host and daemons.
type evpnSite struct {
	self, ns, host *e2e.Netns
	vtep           *e2e.KernelVTEP
	frr            *e2e.FRR
	hostMAC        string
}

func newEVPNSite(t *testing.T, ours ...netip.Prefix) *evpnSite {
	t.Helper()
	s := &evpnSite{self: e2e.CurrentNetns(), ns: e2e.NewNetns(t, "ut-evfrr")}
	s.ns.Run(t, "ip", "link", "set", "lo", "up")
	aIf, _ := e2e.Veth(t, s.self, ours[0], s.ns, evpnFRR)
	for _, p := range ours[1:] {
		s.self.Run(t, "ip", "addr", "add", p.String(), "dev", aIf)
	}
	s.vtep = e2e.NewKernelVTEP(t, s.ns, e2e.KernelVTEPConfig{VNI: evpnVNI, Local: evpnFRR.Addr(), BridgeAddr: evpnBridge, NeighSuppress: true})
	s.host = s.vtep.AddHost(t, "ut-evh", evpnHost)
	var nbrs []e2e.FRRNeighbor
	for _, p := range ours {
		// FRR reflects routes between our VTEPs, as a spine would.
		nbrs = append(nbrs, e2e.FRRNeighbor{Addr: p.Addr(), ASN: 65000, Passive: true, RRClient: len(ours) > 1})
	}
	s.frr = e2e.StartFRR(t, s.ns, e2e.FRRConfig{ASN: 65000, RouterID: evpnFRR.Addr(), Neighbors: nbrs})
	s.hostMAC = strings.ToLower(strings.TrimSpace(s.host.Run(t, "cat", "/sys/class/net/eth0/address")))
	return s
}

// kernelFDB returns the remote VTEPs the kernel VXLAN device's FDB has for
// mac, sorted (none: empty).
func (s *evpnSite) kernelFDB(t *testing.T, mac string) []netip.Addr {
	var dsts []netip.Addr
	for _, e := range s.vtep.FDB(t) {
		if e.MAC == mac && e.Dst.IsValid() {
			dsts = append(dsts, e.Dst)
		}
	}
	slices.SortFunc(dsts, netip.Addr.Compare)
	return dsts
}

// TestEVPNFRR: one userspace VTEP and FRR. After the session comes up the
// tables on both sides come from BGP only: the kernel FDB holds our MAC
// and our flood entry, ours the host's MAC and FRR's VTEP; ping and a
// hashed TCP transfer work both ways; FRR's table holds our routes as
// FRR expects them; stopping our speaker removes our entries from the
// kernel.
func TestEVPNFRR(t *testing.T) {
	if e2e.InNetns(t, "ut-evpn") {
		return
	}
	site := newEVPNSite(t, evpnUs)
	us := newEVPNVTEP(t, evpnUs, evpnInnerUs, vxlan.MAC{})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := site.frr.WaitEstablished(ctx, evpnUs.Addr()); err != nil {
		t.Fatal(err)
	}
	up := us.established(t)

	// The first packet through: our pings to the host, from Established.
	var first time.Time
	waitUntil(t, "a ping through the overlay", func() bool {
		r, _ := e2e.Ping(ctx, us.st, evpnHost.Addr(), 1, 200*time.Millisecond)
		if r.Received == 1 {
			first = time.Now()
			return true
		}
		return false
	})
	t.Logf("FIGURE session Established -> first packet through: %v (convergence, Established -> first route installed: %v)",
		first.Sub(up).Round(time.Millisecond), us.sp.Stats().LastConvergence.Round(time.Millisecond))

	// The kernel's table, written by zebra from our routes.
	waitUntil(t, "the kernel FDB has our MAC at our VTEP", func() bool {
		return slices.Equal(site.kernelFDB(t, us.mac.String()), []netip.Addr{us.vtep})
	})
	waitUntil(t, "the kernel floods to us", func() bool {
		return slices.Contains(site.kernelFDB(t, "00:00:00:00:00:00"), us.vtep)
	})
	// Ours, written from FRR's routes.
	if r, ok := us.fdb(site.hostMAC); !ok || r != evpnFRR.Addr() {
		t.Errorf("our FDB for the host's MAC %s: %v %v, want FRR's VTEP %v", site.hostMAC, r, ok, evpnFRR.Addr())
	}
	if f := us.floods(); !slices.Equal(f, []netip.Addr{evpnFRR.Addr()}) {
		t.Errorf("our flood list %v, want [%v]", f, evpnFRR.Addr())
	}

	// FRR's view of our routes: type 3 with PMSI, type 2 MAC and MAC+IP.
	var t2mac, t2ip, t3 bool
	for _, r := range site.frr.EVPNRoutes(t) {
		if r.Local || r.Peer != us.vtep {
			continue
		}
		if !slices.Contains(r.RouteTargets, "65000:100") || !strings.Contains(r.Communities, "ET:8") {
			t.Errorf("our route in FRR lacks RT 65000:100 or the VXLAN encapsulation: %+v", r)
		}
		switch {
		case r.Type == 3 && r.Originator == us.vtep && r.VNI == evpnVNI:
			t3 = true
		case r.Type == 2 && r.MAC == us.mac.String() && r.NextHop == us.vtep && r.VNI == evpnVNI && !r.IP.IsValid():
			t2mac = true
		case r.Type == 2 && r.MAC == us.mac.String() && r.IP == evpnInnerUs.Addr():
			t2ip = true
		}
	}
	if !t2mac || !t2ip || !t3 {
		t.Errorf("FRR holds our type-2 MAC %v, type-2 MAC+IP %v, type-3 %v; want all", t2mac, t2ip, t3)
	}

	// Both ways, learning off on both sides.
	site.host.Run(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", evpnInnerUs.Addr().String())
	const size = 4 << 20
	dst := netip.AddrPortFrom(evpnInnerUs.Addr(), 5001)
	ln, err := us.st.ListenTCP(dst)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e2e.Transfer(ctx, ln, func() (c net.Conn, err error) {
		err = site.host.Do(func() error {
			c, err = new(net.Dialer).DialContext(ctx, "tcp", dst.String())
			return err
		})
		return c, err
	}, size, sha256.New)
	if err != nil || res.Bytes != size {
		t.Fatalf("TCP host -> us: %v %v", res, err)
	}
	kdst := netip.AddrPortFrom(evpnHost.Addr(), 5002)
	var kln net.Listener
	if err := site.host.Do(func() (err error) { kln, err = net.Listen("tcp", kdst.String()); return err }); err != nil {
		t.Fatal(err)
	}
	res, err = e2e.Transfer(ctx, kln, func() (net.Conn, error) { return us.st.DialTCP(ctx, kdst) }, size, sha256.New)
	if err != nil || res.Bytes != size {
		t.Fatalf("TCP us -> host: %v %v", res, err)
	}
	if us.dev.Config().Learning {
		t.Error("our device learns")
	}

	// The host talks to the bridge's address: zebra sees its ARP entry
	// and FRR advertises MAC+IP, which lands in our proxy table.
	site.host.Run(t, "ping", "-c", "1", "-W", "2", evpnBridge.Addr().String())
	waitUntil(t, "our proxy table has the host's IP", func() bool {
		for _, n := range us.dev.Neighbors() {
			if n.IP == evpnHost.Addr() && n.MAC.String() == site.hostMAC {
				return true
			}
		}
		return false
	})

	// We stop: our entries leave the kernel.
	if err := us.sp.Close(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the kernel forgets our MAC and flood entry", func() bool {
		return len(site.kernelFDB(t, us.mac.String())) == 0 && !slices.Contains(site.kernelFDB(t, "00:00:00:00:00:00"), us.vtep)
	})
	if n := us.dev.FDB().Len(); n != 0 {
		t.Errorf("our FDB keeps %d entries after Close: %v", n, us.dev.FDB().Entries())
	}
}

// TestEVPNThreeVTEPs: two userspace VTEPs and FRR's. A broadcast from the
// kernel's host reaches both userspace VTEPs by ingress replication, and
// a MAC (with its IP) that moves from one userspace VTEP to the other is
// followed by the kernel, FRR and the first VTEP (MAC mobility).
func TestEVPNThreeVTEPs(t *testing.T) {
	if e2e.InNetns(t, "ut-evpn3") {
		return
	}
	site := newEVPNSite(t, evpnUs, evpnUs2)
	u1 := newEVPNVTEP(t, evpnUs, evpnInnerUs, vxlan.MAC{})
	u2 := newEVPNVTEP(t, evpnUs2, evpnInnerUs2, vxlan.MAC{})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	u1.established(t)
	u2.established(t)
	for _, u := range []*evpnVTEP{u1, u2} {
		other := u1
		if u == u1 {
			other = u2
		}
		want := []netip.Addr{evpnFRR.Addr(), other.vtep}
		slices.SortFunc(want, netip.Addr.Compare)
		waitUntil(t, "ingress replication list of "+u.vtep.String(), func() bool {
			got := u.floods()
			slices.SortFunc(got, netip.Addr.Compare)
			return slices.Equal(got, want)
		})
		waitUntil(t, "the other VTEP's MAC", func() bool { r, ok := u.fdb(other.mac.String()); return ok && r == other.vtep })
	}
	waitUntil(t, "the kernel floods to both", func() bool {
		return slices.Equal(site.kernelFDB(t, "00:00:00:00:00:00"), []netip.Addr{u1.vtep, u2.vtep})
	})

	// A broadcast from the host reaches both userspace stacks.
	var conns []net.PacketConn
	for _, u := range []*evpnVTEP{u1, u2} {
		c, err := u.st.ListenUDP(netip.AddrPortFrom(netip.Addr{}, 9999))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	bcast := netip.AddrPortFrom(netip.MustParseAddr("10.100.0.255"), 9999)
	if err := site.host.Do(func() error {
		c, err := (&net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1) })
			return serr
		}}).ListenPacket(ctx, "udp4", evpnHost.Addr().String()+":0")
		if err != nil {
			return err
		}
		defer c.Close()
		for range 3 {
			if _, err := c.WriteTo([]byte("to every VTEP"), net.UDPAddrFromAddrPort(bcast)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, from, err := c.ReadFrom(buf)
		if err != nil || string(buf[:n]) != "to every VTEP" {
			t.Errorf("userspace VTEP %d: broadcast not received: %q from %v, %v", i+1, buf[:n], from, err)
		}
	}

	// The move: u1's workload (MAC and IP) comes up on u2 while u1 still
	// advertises it. u2 replaces its device by one with u1's MAC and
	// address, bound again: it advertises with a higher MAC mobility
	// sequence number, and everyone follows.
	site.host.Run(t, "ping", "-c", "2", "-i", "0.2", "-W", "2", u1.inner.Addr().String())
	moved := u1.mac
	if err := u2.b.Close(); err != nil {
		t.Fatal(err)
	}
	u2.dev.Close()
	u2.inner = u1.inner
	u2.attach(t, vxlan.Config{VNI: evpnVNI, Local: u2.vtep, Proxy: true, MAC: moved[:]})
	u2.bind(t)
	waitUntil(t, "the kernel FDB follows the MAC to u2", func() bool {
		return slices.Equal(site.kernelFDB(t, moved.String()), []netip.Addr{u2.vtep})
	})
	waitUntil(t, "u1 yields the MAC", func() bool {
		for _, l := range u1.sp.Status().VNIs[0].Local {
			if l.MAC == moved.String() {
				return l.MovedAway
			}
		}
		return false
	})
	if st := u1.sp.Stats(); st.MACsMovedAway != 1 {
		t.Errorf("u1 moved-away count %d, want 1", st.MACsMovedAway)
	}
	// FRR keeps only u2's routes for the MAC once u1's withdrawal
	// arrived.
	waitUntil(t, "FRR's routes for the moved MAC all lead to u2", func() bool {
		n := 0
		for _, r := range site.frr.EVPNRoutes(t) {
			if r.Type == 2 && r.MAC == moved.String() {
				if r.NextHop != u2.vtep {
					return false
				}
				n++
			}
		}
		return n > 0
	})
	var seq uint32
	for _, l := range u2.sp.Status().VNIs[0].Local {
		if l.MAC == moved.String() {
			seq = l.Seq
		}
	}
	if seq != 1 {
		t.Errorf("u2 advertises %s with MAC mobility sequence %d, want 1", moved, seq)
	}
	// Pings for the moved workload reach u2 now, not u1.
	echoes := func(u *evpnVTEP) uint64 { return u.st.GVisor().Stats().ICMP.V4.PacketsReceived.EchoRequest.Value() }
	e1, e2 := echoes(u1), echoes(u2)
	site.host.Run(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", u1.inner.Addr().String())
	if d1, d2 := echoes(u1)-e1, echoes(u2)-e2; d2 < 3 || d1 != 0 {
		t.Errorf("pings to the moved workload: u1 answered %d, u2 %d; want 0 and >= 3", d1, d2)
	}
}
