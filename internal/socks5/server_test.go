package socks5_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/internal/socks5"
	"github.com/udptunnel/udptunnel/stack"
)

// The overlay stack is the dialer the CLI plugs in.
var _ socks5.Dialer = (*stack.Stack)(nil)

// *net.Resolver is a Resolver.
var _ socks5.Resolver = (*net.Resolver)(nil)

func newOverlay(t *testing.T) *e2e.Overlay {
	t.Helper()
	o, err := e2e.NewOverlay(e2e.OverlayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// startServer runs a server with cfg (Dialer defaulting to o.A.Stack) on a
// loopback listener and returns it with its address. Cleanup closes it and
// checks that Serve returned ErrServerClosed.
func startServer(t *testing.T, o *e2e.Overlay, cfg socks5.Config) (*socks5.Server, string) {
	t.Helper()
	if cfg.Dialer == nil {
		cfg.Dialer = o.A.Stack
	}
	s, err := socks5.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-served; !errors.Is(err, socks5.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return s, ln.Addr().String()
}

// echoTCP serves a TCP echo on B at addr: it copies until EOF, then
// half-closes, so a client sees its own bytes and then EOF.
func echoTCP(t *testing.T, o *e2e.Overlay, addr netip.AddrPort) {
	t.Helper()
	ln, err := o.B.Stack.ListenTCP(addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
				c.(interface{ CloseWrite() error }).CloseWrite()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
}

// echoUDP serves a UDP echo on B at addr.
func echoUDP(t *testing.T, o *e2e.Overlay, addr netip.AddrPort) {
	t.Helper()
	pc, err := o.B.Stack.ListenUDP(addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
}

func TestConnect(t *testing.T) {
	o := newOverlay(t)
	s, proxy := startServer(t, o, socks5.Config{})
	for _, tt := range []struct {
		name     string
		dst, bnd netip.Addr
	}{
		{"ipv4", o.B.Inner4, o.A.Inner4},
		{"ipv6", o.B.Inner6, o.A.Inner6},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dst := netip.AddrPortFrom(tt.dst, 7)
			echoTCP(t, o, dst)
			c, err := dialProxy(t, proxy, "", "")
			if err != nil {
				t.Fatal(err)
			}
			bnd := c.connect(dst)
			if bnd.Addr() != tt.bnd || bnd.Port() == 0 {
				t.Errorf("BND = %v, want %v and a port", bnd, tt.bnd)
			}
			msg := bytes.Repeat([]byte("overlay "), 1000)
			if _, err := c.conn.Write(msg); err != nil {
				t.Fatal(err)
			}
			// Half-close: the echo sees EOF only if the server passes our
			// CloseWrite on, and we see EOF only if it passes the echo's on.
			c.conn.(*net.TCPConn).CloseWrite()
			c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(c.conn)
			if err != nil {
				t.Fatalf("read after half-close: %v (got %d bytes)", err, len(got))
			}
			if !bytes.Equal(got, msg) {
				t.Errorf("echo returned %d bytes, want %d equal to those sent", len(got), len(msg))
			}
		})
	}
	st := waitStats(t, s, func(st socks5.Stats) bool { return st.BytesDown == 16000 })
	if st.RequestsConnect != 2 || st.BytesUp != 16000 || st.BytesDown != 16000 {
		t.Errorf("stats: %d CONNECTs, %d bytes up, %d down; want 2, 16000, 16000", st.RequestsConnect, st.BytesUp, st.BytesDown)
	}
}

func TestTransfer(t *testing.T) {
	o := newOverlay(t)
	s, proxy := startServer(t, o, socks5.Config{})
	dst := netip.AddrPortFrom(o.B.Inner4, 5001)
	ln, err := o.B.Stack.ListenTCP(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const size = 16 << 20
	res, err := e2e.Transfer(ctx, ln, func() (net.Conn, error) {
		c, err := dialProxy(t, proxy, "", "")
		if err != nil {
			return nil, err
		}
		c.connect(dst)
		return c.conn, nil
	}, size, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Bytes != size {
		t.Errorf("moved %d bytes, want %d", res.Bytes, size)
	}
	if up := waitStats(t, s, func(st socks5.Stats) bool { return st.BytesUp == size }).BytesUp; up != size {
		t.Errorf("Stats.BytesUp = %d, want %d", up, size)
	}
	t.Logf("%v", res)
}

func TestUserPass(t *testing.T) {
	o := newOverlay(t)
	s, proxy := startServer(t, o, socks5.Config{
		Auth: func(user, pass string) bool { return user == "alice" && pass == "s3cret" },
	})
	dst := netip.AddrPortFrom(o.B.Inner4, 7)
	echoTCP(t, o, dst)

	t.Run("success", func(t *testing.T) {
		c, err := dialProxy(t, proxy, "alice", "s3cret")
		if err != nil {
			t.Fatal(err)
		}
		c.connect(dst)
	})
	t.Run("wrong-password", func(t *testing.T) {
		c, err := dialProxy(t, proxy, "alice", "guess")
		if !errors.Is(err, errAuth) {
			t.Fatalf("got %v, want an authentication failure", err)
		}
		expectClosed(t, c.conn, 5*time.Second)
	})
	t.Run("no-auth-offered", func(t *testing.T) {
		conn, err := net.Dial("tcp", proxy)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Write([]byte{5, 1, 0x00})
		got := expectClosed(t, conn, 5*time.Second)
		if !bytes.Equal(got, []byte{5, 0xFF}) {
			t.Errorf("got % x, want 05 ff and close", got)
		}
	})
	if got := s.Stats().AuthFailures; got != 2 {
		t.Errorf("Stats.AuthFailures = %d, want 2", got)
	}
}

// mapResolver resolves names from a map.
type mapResolver map[string][]netip.Addr

func (m mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if ips, ok := m[host]; ok {
		return ips, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestReplies(t *testing.T) {
	o := newOverlay(t)
	echoTCP(t, o, netip.AddrPortFrom(o.B.Inner4, 7))
	echoTCP(t, o, netip.AddrPortFrom(o.B.Inner6, 7))
	_, plain := startServer(t, o, socks5.Config{})
	resolving, withResolver := startServer(t, o, socks5.Config{
		Resolver: mapResolver{
			"b.overlay":     {o.B.Inner4},
			"b6.overlay":    {o.B.Inner6},
			"dead.overlay":  {o.B.Inner4.Next()},
			"multi.overlay": {netip.MustParseAddr("203.0.113.9"), o.B.Inner4},
		},
		HandshakeTimeout: 2 * time.Second,
	})
	tests := []struct {
		name  string
		proxy string
		cmd   byte
		ip    netip.Addr
		host  string
		port  uint16
		want  byte
	}{
		{"connect-ipv4", plain, 1, o.B.Inner4, "", 7, 0x00},
		{"bind", plain, 2, o.B.Inner4, "", 7, 0x07},
		{"unknown-command", plain, 9, o.B.Inner4, "", 7, 0x07},
		{"udp-associate-disabled", plain, 3, netip.IPv4Unspecified(), "", 0, 0x07},
		{"refused-ipv4", plain, 1, o.B.Inner4, "", 9, 0x05},
		{"refused-ipv6", plain, 1, o.B.Inner6, "", 9, 0x05},
		{"no-route", plain, 1, netip.MustParseAddr("203.0.113.1"), "", 7, 0x03},
		{"no-route-ipv6", plain, 1, netip.MustParseAddr("2001:db8::1"), "", 7, 0x03},
		{"domain-without-resolver", plain, 1, netip.Addr{}, "b.overlay", 7, 0x08},
		{"domain", withResolver, 1, netip.Addr{}, "b.overlay", 7, 0x00},
		{"domain-ipv6", withResolver, 1, netip.Addr{}, "b6.overlay", 7, 0x00},
		{"domain-second-address", withResolver, 1, netip.Addr{}, "multi.overlay", 7, 0x00},
		{"domain-unknown", withResolver, 1, netip.Addr{}, "nowhere.overlay", 7, 0x04},
		{"domain-refused", withResolver, 1, netip.Addr{}, "b.overlay", 9, 0x05},
		// No ARP reply: the dial runs into the handshake timeout.
		{"silent-host", withResolver, 1, netip.Addr{}, "dead.overlay", 7, 0x04},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := dialProxy(t, tt.proxy, "", "")
			if err != nil {
				t.Fatal(err)
			}
			rep, _, err := c.request(tt.cmd, tt.ip, tt.host, tt.port)
			if err != nil {
				t.Fatal(err)
			}
			if rep != tt.want {
				t.Errorf("reply %#02x, want %#02x", rep, tt.want)
			}
			if rep != 0 {
				expectClosed(t, c.conn, 5*time.Second)
			}
		})
	}
	// Unknown ATYP: reply 0x08 and close.
	t.Run("unknown-atyp", func(t *testing.T) {
		c, err := dialProxy(t, plain, "", "")
		if err != nil {
			t.Fatal(err)
		}
		c.conn.Write([]byte{5, 1, 0, 0x05, 1, 2, 3, 4, 0, 7})
		got := expectClosed(t, c.conn, 5*time.Second)
		if len(got) < 2 || got[1] != 0x08 {
			t.Errorf("reply % x, want REP 08", got)
		}
	})
	st := resolving.Stats()
	want := [9]uint64{4: 2, 5: 1}
	if diff := cmp.Diff(want, st.Failures); diff != "" {
		t.Errorf("resolving server's Stats.Failures (-want +got):\n%s", diff)
	}
}

// TestGarbage sends truncated and malformed handshakes: the server must
// close the connection (after a reply where the protocol has one) and keep
// serving.
func TestGarbage(t *testing.T) {
	o := newOverlay(t)
	s, proxy := startServer(t, o, socks5.Config{
		Auth:             func(string, string) bool { return true },
		HandshakeTimeout: 500 * time.Millisecond,
	})
	tests := []struct {
		name string
		send []byte
		want []byte // what the server sends before closing
	}{
		{"empty", nil, nil},
		{"socks4", []byte{4, 1, 0, 80, 1, 2, 3, 4, 0}, nil},
		{"http", []byte("GET / HTTP/1.1\r\n\r\n"), nil},
		{"truncated-greeting", []byte{5}, nil},
		{"truncated-methods", []byte{5, 3, 2}, nil},
		{"zero-methods", []byte{5, 0}, []byte{5, 0xFF}},
		{"gssapi-only", []byte{5, 1, 1}, []byte{5, 0xFF}},
		{"auth-wrong-version", []byte{5, 1, 2, 5, 1, 'a', 1, 'b'}, []byte{5, 2}},
		{"auth-truncated", []byte{5, 1, 2, 1, 200, 'a'}, []byte{5, 2}},
		{"request-wrong-version", []byte{5, 1, 2, 1, 1, 'a', 1, 'b', 4, 1, 0, 1}, []byte{5, 2, 1, 0}},
		{"request-truncated", []byte{5, 1, 2, 1, 1, 'a', 1, 'b', 5, 1, 0, 1, 10}, []byte{5, 2, 1, 0}},
		{"request-empty-domain", []byte{5, 1, 2, 1, 1, 'a', 1, 'b', 5, 1, 0, 3, 0, 0, 80},
			[]byte{5, 2, 1, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"request-bad-atyp", []byte{5, 1, 2, 1, 1, 'a', 1, 'b', 5, 1, 0, 0xFF},
			[]byte{5, 2, 1, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", proxy)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.Write(tt.send)
			got := expectClosed(t, conn, 5*time.Second)
			if !bytes.Equal(got, tt.want) {
				t.Errorf("server sent % x, want % x", got, tt.want)
			}
		})
	}
	st := waitStats(t, s, func(st socks5.Stats) bool { return st.Active == 0 })
	if st.Connections != uint64(len(tests)) || st.Active != 0 {
		t.Errorf("Stats: %d connections, %d active; want %d, 0", st.Connections, st.Active, len(tests))
	}
}

func TestNewServerErrors(t *testing.T) {
	o := newOverlay(t)
	for _, tt := range []struct {
		name string
		cfg  socks5.Config
	}{
		{"no-dialer", socks5.Config{}},
		{"negative-idle", socks5.Config{Dialer: o.A.Stack, UDPIdleTimeout: -1}},
		{"negative-handshake", socks5.Config{Dialer: o.A.Stack, HandshakeTimeout: -1}},
		{"negative-max", socks5.Config{Dialer: o.A.Stack, MaxUDPAssociations: -1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := socks5.NewServer(tt.cfg); err == nil {
				t.Error("NewServer accepted an invalid Config")
			}
		})
	}
}

// BenchmarkTransfer measures a CONNECT stream through the proxy into the
// overlay (compare e2e's BenchmarkTCP for the overlay alone).
func BenchmarkTransfer(b *testing.B) {
	o, err := e2e.NewOverlay(e2e.OverlayConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	s, err := socks5.NewServer(socks5.Config{Dialer: o.A.Stack})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Close()
	dst := netip.AddrPortFrom(o.B.Inner4, 5001)
	target, err := o.B.Stack.ListenTCP(dst)
	if err != nil {
		b.Fatal(err)
	}
	defer target.Close()
	const size = 64 << 20
	b.SetBytes(size)
	for b.Loop() {
		_, err := e2e.Transfer(context.Background(), target, func() (net.Conn, error) {
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				return nil, err
			}
			req := append([]byte{5, 1, 0, 5, 1, 0}, socksAddr(dst.Addr(), "", dst.Port())...)
			if _, err := conn.Write(req); err != nil {
				return nil, err
			}
			// Method selection (2 bytes) and an IPv4 reply (10 bytes).
			if _, err := io.ReadFull(conn, make([]byte, 2+10)); err != nil {
				return nil, err
			}
			return conn, nil
		}, size, nil)
		if err != nil {
			b.Fatal(err)
		}
	}
}
