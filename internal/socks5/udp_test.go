package socks5_test

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/internal/socks5"
	"go.uber.org/goleak"
)

// associate opens a control connection, does UDP ASSOCIATE declaring the
// port of a fresh client UDP socket (0 if declare is false), and returns
// the control connection's client, the socket and the relay address.
func associate(t *testing.T, proxy string, declare bool) (*client, *net.UDPConn, netip.AddrPort) {
	t.Helper()
	uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	c, err := dialProxy(t, proxy, "", "")
	if err != nil {
		t.Fatal(err)
	}
	var port uint16
	if declare {
		port = uc.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	}
	rep, relay, err := c.request(3, netip.IPv4Unspecified(), "", port)
	if err != nil || rep != 0 {
		t.Fatalf("UDP ASSOCIATE: reply %d, %v", rep, err)
	}
	if relay.Addr() != netip.MustParseAddr("127.0.0.1") || relay.Port() == 0 {
		t.Fatalf("relay address %v, want 127.0.0.1 and a port", relay)
	}
	c.conn.SetDeadline(time.Time{})
	return c, uc, relay
}

// roundTrip sends payload to dst through the relay and returns the reply's
// source and payload, or an error if none comes within d.
func roundTrip(uc *net.UDPConn, relay, dst netip.AddrPort, payload []byte, d time.Duration) (netip.AddrPort, []byte, error) {
	if _, err := uc.WriteToUDPAddrPort(udpDatagram(0, dst, payload), relay); err != nil {
		return netip.AddrPort{}, nil, err
	}
	return readRelay(uc, relay, d)
}

func readRelay(uc *net.UDPConn, relay netip.AddrPort, d time.Duration) (netip.AddrPort, []byte, error) {
	buf := make([]byte, 65535)
	uc.SetReadDeadline(time.Now().Add(d))
	n, from, err := uc.ReadFromUDPAddrPort(buf)
	if err != nil {
		return netip.AddrPort{}, nil, err
	}
	if from != relay {
		return netip.AddrPort{}, nil, errors.New("datagram from " + from.String() + ", not the relay")
	}
	return parseUDPDatagram(buf[:n])
}

