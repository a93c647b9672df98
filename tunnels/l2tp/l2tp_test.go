package l2tp_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/link/channel"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/l2tp"
)

var testCookie = []byte{0xc0, 0x0c, 0x1e, 0x42}

// host is one end of a pair: a stack with an underlay NIC on a memlink
// wire, an L2TP tunnel to the other end and one session.
type host struct {
	st    *stack.Stack
	wire  *memlink.Endpoint
	outer netip.Addr
	sock  *l2tp.Socket
	dev   *l2tp.Device
	inner [2]netip.Prefix // IPv4, IPv6
}

// sessionConfig is the session both ends of a pair start from: the e2e
// session (ID 42, 4-byte cookie, default sublayer, seq both).
func sessionConfig() l2tp.Config {
	return l2tp.Config{ID: 42, PeerID: 42, Cookie: testCookie, PeerCookie: testCookie, L2Spec: l2tp.L2SpecDefault, Seq: l2tp.SeqBoth}
}

// pair builds two hosts joined by a memlink wire (IPv6 underlay if v6),
// each with a tunnel to the other and a session from sessionConfig
// modified by mod (nil = unchanged). Everything closes with the test.
func pair(t *testing.T, v6 bool, opts memlink.Options, mod func(i int, c *l2tp.Config)) [2]*host {
	t.Helper()
	outer := tunneltest.Outer4
	if v6 {
		outer = [2]netip.Prefix{netip.MustParsePrefix("fd00:99::1/64"), netip.MustParsePrefix("fd00:99::2/64")}
	}
	var hs [2]*host
	for i, u := range tunneltest.Pair(t, opts, outer) {
		hs[i] = &host{st: u.St, wire: u.Wire, outer: u.Outer, inner: [2]netip.Prefix{
			netip.MustParsePrefix([]string{"192.168.42.1/24", "192.168.42.2/24"}[i]),
			netip.MustParsePrefix([]string{"fd00:42::1/64", "fd00:42::2/64"}[i])}}
	}
	for i, h := range hs {
		var err error
		h.sock, err = l2tp.OpenSocket(h.st, l2tp.SocketConfig{TunnelID: uint32(i + 1), PeerTunnelID: uint32(2 - i),
			Remote: netip.AddrPortFrom(hs[1-i].outer, 0)})
		if err != nil {
			t.Fatal(err)
		}
		cfg := sessionConfig()
		if mod != nil {
			mod(i, &cfg)
		}
		if h.dev, err = h.sock.AddDevice(nil, cfg); err != nil {
			t.Fatal(err)
		}
		for _, p := range h.inner {
			if err := h.st.AddAddress(h.dev.NIC(), p); err != nil {
				t.Fatal(err)
			}
		}
	}
	return hs
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// ping checks that a echoes from b's inner address dst.
func ping(t *testing.T, a *host, dst netip.Addr) {
	t.Helper()
	r, err := e2e.Ping(ctx(t), a.st, dst, 3, time.Second)
	if err != nil {
		t.Fatalf("ping %v: %v", dst, err)
	}
	if r.Received != r.Sent {
		t.Errorf("ping %v: %v", dst, r)
	}
}

// transfer moves n bytes over TCP from a to b's inner address dst and
// checks the hash (TransferTCP compares both ends' SHA-256).
func transfer(t *testing.T, a, b *host, dst netip.Addr, n int64) {
	t.Helper()
	res, err := e2e.TransferTCP(ctx(t), a.st, b.st, netip.AddrPortFrom(dst, 5001), n, nil)
	if err != nil {
		t.Fatalf("TCP to %v: %v", dst, err)
	}
	if res.Bytes != n {
		t.Errorf("TCP to %v moved %d bytes, want %d", dst, res.Bytes, n)
	}
}

// TestRoundTrip carries ICMP echo and a hashed TCP transfer both ways over
// both inner families, over IPv4 and IPv6 underlays, for several session
// layouts, and checks that nothing was dropped and that sequence numbers
// arrived in order.
func TestRoundTrip(t *testing.T) {
	layouts := []struct {
		name string
		size int64 // TCP bytes per direction and inner family
		mod  func(i int, c *l2tp.Config)
	}{
		{"cookie-sublayer-seq-both", 1 << 20, nil},
		{"bare", 256 << 10, func(_ int, c *l2tp.Config) {
			c.Cookie, c.PeerCookie, c.L2Spec, c.Seq = nil, nil, l2tp.L2SpecNone, l2tp.SeqNone
		}},
		{"asymmetric-ids-and-8-byte-cookies", 256 << 10, func(i int, c *l2tp.Config) {
			ids := [2]l2tp.SessionID{0x1001, 0xfffffffe}
			ck := [2][]byte{{1, 2, 3, 4, 5, 6, 7, 8}, {8, 7, 6, 5, 4, 3, 2, 1}}
			c.ID, c.PeerID = ids[i], ids[1-i]
			c.Cookie, c.PeerCookie = ck[i], ck[1-i]
			c.Seq = l2tp.SeqSend
		}},
	}
	for _, l := range layouts {
		for _, v6 := range []bool{false, true} {
			t.Run(l.name+map[bool]string{false: "/ipv4-underlay", true: "/ipv6-underlay"}[v6], func(t *testing.T) {
				hs := pair(t, v6, memlink.Options{}, l.mod)
				for i, h := range hs {
					peer := hs[1-i]
					for _, p := range peer.inner {
						ping(t, h, p.Addr())
						transfer(t, h, peer, p.Addr(), l.size)
					}
				}
				for _, h := range hs {
					ds := h.dev.Counters().Stats()
					if ds.TotalDrops() != 0 || ds.RxBytes < uint64(2*l.size) || ds.TxBytes < uint64(2*l.size) {
						t.Errorf("%s: %v", h.dev.Name(), ds)
					}
					if s := h.dev.SeqStats(); s != (l2tp.SeqStats{}) {
						t.Errorf("%s: sequencing on a perfect wire: %+v", h.dev.Name(), s)
					}
					if ss := h.sock.Tunnel().Counters().Stats(); ss.TotalDrops() != 0 || ss.Passed != 0 {
						t.Errorf("%s's tunnel: %v, passed %d", h.dev.Name(), ss, ss.Passed)
					}
				}
			})
		}
	}
}

// TestOverlay runs the e2e TunnelFunc through e2e.NewOverlay, as the
// harness does.
func TestOverlay(t *testing.T) {
	o, err := e2e.NewOverlay(e2e.OverlayConfig{Tunnel: e2e.L2TP, IPv6Underlay: true, VNI: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	r, err := e2e.Ping(ctx(t), o.A.Stack, o.B.Inner4, 2, time.Second)
	if err != nil || r.Received != r.Sent {
		t.Fatalf("ping: %v %v", r, err)
	}
	if o.A.Tunnel.Name() != "l2tpeth7" {
		t.Errorf("device name %q, want l2tpeth7 (session id = VNI)", o.A.Tunnel.Name())
	}
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// channelEndpoint returns an underlay that carries nothing anywhere.
func channelEndpoint() *channel.Endpoint { return channel.New(64, 1500, "") }
