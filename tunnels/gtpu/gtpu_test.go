package gtpu_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/gtpu"
)

// host is one GTP-U entity: a stack with an underlay NIC, a GTP-U socket
// and one device.
type host struct {
	st    *stack.Stack
	under stack.NICID
	sock  *gtpu.Socket
	dev   *gtpu.Device
	outer netip.Addr
	inner [2]netip.Addr // IPv4, IPv6
	wire  *memlink.Endpoint
}

// Addresses of the pair: the UE side (host 1) owns the UE addresses.
var (
	ue4 = netip.MustParseAddr("192.168.42.2")
	ue6 = netip.MustParseAddr("fd42::2")
	gw4 = netip.MustParseAddr("192.168.42.1")
	gw6 = netip.MustParseAddr("fd42::1")
)

// TEIDs of the pair's session: the network side receives on teidUp
// (uplink), the UE side on teidDown.
const (
	teidUp   gtpu.TEID = 100
	teidDown gtpu.TEID = 200
)

// pair builds two hosts on a memlink wire: host 0 plays the network side
// (RoleGGSN, 192.168.42.1, fd42::1), host 1 the access side with the UE
// (RoleSGSN, 192.168.42.2, fd42::2), one session between them. cfg, if not
// nil, adjusts host i's configuration.
func pair(t testing.TB, outer4 bool, opts memlink.Options, cfg func(i int, c *gtpu.Config)) [2]*host {
	t.Helper()
	outer := [2]netip.Prefix{netip.MustParsePrefix("fd00::1/64"), netip.MustParsePrefix("fd00::2/64")}
	if outer4 {
		outer = tunneltest.Outer4
	}
	var hs [2]*host
	for i, u := range tunneltest.Pair(t, opts, outer) {
		st := u.St
		sock, err := gtpu.OpenSocket(st, gtpu.SocketConfig{})
		if err != nil {
			t.Fatal(err)
		}
		h := &host{st: st, under: u.NIC, sock: sock, outer: u.Outer, wire: u.Wire}
		c := gtpu.Config{Role: gtpu.RoleGGSN, Sessions: []gtpu.Session{{LocalTEID: teidUp, RemoteTEID: teidDown, Peer: outer[1].Addr(), UE4: ue4, UE6: ue6}}}
		h.inner = [2]netip.Addr{gw4, gw6}
		if i == 1 {
			c = gtpu.Config{Role: gtpu.RoleSGSN, Sessions: []gtpu.Session{{LocalTEID: teidDown, RemoteTEID: teidUp, Peer: outer[0].Addr(), UE4: ue4, UE6: ue6}}}
			h.inner = [2]netip.Addr{ue4, ue6}
		}
		if cfg != nil {
			cfg(i, &c)
		}
		if h.dev, err = sock.AddDevice(nil, c); err != nil {
			t.Fatal(err)
		}
		for j, bits := range []int{24, 64} {
			if err := st.AddAddress(h.dev.NIC(), netip.PrefixFrom(h.inner[j], bits)); err != nil {
				t.Fatal(err)
			}
		}
		hs[i] = h
	}
	return hs
}

func ping(t testing.TB, h *host, dst netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := h.st.Ping(ctx, dst, 1, 56); err != nil {
		t.Fatalf("ping %v: %v", dst, err)
	}
}

func transfer(t testing.TB, a, b *host, dst netip.Addr, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e2e.TransferTCP(ctx, a.st, b.st, netip.AddrPortFrom(dst, 5001), int64(n), nil); err != nil {
		t.Fatal(err)
	}
}

// TestRoundTrip runs ping and a hashed TCP transfer both ways between a
// GGSN-role and an SGSN-role device, to both inner families, over IPv4 and
// IPv6 underlays, and checks that nothing was dropped.
func TestRoundTrip(t *testing.T) {
	for _, outer4 := range []bool{true, false} {
		t.Run(map[bool]string{true: "outer4", false: "outer6"}[outer4], func(t *testing.T) {
			hs := pair(t, outer4, memlink.Options{}, nil)
			for i, h := range hs {
				peer := hs[1-i]
				for _, dst := range peer.inner {
					ping(t, h, dst)
					transfer(t, h, peer, dst, 256<<10)
				}
			}
			for _, h := range hs {
				if s := h.dev.Counters().Stats(); s.TotalDrops() != 0 || s.RxPackets == 0 || s.TxPackets == 0 {
					t.Errorf("%s: %v", h.dev.Name(), s)
				}
				if s := h.sock.Tunnel().Counters().Stats(); s.TotalDrops() != 0 {
					t.Errorf("%s socket: %v", h.dev.Name(), s)
				}
			}
		})
	}
}

