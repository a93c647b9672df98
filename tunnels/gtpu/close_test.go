package gtpu_test

// Close releases everything: NICs, TEIDs, ports and goroutines, whether
// devices and sockets are closed one by one or the stack goes with them.

import (
	"net/netip"
	"testing"

	"go.uber.org/goleak"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
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
		tunneltest.CloseTwice(t, "Close", a.dev)
		tunneltest.NoNIC(t, a.st, name, "Device.Close")
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
		tunneltest.CloseTwice(t, "Socket.Close", a.sock)
		tunneltest.NoNIC(t, a.st, d.Name(), "Socket.Close")
		again, err := gtpu.OpenSocket(a.st, gtpu.SocketConfig{})
		if err != nil {
			t.Fatalf("OpenSocket on the closed socket's port: %v", err)
		}
		again.Close()
		tunneltest.PortFree(t, a.st, gtpu.DefaultPort)
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
		tunneltest.OuterStackClose(t, func(outer, inner *stack.Stack) string {
			sock, err := gtpu.OpenSocket(outer, gtpu.SocketConfig{})
			if err != nil {
				t.Fatal(err)
			}
			d, err := sock.AddDevice(inner, gtpu.Config{Sessions: []gtpu.Session{{LocalTEID: 1, Peer: netip.MustParseAddr("10.99.0.2"), UE4: ue4}}})
			if err != nil {
				t.Fatal(err)
			}
			return d.Name()
		}, nil)
	})
}