func TestUDPAssociate(t *testing.T) {
	o := newOverlay(t)
	s, proxy := startServer(t, o, socks5.Config{UDP: true})
	for _, tt := range []struct {
		name    string
		dst     netip.Addr
		declare bool
		size    int
	}{
		{"ipv4", o.B.Inner4, true, 100},
		{"ipv6", o.B.Inner6, true, 100},
		{"ipv4-undeclared-port", o.B.Inner4, false, 1},
		{"ipv4-large", o.B.Inner4, true, 8000}, // fragmented in the overlay
	} {
		t.Run(tt.name, func(t *testing.T) {
			dst := netip.AddrPortFrom(tt.dst, 7)
			echoUDP(t, o, dst)
			_, uc, relay := associate(t, proxy, tt.declare)
			for i := range 3 {
				payload := bytes.Repeat([]byte{byte(i)}, tt.size)
				src, got, err := roundTrip(uc, relay, dst, payload, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if src != dst {
					t.Errorf("reply source %v, want %v", src, dst)
				}
				if !bytes.Equal(got, payload) {
					t.Errorf("reply payload %d bytes, differs from the %d sent", len(got), len(payload))
				}
			}
		})
	}
	st := waitStats(t, s, func(st socks5.Stats) bool { return st.UDPDatagramsDown == 12 })
	if st.UDPAssociations != 4 || st.UDPDatagramsUp != 12 || st.UDPDatagramsDown != 12 {
		t.Errorf("Stats: %d associations, %d datagrams up, %d down; want 4, 12, 12", st.UDPAssociations, st.UDPDatagramsUp, st.UDPDatagramsDown)
	}
}

// waitStats polls the server's stats until ok or 5 s pass.
func waitStats(t *testing.T, s *socks5.Server, ok func(socks5.Stats) bool) socks5.Stats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := s.Stats()
		if ok(st) || time.Now().After(deadline) {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestUDPDrops(t *testing.T) {
	o := newOverlay(t)
	s, proxy := startServer(t, o, socks5.Config{UDP: true})
	dst := netip.AddrPortFrom(o.B.Inner4, 7)
	echoUDP(t, o, dst)
	_, uc, relay := associate(t, proxy, true)

	send := func(from *net.UDPConn, b []byte) {
		t.Helper()
		if _, err := from.WriteToUDPAddrPort(b, relay); err != nil {
			t.Fatal(err)
		}
	}
	// A fragment, a bad RSV, a truncated header, a name without a resolver.
	send(uc, udpDatagram(1, dst, []byte("fragment")))
	send(uc, append([]byte{0, 1}, udpDatagram(0, dst, []byte("rsv"))[2:]...))
	send(uc, []byte{0, 0, 0, 1, 192})
	send(uc, append([]byte{0, 0, 0, 3, 9}, "b.overlay\x00\x07payload"...))
	// Foreign sources: another port on the client's IP, then another IP.
	other, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	send(other, udpDatagram(0, dst, []byte("other port")))
	if foreign, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.2:0"))); err != nil {
		t.Logf("no 127.0.0.2 to send from: %v", err)
	} else {
		defer foreign.Close()
		send(foreign, udpDatagram(0, dst, []byte("other ip")))
	}

	// None of those reaches the echo: the first reply is this one's.
	src, got, err := roundTrip(uc, relay, dst, []byte("good"), 5*time.Second)
	if err != nil || src != dst || string(got) != "good" {
		t.Fatalf("round trip after the drops: %v %q %v", src, got, err)
	}
	if _, _, err := readRelay(other, relay, 200*time.Millisecond); err == nil {
		t.Error("the foreign socket got a reply")
	}
	st := waitStats(t, s, func(st socks5.Stats) bool { return st.UDPDropForeignSource >= 1 })
	if st.UDPDropFragment != 1 || st.UDPDropMalformed != 2 || st.UDPDropAddress != 1 || st.UDPDropForeignSource < 1 || st.UDPDatagramsUp != 1 {
		t.Errorf("Stats: fragment %d, malformed %d, address %d, foreign %d, up %d; want 1, 2, 1, >= 1, 1",
			st.UDPDropFragment, st.UDPDropMalformed, st.UDPDropAddress, st.UDPDropForeignSource, st.UDPDatagramsUp)
	}
}

func TestUDPDomain(t *testing.T) {
	o := newOverlay(t)
	_, proxy := startServer(t, o, socks5.Config{UDP: true, Resolver: mapResolver{"b.overlay": {o.B.Inner6}}})
	dst := netip.AddrPortFrom(o.B.Inner6, 7)
	echoUDP(t, o, dst)
	_, uc, relay := associate(t, proxy, true)
	msg := append([]byte{0, 0, 0, 3, 9}, "b.overlay\x00\x07by name"...)
	if _, err := uc.WriteToUDPAddrPort(msg, relay); err != nil {
		t.Fatal(err)
	}
	src, got, err := readRelay(uc, relay, 5*time.Second)
	if err != nil || src != dst || string(got) != "by name" {
		t.Fatalf("got %v %q %v, want %v %q", src, got, err, dst, "by name")
	}
}

func TestUDPIdleTimeout(t *testing.T) {
	o := newOverlay(t)
	// The timeout is long beside the gaps between datagrams, so that a
	// loaded machine (the race detector, parallel packages) cannot stretch
	// a gap past it.
	const idle = 1500 * time.Millisecond
	s, proxy := startServer(t, o, socks5.Config{UDP: true, UDPIdleTimeout: idle})
	dst := netip.AddrPortFrom(o.B.Inner4, 7)
	echoUDP(t, o, dst)
	c, uc, relay := associate(t, proxy, true)
	// Traffic keeps it alive past the timeout.
	var last time.Time
	for i := range 5 {
		if i > 0 {
			time.Sleep(idle / 3)
		}
		if _, _, err := roundTrip(uc, relay, dst, []byte("ping"), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		last = time.Now()
	}
	expectClosed(t, c.conn, 10*time.Second)
	if d := time.Since(last); d < idle*9/10 {
		t.Errorf("association closed %v after its last datagram, before its timeout", d)
	}
	st := waitStats(t, s, func(st socks5.Stats) bool { return st.UDPActive == 0 })
	if st.UDPActive != 0 {
		t.Errorf("Stats.UDPActive = %d after the idle timeout", st.UDPActive)
	}
}

func TestUDPCap(t *testing.T) {
	o := newOverlay(t)
	s, proxy := startServer(t, o, socks5.Config{UDP: true, MaxUDPAssociations: 2})
	first, _, _ := associate(t, proxy, false)
	associate(t, proxy, false)

	c, err := dialProxy(t, proxy, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if rep, _, err := c.request(3, netip.IPv4Unspecified(), "", 0); err != nil || rep != 0x01 {
		t.Fatalf("third association: reply %d, %v; want 0x01", rep, err)
	}
	expectClosed(t, c.conn, 5*time.Second)

	// Closing the control connection ends an association and frees a slot.
	first.conn.Close()
	waitStats(t, s, func(st socks5.Stats) bool { return st.UDPActive == 1 })
	associate(t, proxy, false)
	if st := s.Stats(); st.UDPAssociations != 3 || st.Failures[1] != 1 {
		t.Errorf("Stats: %d associations, %d general failures; want 3, 1", st.UDPAssociations, st.Failures[1])
	}
}

// TestClose closes a server with a TCP relay, a UDP association and a
// handshake in flight: every client connection ends, Serve returns, and no
// goroutine is left.
func TestClose(t *testing.T) {
	// Registered first, so it runs after every other cleanup.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	o, err := e2e.NewOverlay(e2e.OverlayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	s, err := socks5.NewServer(socks5.Config{Dialer: o.A.Stack, UDP: true})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	proxy := ln.Addr().String()

	dst := netip.AddrPortFrom(o.B.Inner4, 7)
	echoTCP(t, o, dst)
	echoUDP(t, o, dst)
	tcp, err := dialProxy(t, proxy, "", "")
	if err != nil {
		t.Fatal(err)
	}
	tcp.connect(dst)
	ctrl, uc, relay := associate(t, proxy, true)
	if _, _, err := roundTrip(uc, relay, dst, []byte("x"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	idle, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	waitStats(t, s, func(st socks5.Stats) bool { return st.Active == 3 })

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, socks5.ErrServerClosed) {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
	for _, c := range []net.Conn{tcp.conn, ctrl.conn, idle} {
		expectClosed(t, c, 5*time.Second)
	}
	if err := s.Serve(ln); !errors.Is(err, socks5.ErrServerClosed) {
		t.Errorf("Serve after Close returned %v", err)
	}
	if st := s.Stats(); st.Active != 0 || st.UDPActive != 0 {
		t.Errorf("after Close: %d active connections, %d associations", st.Active, st.UDPActive)
	}
}