// TestOverlayGSO runs the e2e harness's GTP-U overlay (e2e.GTPU) with GSO, which
// TestProtocols in e2e does not cover.
func TestOverlayGSO(t *testing.T) {
	o, err := e2e.NewOverlay(e2e.OverlayConfig{Tunnel: e2e.GTPU, GSO: true, IPv6Underlay: true})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, h := range o.Hosts() {
		for _, dst := range []netip.Addr{h.Peer().Inner4, h.Peer().Inner6} {
			if _, err := e2e.TransferTCP(ctx, h.Stack, h.Peer().Stack, netip.AddrPortFrom(dst, 5001), 1<<20, nil); err != nil {
				t.Fatalf("%s to %v: %v", h.Name, dst, err)
			}
		}
	}
	for _, h := range o.Hosts() {
		if s := h.Tunnel.Counters().Stats(); s.TotalDrops() != 0 {
			t.Errorf("%s: %v", h.Name, s)
		}
	}
}

// TestEcho sends an Echo Request to a socket from a plain UDP socket and
// checks the Echo Response: same sequence number, Recovery IE, sent to the
// request's source port (TS 29.281 §4.4.2.2, §7.2.2).
func TestEcho(t *testing.T) {
	hs := pair(t, true, memlink.Options{}, nil)
	pc, err := hs[1].st.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 33333))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	req := []byte{0x32, 0x01, 0x00, 0x04, 0, 0, 0, 0, 0xbe, 0xef, 0, 0}
	if _, err := pc.WriteTo(req, net.UDPAddrFromAddrPort(netip.AddrPortFrom(hs[0].outer, gtpu.DefaultPort))); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x32, 0x02, 0x00, 0x06, 0, 0, 0, 0, 0xbe, 0xef, 0, 0, 14, 0}
	if diff := cmp.Diff(want, buf[:n]); diff != "" {
		t.Errorf("echo response (-want +got):\n%s", diff)
	}
	if got := from.(*net.UDPAddr).AddrPort(); got != netip.AddrPortFrom(hs[0].outer, gtpu.DefaultPort) {
		t.Errorf("response from %v, want %v:%d", got, hs[0].outer, gtpu.DefaultPort)
	}
	// The response can arrive before the sender's SendDatagram returns and
	// counts it.
	tunneltest.Eventually(t, "the echo response to be counted", func() bool { return hs[0].sock.Stats().EchoResponses == 1 })
	if s := hs[0].sock.Stats(); s.EchoRequests != 1 || s.EchoResponses != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestControlPlane checks what reaches the socket's normal UDP face:
// G-PDUs for unknown TEIDs and signalling other than Echo Request and End
// Marker, untouched.
func TestControlPlane(t *testing.T) {
	hs := pair(t, true, memlink.Options{Sync: true}, nil)
	to := netip.AddrPortFrom(hs[0].outer, gtpu.DefaultPort)
	pc := hs[0].sock.Tunnel().PacketConn()
	for _, tc := range []struct {
		name string
		msg  []byte
		pass bool
	}{
		{"G-PDU for unknown TEID", slices.Concat([]byte{0x30, 0xff, 0, 20, 0, 0, 0x12, 0x34}, ipv4From(ue4, gw4)), true},
		{"Error Indication", []byte{0x32, 26, 0, 4, 0, 0, 0, 0, 0, 1, 0, 0}, true},
		{"Echo Response", []byte{0x32, 2, 0, 6, 0, 0, 0, 0, 0, 1, 0, 0, 14, 0}, true},
		{"Supported Extension Headers Notification", []byte{0x32, 31, 0, 4, 0, 0, 0, 0, 0, 1, 0, 0}, true},
		{"End Marker", []byte{0x30, 254, 0, 0, 0, 0, 0, byte(teidUp)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := hs[0].sock.Stats()
			devBefore := hs[0].dev.Counters().Stats()
			tunneltest.SendUDP(t, hs[1].st, to, tc.msg)
			after := hs[0].sock.Stats()
			if tc.pass {
				buf := make([]byte, 200)
				pc.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tc.msg, buf[:n]); diff != "" {
					t.Errorf("control plane got (-want +got):\n%s", diff)
				}
				if after.PassedToUDP != before.PassedToUDP+1 {
					t.Errorf("passed %d -> %d", before.PassedToUDP, after.PassedToUDP)
				}
			} else if after.EndMarkers != before.EndMarkers+1 {
				t.Errorf("end markers %d -> %d", before.EndMarkers, after.EndMarkers)
			}
			tunneltest.CheckCounts(t, "device", tunneltest.Since(devBefore, hs[0].dev.Counters()), tunneltest.Counts{})
		})
	}
}

