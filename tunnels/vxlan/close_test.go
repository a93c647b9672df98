package vxlan_test

// Close releases everything: NICs, ports, goroutines (the ARP/ND proxy's
// worker too) and the ageing timer, whether devices and sockets are closed one by one or the stack goes with
// them.

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// busyPair returns a pair with learning (so ageing timers run) that has
// carried pings and a TCP transfer over asynchronous wires.
func busyPair(t *testing.T) [2]*host {
	t.Helper()
	hs := pair(t, topo{outer4: true}, func(_ int, c *vxlan.Config) { c.Learning = true })
	ping(t, hs[0], hs[1].inner[1].Addr())
	transfer(t, hs[0], hs[1], hs[1].inner[0].Addr(), 256<<10)
	for _, h := range hs {
		if !vxlan.AgeingTimerArmed(h.dev) {
			t.Fatalf("%s: ageing timer not armed on a learning device", h.dev.Name())
		}
	}
	return hs
}

func TestCloseLeavesNothing(t *testing.T) {
	t.Run("device, socket, stack", func(t *testing.T) {
		leaks := goleak.IgnoreCurrent()
		hs := busyPair(t)
		a := hs[0]
		name, vni := a.dev.Name(), a.dev.VNI()

		// The device goes: its NIC, its VNI binding and its timer.
		tunneltest.CloseTwice(t, "Close", a.dev)
		if vxlan.AgeingTimerArmed(a.dev) {
			t.Error("ageing timer still armed after Device.Close")
		}
		tunneltest.NoNIC(t, a.st, name, "Device.Close")
		if d := a.sock.Device(vni); d != nil {
			t.Errorf("VNI %d still maps to %s after Device.Close", vni, d.Name())
		}
		// ... so the name and the VNI can be used again.
		d, err := a.sock.AddDevice(nil, vxlan.Config{Name: name, VNI: vni, Learning: true})
		if err != nil {
			t.Fatalf("AddDevice after Close: %v", err)
		}

		// The socket goes with its devices, and frees the port.
		if err := a.sock.Close(); err != nil {
			t.Fatal(err)
		}
		if vxlan.AgeingTimerArmed(d) {
			t.Error("ageing timer of the socket's device still armed after Socket.Close")
		}
		tunneltest.NoNIC(t, a.st, name, "Socket.Close")
		again, err := vxlan.OpenSocket(a.st, vxlan.SocketConfig{})
		if err != nil {
			t.Fatalf("OpenSocket on the closed socket's port: %v", err)
		}
		again.Close()
		tunneltest.PortFree(t, a.st, vxlan.DefaultPort)

		for _, h := range hs {
			h.sock.Close()
			h.wire.Close()
			h.st.Close()
		}
		if vxlan.AgeingTimerArmed(hs[1].dev) {
			t.Error("ageing timer still armed after Socket.Close")
		}
		goleak.VerifyNone(t, leaks)
	})

	t.Run("stack only", func(t *testing.T) {
		leaks := goleak.IgnoreCurrent()
		hs := busyPair(t)
		for _, h := range hs {
			h.wire.Close()
			h.st.Close()
		}
		for _, h := range hs {
			if vxlan.AgeingTimerArmed(h.dev) {
				t.Errorf("%v: ageing timer still armed after Stack.Close", h.outer)
			}
			if d := h.sock.Device(42); d != nil {
				t.Errorf("%v: VNI 42 still maps to a device after Stack.Close", h.outer)
			}
		}
		goleak.VerifyNone(t, leaks)
	})

	t.Run("outer stack of a device in another stack", func(t *testing.T) {
		var d *vxlan.Device
		tunneltest.OuterStackClose(t, func(outer, inner *stack.Stack) string {
			s, err := vxlan.OpenSocket(outer, vxlan.SocketConfig{})
			if err != nil {
				t.Fatal(err)
			}
			d, err = s.AddDevice(inner, vxlan.Config{VNI: 42, Learning: true, Remotes: []netip.Addr{netip.MustParseAddr("10.99.0.1")}})
			if err != nil {
				t.Fatal(err)
			}
			return d.Name()
		}, func() {
			if vxlan.AgeingTimerArmed(d) {
				t.Error("ageing timer still armed after the socket's stack closed")
			}
		})
	})

	t.Run("hub", func(t *testing.T) {
		leaks := goleak.IgnoreCurrent()
		hs := trio(t, memlink.Options{}, nil)
		ping(t, hs[0], hs[1].inner[0].Addr())
		ping(t, hs[2], hs[0].inner[0].Addr())
		for _, h := range hs {
			h.sock.Close()
		}
		for _, h := range hs {
			h.st.Close()
		}
		goleak.VerifyNone(t, leaks)
	})
}

