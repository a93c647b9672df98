package l2tp_test

// Close releases everything: NICs, session bindings, ports and goroutines,
// whether sessions and tunnels are closed one by one or the stack goes
// with them.

import (
	"net/netip"
	"testing"

	"go.uber.org/goleak"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/l2tp"
)

// busyPair returns a pair over asynchronous wires that has carried pings
// and a TCP transfer.
func busyPair(t *testing.T) [2]*host {
	t.Helper()
	hs := pair(t, false, memlink.Options{}, nil)
	ping(t, hs[0], hs[1].inner[1].Addr())
	transfer(t, hs[0], hs[1], hs[1].inner[0].Addr(), 256<<10)
	return hs
}

func TestCloseLeavesNothing(t *testing.T) {
	t.Run("session, tunnel, stack", func(t *testing.T) {
		leaks := goleak.IgnoreCurrent()
		hs := busyPair(t)
		a := hs[0]
		name := a.dev.Name()

		// The session goes: its NIC and its session ID binding.
		tunneltest.CloseTwice(t, "Close", a.dev)
		tunneltest.NoNIC(t, a.st, name, "Device.Close")
		if d := a.sock.Device(42); d != nil {
			t.Errorf("session 42 still maps to %s after Device.Close", d.Name())
		}
		// Its traffic now reaches the control plane instead.
		before := a.sock.Tunnel().Counters().Stats().Passed
		e2eQuietPing(hs[1], a)
		if a.sock.Tunnel().Counters().Stats().Passed == before {
			t.Error("data messages for the closed session were not passed to the control plane")
		}
		// ... and the name and the ID can be used again.
		d, err := a.sock.AddDevice(nil, sessionConfig())
		if err != nil {
			t.Fatalf("AddDevice after Close: %v", err)
		}

		// The tunnel goes with its sessions, and frees the port.
		tunneltest.CloseTwice(t, "Socket.Close", a.sock)
		tunneltest.NoNIC(t, a.st, d.Name(), "Socket.Close")
		if a.sock.Device(42) != nil {
			t.Error("session 42 still bound after Socket.Close")
		}
		again, err := l2tp.OpenSocket(a.st, l2tp.SocketConfig{TunnelID: 1, PeerTunnelID: 2, Remote: netip.AddrPortFrom(hs[1].outer, 0)})
		if err != nil {
			t.Fatalf("OpenSocket on the closed socket's port: %v", err)
		}
		again.Close()
		tunneltest.PortFree(t, a.st, l2tp.DefaultPort)

		for _, h := range hs {
			h.sock.Close()
			h.wire.Close()
			h.st.Close()
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
			if h.sock.Device(42) != nil {
				t.Errorf("%v: session 42 still bound after Stack.Close", h.outer)
			}
		}
		goleak.VerifyNone(t, leaks)
	})

	t.Run("outer stack of a session in another stack", func(t *testing.T) {
		tunneltest.OuterStackClose(t, func(outer, inner *stack.Stack) string {
			s, err := l2tp.OpenSocket(outer, l2tp.SocketConfig{TunnelID: 1, PeerTunnelID: 2, Remote: netip.MustParseAddrPort("10.99.0.2:1701")})
			if err != nil {
				t.Fatal(err)
			}
			d, err := s.AddDevice(inner, sessionConfig())
			if err != nil {
				t.Fatal(err)
			}
			return d.Name()
		}, nil)
	})
}
