package geneve_test

// Close releases everything: NICs, VNI bindings, ports and goroutines,
// whether devices and sockets are closed one by one or the stack goes with
// them.

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/geneve"
)

// busyOverlay is a Geneve overlay that has carried pings and a TCP
// transfer, with each host's socket and device.
func busyOverlay(t *testing.T) (*e2e.Overlay, map[string]*geneve.Socket, map[string]*geneve.Device) {
	t.Helper()
	socks, devs := map[string]*geneve.Socket{}, map[string]*geneve.Device{}
	tun := func(h *e2e.Host, cfg e2e.OverlayConfig) (e2e.TunnelEnd, error) {
		s, err := geneve.OpenSocket(h.Stack, geneve.SocketConfig{})
		if err != nil {
			return e2e.TunnelEnd{}, err
		}
		d, err := s.AddDevice(nil, geneve.Config{VNI: 42, Remote: h.Peer().Outer})
		if err != nil {
			return e2e.TunnelEnd{}, err
		}
		socks[h.Name], devs[h.Name] = s, d
		return e2e.TunnelEnd{Device: d.Device, Socket: s.Tunnel()}, nil
	}
	o, err := e2e.NewOverlay(e2e.OverlayConfig{Tunnel: tun})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if r, err := e2e.Ping(ctx, o.A.Stack, o.B.Inner4, 2, time.Second); err != nil || r.Received != 2 {
		t.Fatalf("ping: %v %v", r, err)
	}
	if _, err := e2e.TransferTCP(ctx, o.A.Stack, o.B.Stack, netip.AddrPortFrom(o.B.Inner6, 5001), 256<<10, nil); err != nil {
		t.Fatal(err)
	}
	return o, socks, devs
}

func TestCloseLeavesNothing(t *testing.T) {
	t.Run("device, socket, stack", func(t *testing.T) {
		leaks := goleak.IgnoreCurrent()
		o, socks, devs := busyOverlay(t)
		st, s, d := o.A.Stack, socks["a"], devs["a"]
		name := d.Name()
		for range 2 {
			if err := d.Close(); err != nil {
				t.Fatalf("Device.Close: %v", err)
			}
		}
		tunneltest.NoNIC(t, st, name, "Device.Close")
		if s.Device(42) != nil {
			t.Error("VNI 42 still bound after Device.Close")
		}
		d2, err := s.AddDevice(nil, geneve.Config{Name: name, VNI: 42, Remote: o.B.Outer})
		if err != nil {
			t.Fatalf("AddDevice after Close: %v", err)
		}
		for range 2 {
			if err := s.Close(); err != nil {
				t.Fatalf("Socket.Close: %v", err)
			}
		}
		if _, ok := st.NICByName(d2.Name()); ok {
			t.Error("device NIC still exists after Socket.Close")
		}
		again, err := geneve.OpenSocket(st, geneve.SocketConfig{})
		if err != nil {
			t.Fatalf("OpenSocket on the closed socket's port: %v", err)
		}
		again.Close()
		tunneltest.PortFree(t, st, geneve.DefaultPort)
		o.Close()
		goleak.VerifyNone(t, leaks)
	})

	t.Run("stack only", func(t *testing.T) {
		leaks := goleak.IgnoreCurrent()
		o, socks, _ := busyOverlay(t)
		o.Close()
		for n, s := range socks {
			if s.Device(42) != nil {
				t.Errorf("%s: VNI 42 still bound after Stack.Close", n)
			}
		}
		goleak.VerifyNone(t, leaks)
	})

	t.Run("outer stack of a device in another stack", func(t *testing.T) {
		tunneltest.OuterStackClose(t, func(outer, inner *stack.Stack) string {
			s, err := geneve.OpenSocket(outer, geneve.SocketConfig{})
			if err != nil {
				t.Fatal(err)
			}
			d, err := s.AddDevice(inner, geneve.Config{VNI: 42, Remote: netip.MustParseAddr("10.99.0.1")})
			if err != nil {
				t.Fatal(err)
			}
			return d.Name()
		}, nil)
	})
}

// TestManyVNIs: one socket serves several devices, each only its own VNI.
func TestManyVNIs(t *testing.T) {
	h := newInjectHost(t)
	var devs []*geneve.Device
	for vni := range geneve.VNI(5) {
		devs = append(devs, h.addDevice(t, geneve.Config{VNI: 100 + vni, Remote: peer4}))
	}
	for i, d := range devs {
		h.inject(false, slices.Concat(rawHeader(0, 0, geneve.ProtoTEB, uint32(100+i)), ethFrame("\xff\xff\xff\xff\xff\xff")))
		for j, e := range devs {
			want := uint64(0)
			if j <= i {
				want = 1
			}
			if got := e.Counters().Stats().RxPackets; got != want {
				t.Errorf("after VNI %d: device %s received %d, want %d", 100+i, e.Name(), got, want)
			}
		}
		_ = d
	}
}
