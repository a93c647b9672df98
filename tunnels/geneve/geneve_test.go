package geneve_test

// End-to-end tests over in-process wires, and the helpers the other
// external tests share: an "inject host" whose underlay is a gVisor channel
// endpoint, so that a test writes whole outer IP packets into the stack and
// reads what the stack sends.

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/geneve"
)

// TestRoundTrip runs ping and a hashed TCP transfer through L2 and L3
// Geneve overlays over IPv4 and IPv6 underlays, both ways, and with GSO and
// checksum offload.
func TestRoundTrip(t *testing.T) {
	for _, tun := range []struct {
		name string
		f    e2e.TunnelFunc
	}{{"l2", e2e.Geneve}, {"l3", e2e.GeneveL3}} {
		for _, v := range []struct{ v6, gso bool }{{false, false}, {true, false}, {false, true}} {
			t.Run(fmt.Sprintf("%s/ipv6-underlay=%v/gso=%v", tun.name, v.v6, v.gso), func(t *testing.T) {
				o, err := e2e.NewOverlay(e2e.OverlayConfig{Tunnel: tun.f, IPv6Underlay: v.v6, VNI: 4242, GSO: v.gso})
				if err != nil {
					t.Fatal(err)
				}
				defer o.Close()
				exchange(t, o, 1<<20)
			})
		}
	}
}

// exchange pings and transfers n bytes over TCP from each host of o to
// both inner addresses of the other, and checks the devices dropped
// nothing.
func exchange(t *testing.T, o *e2e.Overlay, n int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, h := range o.Hosts() {
		for _, dst := range []netip.Addr{h.Peer().Inner4, h.Peer().Inner6} {
			r, err := e2e.Ping(ctx, h.Stack, dst, 2, time.Second)
			if err != nil || r.Received != r.Sent {
				t.Fatalf("%s: ping %v: %v, %v", h.Name, dst, r, err)
			}
			res, err := e2e.TransferTCP(ctx, h.Stack, h.Peer().Stack, netip.AddrPortFrom(dst, 5001), n, nil)
			if err != nil || res.Bytes != n {
				t.Fatalf("%s: TCP to %v: %d bytes, %v", h.Name, dst, res.Bytes, err)
			}
		}
	}
	for _, h := range o.Hosts() {
		if ds := h.Tunnel.Counters().Stats(); ds.TotalDrops() != 0 || ds.RxBytes < uint64(2*n) {
			t.Errorf("%s: device %v", h.Name, ds)
		}
	}
}

// TestOptionsEndToEnd sends every packet with a critical option (that the
// peer understands) and a non-critical one, both ways, and reads them on
// the other side through the metadata hook.
func TestOptionsEndToEnd(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	tun := func(h *e2e.Host, cfg e2e.OverlayConfig) (e2e.TunnelEnd, error) {
		s, err := geneve.OpenSocket(h.Stack, geneve.SocketConfig{})
		if err != nil {
			return e2e.TunnelEnd{}, err
		}
		opts, _ := geneve.AppendOption(nil, 0x0102, 0x80|7, []byte(h.Name+"xyz"))
		opts, _ = geneve.AppendOption(opts, 0xffff, 1, nil)
		d, err := s.AddDevice(nil, geneve.Config{VNI: 42, Remote: h.Peer().Outer, TxOptions: opts,
			Options: []geneve.OptionKey{{Class: 0x0102, Type: 0x87}},
			OnReceive: func(md geneve.Metadata, frame []byte) {
				if !md.Critical || md.VNI != 42 || md.Src.Addr() != h.Peer().Outer || md.Dst.Port() != geneve.DefaultPort || md.TTL == 0 {
					t.Errorf("metadata %+v", md)
				}
				o, ok := md.Options.Find(geneve.OptionKey{Class: 0x0102, Type: 0x87})
				mu.Lock()
				if ok {
					seen[string(o.Data())]++
				}
				mu.Unlock()
			}})
		if err != nil {
			return e2e.TunnelEnd{}, err
		}
		return e2e.TunnelEnd{Device: d.Device, Socket: s.Tunnel()}, nil
	}
	o, err := e2e.NewOverlay(e2e.OverlayConfig{Tunnel: tun})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	exchange(t, o, 64<<10)
	mu.Lock()
	defer mu.Unlock()
	if seen["axyz"] == 0 || seen["bxyz"] == 0 || len(seen) != 2 {
		t.Errorf("options seen by the hooks: %v", seen)
	}
}

// injectHost is a stack whose underlay is a channel endpoint with
// 10.99.0.2/24 and fd00::2/64, a Geneve socket on 6081, and devices.
type injectHost struct {
	st   *stack.Stack
	ep   *channel.Endpoint
	sock *geneve.Socket
}

var (
	peer4 = netip.MustParseAddr("10.99.0.1") // the imaginary remote endpoint
	peer6 = netip.MustParseAddr("fd00::1")
	self4 = netip.MustParseAddr("10.99.0.2")
	self6 = netip.MustParseAddr("fd00::2")
)

func newInjectHost(t testing.TB) *injectHost {
	t.Helper()
	ep := channel.New(4096, 1500, "")
	st, _ := tunneltest.NewStack(t, ep, netip.MustParsePrefix("10.99.0.2/24"), netip.MustParsePrefix("fd00::2/64"))
	s, err := geneve.OpenSocket(st, geneve.SocketConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return &injectHost{st: st, ep: ep, sock: s}
}

func (h *injectHost) addDevice(t testing.TB, c geneve.Config, inner ...string) *geneve.Device {
	t.Helper()
	d, err := h.sock.AddDevice(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range inner {
		if err := h.st.AddAddress(d.NIC(), netip.MustParsePrefix(p)); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// inject hands a UDP datagram with payload from the peer of the family of
// v6 to h's Geneve port, as if it came off the wire; it is processed before
// inject returns. What the stack sends in response is discarded.
func (h *injectHost) inject(v6 bool, payload []byte) {
	src, dst := netip.AddrPortFrom(peer4, 40000), netip.AddrPortFrom(self4, geneve.DefaultPort)
	if v6 {
		src, dst = netip.AddrPortFrom(peer6, 40000), netip.AddrPortFrom(self6, geneve.DefaultPort)
	}
	proto, b := tunneltest.OuterDatagram(src, dst, 0x28, payload, nil)
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	h.ep.InjectInbound(proto, pkt)
	pkt.DecRef()
	h.ep.Drain()
}

// sent returns the next packet h's stack wrote to the underlay, as bytes
// starting at the outer IP header.
func (h *injectHost) sent(t testing.TB) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pkt := h.ep.ReadContext(ctx)
	if pkt == nil {
		t.Fatal("nothing sent")
	}
	defer pkt.DecRef()
	v := pkt.ToView()
	defer v.Release()
	return append([]byte(nil), v.AsSlice()...)
}
