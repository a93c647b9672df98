package evpn_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
	"github.com/udptunnel/udptunnel/tunnels/vxlan/evpn"
)

// TestMain checks that the speakers, stacks and devices of every test
// leave no goroutine behind once the tests' cleanups ran, but one known
// to GoBGP v4.8.0 itself: its cleanInfiniteChannel closes a peer's
// outgoing queue and drains it without blocking (select with default), so
// a message still queued when a session stops leaves the queue's buffer
// goroutine parked forever on its output. It holds no socket and no
// timer; nothing of this package's is leaked.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/eapache/channels.(*InfiniteChannel).infiniteBuffer"))
}

// vtep is one userspace VTEP of a test: a stack on a memlink underlay, a
// VXLAN device with learning off and ARP/ND proxy on, and a speaker whose
// BGP session runs over the host's loopback.
type vtep struct {
	st    *stack.Stack
	sock  *vxlan.Socket
	dev   *vxlan.Device
	sp    *evpn.Speaker
	b     *evpn.Binding
	inner netip.Addr
	mac   vxlan.MAC
}

const asn = 65000

var (
	innerA = netip.MustParsePrefix("192.168.100.1/24")
	innerB = netip.MustParsePrefix("192.168.100.2/24")
)

// freePort returns a TCP port free on loopback now.
func freePort(t testing.TB) uint16 {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// newDevice opens the VXLAN socket and device of one host.
func newDevice(t testing.TB, u tunneltest.Underlay, inner netip.Prefix) *vtep {
	t.Helper()
	v := &vtep{st: u.St, inner: inner.Addr()}
	var err error
	if v.sock, err = vxlan.OpenSocket(u.St, vxlan.SocketConfig{}); err != nil {
		t.Fatal(err)
	}
	if v.dev, err = v.sock.AddDevice(nil, vxlan.Config{VNI: 100, Local: u.Outer, Proxy: true}); err != nil {
		t.Fatal(err)
	}
	if err := u.St.AddAddress(v.dev.NIC(), inner); err != nil {
		t.Fatal(err)
	}
	copy(v.mac[:], v.dev.MAC())
	return v
}

// newPair builds two VTEPs whose speakers peer over loopback: A listens on
// 127.0.0.1, B connects from 127.0.0.2 (iBGP, AS 65000).
func newPair(t *testing.T) (a, b *vtep) {
	t.Helper()
	hosts := tunneltest.Pair(t, memlink.Options{}, tunneltest.Outer4)
	a, b = newDevice(t, hosts[0], innerA), newDevice(t, hosts[1], innerB)
	port := freePort(t)
	lo1, lo2 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	a.sp = startSpeaker(t, evpn.Config{
		ASN: asn, VTEP: hosts[0].Outer, ListenPort: port, ListenAddresses: []netip.Addr{lo1},
		Neighbors: []evpn.Neighbor{{Address: lo2, ASN: asn, Passive: true}},
	})
	b.sp = startSpeaker(t, evpn.Config{
		ASN: asn, VTEP: hosts[1].Outer,
		Neighbors: []evpn.Neighbor{{Address: lo1, ASN: asn, Port: port, LocalAddress: lo2}},
	})
	a.b, b.b = bind(t, a), bind(t, b)
	return a, b
}

func startSpeaker(t testing.TB, cfg evpn.Config) *evpn.Speaker {
	t.Helper()
	cfg.ConnectRetry = time.Second
	sp, err := evpn.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

func bind(t testing.TB, v *vtep) *evpn.Binding {
	t.Helper()
	b, err := v.sp.Bind(v.dev, evpn.BindConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fdbRemote returns the remote of mac in v's FDB, if any.
func (v *vtep) fdbRemote(mac vxlan.MAC) (netip.Addr, bool) {
	for _, e := range v.dev.FDB().Entries() {
		if e.MAC == mac && len(e.Remotes) > 0 {
			return e.Remotes[0].Addr, true
		}
	}
	return netip.Addr{}, false
}

func (v *vtep) floods(addr netip.Addr) bool {
	rs, _ := v.dev.FDB().Lookup(vxlan.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	for _, r := range rs {
		if r.Addr == addr {
			return true
		}
	}
	return false
}

func (v *vtep) neighbor(ip netip.Addr) (vxlan.MAC, bool) {
	for _, n := range v.dev.Neighbors() {
		if n.IP == ip {
			return n.MAC, true
		}
	}
	return vxlan.MAC{}, false
}

// waitFor polls cond for up to 20 s (a BGP session takes a few seconds to
// come up: GoBGP's first connect waits up to ConnectRetry).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTwoVTEPs: two userspace VTEPs learn each other from BGP only (no
// data-plane learning, no configured remotes): flood lists, MAC entries
// and proxy neighbours are installed, ARP is answered locally, traffic
// flows, and a closed speaker's entries disappear from its peer.
func TestTwoVTEPs(t *testing.T) {
	a, b := newPair(t)
	outA, outB := tunneltest.Outer4[0].Addr(), tunneltest.Outer4[1].Addr()

	waitFor(t, "A floods to B", func() bool { return a.floods(outB) })
	waitFor(t, "B floods to A", func() bool { return b.floods(outA) })
	waitFor(t, "A's FDB has B's MAC", func() bool { r, ok := a.fdbRemote(b.mac); return ok && r == outB })
	waitFor(t, "B's FDB has A's MAC", func() bool { r, ok := b.fdbRemote(a.mac); return ok && r == outA })
	// The devices' own addresses go out as MAC/IP routes: the proxy
	// tables hold them before any ARP was sent.
	waitFor(t, "A's proxy has B's IP", func() bool { m, ok := a.neighbor(b.inner); return ok && m == b.mac })
	waitFor(t, "B's proxy has A's IP", func() bool { m, ok := b.neighbor(a.inner); return ok && m == a.mac })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := e2e.Ping(ctx, a.st, b.inner, 3, 2*time.Second)
	if err != nil || res.Received != 3 {
		t.Fatalf("ping A->B over EVPN-built tables: %+v, %v", res, err)
	}
	if got := a.dev.ProxyStats().Replies; got == 0 {
		t.Errorf("A's ARP for %v was not answered by the proxy (ARP suppression): replies %d", b.inner, got)
	}
	tr, err := e2e.TransferTCP(ctx, a.st, b.st, netip.AddrPortFrom(b.inner, 5001), 1<<20, sha256.New)
	if err != nil {
		t.Fatalf("TCP A->B: %v", err)
	}
	if tr.Bytes != 1<<20 || len(tr.Sum) == 0 {
		t.Fatalf("TCP A->B: %+v", tr)
	}

	st := a.sp.Stats()
	if st.SessionsUp != 1 || st.RoutesReceived < 3 || st.RoutesInstalled < 3 || st.RoutesAdvertised != 3 || st.LastConvergence <= 0 {
		t.Errorf("A's stats: %+v; want 1 session, >=3 routes received and installed, 3 advertised (IMET, MAC, MAC+IP), a convergence time", st)
	}
	status := a.sp.Status()
	if len(status.Peers) != 1 || status.Peers[0].State != "established" || len(status.VNIs) != 1 ||
		len(status.VNIs[0].FloodList) != 1 || len(status.VNIs[0].Remote) < 3 {
		t.Errorf("A's status: %+v", status)
	}
	for _, r := range status.VNIs[0].Remote {
		if !r.Installed {
			t.Errorf("A's status shows B's route not in effect: %+v", r)
		}
	}

	// B goes away: its session closes and A removes what B's routes put in.
	if err := b.sp.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A's flood entry for B removed", func() bool { return !a.floods(outB) })
	waitFor(t, "A's FDB entry for B's MAC removed", func() bool { _, ok := a.fdbRemote(b.mac); return !ok })
	waitFor(t, "A's proxy entry for B's IP removed", func() bool { _, ok := a.neighbor(b.inner); return !ok })
	if n := a.dev.FDB().Len(); n != 0 {
		t.Errorf("A's FDB keeps %d entries after B left: %v", n, a.dev.FDB().Entries())
	}
	if st := a.sp.Stats(); st.RoutesWithdrawn < 3 || st.RoutesRemoved < 3 {
		t.Errorf("A's stats after B left: %+v", st)
	}
	// B's own tables are empty once it closed.
	if n := b.dev.FDB().Len(); n != 0 || len(b.dev.Neighbors()) != 0 {
		t.Errorf("B's tables after Close: FDB %v, neighbours %v", b.dev.FDB().Entries(), b.dev.Neighbors())
	}
	a.sp.Close()
	a.sock.Close()
	b.sock.Close()
}

// TestMACMove: a MAC that B declares local while A still advertises it
// goes out from B with a higher MAC mobility sequence number; A withdraws
// its own route and installs B's.
func TestMACMove(t *testing.T) {
	a, b := newPair(t)
	outA, outB := tunneltest.Outer4[0].Addr(), tunneltest.Outer4[1].Addr()
	m := vxlan.MAC{0x02, 0, 0, 0, 0, 0x42}
	ip := netip.MustParseAddr("192.168.100.42")
	if err := a.b.AddLocalMAC(m, ip); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "B's FDB has M at A", func() bool { r, ok := b.fdbRemote(m); return ok && r == outA })
	waitFor(t, "B's proxy has M's IP", func() bool { mm, ok := b.neighbor(ip); return ok && mm == m })

	if err := b.b.AddLocalMAC(m, ip); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A's FDB has M at B", func() bool { r, ok := a.fdbRemote(m); return ok && r == outB })
	if _, ok := b.fdbRemote(m); ok {
		t.Errorf("B keeps an FDB entry for its own local MAC %v", m)
	}
	local := func(v *vtep) evpn.LocalRoute {
		for _, l := range v.sp.Status().VNIs[0].Local {
			if l.MAC == m.String() {
				return l
			}
		}
		t.Fatalf("no local route for %v", m)
		return evpn.LocalRoute{}
	}
	if l := local(b); l.Seq != 1 || l.MovedAway {
		t.Errorf("B's route for M: %+v, want seq 1 advertised", l)
	}
	waitFor(t, "A sees M moved away", func() bool { return local(a).MovedAway })
	if st := a.sp.Stats(); st.MACsMovedAway != 1 || st.RoutesAdvertised != 3 {
		t.Errorf("A's stats after M moved away: %+v, want 1 moved away and 3 routes out (IMET, its own MAC, MAC+IP)", st)
	}
	waitFor(t, "B drops A's withdrawn routes for M", func() bool {
		for _, r := range b.sp.Status().VNIs[0].Remote {
			if r.MAC == m.String() {
				return false
			}
		}
		return true
	})
	// B lets M go: A does not take it back by itself (a remote route
	// going away, as when a session drops, says nothing about where the
	// MAC is), and B forgets it.
	if err := b.b.RemoveLocalMAC(m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A forgets B's route for M", func() bool { _, ok := a.fdbRemote(m); return !ok })
	if l := local(a); !l.MovedAway {
		t.Errorf("A took M back by itself: %+v", l)
	}
	// M moves back to A: advertised with a number above B's.
	if err := a.b.AddLocalMAC(m, ip); err != nil {
		t.Fatal(err)
	}
	if l := local(a); l.MovedAway || l.Seq != 2 {
		t.Errorf("A's route for M after it came back: %+v, want seq 2", l)
	}
	waitFor(t, "B's FDB has M at A again", func() bool { r, ok := b.fdbRemote(m); return ok && r == outA })
	// And a second move to B, with a number above A's: GoBGP checks the
	// numbers of withdrawals too, which must not stop A's.
	if err := b.b.AddLocalMAC(m, ip); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A's FDB has M at B again", func() bool { r, ok := a.fdbRemote(m); return ok && r == outB })
	if l := local(b); l.Seq != 3 {
		t.Errorf("B's route for M after the second move: %+v, want seq 3", l)
	}
	waitFor(t, "A yields M again", func() bool { return local(a).MovedAway })
	waitFor(t, "B drops A's withdrawn routes for M", func() bool {
		for _, r := range b.sp.Status().VNIs[0].Remote {
			if r.MAC == m.String() {
				return false
			}
		}
		return true
	})
	if err := b.b.RemoveLocalMAC(vxlan.MAC{2, 0, 0, 0, 0, 0x99}); !errors.Is(err, evpn.ErrNotLocal) {
		t.Errorf("RemoveLocalMAC of a MAC not local: %v, want ErrNotLocal", err)
	}
}

// TestBindUnbind: a binding's Close withdraws its routes from the peer and
// empties its own tables; the device survives.
func TestBindUnbind(t *testing.T) {
	a, b := newPair(t)
	outB := tunneltest.Outer4[1].Addr()
	waitFor(t, "A's FDB has B's MAC", func() bool { _, ok := a.fdbRemote(b.mac); return ok })
	if err := b.b.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A forgets B", func() bool { _, ok := a.fdbRemote(b.mac); return !ok && !a.floods(outB) })
	if b.dev.FDB().Len() != 0 {
		t.Errorf("B's FDB after unbind: %v", b.dev.FDB().Entries())
	}
	if err := b.b.AddLocalMAC(vxlan.MAC{2, 0, 0, 0, 0, 1}); !errors.Is(err, evpn.ErrClosed) {
		t.Errorf("AddLocalMAC on a closed binding: %v", err)
	}
	// Bound again, B is back.
	bind(t, b)
	waitFor(t, "A has B again", func() bool { _, ok := a.fdbRemote(b.mac); return ok && a.floods(outB) })
}

// TestConfigErrors: bad configuration is an error naming the field, and
// nothing is started.
func TestConfigErrors(t *testing.T) {
	vtepAddr := netip.MustParseAddr("10.0.0.1")
	peer := []evpn.Neighbor{{Address: netip.MustParseAddr("10.0.0.2"), ASN: 65001}}
	for _, tc := range []struct {
		cfg   evpn.Config
		field string
	}{
		{evpn.Config{VTEP: vtepAddr, Neighbors: peer}, "asn"},
		{evpn.Config{ASN: 23456, VTEP: vtepAddr, Neighbors: peer}, "asn"},
		{evpn.Config{ASN: asn, Neighbors: peer}, "vtep"},
		{evpn.Config{ASN: asn, VTEP: netip.MustParseAddr("fd00::1"), Neighbors: peer}, "router_id"},
		{evpn.Config{ASN: asn, VTEP: vtepAddr}, "neighbors"},
		{evpn.Config{ASN: asn, VTEP: vtepAddr, Neighbors: []evpn.Neighbor{{Address: netip.MustParseAddr("10.0.0.2")}}}, "neighbors[0].asn"},
		{evpn.Config{ASN: asn, VTEP: vtepAddr, Neighbors: []evpn.Neighbor{{ASN: 1}}}, "neighbors[0].address"},
		{evpn.Config{ASN: asn, VTEP: vtepAddr, Neighbors: []evpn.Neighbor{{Address: netip.MustParseAddr("10.0.0.2"), ASN: 1, Passive: true}}}, "neighbors[0].passive"},
		{evpn.Config{ASN: asn, VTEP: vtepAddr, Neighbors: append(peer, peer...)}, "neighbors[1].address"},
		{evpn.Config{ASN: asn, VTEP: vtepAddr, Neighbors: peer, HoldTime: time.Second}, "hold_time"},
	} {
		_, err := evpn.Start(tc.cfg)
		if !errors.Is(err, stack.ErrInvalid) || !strings.HasPrefix(err.Error(), tc.field+" ") {
			t.Errorf("Start(%+v) = %v, want an error on %s", tc.cfg, err, tc.field)
		}
	}

	hosts := tunneltest.Pair(t, memlink.Options{}, tunneltest.Outer4)
	sock, err := vxlan.OpenSocket(hosts[0].St, vxlan.SocketConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	learning, _ := sock.AddDevice(nil, vxlan.Config{VNI: 1, Learning: true})
	plain, _ := sock.AddDevice(nil, vxlan.Config{VNI: 2})
	big, _ := sock.AddDevice(nil, vxlan.Config{VNI: 70000})
	sp := startSpeaker(t, evpn.Config{ASN: asn, VTEP: hosts[0].Outer, Neighbors: []evpn.Neighbor{{Address: netip.MustParseAddr("127.0.0.9"), ASN: asn, Port: freePort(t)}}})
	for _, tc := range []struct {
		dev   *vxlan.Device
		cfg   evpn.BindConfig
		field string
	}{
		{nil, evpn.BindConfig{}, "device"},
		{learning, evpn.BindConfig{}, "learning"},
		{plain, evpn.BindConfig{RD: "nonsense"}, "vni 2: rd"},
		{plain, evpn.BindConfig{ImportTargets: []string{"1:2:3"}}, "vni 2: import_targets[0]"},
		{plain, evpn.BindConfig{ExportTargets: []string{"65000:1", "x"}}, "vni 2: export_targets[1]"},
		{big, evpn.BindConfig{}, "vni 70000: rd"},
	} {
		_, err := sp.Bind(tc.dev, tc.cfg)
		if !errors.Is(err, stack.ErrInvalid) || !strings.HasPrefix(err.Error(), tc.field+" ") {
			t.Errorf("Bind(%v, %+v) = %v, want an error on %s", tc.dev, tc.cfg, err, tc.field)
		}
	}
	if _, err := sp.Bind(plain, evpn.BindConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Bind(plain, evpn.BindConfig{}); !errors.Is(err, stack.ErrExists) {
		t.Errorf("second Bind of VNI 2: %v, want ErrExists", err)
	}
	if _, err := sp.Bind(big, evpn.BindConfig{RD: "10.0.0.1:7", ImportTargets: []string{"65000:70000"}, ExportTargets: []string{"65000:70000"}}); err != nil {
		t.Errorf("Bind of VNI 70000 with explicit RD and targets: %v", err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Bind(plain, evpn.BindConfig{}); !errors.Is(err, evpn.ErrClosed) {
		t.Errorf("Bind after Close: %v, want ErrClosed", err)
	}
}

// TestUnbindOneOfTwoVNIs: B serves VNIs 100 and 200, A binds 100 only.
// A's flood entry for B is the VNI 100 one, and unbinding removes it,
// however the two routes from one originator are ordered.
func TestUnbindOneOfTwoVNIs(t *testing.T) {
	hosts := tunneltest.Pair(t, memlink.Options{}, tunneltest.Outer4)
	a, b := newDevice(t, hosts[0], innerA), newDevice(t, hosts[1], innerB)
	b200, err := b.sock.AddDevice(nil, vxlan.Config{VNI: 200, Local: hosts[1].Outer, Proxy: true})
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	lo1, lo2 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	a.sp = startSpeaker(t, evpn.Config{ASN: asn, VTEP: hosts[0].Outer, ListenPort: port, ListenAddresses: []netip.Addr{lo1},
		Neighbors: []evpn.Neighbor{{Address: lo2, ASN: asn, Passive: true}}})
	b.sp = startSpeaker(t, evpn.Config{ASN: asn, VTEP: hosts[1].Outer,
		Neighbors: []evpn.Neighbor{{Address: lo1, ASN: asn, Port: port, LocalAddress: lo2}}})
	bind(t, b)
	if _, err := b.sp.Bind(b200, evpn.BindConfig{}); err != nil {
		t.Fatal(err)
	}
	outB := hosts[1].Outer
	for i := range 5 {
		ab := bind(t, a)
		waitFor(t, "A floods to B", func() bool { return a.floods(outB) })
		waitFor(t, "A holds both of B's inclusive routes", func() bool { return a.sp.Stats().RoutesReceived >= 2 })
		if err := ab.Close(); err != nil {
			t.Fatal(err)
		}
		if a.floods(outB) || a.dev.FDB().Len() != 0 {
			t.Fatalf("round %d: after Binding.Close A's FDB keeps %v", i, a.dev.FDB().Entries())
		}
	}
}

// TestEqualSequenceTie: two VTEPs declare the same MAC local with the
// same sequence number; the one with the higher address withdraws its
// route (RFC 7432 §15.1) and sends to the other.
func TestEqualSequenceTie(t *testing.T) {
	a, b := newPair(t)
	m := vxlan.MAC{0x02, 0, 0, 0, 0, 0x44}
	// Both before the session is up (it takes GoBGP a connect retry):
	// sequence 0 on both.
	if a.sp.Stats().SessionsUp != 0 {
		t.Skip("the session came up before the MACs were added; the tie needs them first")
	}
	if err := a.b.AddLocalMAC(m); err != nil {
		t.Fatal(err)
	}
	if err := b.b.AddLocalMAC(m); err != nil {
		t.Fatal(err)
	}
	outA := tunneltest.Outer4[0].Addr() // the lower address: A keeps it
	waitFor(t, "B yields M to A", func() bool {
		for _, l := range b.sp.Status().VNIs[0].Local {
			if l.MAC == m.String() {
				return l.MovedAway
			}
		}
		return false
	})
	waitFor(t, "B sends M to A", func() bool { r, ok := b.fdbRemote(m); return ok && r == outA })
	for _, l := range a.sp.Status().VNIs[0].Local {
		if l.MAC == m.String() && l.MovedAway {
			t.Errorf("A, the lower address, yielded too: %+v", l)
		}
	}
	if _, ok := a.fdbRemote(m); ok {
		t.Errorf("A installs an FDB entry for its own MAC")
	}
}

// TestRouteTargets: the automatic route target is FRR's (AS & 0xffff):VNI
// also for a four-octet AS, and values GoBGP's parsers would truncate are
// refused, naming the field.
func TestRouteTargets(t *testing.T) {
	cfg := evpn.Config{ASN: 4200000000, VTEP: netip.MustParseAddr("10.0.0.1"),
		Neighbors: []evpn.Neighbor{{Address: netip.MustParseAddr("127.0.0.9"), ASN: 4200000000, Port: freePort(t)}}}
	hosts := tunneltest.Pair(t, memlink.Options{}, tunneltest.Outer4)
	v := newDevice(t, hosts[0], innerA)
	sp := startSpeaker(t, cfg)
	if _, err := sp.Bind(v.dev, evpn.BindConfig{}); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%d:100", 4200000000&0xffff)
	if st := sp.Status().VNIs[0]; !slices.Equal(st.ImportTargets, []string{want}) || !slices.Equal(st.ExportTargets, []string{want}) {
		t.Errorf("AS 4200000000, VNI 100: targets %v / %v, want %s", st.ImportTargets, st.ExportTargets, want)
	}
	for _, tc := range []struct {
		bc    evpn.BindConfig
		field string
	}{
		{evpn.BindConfig{RD: "10.0.0.1:70000"}, "rd"},
		{evpn.BindConfig{RD: "65000:1:1"}, "rd"},
		{evpn.BindConfig{ImportTargets: []string{"70000:70000"}}, "import_targets[0]"},
		{evpn.BindConfig{ExportTargets: []string{"65000:1", "65000:5000000000"}}, "export_targets[1]"},
		{evpn.BindConfig{ImportTargets: []string{"5000000000:1"}}, "import_targets[0]"},
	} {
		err := cfg.ValidateBind(100, tc.bc)
		if !errors.Is(err, stack.ErrInvalid) || !strings.HasPrefix(err.Error(), tc.field+" ") {
			t.Errorf("ValidateBind(%+v) = %v, want an error on %s", tc.bc, err, tc.field)
		}
	}
	for _, ok := range []evpn.BindConfig{
		{RD: "10.0.0.1:65535", ImportTargets: []string{"65000:4294967295", "4200000000:65535", "10.0.0.1:7"}},
	} {
		if err := cfg.ValidateBind(100, ok); err != nil {
			t.Errorf("ValidateBind(%+v) = %v", ok, err)
		}
	}
}
