package stack_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/link/channel"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/stack"
)

// routes returns the stack's routes as "destination via gateway nic N"
// strings.
func routes(st *stack.Stack) map[string]bool {
	m := map[string]bool{}
	for _, r := range st.GVisor().GetRouteTable() {
		s := r.Destination.String()
		if r.Gateway.Len() != 0 {
			s += " via " + r.Gateway.String()
		}
		s += " nic " + st.NICName(r.NIC)
		m[s] = true
	}
	return m
}

func TestAddAddressAddsConnectedRoute(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		route  string
	}{
		{"192.0.2.1/24", "192.0.2.0/24 nic underlay"},
		{"10.1.2.3/8", "10.0.0.0/8 nic underlay"},
		{"198.51.100.7/32", "198.51.100.7/32 nic underlay"},
		{"2001:db8:1::5/64", "2001:db8:1::/64 nic underlay"},
	} {
		t.Run(tc.prefix, func(t *testing.T) {
			st := newStack(t)
			nic, err := st.AddNIC(channel.New(16, 1500, ""), stack.NICOptions{Name: "underlay"})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.AddAddress(nic, netip.MustParsePrefix(tc.prefix)); err != nil {
				t.Fatalf("AddAddress: %v", err)
			}
			if rs := routes(st); !rs[tc.route] || len(rs) != 1 {
				t.Errorf("routes %v, want only %q", rs, tc.route)
			}
			// The address is usable as a source: a UDP socket binds it.
			c, err := st.ListenUDP(netip.AddrPortFrom(netip.MustParsePrefix(tc.prefix).Addr(), 53))
			if err != nil {
				t.Errorf("ListenUDP on the new address: %v", err)
			} else {
				c.Close()
			}
		})
	}
}

func TestAddAddressErrors(t *testing.T) {
	st := newStack(t)
	nic, err := st.AddNIC(channel.New(16, 1500, ""), stack.NICOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.NICName(nic); got != "nic1" {
		t.Errorf("default NIC name %q, want nic1", got)
	}
	if err := st.AddAddress(nic, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		nic    stack.NICID
		prefix netip.Prefix
		want   error
	}{
		{"invalid prefix", nic, netip.Prefix{}, stack.ErrInvalid},
		{"unknown NIC", 42, netip.MustParsePrefix("192.0.2.9/24"), stack.ErrNotFound},
		{"duplicate", nic, netip.MustParsePrefix("192.0.2.1/24"), stack.ErrExists},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := routes(st)
			if err := st.AddAddress(tc.nic, tc.prefix); !errors.Is(err, tc.want) {
				t.Errorf("AddAddress: %v, want %v", err, tc.want)
			}
			if after := routes(st); len(after) != len(before) {
				t.Errorf("routes changed by a failed AddAddress: %v -> %v", before, after)
			}
		})
	}
}

func TestAddRoute(t *testing.T) {
	h := newWireHost(t, 0)
	for _, tc := range []struct {
		name  string
		dst   netip.Prefix
		gw    netip.Addr
		nic   stack.NICID
		want  error
		field string
	}{
		{"invalid destination", netip.Prefix{}, netip.Addr{}, h.nic, stack.ErrInvalid, "destination"},
		{"gateway family", netip.MustParsePrefix("198.51.100.0/24"), router6, h.nic, stack.ErrInvalid, "gateway"},
		{"gateway family6", netip.MustParsePrefix("2001:db9::/32"), router4, h.nic, stack.ErrInvalid, "gateway"},
		{"unknown NIC", netip.MustParsePrefix("198.51.100.0/24"), router4, 99, stack.ErrNotFound, "NIC 99"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(routes(h.st))
			err := h.st.AddRoute(tc.dst, tc.gw, tc.nic)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("AddRoute: %v, want %v naming %q", err, tc.want, tc.field)
			}
			if after := len(routes(h.st)); after != before {
				t.Errorf("%d routes after a failed AddRoute, want %d", after, before)
			}
		})
	}

	// A route via a gateway, added after a tunnel socket cached its
	// routes: the cache must not keep the old answer.
	so, _ := h.openSocket(t, stack.SocketConfig{})
	far := netip.MustParseAddr("198.51.100.1")
	if err := xmit(so, []byte("x"), 128, stack.XmitParams{Dst: far, DstPort: 1}); !errors.Is(err, stack.ErrNoRoute) {
		t.Fatalf("Xmit before the route: %v, want ErrNoRoute", err)
	}
	if err := xmit(so, []byte("x"), 128, stack.XmitParams{Dst: peer4, DstPort: 1}); err != nil {
		t.Fatalf("Xmit on link: %v", err) // fills the route cache
	}
	h.readUDP(t)
	if err := h.st.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), router4, h.nic); err != nil {
		t.Fatalf("AddRoute default via %v: %v", router4, err)
	}
	if !routes(h.st)["0.0.0.0/0 via 192.0.2.254 nic underlay"] {
		t.Errorf("routes %v lack the default route", routes(h.st))
	}
	if err := xmit(so, []byte("far"), 128, stack.XmitParams{Dst: far, DstPort: 1}); err != nil {
		t.Fatalf("Xmit after AddRoute: %v", err)
	}
	if o := parseOuter(t, h.readUDP(t)); o.dst.Addr() != far {
		t.Errorf("sent to %v, want %v", o.dst, far)
	}
}

