package fou_test

// Close releases everything: NICs, ports, handler registrations and
// goroutines, whether devices and sockets are closed one by one or the
// stack goes with them; and the handlers are shared by every socket of a
// stack.

import (
	"errors"
	"net/netip"
	"testing"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/fou"
)

// nopHandler is an IP protocol handler that does nothing, to probe whether
// a protocol number is free in a stack.
type nopHandler struct{}

func (nopHandler) ReceiveIP(*stack.PacketBuffer, netip.Addr, netip.Addr) {}

// protoFree reports whether st has no handler for p, leaving it so.
func protoFree(t *testing.T, st *stack.Stack, p fou.Proto) bool {
	t.Helper()
	err := st.RegisterIPProtocol(tcpip.TransportProtocolNumber(p), nopHandler{})
	if err == nil {
		st.UnregisterIPProtocol(tcpip.TransportProtocolNumber(p))
		return true
	}
	if !errors.Is(err, stack.ErrExists) {
		t.Fatalf("probe of IP protocol %v: %v", p, err)
	}
	return false
}

func TestCloseLeavesNothing(t *testing.T) {
	t.Run("device, socket", func(t *testing.T) {
		leaks := goleak.IgnoreCurrent()
		hs := pair(t, topo{sock: fou.SocketConfig{Type: fou.TypeGUE}})
		a, b := hs[0], hs[1]
		ping(t, a, b.inner4)
		transfer(t, a, b, b.inner6, 128<<10)
		name := a.dev.Name()
		cfg := a.dev.Config()

		tunneltest.CloseTwice(t, "Close", a.dev)
		tunneltest.NoNIC(t, a.st, name, "Device.Close")
		// The outer pair is free again, and the name.
		d, err := a.sock.AddDevice(nil, cfg)
		if err != nil {
			t.Fatalf("AddDevice after Close: %v", err)
		}
		tunneltest.CloseTwice(t, "Socket.Close", a.sock)
		tunneltest.NoNIC(t, a.st, d.Name(), "Socket.Close")
		for _, p := range []fou.Proto{fou.ProtoIPIP, fou.ProtoIPv6, fou.ProtoGRE} {
			if !protoFree(t, a.st, p) {
				t.Errorf("IP protocol %v still has a handler after the last socket closed", p)
			}
		}
		if fou.HandlerOf(a.st, fou.ProtoIPIP) != nil {
			t.Error("the stack's registry outlived its last socket")
		}
		// The port is free for a plain UDP socket and for a new tunnel.
		tunneltest.PortFree(t, a.st, fou.GUEPort)
		again, err := fou.OpenSocket(a.st, fou.SocketConfig{Type: fou.TypeGUE})
		if err != nil {
			t.Fatalf("OpenSocket on the closed socket's port: %v", err)
		}
		again.Close()
		a.st.Close()
		b.st.Close()
		goleak.VerifyNone(t, leaks)
	})
	t.Run("stack", func(t *testing.T) {
		leaks := goleak.IgnoreCurrent()
		hs := pair(t, topo{sock: fou.SocketConfig{Proto: fou.ProtoGRE}, dev: fou.Config{HasKey: true, Key: 1}})
		transfer(t, hs[0], hs[1], hs[1].inner4, 128<<10)
		for _, h := range hs {
			h.st.Close()
			if fou.HandlerOf(h.st, fou.ProtoGRE) != nil {
				t.Error("the stack's registry outlived the stack")
			}
			if err := h.sock.Close(); err != nil {
				t.Errorf("Socket.Close after Stack.Close: %v", err)
			}
			if err := h.dev.Close(); err != nil {
				t.Errorf("Device.Close after Stack.Close: %v", err)
			}
		}
		goleak.VerifyNone(t, leaks)
	})
}

// TestSharedHandlers: FOU and GUE sockets of one stack share one handler
// per IP protocol, as the kernel's ipip/gre handlers are shared by every
// FOU port. Packets that arrive on one socket reach a device added to
// another, and the handlers stay while any socket needs them.
func TestSharedHandlers(t *testing.T) {
	hs := pair(t, topo{sock: fou.SocketConfig{Proto: fou.ProtoIPIP}, dev: fou.Config{EncapDport: 5600}})
	a, b := hs[0], hs[1]
	// Both also listen on 5600 with a second IPIP port, b on GUE too.
	var fou2 *fou.Socket
	for _, x := range hs {
		s, err := fou.OpenSocket(x.st, fou.SocketConfig{Proto: fou.ProtoIPIP, Local: netip.AddrPortFrom(netip.Addr{}, 5600)})
		if err != nil {
			t.Fatalf("second IPIP port: %v", err)
		}
		fou2 = s
	}
	gue, err := fou.OpenSocket(b.st, fou.SocketConfig{Type: fou.TypeGUE})
	if err != nil {
		t.Fatalf("GUE port beside FOU: %v", err)
	}
	h := fou.HandlerOf(b.st, fou.ProtoIPIP)
	if h == nil || fou2.Handler(fou.ProtoIPIP) != h || gue.Handler(fou.ProtoIPIP) != h || b.sock.Handler(fou.ProtoIPIP) != h {
		t.Fatal("the sockets of one stack do not share the IPIP handler")
	}
	// The devices send to 5600: b's fou2 resubmits, the shared handler
	// finds b.dev, which belongs to b.sock (the port on 5555 sees nothing).
	before := fou2.Tunnel().Counters().Stats().RxPackets
	ping(t, a, b.inner4)
	if fou2.Tunnel().Counters().Stats().RxPackets == before {
		t.Error("the pings did not arrive on the second port")
	}
	if n := b.sock.Tunnel().Counters().Stats().RxPackets; n != 0 {
		t.Errorf("the first port received %d datagrams, want 0", n)
	}
	// A second device for the same pair in the same protocol, on any
	// socket, is the kernel's "tunnel exists".
	if _, err := gue.AddDevice(nil, fou.Config{Remote: a.outer, Local: b.outer}); !errors.Is(err, stack.ErrExists) {
		t.Errorf("a GUE device for b.dev's pair: %v, want ErrExists", err)
	}
	// Closing a socket that shares the handler keeps it.
	if err := gue.Close(); err != nil {
		t.Fatal(err)
	}
	if protoFree(t, b.st, fou.ProtoIPIP) {
		t.Fatal("closing the GUE socket unregistered the IPIP handler still used by two FOU sockets")
	}
	if !protoFree(t, b.st, fou.ProtoGRE) {
		t.Error("the GRE handler outlived the only socket that needed it")
	}
	ping(t, a, b.inner4)
	// Unknown pairs are counted on the shared handler.
	if got := h.Counters().Stats().TotalDrops(); got != 0 {
		t.Errorf("handler drops %d, want 0", got)
	}
}
