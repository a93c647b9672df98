package vxlan_test

// End-to-end tests of the VXLAN device over in-process wires, and the
// helpers the other *_test.go files of this package share: hosts (a stack
// with an underlay NIC, a VXLAN socket and a device), a pair of hosts on a
// memlink pair, three hosts on a memlink hub, ping, a hashed TCP transfer,
// UDP send/receive and exact counter deltas.
//
// Every address here exists only inside the in-process stacks.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// host is one in-process VTEP: a stack with an underlay NIC, a VXLAN socket
// and (usually) one device.
type host struct {
	st    *stack.Stack
	under stack.NICID
	sock  *vxlan.Socket
	dev   *vxlan.Device
	outer netip.Addr
	inner []netip.Prefix    // IPv4 first, then IPv6 when present
	wire  *memlink.Endpoint // the underlay, for pair hosts
}

// newHost makes a stack whose NIC "underlay" is ep with address outer, and
// opens a VXLAN socket on the default port. The stack is closed when the
// test ends.
func newHost(t testing.TB, ep stack.LinkEndpoint, outer netip.Prefix) *host {
	t.Helper()
	st, nic := tunneltest.NewStack(t, ep, outer)
	return withSocket(t, st, nic, outer.Addr())
}

// withSocket returns a host on st (underlay NIC nic with address outer)
// with a VXLAN socket on the default port.
func withSocket(t testing.TB, st *stack.Stack, nic stack.NICID, outer netip.Addr) *host {
	t.Helper()
	sock, err := vxlan.OpenSocket(st, vxlan.SocketConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return &host{st: st, under: nic, sock: sock, outer: outer}
}

// addDevice adds a device with configuration c to h's socket, in h's own
// stack, and assigns it the inner addresses.
func (h *host) addDevice(t testing.TB, c vxlan.Config, inner ...netip.Prefix) *vxlan.Device {
	t.Helper()
	dev, err := h.sock.AddDevice(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range inner {
		if err := h.st.AddAddress(dev.NIC(), p); err != nil {
			t.Fatal(err)
		}
	}
	if h.dev == nil {
		h.dev, h.inner = dev, inner
	}
	return dev
}

type topo struct {
	outer4 bool // IPv4 underlay
	mtu    uint32
	opts   memlink.Options
}

// pair builds two hosts joined by a memlink pair, each with VNI 42 pointing
// at the other and inner addresses 192.168.42.N/24 and fd42::N/64 (N = 1, 2).
// cfg, if not nil, adjusts host i's device configuration.
func pair(t testing.TB, tp topo, cfg func(i int, c *vxlan.Config)) [2]*host {
	t.Helper()
	if tp.mtu == 0 {
		tp.mtu = 1500
	}
	tp.opts.MTU = tp.mtu
	outer := [2]netip.Prefix{netip.MustParsePrefix("fd00::1/64"), netip.MustParsePrefix("fd00::2/64")}
	if tp.outer4 {
		outer = tunneltest.Outer4
	}
	var hs [2]*host
	for i, u := range tunneltest.Pair(t, tp.opts, outer) {
		h := withSocket(t, u.St, u.NIC, u.Outer)
		h.wire = u.Wire
		c := vxlan.Config{VNI: 42, Remotes: []netip.Addr{outer[1-i].Addr()}, UnderlayMTU: tp.mtu}
		if cfg != nil {
			cfg(i, &c)
		}
		h.addDevice(t, c,
			netip.MustParsePrefix(fmt.Sprintf("192.168.42.%d/24", i+1)),
			netip.MustParsePrefix(fmt.Sprintf("fd42::%d/64", i+1)))
		hs[i] = h
	}
	return hs
}

// trio builds three hosts on a memlink hub: outer addresses 10.99.0.N/24 on
// Ethernet ports, VNI 42 devices with inner addresses 192.168.42.N/24
// (N = 1, 2, 3). Host 0's device floods to hosts 1 and 2; theirs point at
// host 0. cfg, if not nil, adjusts host i's device configuration.
func trio(t testing.TB, opts memlink.Options, cfg func(i int, c *vxlan.Config)) [3]*host {
	t.Helper()
	hub, err := memlink.NewHub(opts)
	if err != nil {
		t.Fatal(err)
	}
	outer := func(i int) netip.Prefix { return netip.MustParsePrefix(fmt.Sprintf("10.99.0.%d/24", i+1)) }
	var hs [3]*host
	for i := range hs {
		port := hub.NewPort(tcpip.LinkAddress([]byte{0x02, 0, 0x99, 0, 0, byte(i + 1)}))
		hs[i] = newHost(t, ethernet.New(port), outer(i))
	}
	for i, h := range hs {
		c := vxlan.Config{VNI: 42, Remotes: []netip.Addr{outer(0).Addr()}}
		if i == 0 {
			c.Remotes = []netip.Addr{outer(1).Addr(), outer(2).Addr()}
		}
		if cfg != nil {
			cfg(i, &c)
		}
		h.addDevice(t, c, netip.MustParsePrefix(fmt.Sprintf("192.168.42.%d/24", i+1)))
	}
	t.Cleanup(hub.Close) // before the stacks close
	return hs
}

func ping(t testing.TB, h *host, dst netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := h.st.Ping(ctx, dst, 1, 56); err != nil {
		t.Fatalf("ping %v: %v", dst, err)
	}
}

// transfer moves n bytes over TCP from a to b's addr and checks the hash.
func transfer(t testing.TB, a, b *host, dst netip.Addr, n int) {
	t.Helper()
	if err := tryTransfer(a, b, dst, n, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// tryTransfer moves n bytes over TCP from a to b's addr within timeout and
// checks their SHA-256 on arrival (e2e.TransferTCP).
func tryTransfer(a, b *host, dst netip.Addr, n int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := e2e.TransferTCP(ctx, a.st, b.st, netip.AddrPortFrom(dst, 5001), int64(n), nil)
	return err
}

// listenUDP opens a UDP socket in st bound to ap, closed when the test ends.
func listenUDP(t testing.TB, st *stack.Stack, ap netip.AddrPort) net.PacketConn {
	t.Helper()
	pc, err := st.ListenUDP(ap)
	if err != nil {
		t.Fatalf("listen UDP %v: %v", ap, err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// recvUDP reads one datagram from pc and checks that it is want.
func recvUDP(t testing.TB, pc net.PacketConn, want []byte) {
	t.Helper()
	buf := make([]byte, 65536)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("UDP read on %v: %v", pc.LocalAddr(), err)
	}
	if diff := cmp.Diff(want, buf[:n]); diff != "" {
		t.Fatalf("UDP datagram on %v from %v (-want +got):\n%s", pc.LocalAddr(), from, diff)
	}
}

// noUDP checks that nothing arrives on pc within d.
func noUDP(t testing.TB, pc net.PacketConn, d time.Duration) {
	t.Helper()
	buf := make([]byte, 65536)
	pc.SetReadDeadline(time.Now().Add(d))
	if n, from, err := pc.ReadFrom(buf); err == nil {
		t.Fatalf("UDP socket %v got %d bytes from %v, want nothing", pc.LocalAddr(), n, from)
	}
}

// checkDrops compares only the drops of a counter delta with want, exactly.
func checkDrops(t testing.TB, what string, got tunneltest.Counts, want map[stack.DropReason]uint64) {
	t.Helper()
	if diff := cmp.Diff(want, got.Drops, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("%s drops (-want +got):\n%s", what, diff)
	}
}

// settle waits until snap gives the same value on several polls in a row:
// packets still in flight on other goroutines (a synchronous wire unwinding
// after the reply that woke the test, a receiver counting a delivery) have
// been counted. It returns the settled value.
func settle[T comparable](t testing.TB, snap func() T) T {
	t.Helper()
	last, same := snap(), 0
	for deadline := time.Now().Add(5 * time.Second); same < 4; {
		time.Sleep(5 * time.Millisecond)
		if v := snap(); v == last {
			same++
		} else {
			last, same = v, 0
		}
		if time.Now().After(deadline) {
			t.Fatal("counters never settled")
		}
	}
	return last
}

// settleCounters waits until the counters stop moving.
func settleCounters(t testing.TB, cs ...*stack.Counters) {
	t.Helper()
	settle(t, func() string {
		var s string
		for _, c := range cs {
			s += c.Stats().String() + ";"
		}
		return s
	})
}

// neighbor returns the link address st's neighbour table on nic holds for
// addr, and whether it has a usable entry.
func neighbor(t testing.TB, st *stack.Stack, nic stack.NICID, addr netip.Addr) (tcpip.LinkAddress, bool) {
	t.Helper()
	proto := header.IPv4ProtocolNumber
	if addr.Is6() {
		proto = header.IPv6ProtocolNumber
	}
	ns, terr := st.GVisor().Neighbors(nic, proto)
	if terr != nil {
		t.Fatalf("neighbours of NIC %d: %v", nic, terr)
	}
	for _, n := range ns {
		if n.Addr == tcpip.AddrFromSlice(addr.AsSlice()) {
			switch n.State {
			case gstack.Incomplete, gstack.Unreachable, gstack.Unknown:
				return "", false
			}
			return n.LinkAddr, true
		}
	}
	return "", false
}

// addStaticNeighbor makes st resolve addr on nic to mac without ARP/NDP,
// so that a test controls exactly which frames a send produces.
func addStaticNeighbor(t testing.TB, st *stack.Stack, nic stack.NICID, addr netip.Addr, mac net.HardwareAddr) {
	t.Helper()
	proto := header.IPv4ProtocolNumber
	if addr.Is6() {
		proto = header.IPv6ProtocolNumber
	}
	if terr := st.GVisor().AddStaticNeighbor(nic, proto, tcpip.AddrFromSlice(addr.AsSlice()), tcpip.LinkAddress(mac)); terr != nil {
		t.Fatalf("static neighbour %v: %v", addr, terr)
	}
}

func TestOverlayEndToEnd(t *testing.T) {
	for _, outer4 := range []bool{true, false} {
		for _, inner := range []int{0, 1} { // index into host.inner: 0 IPv4 (ARP), 1 IPv6 (NDP)
			name := map[bool]string{true: "outer4", false: "outer6"}[outer4] + map[int]string{0: "/inner4", 1: "/inner6"}[inner]
			t.Run(name, func(t *testing.T) {
				hs := pair(t, topo{outer4: outer4}, nil)
				a, b := hs[0], hs[1]
				aIn, bIn := a.inner[inner].Addr(), b.inner[inner].Addr()
				if mac, ok := neighbor(t, a.st, a.dev.NIC(), bIn); ok {
					t.Fatalf("before any traffic, A already resolves %v to %v", bIn, mac)
				}

				ping(t, a, bIn)
				ping(t, b, aIn)

				// The neighbour resolution (ARP for IPv4, NDP for IPv6)
				// crossed the overlay: each inner stack maps the peer's
				// inner address to the peer's device MAC.
				for _, c := range []struct {
					from, to *host
					addr     netip.Addr
				}{{a, b, bIn}, {b, a, aIn}} {
					mac, ok := neighbor(t, c.from.st, c.from.dev.NIC(), c.addr)
					if !ok {
						t.Fatalf("no neighbour entry for %v on %s after ping", c.addr, c.from.dev.Name())
					}
					if got, want := net.HardwareAddr(mac).String(), c.to.dev.MAC().String(); got != want {
						t.Errorf("neighbour %v resolves to %s, want the peer device's MAC %s", c.addr, got, want)
					}
				}

				transfer(t, a, b, bIn, 4<<20)
				for _, h := range hs {
					st := h.dev.Counters().Stats()
					if st.RxPackets == 0 || st.TxPackets == 0 {
						t.Errorf("%v device counters did not move: %v", h.outer, st)
					}
					if d := st.TotalDrops(); d != 0 {
						t.Errorf("%v device drops: %v", h.outer, st)
					}
					if st := h.sock.Tunnel().Counters().Stats(); st.TotalDrops() != 0 {
						t.Errorf("%v socket drops: %v", h.outer, st)
					}
				}
			})
		}
	}
}