// TestCloseRacingAddDevice closes the socket as soon as a new learning
// device shows up in it, while AddDevice may still be finishing: the
// device's ageing timer must end up stopped.
func TestCloseRacingAddDevice(t *testing.T) {
	const rounds = 50
	leaked := 0
	for i := range rounds {
		h := bareHost(t)
		vni := vxlan.VNI(100 + i)
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			for h.sock.Device(vni) == nil {
				runtime.Gosched()
			}
			h.sock.Close()
		}()
		d, err := h.sock.AddDevice(nil, vxlan.Config{VNI: vni, Learning: true})
		if err != nil {
			t.Fatal(err)
		}
		<-closed
		if vxlan.AgeingTimerArmed(d) { // also stops it
			leaked++
		}
	}
	if leaked > 0 {
		t.Errorf("in %d of %d rounds the ageing timer was armed on a device its socket had closed", leaked, rounds)
	}
}

// TestProxyCloseLeavesNothing: a proxying device's worker goes with the
// device, whoever closes it, also while replies wait in its queue.
func TestProxyCloseLeavesNothing(t *testing.T) {
	t.Run("pair", func(t *testing.T) {
		leaks := goleak.IgnoreCurrent()
		hs, _ := sniffedPair(t, func(_ int, c *vxlan.Config) { c.Proxy = true }, nil)
		for i, h := range hs {
			peer := hs[1-i]
			for _, p := range peer.inner {
				if err := h.dev.AddNeighbor(p.Addr(), devMAC(peer.dev)); err != nil {
					t.Fatal(err)
				}
			}
		}
		ping(t, hs[0], hs[1].inner[0].Addr())
		ping(t, hs[1], hs[0].inner[1].Addr())
		tunneltest.CloseTwice(t, "Close", hs[0].dev)
		for _, h := range hs {
			h.wire.Close()
			h.st.Close()
		}
		goleak.VerifyNone(t, leaks)
	})

	t.Run("replies queued", func(t *testing.T) {
		leaks := goleak.IgnoreCurrent()
		h := newHost(t, channelEndpoint(), netip.MustParsePrefix("10.99.0.1/24"))
		d := h.addDevice(t, vxlan.Config{VNI: 42, Proxy: true, Remotes: []netip.Addr{netip.MustParseAddr("10.99.0.2")}})
		peer, self := netip.MustParseAddr("192.168.42.2"), vxlan.MAC(d.MAC())
		if err := d.AddNeighbor(peer, vxlan.MAC{2, 0, 0, 0, 0, 2}); err != nil {
			t.Fatal(err)
		}
		entered, release := make(chan struct{}, 1), make(chan struct{})
		vxlan.SetProxyDeliverHook(func() {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
		})
		defer vxlan.SetProxyDeliverHook(nil)

		const requests = 200
		req := arpFrame(1, self, netip.MustParseAddr("192.168.42.1"), vxlan.MAC{}, peer)
		vxlan.TransmitFrame(d, req)
		<-entered // the worker holds the first reply
		for range requests - 1 {
			vxlan.TransmitFrame(d, req)
		}
		answered := d.ProxyStats().Replies
		full := d.Counters().Stats().Dropped(stack.DropQueueFull)
		if answered+full != requests || full == 0 {
			t.Fatalf("%d replies queued and %d dropped for a full queue, want %d in all and some dropped", answered, full, requests)
		}

		closed := make(chan struct{})
		go func() { d.Close(); close(closed) }()
		select {
		case <-closed:
			t.Fatal("Close returned while the worker was still delivering")
		case <-time.After(50 * time.Millisecond):
		}
		close(release)
		<-closed
		// The reply being delivered met a closed device; the queued ones
		// were released unread.
		if got := d.Counters().Stats().Dropped(stack.DropDeviceDown); got != answered {
			t.Errorf("%d replies dropped as device down, want all %d queued", got, answered)
		}
		if err := vxlan.TransmitFrame(d, req); err == nil && d.ProxyStats().Replies != answered {
			t.Error("a reply was queued on a closed device")
		}
		h.sock.Close()
		h.st.Close()
		goleak.VerifyNone(t, leaks)
	})
}
