package gtpu_test

// Close releases everything: NICs, TEIDs, ports and goroutines, whether
// devices and sockets are closed one by one or the stack goes with them.

import (
	"net/netip"
	"testing"

	"go.uber.org/goleak"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/gtpu"
)

// busyPair returns a pair that has carried pings and a TCP transfer over
// asynchronous wires.
func busyPair(t *testing.T) [2]*host {
	t.Helper()
	hs := pair(t, true, memlink.Options{}, nil)
	ping(t, hs[0], ue6)
	transfer(t, hs[1], hs[0], gw4, 256<<10)
	return hs
}

func TestCloseLeavesNothing(t *testing.T) {
	t.Run("device, socket, stack", func(t *testing.T) {
		leaks := goleak.IgnoreCurrent()
		hs := busyPair(t)
		a := hs[0]
		name := a.dev.Name()
		if err := a.dev.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.dev.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, ok := a.st.NICByName(name); ok {
			t.Errorf("NIC %s still exists after Device.Close", name)
		}
		if d, _ := a.sock.Lookup(teidUp); d != nil {
			t.Errorf("TEID %v still maps to %s after Device.Close", teidUp, d.Name())
		}
		if err := a.dev.AddSession(gtpu.Session{LocalTEID: 7, Peer: hs[1].outer, UE4: ue4}); err == nil {
			t.Error("AddSession on a closed device succeeded")
		}
		// The name and the TEID can be used again.
		d, err := a.sock.AddDevice(nil, gtpu.Config{Name: name, Sessions: []gtpu.Session{{LocalTEID: teidUp, Peer: hs[1].outer, UE4: ue4}}})
		if err != nil {
			t.Fatalf("AddDevice after Close: %v", err)
		}
		// The socket goes with its devices, and frees the port.
		if err := a.sock.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.sock.Close(); err != nil {
			t.Errorf("second Socket.Close: %v", err)
		}
		if _, ok := a.st.NICByName(d.Name()); ok {
			t.Errorf("NIC %s still exists after Socket.Close", d.Name())
		}
		again, err := gtpu.OpenSocket(a.st, gtpu.SocketConfig{})
		if err != nil {
			t.Fatalf("OpenSocket on the closed socket's port: %v", err)
		}
		again.Close()
		pc, err := a.st.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), gtpu.DefaultPort))
		if err != nil {
			t.Fatalf("plain UDP bind of port %d after Close: %v", gtpu.DefaultPort, err)
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
			if d, _ := h.sock.Lookup(teidUp); d != nil {
				t.Errorf("%v: TEID still bound after Stack.Close", h.outer)
			}
		}
		goleak.VerifyNone(t, leaks)
	})

	t.Run("outer stack of a device in another stack", func(t *testing.T) {
		leaks := goleak.IgnoreCurrent()
		outer, inner := stack.New(stack.Options{}), stack.New(stack.Options{})
		sock, err := gtpu.OpenSocket(outer, gtpu.SocketConfig{})
		if err != nil {
			t.Fatal(err)
		}
		d, err := sock.AddDevice(inner, gtpu.Config{Sessions: []gtpu.Session{{LocalTEID: 1, Peer: netip.MustParseAddr("10.99.0.2"), UE4: ue4}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := inner.NICByName(d.Name()); !ok {
			t.Fatalf("no NIC %s in the inner stack", d.Name())
		}
		outer.Close() // closes the socket; the device cannot outlive it
		if _, ok := inner.NICByName(d.Name()); ok {
			t.Errorf("NIC %s still in the inner stack after its socket's stack closed", d.Name())
		}
		inner.Close()
		goleak.VerifyNone(t, leaks)
	})
}
