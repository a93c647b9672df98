package forward_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/internal/forward"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// overlay builds a two-stack VXLAN overlay and checks, when the test ends,
// that closing it and every forwarder left no goroutine behind.
func overlay(t *testing.T) *e2e.Overlay {
	t.Helper()
	leaks := goleak.IgnoreCurrent()
	o, err := e2e.NewOverlay(e2e.OverlayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		o.Close()
		goleak.VerifyNone(t, leaks)
	})
	return o
}

func start(t *testing.T, n forward.Network, cfg forward.Forward) *forward.Forwarder {
	t.Helper()
	f, err := forward.Start(context.Background(), n, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestTCPHostToOverlay(t *testing.T) {
	o := overlay(t)
	target := netip.AddrPortFrom(o.B.Inner4, 5001)
	ln, err := o.B.Stack.ListenTCP(target)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f := start(t, o.A.Stack, forward.Forward{Proto: forward.TCP, Direction: forward.HostToOverlay, Target: target})
	if got := f.AddrPort().Addr(); got != loopback {
		t.Errorf("default listen address %v, want %v", got, loopback)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const size = 4 << 20
	res, err := e2e.Transfer(ctx, ln, func() (net.Conn, error) { return net.Dial("tcp", f.Addr().String()) }, size, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Bytes != size {
		t.Errorf("moved %d bytes, want %d", res.Bytes, size)
	}
	waitFor(t, "connection closed", func() bool { return f.Stats().Active == 0 })
	if s := f.Stats(); s.Sessions != 1 || s.BytesUp != size || s.BytesDown != 0 {
		t.Errorf("stats %+v, want 1 connection, %d bytes up, 0 down", s, size)
	}
}

func TestTCPOverlayToHost(t *testing.T) {
	o := overlay(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	target := ln.Addr().(*net.TCPAddr).AddrPort()
	listen := netip.AddrPortFrom(o.B.Inner4, 6000)
	f := start(t, o.B.Stack, forward.Forward{Proto: forward.TCP, Direction: forward.OverlayToHost, Listen: listen, Target: target})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const size = 4 << 20
	res, err := e2e.Transfer(ctx, ln, func() (net.Conn, error) { return o.A.Stack.DialTCP(ctx, listen) }, size, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Bytes != size {
		t.Errorf("moved %d bytes, want %d", res.Bytes, size)
	}
	waitFor(t, "connection closed", func() bool { return f.Stats().Active == 0 })
}

// TestTCPEchoHalfClose checks both directions and half-close: the client
// writes, closes its write side, and still reads the whole echo.
func TestTCPEchoHalfClose(t *testing.T) {
	o := overlay(t)
	target := netip.AddrPortFrom(o.B.Inner6, 7)
	ln, err := o.B.Stack.ListenTCP(target)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var buf bytes.Buffer
		buf.ReadFrom(c) // until the client's half-close
		c.Write(buf.Bytes())
	}()
	f := start(t, o.A.Stack, forward.Forward{Proto: forward.TCP, Direction: forward.HostToOverlay, Target: target})
	c, err := net.Dial("tcp", f.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	msg := bytes.Repeat([]byte("half-close "), 10000)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	var got bytes.Buffer
	if _, err := got.ReadFrom(c); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), msg) {
		t.Errorf("echo has %d bytes, want %d equal to those sent", got.Len(), len(msg))
	}
	<-done
	waitFor(t, "connection closed", func() bool { return f.Stats().Active == 0 })
	if s := f.Stats(); s.BytesUp != uint64(len(msg)) || s.BytesDown != uint64(len(msg)) {
		t.Errorf("stats %+v, want %d bytes each way", s, len(msg))
	}
}

func TestTCPCapAndDialFailure(t *testing.T) {
	o := overlay(t)
	target := netip.AddrPortFrom(o.B.Inner4, 5002)
	ln, err := o.B.Stack.ListenTCP(target)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f := start(t, o.A.Stack, forward.Forward{Proto: forward.TCP, Direction: forward.HostToOverlay, Target: target, MaxSessions: 1})
	c1, err := net.Dial("tcp", f.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	waitFor(t, "first connection", func() bool { return f.Stats().Active == 1 })
	c2, err := net.Dial("tcp", f.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); err == nil {
		t.Error("second connection over a cap of 1 was not closed")
	}
	if s := f.Stats(); s.DropSessionCap != 1 || s.Sessions != 1 {
		t.Errorf("stats %+v, want 1 session and 1 cap drop", s)
	}

	// Nothing listens on port 1 of B: the client's connection is closed
	// and the failed dial counted.
	f2 := start(t, o.A.Stack, forward.Forward{Proto: forward.TCP, Direction: forward.HostToOverlay, Target: netip.AddrPortFrom(o.B.Inner4, 1)})
	c3, err := net.Dial("tcp", f2.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	c3.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c3.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("connection to a refused target: read error %v, want a close", err)
	}
	if s := f2.Stats(); s.DropDial != 1 {
		t.Errorf("stats %+v, want 1 dial drop", s)
	}
}

// udpEcho answers every datagram on pc with the same bytes until pc closes.
func udpEcho(pc net.PacketConn) {
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(buf[:n], from)
	}
}

// exchange sends count distinct datagrams on c, one at a time, and checks
// that each comes back unchanged. A datagram without a reply within 2s is
// resent (the machine may be loaded), and a late reply to an earlier one
// is skipped.
func exchange(c net.Conn, id, count int) error {
	buf := make([]byte, 2048)
	for i := 0; i < count; i++ {
		prefix := fmt.Sprintf("client %d datagram %d ", id, i)
		msg := []byte(prefix + strings.Repeat("x", (id*131+i*17)%1200))
		var err error
	tries:
		for try := 0; try < 5; try++ {
			if _, err = c.Write(msg); err != nil {
				return err
			}
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			for {
				var n int
				if n, err = c.Read(buf); err != nil {
					continue tries
				}
				if bytes.Equal(buf[:n], msg) {
					break tries
				}
				if bytes.HasPrefix(buf[:n], []byte(prefix)) || !bytes.HasPrefix(buf[:n], []byte(fmt.Sprintf("client %d datagram ", id))) {
					return fmt.Errorf("client %d datagram %d: got %q, want %q", id, i, buf[:n], msg)
				}
			}
		}
		if err != nil {
			return fmt.Errorf("client %d datagram %d: %w", id, i, err)
		}
	}
	return nil
}

func TestUDP(t *testing.T) {
	const clients, count = 8, 50
	tests := []struct {
		name string
		dir  forward.Direction
	}{
		{"host-to-overlay", forward.HostToOverlay},
		{"overlay-to-host", forward.OverlayToHost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := overlay(t)
			var (
				echo net.PacketConn
				err  error
				f    *forward.Forwarder
				dial func() (net.Conn, error)
			)
			if tt.dir == forward.HostToOverlay {
				target := netip.AddrPortFrom(o.B.Inner4, 7000)
				if echo, err = o.B.Stack.ListenUDP(target); err != nil {
					t.Fatal(err)
				}
				f = start(t, o.A.Stack, forward.Forward{Proto: forward.UDP, Direction: tt.dir, Target: target})
				dial = func() (net.Conn, error) { return net.Dial("udp", f.Addr().String()) }
			} else {
				if echo, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
					t.Fatal(err)
				}
				target := echo.LocalAddr().(*net.UDPAddr).AddrPort()
				// No Listen address: every overlay address, IPv4 and IPv6.
				f = start(t, o.B.Stack, forward.Forward{Proto: forward.UDP, Direction: tt.dir, Listen: netip.AddrPortFrom(netip.Addr{}, 7001), Target: target})
				dial = func() (net.Conn, error) { return o.A.Stack.DialUDP(netip.AddrPortFrom(o.B.Inner4, 7001)) }
			}
			defer echo.Close()
			go udpEcho(echo)

			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for i := range clients {
				c, err := dial()
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := exchange(c, i, count); err != nil {
						errs <- err
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			// The last reply may reach its client before it is counted,
			// and even before its request is: a datagram is counted up
			// after the write that sent it returns.
			waitFor(t, "datagrams counted both ways", func() bool {
				s := f.Stats()
				return s.DatagramsUp >= clients*count && s.DatagramsDown >= clients*count && s.BytesUp == s.BytesDown
			})
			s := f.Stats()
			if s.Sessions != clients || s.Active != clients {
				t.Errorf("stats %+v, want %d sessions, all active", s, clients)
			}
			if s.DatagramsUp < clients*count || s.DatagramsDown < clients*count || s.BytesUp != s.BytesDown {
				t.Errorf("stats %+v, want at least %d datagrams each way and equal bytes", s, clients*count)
			}
		})
	}
}

func TestUDPIdleExpiry(t *testing.T) {
	o := overlay(t)
	target := netip.AddrPortFrom(o.B.Inner4, 7002)
	echo, err := o.B.Stack.ListenUDP(target)
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go udpEcho(echo)
	const idle = time.Second
	f := start(t, o.A.Stack, forward.Forward{Proto: forward.UDP, Direction: forward.HostToOverlay, Target: target, IdleTimeout: idle})
	c, err := net.Dial("udp", f.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Traffic more often than the timeout keeps the session.
	for i := 0; i < 5; i++ {
		if err := exchange(c, 0, 1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(idle / 5)
	}
	if s := f.Stats(); s.Sessions != 1 || s.Expired != 0 {
		t.Fatalf("stats %+v, want one session kept alive", s)
	}
	// Silence ends it.
	start := time.Now()
	waitFor(t, "session expired", func() bool { return f.Stats().Active == 0 })
	if d := time.Since(start); d < idle/2 {
		t.Errorf("session expired after %v, before the idle timeout of %v", d, idle)
	}
	if s := f.Stats(); s.Expired != 1 {
		t.Errorf("stats %+v, want 1 expired", s)
	}
	// The client's next datagram opens a new session.
	if err := exchange(c, 0, 1); err != nil {
		t.Fatal(err)
	}
	if s := f.Stats(); s.Sessions != 2 || s.Active != 1 {
		t.Errorf("stats %+v, want a second session", s)
	}
}

func TestUDPSessionCap(t *testing.T) {
	o := overlay(t)
	target := netip.AddrPortFrom(o.B.Inner4, 7003)
	echo, err := o.B.Stack.ListenUDP(target)
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go udpEcho(echo)
	f := start(t, o.A.Stack, forward.Forward{Proto: forward.UDP, Direction: forward.HostToOverlay, Target: target, MaxSessions: 2})
	var cs []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("udp", f.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	for i, c := range cs[:2] {
		if err := exchange(c, i, 3); err != nil {
			t.Fatal(err)
		}
	}
	c := cs[2]
	c.Write([]byte("over the cap"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 100)); err == nil {
		t.Errorf("client over the cap got a %d-byte reply", n)
	}
	if s := f.Stats(); s.Sessions != 2 || s.DropSessionCap != 1 {
		t.Errorf("stats %+v, want 2 sessions and 1 cap drop", s)
	}
}

func TestValidate(t *testing.T) {
	target := netip.MustParseAddrPort("192.168.42.2:80")
	ok := forward.Forward{Proto: forward.UDP, Direction: forward.HostToOverlay, Target: target}
	tests := []struct {
		name  string
		edit  func(*forward.Forward)
		field string // "" = valid
	}{
		{"valid", func(*forward.Forward) {}, ""},
		{"no proto", func(f *forward.Forward) { f.Proto = 0 }, "Proto"},
		{"bad proto", func(f *forward.Forward) { f.Proto = 9 }, "Proto"},
		{"no direction", func(f *forward.Forward) { f.Direction = 0 }, "Direction"},
		{"zoned listen", func(f *forward.Forward) { f.Listen = netip.MustParseAddrPort("[fe80::1%eth0]:80") }, "Listen"},
		{"no target", func(f *forward.Forward) { f.Target = netip.AddrPort{} }, "Target"},
		{"target port 0", func(f *forward.Forward) { f.Target = netip.MustParseAddrPort("192.168.42.2:0") }, "Target"},
		{"unspecified target", func(f *forward.Forward) { f.Target = netip.MustParseAddrPort("0.0.0.0:80") }, "Target"},
		{"negative idle", func(f *forward.Forward) { f.IdleTimeout = -time.Second }, "IdleTimeout"},
		{"idle on tcp", func(f *forward.Forward) { f.Proto = forward.TCP; f.IdleTimeout = time.Second }, "IdleTimeout"},
		{"negative cap", func(f *forward.Forward) { f.MaxSessions = -1 }, "MaxSessions"},
		{"negative dial timeout", func(f *forward.Forward) { f.DialTimeout = -1 }, "DialTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ok
			tt.edit(&f)
			err := f.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, forward.ErrInvalid) || !strings.Contains(err.Error(), tt.field+":") {
				t.Fatalf("Validate = %v, want ErrInvalid naming %s", err, tt.field)
			}
			// Start refuses it too, before opening anything.
			if fw, err := forward.Start(context.Background(), forward.HostNetwork, f); err == nil {
				fw.Close()
				t.Error("Start accepted an invalid forward")
			}
		})
	}
	if p, err := forward.ParseProto("udp"); err != nil || p != forward.UDP {
		t.Errorf("ParseProto(udp) = %v, %v", p, err)
	}
	if _, err := forward.ParseProto("sctp"); !errors.Is(err, forward.ErrInvalid) {
		t.Errorf("ParseProto(sctp) = %v, want ErrInvalid", err)
	}
}

// TestCloseLeavesNothing closes forwarders with connections and sessions
// open, by Close and by cancelling Start's context; the overlay helper then
// checks that no goroutine is left.
func TestCloseLeavesNothing(t *testing.T) {
	o := overlay(t)
	tcpTarget := netip.AddrPortFrom(o.B.Inner4, 5003)
	ln, err := o.B.Stack.ListenTCP(tcpTarget)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	udpTarget := netip.AddrPortFrom(o.B.Inner4, 7004)
	echo, err := o.B.Stack.ListenUDP(udpTarget)
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go udpEcho(echo)

	ctx, cancel := context.WithCancel(context.Background())
	ft, err := forward.Start(ctx, o.A.Stack, forward.Forward{Proto: forward.TCP, Direction: forward.HostToOverlay, Target: tcpTarget})
	if err != nil {
		t.Fatal(err)
	}
	fu, err := forward.Start(context.Background(), o.A.Stack, forward.Forward{Proto: forward.UDP, Direction: forward.HostToOverlay, Target: udpTarget})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", ft.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	accepted, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()
	u, err := net.Dial("udp", fu.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if err := exchange(u, 0, 2); err != nil {
		t.Fatal(err)
	}

	cancel() // closes ft
	waitFor(t, "TCP forwarder closed by its context", func() bool { return ft.Stats().Active == 0 })
	ft.Close()
	if err := fu.Close(); err != nil {
		t.Fatal(err)
	}
	if s := fu.Stats(); s.Active != 0 {
		t.Errorf("UDP forwarder has %d active sessions after Close", s.Active)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("client connection after Close: read error %v, want a close", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestShutdown: the listener closes at once, an open TCP connection may
// finish (drain) or is cut when the context ends.
func TestShutdown(t *testing.T) {
	o := overlay(t)
	target := netip.AddrPortFrom(o.B.Inner4, 5007)
	ln, err := o.B.Stack.ListenTCP(target)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, drain := range []bool{true, false} {
		t.Run(fmt.Sprintf("drain=%v", drain), func(t *testing.T) {
			f := start(t, o.A.Stack, forward.Forward{Proto: forward.TCP, Direction: forward.HostToOverlay, Target: target})
			c, err := net.Dial("tcp", f.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			far, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer far.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			if drain {
				cancel()
				ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
			}
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- f.Shutdown(ctx) }()
			// Probe for the closed listener by binding its port, not by
			// dialing it: a probe dial that won the race with the close
			// would open a session whose far end nobody accepts, and the
			// drain would wait for it.
			waitFor(t, "listener closed", func() bool {
				l, err := net.Listen("tcp", f.Addr().String())
				if err == nil {
					l.Close()
				}
				return err == nil
			})
			if drain {
				io.WriteString(c, "after shutdown")
				buf := make([]byte, 14)
				far.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadFull(far, buf); err != nil || string(buf) != "after shutdown" {
					t.Errorf("connection during shutdown: read %q, %v", buf, err)
				}
				c.Close()
				far.Close()
				if err := <-done; err != nil {
					t.Errorf("Shutdown = %v, want nil after the connection ended", err)
				}
				return
			}
			if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
				t.Errorf("connection after Shutdown's deadline: read error %v, want a close", err)
			}
		})
	}
}
