//go:build linux

package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/e2e"
)

// TestFRRHarness proves the FRR harness and documents what FRR 8.4 does,
// for whoever peers our EVPN control plane with it. Two FRR instances, A
// and B, each in a namespace of its own with a kernel VTEP for VNI 100 and
// one host, are iBGP neighbours (AS 65000) over a veth pair, both with
// advertise-all-vni:
//
//	host A 10.99.0.1 -- br100/vxlan100 [FRR A 10.250.0.1] ==veth== [FRR B 10.250.0.2] br100/vxlan100 -- host B 10.99.0.2
//	                                           |
//	                                     the test process (InNetns), 10.250.1.1
//
// Once Established, each FRR must hold the other's type 3 route (originator,
// VNI 100 in the PMSI label, RT 65000:100, FRR's automatic AS:VNI) and each
// kernel FDB a flood entry 00:00:00:00:00:00 dst OTHER-VTEP that zebra
// installed; after the hosts ping each other over the overlay, each side's
// type 2 route and extern_learn FDB entry for the remote host's MAC. When
// B stops, A's kernel loses every entry pointing at B.
//
// The test body runs in a namespace of its own (InNetns), linked to A's by
// a veth pair: it dials A's BGP port from Go, as an in-process BGP speaker
// will.
func TestFRRHarness(t *testing.T) {
	if e2e.InNetns(t, "ut-frrt") {
		return
	}
	self := e2e.CurrentNetns()
	if self == nil {
		t.Fatal("CurrentNetns is nil in the child")
	}
	// The child's own namespace has only lo: its sockets are not the
	// machine's.
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	if len(ifs) != 1 || ifs[0].Name != "lo" {
		t.Fatalf("the child's namespace %s has interfaces %v, want only lo", self.Name(), ifs)
	}
	tests := []frrPairCase{
		{name: "ibgp", asA: 65000, asB: 65000},
		// FRR's automatic route target is LOCAL-AS:VNI: A exports
		// 65001:100, B 65002:100. FRR 8.4 imports them all the same (it
		// matches automatic route targets on the VNI alone); a speaker
		// that matches route targets exactly needs the explicit ones of
		// the next case.
		{name: "ebgp-auto-rt", asA: 65001, asB: 65002},
		{name: "ebgp-explicit-rt", asA: 65001, asB: 65002, rts: map[uint32]string{100: "65000:100"}},
	}
	for i, tc := range tests {
		tc.selfNet = i + 1
		t.Run(tc.name, func(t *testing.T) { testFRRPair(t, self, tc) })
	}
	// The options no pair above uses: FRR must accept the configuration
	// StartFRR writes for them and listen where told.
	t.Run("config", func(t *testing.T) {
		ns := e2e.NewNetns(t, "ut-frrc")
		ns.Run(t, "ip", "link", "set", "lo", "up")
		_, _ = e2e.Veth(t, self, netip.MustParsePrefix("10.250.9.1/24"), ns, netip.MustParsePrefix("10.250.9.2/24"))
		peer := netip.MustParseAddr("10.250.9.1")
		f := e2e.StartFRR(t, ns, e2e.FRRConfig{ASN: 65010, RouterID: netip.MustParseAddr("10.250.9.2"), ListenPort: 1179,
			Neighbors:    []e2e.FRRNeighbor{{Addr: peer, ASN: 65011, Passive: true}},
			RouteTargets: map[uint32]string{200: "65010:200", 100: "65010:100"}})
		running := f.Vtysh(t, "show running-config")
		for _, want := range []string{"router bgp 65010", " neighbor 10.250.9.1 remote-as 65011", " neighbor 10.250.9.1 passive",
			" neighbor 10.250.9.1 timers connect 1", "  advertise-all-vni", "  vni 100", "  vni 200"} {
			if !strings.Contains(running, "\n"+want+"\n") {
				t.Errorf("running configuration lacks %q:\n%s", want, running)
			}
		}
		// FRR 8.4's running configuration leaves out the route targets
		// of a VNI the kernel does not have; the VNI's state has them.
		for vni, rt := range map[int]string{100: "65010:100", 200: "65010:200"} {
			out := f.Vtysh(t, fmt.Sprintf("show bgp l2vpn evpn vni %d", vni))
			flat := strings.Join(strings.Fields(out), " ")
			for _, want := range []string{"Import Route Target: " + rt, "Export Route Target: " + rt} {
				if !strings.Contains(flat, want) {
					t.Errorf("VNI %d: no %q in\n%s", vni, want, out)
				}
			}
		}
		conn, err := net.DialTimeout("tcp", "10.250.9.2:1179", 5*time.Second)
		if err != nil {
			t.Fatalf("bgpd -p 1179: %v", err)
		}
		conn.Close()
		f.Stop()
		if _, err := net.DialTimeout("tcp", "10.250.9.2:1179", 5*time.Second); err == nil {
			t.Error("bgpd still listens after Stop")
		}
	})
}