// ipv4From returns a 20-byte IPv4 header (protocol 253, no payload).
func ipv4From(src, dst netip.Addr) []byte {
	b := []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 253, 0, 0}
	b = append(b, src.AsSlice()...)
	b = append(b, dst.AsSlice()...)
	var s uint32
	for i := 0; i < 20; i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	b[10], b[11] = byte(^s>>8), byte(^s)
	return b
}

// ipv6From returns a 40-byte IPv6 header (next header 59, no payload).
func ipv6From(src, dst netip.Addr) []byte {
	b := []byte{0x60, 0, 0, 0, 0, 0, 59, 64}
	b = append(b, src.AsSlice()...)
	return append(b, dst.AsSlice()...)
}

// gpduMsg returns a G-PDU for teid with payload as its T-PDU.
func gpduMsg(teid gtpu.TEID, payload []byte) []byte {
	b := make([]byte, gtpu.HeaderLen)
	gtpu.Header(b).Encode(&gtpu.Fields{Type: gtpu.GPDU, Length: uint16(len(payload)), TEID: teid})
	return append(b, payload...)
}

// TestSessions adds and removes sessions at run time and checks that
// traffic follows them.
func TestSessions(t *testing.T) {
	hs := pair(t, true, memlink.Options{}, nil)
	ping(t, hs[0], ue4)
	if err := hs[0].dev.RemoveSession(teidUp); err != nil {
		t.Fatal(err)
	}
	if err := hs[0].dev.RemoveSession(teidUp); err == nil {
		t.Error("second RemoveSession succeeded")
	}
	if d, _ := hs[0].sock.Lookup(teidUp); d != nil {
		t.Error("TEID still bound after RemoveSession")
	}
	before := hs[0].dev.Counters().Stats()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := hs[0].st.Ping(ctx, ue4, 2, 56); err == nil {
		t.Error("ping through a removed session succeeded")
	}
	if got := tunneltest.Since(before, hs[0].dev.Counters()); got.Drops[stack.DropNoRemote] == 0 {
		t.Errorf("no DropNoRemote after the session went: %+v", got)
	}
	if err := hs[0].dev.AddSession(gtpu.Session{LocalTEID: teidUp, RemoteTEID: teidDown, Peer: hs[1].outer, UE4: ue4}); err != nil {
		t.Fatal(err)
	}
	ping(t, hs[0], ue4)
	if got := hs[0].dev.Sessions(); len(got) != 1 || got[0].UE4 != ue4 || got[0].UE6.IsValid() {
		t.Errorf("sessions %+v", got)
	}
}

