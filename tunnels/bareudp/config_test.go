package bareudp_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/bareudp"
)

// outerHost returns a stack with 10.99.0.1/24 and fd00:99::1/64 on a
// memlink underlay.
func outerHost(t testing.TB) *stack.Stack {
	t.Helper()
	a, _, err := memlink.NewPair(memlink.Options{Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := tunneltest.NewStack(t, a, netip.MustParsePrefix("10.99.0.1/24"), netip.MustParsePrefix("fd00:99::1/64"))
	return st
}

var port6635 = netip.AddrPortFrom(netip.Addr{}, bareudp.MPLSPort)

// TestConfigErrors checks that every bad field is refused with an error
// that names it and wraps stack.ErrInvalid, and that a refused AddDevice
// leaves the socket free for a good one.
func TestConfigErrors(t *testing.T) {
	st := outerHost(t)
	s, err := bareudp.OpenSocket(st, bareudp.SocketConfig{Local: port6635})
	if err != nil {
		t.Fatal(err)
	}
	r4, r6 := netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("fd00:99::2")
	ip := func(f func(c *bareudp.Config)) bareudp.Config {
		c := bareudp.Config{EtherType: bareudp.EtherTypeIPv4, Remote: r4}
		f(&c)
		return c
	}
	mpls := func(f func(c *bareudp.Config)) bareudp.Config {
		c := bareudp.Config{EtherType: bareudp.EtherTypeMPLSUnicast, Remote: r4, Labels: []bareudp.Label{100}}
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name  string
		cfg   bareudp.Config
		field string
	}{
		{"no ethertype", ip(func(c *bareudp.Config) { c.EtherType = 0 }), "ethertype"},
		{"ethertype ARP", ip(func(c *bareudp.Config) { c.EtherType = 0x0806 }), "ethertype"},
		{"ethertype MPLS multicast", ip(func(c *bareudp.Config) { c.EtherType = bareudp.EtherTypeMPLSMulticast }), "ethertype"},
		{"multiproto on IPv6", ip(func(c *bareudp.Config) { c.EtherType, c.Remote, c.Multiproto = bareudp.EtherTypeIPv6, r6, true }), "multiproto"},
		{"no remote", ip(func(c *bareudp.Config) { c.Remote = netip.Addr{} }), "remote"},
		{"unspecified remote", ip(func(c *bareudp.Config) { c.Remote = netip.IPv4Unspecified() }), "remote"},
		{"multicast remote", ip(func(c *bareudp.Config) { c.Remote = netip.MustParseAddr("239.1.1.1") }), "remote"},
		{"multicast local", ip(func(c *bareudp.Config) { c.Local = netip.MustParseAddr("224.0.0.1") }), "local"},
		{"local of another family", ip(func(c *bareudp.Config) { c.Local = netip.MustParseAddr("fd00:99::1") }), "local"},
		{"DF over IPv6", ip(func(c *bareudp.Config) { c.Remote, c.DF = r6, true }), "df"},
		{"DF with GSO", ip(func(c *bareudp.Config) { c.DF, c.GSO, c.ChecksumOffload = true, true, true }), "df with gso"},
		{"underlay MTU 67", ip(func(c *bareudp.Config) { c.UnderlayMTU = 67 }), "underlay MTU"},
		{"underlay MTU 65536", ip(func(c *bareudp.Config) { c.UnderlayMTU = 65536 }), "underlay MTU"},
		{"headroom -1", ip(func(c *bareudp.Config) { c.Headroom = -1 }), "headroom"},
		{"labels on an IP device", ip(func(c *bareudp.Config) { c.Labels = []bareudp.Label{100} }), "labels"},
		{"local labels on an IP device", ip(func(c *bareudp.Config) { c.LocalLabels = []bareudp.Label{100} }), "labels"},
		{"label above 20 bits", mpls(func(c *bareudp.Config) { c.Labels = []bareudp.Label{1 << 20} }), "labels[0]"},
		{"implicit null pushed", mpls(func(c *bareudp.Config) { c.Labels = []bareudp.Label{100, 3} }), "labels[1]"},
		{"31 labels", mpls(func(c *bareudp.Config) { c.Labels = make([]bareudp.Label, 31) }), "labels"},
		{"labels deeper than LabelDepth", mpls(func(c *bareudp.Config) { c.LabelDepth = 1; c.Labels = []bareudp.Label{100, 200} }), "labels"},
		{"label depth 31", mpls(func(c *bareudp.Config) { c.LabelDepth = 31 }), "label depth"},
		{"reserved local label", mpls(func(c *bareudp.Config) { c.LocalLabels = []bareudp.Label{16, 0} }), "local labels[1]"},
		{"route without prefix", mpls(func(c *bareudp.Config) { c.Routes = []bareudp.Route{{Labels: []bareudp.Label{5}}} }), "routes[0] prefix"},
		{"route with implicit null", mpls(func(c *bareudp.Config) {
			c.Routes = []bareudp.Route{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Labels: []bareudp.Label{3}}}
		}), "routes[0] labels[0]"},
		{"route twice", mpls(func(c *bareudp.Config) {
			c.Routes = []bareudp.Route{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}, {Prefix: netip.MustParsePrefix("10.1.0.0/8")}}
		}), "routes[1] prefix"},
		{"GSO without checksum offload", ip(func(c *bareudp.Config) { c.GSO = true }), "GSO"},
		{"MTU 67", ip(func(c *bareudp.Config) { c.MTU = 67 }), "MTU"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := s.AddDevice(nil, tc.cfg)
			if err == nil {
				d.Close()
				t.Fatal("accepted")
			}
			if !errors.Is(err, stack.ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q, want one naming %q and wrapping ErrInvalid", err, tc.field)
			}
			if s.Device() != nil {
				t.Error("a refused AddDevice left a device on the socket")
			}
		})
	}
	// Nothing was half-applied: the default name and the socket are free.
	d, err := s.AddDevice(nil, ip(func(*bareudp.Config) {}))
	if err != nil {
		t.Fatalf("good config after refused ones: %v", err)
	}
	if d.Name() != "bareudp6635" || d.Config().Port != bareudp.MPLSPort || d.Config().SrcPortMin != bareudp.DefaultSrcPortMin {
		t.Errorf("defaults: name %q, config %+v", d.Name(), d.Config())
	}
	if _, err := s.AddDevice(nil, ip(func(c *bareudp.Config) { c.Name = "other" })); !errors.Is(err, stack.ErrExists) {
		t.Errorf("second device on one socket: %v, want ErrExists", err)
	}
	if _, ok := d.Device.Stack().NICByName("other"); ok {
		t.Error("a refused second device left its NIC")
	}
}