type frrPairCase struct {
	name     string
	asA, asB uint32
	rts      map[uint32]string // FRRConfig.RouteTargets of both
	selfNet  int               // the test's namespace is 10.250.selfNet.1/24 on a veth to A
}

// wantRT is the route target of routes from a side in AS asn: the explicit
// one, or FRR's automatic AS:VNI.
func (tc frrPairCase) wantRT(asn uint32) string {
	if rt, ok := tc.rts[100]; ok {
		return rt
	}
	return fmt.Sprintf("%d:100", asn)
}

func testFRRPair(t *testing.T, self *e2e.Netns, tc frrPairCase) {
	type side struct {
		name     string
		asn      uint32
		ns, host *e2e.Netns
		vtep     *e2e.KernelVTEP
		frr      *e2e.FRR
		under    netip.Prefix
		bridge   netip.Prefix
		hostAddr netip.Prefix
		hostMAC  string
	}
	a := &side{name: "A", asn: tc.asA, ns: e2e.NewNetns(t, "ut-frra"), under: netip.MustParsePrefix("10.250.0.1/24"),
		bridge: netip.MustParsePrefix("10.99.0.251/24"), hostAddr: netip.MustParsePrefix("10.99.0.1/24")}
	b := &side{name: "B", asn: tc.asB, ns: e2e.NewNetns(t, "ut-frrb"), under: netip.MustParsePrefix("10.250.0.2/24"),
		bridge: netip.MustParsePrefix("10.99.0.252/24"), hostAddr: netip.MustParsePrefix("10.99.0.2/24")}
	e2e.Veth(t, a.ns, a.under, b.ns, b.under)
	selfAddr := netip.MustParsePrefix(fmt.Sprintf("10.250.%d.1/24", tc.selfNet))
	aAddr := netip.MustParsePrefix(fmt.Sprintf("10.250.%d.2/24", tc.selfNet))
	e2e.Veth(t, self, selfAddr, a.ns, aAddr)
	sides := []*side{a, b}
	otherOf := func(s *side) *side {
		if s == a {
			return b
		}
		return a
	}
	for _, s := range sides {
		s.ns.Run(t, "ip", "link", "set", "lo", "up")
		s.vtep = e2e.NewKernelVTEP(t, s.ns, e2e.KernelVTEPConfig{VNI: 100, Local: s.under.Addr(), BridgeAddr: s.bridge})
		s.host = s.vtep.AddHost(t, "ut-frrh", s.hostAddr)
		var links []struct {
			Address string `json:"address"`
		}
		if err := json.Unmarshal([]byte(s.host.Run(t, "ip", "-j", "link", "show", "eth0")), &links); err != nil || len(links) != 1 {
			t.Fatalf("host %s: ip -j link show eth0: %v %v", s.name, links, err)
		}
		s.hostMAC = links[0].Address
	}
	start := time.Now()
	for _, s := range sides {
		o := otherOf(s)
		s.frr = e2e.StartFRR(t, s.ns, e2e.FRRConfig{ASN: s.asn, RouterID: s.under.Addr(),
			Neighbors: []e2e.FRRNeighbor{{Addr: o.under.Addr(), ASN: o.asn}}, RouteTargets: tc.rts})
	}
	t.Logf("bgpd A configuration:\n%s", a.frr.Config())

	// Our process's sockets are in its namespace, which reaches A's BGP
	// port (A closes the connection: we are not a configured neighbour).
	conn, err := net.DialTimeout("tcp", netip.AddrPortFrom(aAddr.Addr(), 179).String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dialing FRR A's BGP port from the test's namespace: %v", err)
	}
	conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range sides {
		if err := s.frr.WaitEstablished(ctx, otherOf(s).under.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("both sessions Established %v after starting FRR", time.Since(start).Round(time.Millisecond))

	for _, s := range sides {
		o := otherOf(s)
		waitFor(t, 30*time.Second, fmt.Sprintf("FRR %s: type 3 route of %v", s.name, o.under.Addr()), func() (bool, string) {
			routes := s.frr.EVPNRoutes(t)
			return slices.ContainsFunc(routes, func(r e2e.FRREVPNRoute) bool {
				return r.Type == 3 && r.Originator == o.under.Addr() && r.VNI == 100 && r.Best && !r.Local &&
					r.Peer == o.under.Addr() && r.NextHop == o.under.Addr() && slices.Contains(r.RouteTargets, tc.wantRT(o.asn))
			}), fmt.Sprintf("%+v", routes)
		})
		waitFor(t, 30*time.Second, fmt.Sprintf("kernel %s: flood entry to %v", s.name, o.under.Addr()), func() (bool, string) {
			fdb := s.vtep.FDB(t)
			return slices.ContainsFunc(fdb, func(e e2e.KernelFDBEntry) bool {
				return e.MAC == "00:00:00:00:00:00" && e.Dst == o.under.Addr() && e.Self
			}), fmt.Sprintf("%+v", fdb)
		})
	}
	t.Logf("type 3 routes and flood entries in place %v after starting FRR", time.Since(start).Round(time.Millisecond))

	// The hosts ping each other over the overlay, and each its own
	// bridge: the bridge's ARP entry for its host is what FRR advertises
	// as a MAC+IP route.
	for _, s := range sides {
		s.host.Run(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", otherOf(s).hostAddr.Addr().String())
		s.host.Run(t, "ping", "-c", "1", "-W", "2", s.bridge.Addr().String())
	}
	pinged := time.Now()
	for _, s := range sides {
		o := otherOf(s)
		waitFor(t, 30*time.Second, fmt.Sprintf("FRR %s: type 2 routes of host %s's MAC %s and IP %v", s.name, o.name, o.hostMAC, o.hostAddr.Addr()), func() (bool, string) {
			routes := s.frr.EVPNRoutes(t)
			mac := func(ip netip.Addr) func(r e2e.FRREVPNRoute) bool {
				return func(r e2e.FRREVPNRoute) bool {
					return r.Type == 2 && r.MAC == o.hostMAC && r.IP == ip && r.VNI == 100 && r.Best && !r.Local &&
						r.NextHop == o.under.Addr() && slices.Contains(r.RouteTargets, tc.wantRT(o.asn))
				}
			}
			return slices.ContainsFunc(routes, mac(netip.Addr{})) && slices.ContainsFunc(routes, mac(o.hostAddr.Addr())),
				fmt.Sprintf("%+v", routes)
		})
		waitFor(t, 30*time.Second, fmt.Sprintf("kernel %s: FDB entry of host %s's MAC %s", s.name, o.name, o.hostMAC), func() (bool, string) {
			fdb := s.vtep.FDB(t)
			return slices.ContainsFunc(fdb, func(e e2e.KernelFDBEntry) bool {
				return e.MAC == o.hostMAC && e.Dst == o.under.Addr() && e.Self && e.ExternLearn
			}), fmt.Sprintf("%+v", fdb)
		})
	}
	t.Logf("type 2 routes and MAC entries in place %v after the pings", time.Since(pinged).Round(time.Millisecond))
	t.Logf("kernel A's FDB: %+v", a.vtep.FDB(t))
	t.Logf("FRR A's EVPN table:\n%s", a.frr.Vtysh(t, "show bgp l2vpn evpn"))

	stopped := time.Now()
	b.frr.Stop()
	b.frr.Stop() // idempotent
	waitFor(t, 30*time.Second, "kernel A: no entry pointing at B once B stopped", func() (bool, string) {
		fdb := a.vtep.FDB(t)
		return !slices.ContainsFunc(fdb, func(e e2e.KernelFDBEntry) bool { return e.Dst == b.under.Addr() }), fmt.Sprintf("%+v", fdb)
	})
	// bgpd uninstalls the VNI's routes from zebra before it drops them
	// from its own table: the table may lag the kernel a little.
	waitFor(t, 30*time.Second, "FRR A: no route from B once B stopped", func() (bool, string) {
		routes := a.frr.EVPNRoutes(t)
		return !slices.ContainsFunc(routes, func(r e2e.FRREVPNRoute) bool { return r.Peer == b.under.Addr() }), fmt.Sprintf("%+v", routes)
	})
	t.Logf("kernel A lost B's entries %v after B stopped", time.Since(stopped).Round(time.Millisecond))
}

// waitFor polls cond every 100 ms until it holds, and fails t with what and
// cond's last description after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v; last: %s", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRunPattern checks that InNetns's -test.run pattern selects exactly the
// named test: each /-separated element quoted and anchored, and that the
// parent's -test.run still selects the subtests below it.
func TestRunPattern(t *testing.T) {
	tests := []struct {
		name    string // the test's t.Name()
		run     string // the parent's -test.run
		want    string
		matches []string // other names it must select
		rejects []string // names it must not select
	}{
		{name: "TestA", want: "^TestA$", matches: []string{"TestA/sub"}, rejects: []string{"TestAB", "XTestA"}},
		{name: "TestA/b+c", want: `^TestA$/^b\+c$`, rejects: []string{"TestA/bbc", "TestAB/b+c"}},
		{name: "TestA/x.y/(z)", want: `^TestA$/^x\.y$/^\(z\)$`, rejects: []string{"TestA/xzy/(z)", "TestA/x.y/z"}},
		{name: "TestA/[1]_a*b?#01", want: `^TestA$/^\[1\]_a\*b\?#01$`, rejects: []string{"TestA/1_ab#01"}},
		{name: "TestA/$^|{2}", want: `^TestA$/^\$\^\|\{2\}$`},
		// The parent's pattern: only its elements below the test's depth
		// count.
		{name: "TestA", run: "TestA", want: "^TestA$"},
		{name: "TestA", run: "Test/ebgp", want: "^TestA$/ebgp", matches: []string{"TestA/ebgp-x"}, rejects: []string{"TestA/ibgp"}},
		{name: "TestA", run: "TestA/x/^y$", want: "^TestA$/x/^y$", matches: []string{"TestA/x/y"}, rejects: []string{"TestA/x/yy"}},
		{name: "TestA/b", run: "TestA/b/c", want: "^TestA$/^b$/c"},
		// Slashes in brackets or parentheses do not split the pattern.
		{name: "TestA", run: "TestA/(p/q)/[a/b]", want: "^TestA$/(p/q)/[a/b]"},
		{name: "TestA", run: `TestA/x\/y`, want: `^TestA$/x\/y`},
	}
	for _, tc := range tests {
		name := tc.name
		if tc.run != "" {
			name += " run=" + tc.run
		}
		t.Run(name, func(t *testing.T) {
			got := e2e.RunPattern(tc.name, tc.run)
			if got != tc.want {
				t.Errorf("RunPattern(%q, %q) = %q, want %q", tc.name, tc.run, got, tc.want)
			}
			for _, n := range append([]string{tc.name}, tc.matches...) {
				if !runMatches(got, n) {
					t.Errorf("pattern %q does not select %q", got, n)
				}
			}
			for _, n := range tc.rejects {
				if runMatches(got, n) {
					t.Errorf("pattern %q selects %q", got, n)
				}
			}
		})
	}
}

// runMatches is -test.run's rule, for names and patterns without / inside
// brackets: element i of the pattern must match element i of the name for
// each level both have (a test runs when its own levels match; deeper
// elements select its subtests).
func runMatches(pattern, name string) bool {
	pe, ne := strings.Split(pattern, "/"), strings.Split(name, "/")
	for i := range min(len(pe), len(ne)) {
		if !regexp.MustCompile(pe[i]).MatchString(ne[i]) {
			return false
		}
	}
	return true
}

// TestInNetns runs subtests with awkward names in a child in a namespace:
// the pattern must select them, the child must be in its namespace, and a
// skip in the child must become a skip in the parent.
func TestInNetns(t *testing.T) {
	for _, name := range []string{"plain", "a+b.(c)[d]"} {
		t.Run(name, func(t *testing.T) {
			if e2e.InNetns(t, "ut-reexec") {
				return
			}
			ns := e2e.CurrentNetns()
			if ns == nil {
				t.Fatal("CurrentNetns is nil in the child")
			}
			ifs, err := net.Interfaces()
			if err != nil {
				t.Fatal(err)
			}
			if len(ifs) != 1 || ifs[0].Name != "lo" || ifs[0].Flags&net.FlagUp == 0 {
				t.Fatalf("child in %s: interfaces %+v, want lo up only", ns.Name(), ifs)
			}
		})
	}
	t.Run("skip", func(t *testing.T) {
		if e2e.CurrentNetns() == nil {
			// InNetns's t.Skip ends the parent's subtest through
			// runtime.Goexit, which runs this.
			defer func() {
				if !t.Skipped() {
					t.Error("the child skipped, the parent did not")
				}
			}()
		}
		if e2e.InNetns(t, "ut-reexec") {
			t.Error("InNetns returned in the parent although the child skipped")
			return
		}
		t.Skip("skipped in the child")
	})
}