func TestAddNICNameTaken(t *testing.T) {
	st := newStack(t)
	if _, err := st.AddNIC(channel.New(1, 1500, ""), stack.NICOptions{Name: "eth0"}); err != nil {
		t.Fatal(err)
	}
	_, err := st.AddNIC(channel.New(1, 1500, ""), stack.NICOptions{Name: "eth0"})
	if !errors.Is(err, stack.ErrExists) || !strings.Contains(err.Error(), "eth0") {
		t.Errorf("AddNIC with a taken name: %v, want ErrExists naming eth0", err)
	}
	if n := len(st.GVisor().NICInfo()); n != 1 {
		t.Errorf("%d NICs, want 1", n)
	}
}

func TestRemoveNIC(t *testing.T) {
	h := newWireHost(t, 0)
	so, _ := h.openSocket(t, stack.SocketConfig{})
	if err := xmit(so, []byte("x"), 128, stack.XmitParams{Dst: peer4, DstPort: 1}); err != nil {
		t.Fatal(err)
	}
	if err := h.st.RemoveNIC(h.nic); err != nil {
		t.Fatalf("RemoveNIC: %v", err)
	}
	if rs := routes(h.st); len(rs) != 0 {
		t.Errorf("routes %v left after RemoveNIC", rs)
	}
	// The socket's cached route went with the NIC.
	if err := xmit(so, []byte("x"), 128, stack.XmitParams{Dst: peer4, DstPort: 1}); !errors.Is(err, stack.ErrNoRoute) {
		t.Errorf("Xmit after RemoveNIC: %v, want ErrNoRoute", err)
	}
	if err := h.st.RemoveNIC(h.nic); !errors.Is(err, stack.ErrNotFound) {
		t.Errorf("second RemoveNIC: %v, want ErrNotFound", err)
	}
}

// TestStackClose closes a stack with open sockets, devices, an asynchronous
// wire and a TCP connection: everything is released, and newStack's
// cleanup checks that no goroutine is left.
func TestStackClose(t *testing.T) {
	hs := newPeerPair(t, memlink.Options{}, false, stack.L2, nil)
	transfer(t, hs[0], hs[1], hs[1].inner[0], 64<<10)
	st := hs[0].st
	rec := &recorder{}
	so, err := st.OpenTunnelSocket(stack.SocketConfig{}, rec)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := st.ListenTCP(netip.AddrPortFrom(hs[0].inner[0], 80))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// A connection left open across Close.
	c, err := hs[1].st.DialTCP(t.Context(), netip.AddrPortFrom(hs[0].inner[0], 80))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	st.Close()
	if n := rec.closeCalls(); n != 1 {
		t.Errorf("CloseEncap called %d times, want 1", n)
	}
	if err := xmit(so, []byte("x"), 128, stack.XmitParams{Dst: hs[1].outer, DstPort: 1}); !errors.Is(err, stack.ErrClosed) {
		t.Errorf("Xmit on a socket of a closed stack: %v, want ErrClosed", err)
	}
	if err := xmit(hs[0].tt.sock, []byte("x"), 128, stack.XmitParams{Dst: hs[1].outer, DstPort: 1}); !errors.Is(err, stack.ErrClosed) {
		t.Errorf("Xmit on the TT socket of a closed stack: %v, want ErrClosed", err)
	}
	if _, ok := st.NICByName(hs[0].dev.Name()); ok {
		t.Error("the device's NIC survived Stack.Close")
	}
	if _, err := st.OpenTunnelSocket(stack.SocketConfig{}, &recorder{}); !errors.Is(err, stack.ErrClosed) {
		t.Errorf("OpenTunnelSocket on a closed stack: %v, want ErrClosed", err)
	}
	st.Close() // idempotent
	so.Close()
	if n := rec.closeCalls(); n != 1 {
		t.Errorf("CloseEncap called %d times after a second Close, want 1", n)
	}
}

// TestNewDeviceOnClosedStack: a device created after Stack.Close must be
// refused, or nothing would ever close it.
func TestNewDeviceOnClosedStack(t *testing.T) {
	st := newStack(t)
	st.Close()
	d, err := stack.NewDevice(st, stack.DeviceConfig{Name: "late", EncapLen: 16}, &captureTx{})
	if err == nil {
		d.Close()
		t.Fatal("NewDevice on a closed stack succeeded")
	}
	if !errors.Is(err, stack.ErrClosed) {
		t.Errorf("NewDevice on a closed stack: %v, want ErrClosed", err)
	}
}