// TestSocketConfigErrors: the port is required, and a taken port is
// refused.
func TestSocketConfigErrors(t *testing.T) {
	st := outerHost(t)
	if _, err := bareudp.OpenSocket(st, bareudp.SocketConfig{}); !errors.Is(err, stack.ErrInvalid) || !strings.Contains(err.Error(), "port") {
		t.Errorf("no port: %v, want ErrInvalid naming the port", err)
	}
	s, err := bareudp.OpenSocket(st, bareudp.SocketConfig{Local: port6635})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := bareudp.OpenSocket(st, bareudp.SocketConfig{Local: port6635}); err == nil {
		t.Error("second socket on port 6635 accepted")
	}
}

// TestCloseLeavesNothing closes a device, then its socket, after traffic:
// no goroutine is left, the NIC and the port are released, Close is
// idempotent, and the stack's Close takes devices with it.
func TestCloseLeavesNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	o := overlay(t, withConfig(mplsLabel42), false, false)
	a := o.A
	s := socketOf(t, a)
	d := s.Device()
	name := d.Name()
	tunneltest.CloseTwice(t, "Device.Close", d)
	tunneltest.NoNIC(t, a.Stack, name, "Device.Close")
	if s.Device() != nil {
		t.Error("socket still has its device after Device.Close")
	}
	d2, err := s.AddDevice(nil, bareudp.Config{Name: name, EtherType: bareudp.EtherTypeIPv4, Remote: a.Peer().Outer})
	if err != nil {
		t.Fatalf("AddDevice after Device.Close: %v", err)
	}
	tunneltest.CloseTwice(t, "Socket.Close", s)
	if _, ok := a.Stack.NICByName(d2.Name()); ok {
		t.Error("device NIC still exists after Socket.Close")
	}
	again, err := bareudp.OpenSocket(a.Stack, bareudp.SocketConfig{Local: port6635})
	if err != nil {
		t.Fatalf("OpenSocket on the closed socket's port: %v", err)
	}
	again.Close()
	pc, err := a.Stack.ListenUDP(port6635)
	if err != nil {
		t.Fatalf("plain UDP bind of port 6635 after Close: %v", err)
	}
	pc.Close()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
}