// TestConfigErrors checks that bad configuration names the field, wraps
// stack.ErrInvalid (or stack.ErrExists), and changes nothing.
func TestConfigErrors(t *testing.T) {
	hs := pair(t, true, memlink.Options{}, nil)
	h := hs[0]
	peer := hs[1].outer
	good := gtpu.Session{LocalTEID: 1, RemoteTEID: 2, Peer: peer, UE4: netip.MustParseAddr("192.168.7.1")}
	with := func(f func(s *gtpu.Session)) []gtpu.Session { s := good; f(&s); return []gtpu.Session{s} }
	for _, tc := range []struct {
		name  string
		cfg   gtpu.Config
		field string
		want  error
	}{
		{"role", gtpu.Config{Role: 7}, "role", stack.ErrInvalid},
		{"local unspecified", gtpu.Config{Local: netip.IPv4Unspecified()}, "local", stack.ErrInvalid},
		{"local multicast", gtpu.Config{Local: netip.MustParseAddr("224.0.0.1")}, "local", stack.ErrInvalid},
		{"srcport reversed", gtpu.Config{SrcPortMin: 2000, SrcPortMax: 1000}, "srcport", stack.ErrInvalid},
		{"srcport from 0", gtpu.Config{SrcPortMax: 1000}, "srcport", stack.ErrInvalid},
		{"fixed and range", gtpu.Config{FixedSrcPort: true, SrcPortMin: 1, SrcPortMax: 9}, "fixed srcport", stack.ErrInvalid},
		{"headroom", gtpu.Config{Headroom: -1}, "headroom", stack.ErrInvalid},
		{"underlay MTU", gtpu.Config{UnderlayMTU: 67}, "underlay MTU", stack.ErrInvalid},
		{"MTU", gtpu.Config{MTU: 65535}, "MTU", stack.ErrInvalid},
		{"df over IPv6", gtpu.Config{DF: true, Local: netip.MustParseAddr("fd00::1")}, "df", stack.ErrInvalid},
		{"df with gso", gtpu.Config{DF: true, GSO: true, ChecksumOffload: true}, "df with gso", stack.ErrInvalid},
		{"gso without offload", gtpu.Config{GSO: true}, "gso", stack.ErrInvalid},
		{"no peer", gtpu.Config{Sessions: with(func(s *gtpu.Session) { s.Peer = netip.Addr{} })}, "sessions[0]: peer", stack.ErrInvalid},
		{"peer family", gtpu.Config{Local: netip.MustParseAddr("10.99.0.1"), Sessions: with(func(s *gtpu.Session) { s.Peer = netip.MustParseAddr("fd00::2") })}, "sessions[0]: peer", stack.ErrInvalid},
		{"no UE", gtpu.Config{Sessions: with(func(s *gtpu.Session) { s.UE4 = netip.Addr{} })}, "sessions[0]: ue", stack.ErrInvalid},
		{"UE4 is IPv6", gtpu.Config{Sessions: with(func(s *gtpu.Session) { s.UE4 = netip.MustParseAddr("fd42::9") })}, "sessions[0]: ue4", stack.ErrInvalid},
		{"UE6 is IPv4", gtpu.Config{Sessions: with(func(s *gtpu.Session) { s.UE6 = netip.MustParseAddr("1.2.3.4") })}, "sessions[0]: ue6", stack.ErrInvalid},
		{"TEID in use on the socket", gtpu.Config{Sessions: with(func(s *gtpu.Session) { s.LocalTEID = teidUp })}, "sessions[0]: local TEID", stack.ErrExists},
		{"UE twice", gtpu.Config{Sessions: append(with(func(*gtpu.Session) {}), gtpu.Session{LocalTEID: 9, Peer: peer, UE4: good.UE4})}, "sessions[1]: ue", stack.ErrExists},
		{"TEID twice", gtpu.Config{Sessions: append(with(func(*gtpu.Session) {}), gtpu.Session{LocalTEID: 1, Peer: peer, UE4: ue4})}, "sessions[1]: local TEID", stack.ErrExists},
		{"name taken", gtpu.Config{Name: h.dev.Name(), Sessions: with(func(*gtpu.Session) {})}, "", stack.ErrExists},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := h.sock.AddDevice(nil, tc.cfg)
			if err == nil {
				d.Close()
				t.Fatal("AddDevice succeeded")
			}
			if !errors.Is(err, tc.want) || (tc.field != "" && !hasPrefix(err.Error(), tc.field)) {
				t.Errorf("error %q, want %q... wrapping %v", err, tc.field, tc.want)
			}
			for _, s := range tc.cfg.Sessions {
				if d, _ := h.sock.Lookup(s.LocalTEID); d != nil && d != h.dev {
					t.Errorf("TEID %v bound after a failed AddDevice", s.LocalTEID)
				}
			}
		})
	}
	// AddSession on a live device: the same checks, nothing half-applied.
	if err := h.dev.AddSession(gtpu.Session{LocalTEID: 5, Peer: peer, UE4: ue4}); !errors.Is(err, stack.ErrExists) {
		t.Errorf("AddSession with a UE in use: %v", err)
	}
	if d, _ := h.sock.Lookup(5); d != nil {
		t.Error("TEID 5 bound after a failed AddSession")
	}
	if got := len(h.dev.Sessions()); got != 1 {
		t.Errorf("%d sessions, want 1", got)
	}
	if _, err := gtpu.OpenSocket(h.st, gtpu.SocketConfig{}); !errors.Is(err, stack.ErrExists) {
		t.Errorf("second socket on port %d: %v", gtpu.DefaultPort, err)
	}
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }
