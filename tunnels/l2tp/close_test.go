package l2tp_test

// Close releases everything: NICs, session bindings, ports and goroutines,
// whether sessions and tunnels are closed one by one or the stack goes
// with them.

import (
	"net/netip"
	"testing"

	"go.uber.org/goleak"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
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
		if err := a.dev.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.dev.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, ok := a.st.NICByName(name); ok {
			t.Errorf("NIC %s still exists after Device.Close", name)
		}
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
		if err := a.sock.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.sock.Close(); err != nil {
			t.Errorf("second Socket.Close: %v", err)
		}
		if _, ok := a.st.NICByName(d.Name()); ok {
			t.Errorf("NIC %s still exists after Socket.Close", d.Name())
		}
		if a.sock.Device(42) != nil {
			t.Error("session 42 still bound after Socket.Close")
		}
		again, err := l2tp.OpenSocket(a.st, l2tp.SocketConfig{TunnelID: 1, PeerTunnelID: 2, Remote: netip.AddrPortFrom(hs[1].outer, 0)})
		if err != nil {
			t.Fatalf("OpenSocket on the closed socket's port: %v", err)
		}
		again.Close()
		pc, err := a.st.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), l2tp.DefaultPort))
		if err != nil {
			t.Fatalf("plain UDP bind of port %d after Close: %v", l2tp.DefaultPort, err)
		}
		pc.Close()

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
		leaks := goleak.IgnoreCurrent()
		outer, inner := stack.New(stack.Options{}), stack.New(stack.Options{})
		defer inner.Close()
		s, err := l2tp.OpenSocket(outer, l2tp.SocketConfig{TunnelID: 1, PeerTunnelID: 2, Remote: netip.MustParseAddrPort("10.99.0.2:1701")})
		if err != nil {
			t.Fatal(err)
		}
		d, err := s.AddDevice(inner, sessionConfig())
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := inner.NICByName(d.Name()); !ok {
			t.Fatalf("no NIC %s in the inner stack", d.Name())
		}
		outer.Close() // closes the tunnel; the session cannot outlive it
		if _, ok := inner.NICByName(d.Name()); ok {
			t.Errorf("NIC %s still in the inner stack after its tunnel's stack closed", d.Name())
		}
		inner.Close()
		goleak.VerifyNone(t, leaks)
	})
}
