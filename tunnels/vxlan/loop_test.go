package vxlan_test

// Route loops: an outer route back into the tunnel's own device is refused
// (the kernel's ELOOP), and two tunnels routed into each other stop at the
// nesting limit (XMIT_RECURSION_LIMIT). Neither hangs or overflows the
// stack.

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// within runs f and fails the test if it has not returned after d: a send
// that loops forever must not hang the test binary.
func within(t testing.TB, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

// bareHost returns a stack with a VXLAN socket and no underlay at all.
func bareHost(t testing.TB) *host {
	t.Helper()
	st := stack.New(stack.Options{})
	t.Cleanup(st.Close)
	sock, err := vxlan.OpenSocket(st, vxlan.SocketConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return &host{st: st, sock: sock}
}

var someMAC = net.HardwareAddr{0x02, 0xdd, 0, 0, 0, 2}

func TestRouteLoopThroughOwnDevice(t *testing.T) {
	for _, tc := range []struct {
		name          string
		remote        netip.Addr
		remoteNet     netip.Prefix // routed via the device itself
		inner, target netip.Addr   // the device's address and an inner peer
		bits          int
	}{
		{"IPv4", netip.MustParseAddr("10.77.0.9"), netip.MustParsePrefix("10.77.0.0/24"),
			netip.MustParseAddr("192.168.42.1"), netip.MustParseAddr("192.168.42.2"), 24},
		{"IPv6", netip.MustParseAddr("fd77::9"), netip.MustParsePrefix("fd77::/64"),
			netip.MustParseAddr("fd42::1"), netip.MustParseAddr("fd42::2"), 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := bareHost(t)
			dev := h.addDevice(t, vxlan.Config{VNI: 42, Remotes: []netip.Addr{tc.remote}}, netip.PrefixFrom(tc.inner, tc.bits))
			if err := h.st.AddRoute(tc.remoteNet, netip.Addr{}, dev.NIC()); err != nil {
				t.Fatal(err)
			}
			addStaticNeighbor(t, h.st, dev.NIC(), tc.target, someMAC)

			devBefore, sockBefore := dev.Counters().Stats(), h.sock.Tunnel().Counters().Stats()
			const n = 3
			within(t, 5*time.Second, "sending into a route loop", func() {
				for range n {
					tunneltest.SendUDP(t, h.st, netip.AddrPortFrom(tc.target, 9), []byte("loop"))
				}
			})
			loop := tunneltest.Counts{Drops: map[stack.DropReason]uint64{stack.DropLoop: n}}
			tunneltest.CheckCounts(t, "device", tunneltest.Since(devBefore, dev.Counters()), loop)
			tunneltest.CheckCounts(t, "socket", tunneltest.Since(sockBefore, h.sock.Tunnel().Counters()), loop)
		})
	}
}

// TestNestingLoop routes device 1's remote through device 2 and device 2's
// remote through device 1 (VNIs 42 and 43 on sockets 4789 and 4790): each
// pass adds one encapsulation until the nesting limit drops the packet.
func TestNestingLoop(t *testing.T) {
	h := bareHost(t)
	sock2, err := vxlan.OpenSocket(h.st, vxlan.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, 4790)})
	if err != nil {
		t.Fatal(err)
	}
	r1, r2 := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.2")
	// Device 1 lives on 10.1.0.0/24 and sends to r2, which is on device
	// 2's subnet; device 2 lives on 10.2.0.0/24 and sends to r1.
	dev1 := h.addDevice(t, vxlan.Config{VNI: 42, Remotes: []netip.Addr{r2}}, netip.MustParsePrefix("10.1.0.100/24"))
	dev2, err := sock2.AddDevice(nil, vxlan.Config{VNI: 43, Remotes: []netip.Addr{r1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.st.AddAddress(dev2.NIC(), netip.MustParsePrefix("10.2.0.100/24")); err != nil {
		t.Fatal(err)
	}
	addStaticNeighbor(t, h.st, dev1.NIC(), r1, someMAC)
	addStaticNeighbor(t, h.st, dev2.NIC(), r2, someMAC)

	d1, d2 := dev1.Counters().Stats(), dev2.Counters().Stats()
	s1, s2 := h.sock.Tunnel().Counters().Stats(), sock2.Tunnel().Counters().Stats()
	within(t, 5*time.Second, "sending into a nesting loop", func() {
		tunneltest.SendUDP(t, h.st, netip.AddrPortFrom(r1, 9), []byte("nest"))
	})
	// Device 1 sends at depths 0, 2, 4, 6 and drops the packet at depth
	// stack.MaxNesting (8); device 2 sends at depths 1, 3, 5, 7. Each
	// device's socket sends what it encapsulates.
	perDevice := uint64(stack.MaxNesting / 2)
	tunneltest.CheckCounts(t, "device 1", tunneltest.Since(d1, dev1.Counters()), tunneltest.Counts{Tx: perDevice, Drops: map[stack.DropReason]uint64{stack.DropNestingLimit: 1}})
	tunneltest.CheckCounts(t, "device 2", tunneltest.Since(d2, dev2.Counters()), tunneltest.Counts{Tx: perDevice})
	tunneltest.CheckCounts(t, "socket 1", tunneltest.Since(s1, h.sock.Tunnel().Counters()), tunneltest.Counts{Tx: perDevice})
	tunneltest.CheckCounts(t, "socket 2", tunneltest.Since(s2, sock2.Tunnel().Counters()), tunneltest.Counts{Tx: perDevice})
}
