package fou_test

// Round trips over in-process wires, and the helpers the other *_test.go
// files of this package share: a pair of hosts (a stack with an underlay
// NIC on a memlink pair, a FOU or GUE socket and one device), UDP senders
// and exact counter deltas.

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/fou"
)

// host is one tunnel end.
type host struct {
	st             *stack.Stack
	under          stack.NICID
	outer          netip.Addr
	sock           *fou.Socket
	dev            *fou.Device
	inner4, inner6 netip.Addr // invalid where the device does not carry the family
}

// topo describes a pair.
type topo struct {
	outer6 bool
	sock   fou.SocketConfig
	dev    fou.Config // Remote and Local are filled in
	opts   memlink.Options
}

// carries reports which inner families a device of cfg on a socket of sc
// carries.
func carries(sc fou.SocketConfig, cfg fou.Config) (v4, v6 bool) {
	p := cfg.Proto
	if p == fou.ProtoAuto && sc.Type == fou.TypeFOU {
		p = sc.Proto
	}
	switch p {
	case fou.ProtoIPIP:
		return true, false
	case fou.ProtoIPv6:
		return false, true
	}
	return true, true
}

// pair builds two hosts on a memlink pair, each with a socket of tp.sock
// and a device of tp.dev towards the other, with inner addresses
// 192.168.42.1-2/24 and fd00:42::1-2/64 for the families the device
// carries. The stacks close when the test ends.
func pair(t testing.TB, tp topo) [2]*host {
	t.Helper()
	if tp.opts.QueueLen == 0 && !tp.opts.Sync {
		tp.opts.QueueLen = 4096
	}
	outer := tunneltest.Outer4
	if tp.outer6 {
		outer = [2]netip.Prefix{netip.MustParsePrefix("fd00:99::1/64"), netip.MustParsePrefix("fd00:99::2/64")}
	}
	var hs [2]*host
	for i, u := range tunneltest.Pair(t, tp.opts, outer) {
		s, err := fou.OpenSocket(u.St, tp.sock)
		if err != nil {
			t.Fatal(err)
		}
		hs[i] = &host{st: u.St, under: u.NIC, outer: u.Outer, sock: s}
	}
	for i, h := range hs {
		cfg := tp.dev
		cfg.Remote, cfg.Local = hs[1-i].outer, h.outer
		d, err := h.sock.AddDevice(nil, cfg)
		if err != nil {
			t.Fatal(err)
		}
		h.dev = d
		v4, v6 := carries(tp.sock, cfg)
		if v4 {
			h.inner4 = netip.AddrFrom4([4]byte{192, 168, 42, byte(i + 1)})
			if err := h.st.AddAddress(d.NIC(), netip.PrefixFrom(h.inner4, 24)); err != nil {
				t.Fatal(err)
			}
		}
		if v6 {
			h.inner6 = netip.MustParseAddr("fd00:42::").Next()
			if i == 1 {
				h.inner6 = h.inner6.Next()
			}
			if err := h.st.AddAddress(d.NIC(), netip.PrefixFrom(h.inner6, 64)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return hs
}

// ping pings dst from h three times and wants every reply.
func ping(t testing.TB, h *host, dst netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := e2e.Ping(ctx, h.st, dst, 3, time.Second)
	if err != nil {
		t.Fatalf("ping %v: %v", dst, err)
	}
	if r.Received != r.Sent {
		t.Errorf("ping %v on a perfect wire: %v", dst, r)
	}
}

// transfer moves size bytes over TCP from a to dst on b, hashed at both
// ends.
func transfer(t testing.TB, a, b *host, dst netip.Addr, size int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := e2e.TransferTCP(ctx, a.st, b.st, netip.AddrPortFrom(dst, 5001), size, nil)
	if err != nil {
		t.Fatalf("TCP to %v: %v", dst, err)
	}
	if res.Bytes != size {
		t.Fatalf("TCP to %v moved %d bytes, want %d", dst, res.Bytes, size)
	}
}

// TestRoundTrip carries ping and a hashed TCP transfer through each kind of
// device, over IPv4 and IPv6 underlays: FOU/IPIP with inner IPv4,
// FOU/IPv6 with inner IPv6, GUE and GRE-in-UDP (keyed, checksummed) with
// both.
func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		sock fou.SocketConfig
		dev  fou.Config
	}{
		{"fou-ipip", fou.SocketConfig{Proto: fou.ProtoIPIP}, fou.Config{}},
		{"fou-ipv6", fou.SocketConfig{Proto: fou.ProtoIPv6}, fou.Config{}},
		{"gue", fou.SocketConfig{Type: fou.TypeGUE}, fou.Config{}},
		{"gue-ipip-only", fou.SocketConfig{Type: fou.TypeGUE}, fou.Config{Proto: fou.ProtoIPIP, EncapSport: 40000}},
		{"gre-in-udp", fou.SocketConfig{Proto: fou.ProtoGRE}, fou.Config{HasKey: true, Key: 0xdeadbeef, GRECsum: true}},
		{"gre-in-gue", fou.SocketConfig{Type: fou.TypeGUE}, fou.Config{Proto: fou.ProtoGRE}},
	} {
		for _, outer6 := range []bool{false, true} {
			t.Run(tc.name+map[bool]string{false: "/outer4", true: "/outer6"}[outer6], func(t *testing.T) {
				hs := pair(t, topo{outer6: outer6, sock: tc.sock, dev: tc.dev})
				for i, h := range hs {
					peer := hs[1-i]
					for _, dst := range []netip.Addr{peer.inner4, peer.inner6} {
						if !dst.IsValid() {
							continue
						}
						ping(t, h, dst)
						transfer(t, h, peer, dst, 256<<10)
					}
				}
				for _, h := range hs {
					ds := h.dev.Counters().Stats()
					if ds.TotalDrops() != 0 {
						t.Errorf("%s dropped packets: %v", h.dev.Name(), ds)
					}
					if ds.RxBytes < 256<<10 || ds.TxBytes < 256<<10 {
						t.Errorf("%s moved too little: %v", h.dev.Name(), ds)
					}
					if ss := h.sock.Tunnel().Counters().Stats(); ss.TotalDrops() != 0 {
						t.Errorf("socket dropped packets: %v", ss)
					}
				}
			})
		}
	}
}

// TestGSO: with checksum and segmentation offload on the wire and the
// devices, TCP hands 64 KiB segments to the device, which sends each as
// one datagram (GRE checksums computed over the whole segment), and the
// transfer still arrives intact.
func TestGSO(t *testing.T) {
	for _, tc := range []struct {
		name string
		sock fou.SocketConfig
		dev  fou.Config
	}{
		{"gue", fou.SocketConfig{Type: fou.TypeGUE}, fou.Config{}},
		{"gre-in-udp", fou.SocketConfig{Proto: fou.ProtoGRE}, fou.Config{HasKey: true, Key: 1, GRECsum: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := tc.dev
			dev.ChecksumOffload, dev.GSO = true, true
			hs := pair(t, topo{sock: tc.sock, dev: dev, opts: memlink.Options{ChecksumOffload: true, GSO: true}})
			transfer(t, hs[0], hs[1], hs[1].inner4, 4<<20)
			transfer(t, hs[1], hs[0], hs[0].inner6, 4<<20)
			for _, h := range hs {
				ds := h.dev.Counters().Stats()
				if ds.TotalDrops() != 0 {
					t.Errorf("%s dropped packets: %v", h.dev.Name(), ds)
				}
				// 8 MiB in far fewer packets than 1500-byte segments need.
				if ds.TxPackets+ds.RxPackets > 4000 {
					t.Errorf("%s moved %d packets: GSO segments were not used", h.dev.Name(), ds.TxPackets+ds.RxPackets)
				}
			}
		})
	}
}
