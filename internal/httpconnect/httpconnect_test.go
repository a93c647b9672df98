package httpconnect_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/internal/httpconnect"
)

// overlay builds a two-stack VXLAN overlay and checks, when the test ends,
// that closing it and every server left no goroutine behind.
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

// serve starts s on a loopback port and returns its address. Cleanup
// closes s and checks that Serve returned ErrServerClosed.
func serve(t *testing.T, s *httpconnect.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, httpconnect.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ln.Addr().String()
}

// bufConn reads through the reader that parsed the proxy's response, which
// may hold the first bytes of the tunnel.
type bufConn struct {
	*net.TCPConn
	r *bufio.Reader
}

func (c bufConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// connect sends a raw request to the proxy and returns its response and,
// on 200, the tunnel.
func connect(proxy, request string) (*http.Response, net.Conn, error) {
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		return nil, nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		c.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer c.Close()
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return resp, nil, nil
	}
	c.SetDeadline(time.Time{})
	return resp, bufConn{c.(*net.TCPConn), br}, nil
}

func connectRequest(target string, header ...string) string {
	return fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", target, target, strings.Join(header, ""))
}

func TestConnectTransfer(t *testing.T) {
	o := overlay(t)
	s := &httpconnect.Server{Config: httpconnect.Config{Dialer: o.A.Stack}}
	proxy := serve(t, s)
	for _, dst := range []netip.Addr{o.B.Inner4, o.B.Inner6} {
		t.Run(dst.String(), func(t *testing.T) {
			target := netip.AddrPortFrom(dst, 5001)
			ln, err := o.B.Stack.ListenTCP(target)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			const size = 4 << 20
			res, err := e2e.Transfer(ctx, ln, func() (net.Conn, error) {
				resp, c, err := connect(proxy, connectRequest(target.String()))
				if err != nil {
					return nil, err
				}
				if resp.StatusCode != http.StatusOK {
					return nil, fmt.Errorf("CONNECT: %s", resp.Status)
				}
				return c, nil
			}, size, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Bytes != size {
				t.Errorf("moved %d bytes, want %d", res.Bytes, size)
			}
		})
	}
	waitFor(t, "tunnels closed", func() bool { return s.Stats().Active == 0 })
	if st := s.Stats(); st.Tunnels != 2 || st.BytesUp != 2*(4<<20) || st.Accepted != 2 {
		t.Errorf("stats %+v, want 2 tunnels carrying %d bytes up", st, 2*(4<<20))
	}
}

// TestConnectEchoHalfClose sends data in the same packet as the request
// head (it must not be lost in the proxy's buffer), half-closes, and reads
// the whole echo back.
func TestConnectEchoHalfClose(t *testing.T) {
	o := overlay(t)
	target := netip.AddrPortFrom(o.B.Inner4, 7)
	ln, err := o.B.Stack.ListenTCP(target)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var buf bytes.Buffer
		buf.ReadFrom(c)
		c.Write(buf.Bytes())
	}()
	s := &httpconnect.Server{Config: httpconnect.Config{Dialer: o.A.Stack}}
	proxy := serve(t, s)
	early := "sent with the request head;"
	resp, c, err := connect(proxy, connectRequest(target.String())+early)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	rest := bytes.Repeat([]byte("then more;"), 20000)
	if _, err := c.Write(rest); err != nil {
		t.Fatal(err)
	}
	c.(bufConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := append([]byte(early), rest...); !bytes.Equal(got, want) {
		t.Errorf("echo has %d bytes, want the %d sent", len(got), len(want))
	}
}

// TestGoClient reaches an HTTPS server in the overlay with Go's own client
// configured with the proxy (with credentials), which uses CONNECT for
// https URLs.
func TestGoClient(t *testing.T) {
	o := overlay(t)
	target := netip.AddrPortFrom(o.B.Inner4, 443)
	ln, err := o.B.Stack.ListenTCP(target)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the overlay, %s", r.URL.Path)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.StartTLS()
	defer srv.Close()

	s := &httpconnect.Server{Config: httpconnect.Config{
		Dialer: o.A.Stack,
		Auth:   func(u, p string) bool { return u == "alice" && p == "s3cret" },
	}}
	proxy := serve(t, s)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	for _, tt := range []struct {
		name   string
		user   *url.Userinfo
		status int
	}{
		{"good credentials", url.UserPassword("alice", "s3cret"), http.StatusOK},
		{"wrong password", url.UserPassword("alice", "guess"), http.StatusProxyAuthRequired},
		{"no credentials", nil, http.StatusProxyAuthRequired},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := &http.Transport{
				Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxy, User: tt.user}),
				// httptest's certificate names example.com, not the overlay IP.
				TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "example.com"},
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
			resp, err := client.Get("https://" + target.String() + "/path")
			if tt.status != http.StatusOK {
				// Go's client reports a refused CONNECT as an error
				// carrying the status.
				if err == nil || !strings.Contains(err.Error(), http.StatusText(tt.status)) {
					t.Fatalf("GET = %v, want an error with %q", err, http.StatusText(tt.status))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if want := "hello from the overlay, /path"; string(body) != want {
				t.Errorf("body %q, want %q", body, want)
			}
		})
	}
	if st := s.Stats(); st.AuthFailed != 2 || st.Tunnels != 1 {
		t.Errorf("stats %+v, want 2 auth failures and 1 tunnel", st)
	}
}

func TestRefusals(t *testing.T) {
	o := overlay(t)
	plainServer := &httpconnect.Server{Config: httpconnect.Config{Dialer: o.A.Stack, DialTimeout: 300 * time.Millisecond}}
	plain := serve(t, plainServer)
	authed := &httpconnect.Server{Config: httpconnect.Config{
		Dialer: o.A.Stack,
		Auth:   func(u, p string) bool { return u == "alice" && p == "s3cret" },
		Realm:  "overlay",
	}}
	withAuth := serve(t, authed)
	resolving := serve(t, &httpconnect.Server{Config: httpconnect.Config{
		Dialer: o.A.Stack,
		Resolver: func(_ context.Context, host string) ([]netip.Addr, error) {
			if host == "b.overlay" {
				return []netip.Addr{netip.MustParseAddr("192.168.42.77"), o.B.Inner4}, nil
			}
			return nil, errors.New("no such host")
		},
	}})
	open := netip.AddrPortFrom(o.B.Inner4, 8080)
	ln, err := o.B.Stack.ListenTCP(open)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	good := "Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n" // alice:s3cret

	tests := []struct {
		name    string
		proxy   string
		request string
		status  int
		header  string // a header the reply must have, "Name: value"
		body    string // a substring of the reply's body
	}{
		{"tunnel", plain, connectRequest(open.String()), 200, "", ""},
		{"plain GET", plain, "GET http://192.168.42.2/ HTTP/1.1\r\nHost: 192.168.42.2\r\n\r\n", 405, "Allow: CONNECT", "only tunnels"},
		{"POST", plain, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", 405, "Allow: CONNECT", ""},
		{"refused", plain, connectRequest(netip.AddrPortFrom(o.B.Inner4, 1).String()), 502, "", "refused"},
		{"no route", plain, connectRequest("203.0.113.1:80"), 502, "", ""},
		{"dial timeout", plain, connectRequest("192.168.42.99:80"), 504, "", ""},
		{"hostname without resolver", plain, connectRequest("b.overlay:8080"), 502, "", "no resolver"},
		{"no port", plain, "CONNECT 192.168.42.2 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "", "bad CONNECT target"},
		{"port 0", plain, connectRequest("192.168.42.2:0"), 400, "", "1-65535"},
		{"port too big", plain, connectRequest("192.168.42.2:99999"), 400, "", "1-65535"},
		{"empty host", plain, connectRequest(":80"), 400, "", "empty host"},
		{"zoned address", plain, connectRequest("[fe80::1%25eth0]:80"), 400, "", "zoned"},
		{"garbage", plain, "\x00\x01\x02\xff garbage\r\n\r\n", 400, "", "malformed"},
		{"no version", plain, "CONNECT 192.168.42.2:80\r\n\r\n", 400, "", "malformed"},
		{"HTTP/2 preface", plain, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 405, "", ""},
		{"head too large", plain, "CONNECT 192.168.42.2:80 HTTP/1.1\r\nX: " + strings.Repeat("a", 20000) + "\r\n\r\n", 431, "", ""},
		{"no credentials", withAuth, connectRequest(open.String()), 407, `Proxy-Authenticate: Basic realm="overlay"`, ""},
		{"wrong credentials", withAuth, connectRequest(open.String(), "Proxy-Authorization: Basic YWxpY2U6d3Jvbmc=\r\n"), 407, `Proxy-Authenticate: Basic realm="overlay"`, ""},
		{"not basic", withAuth, connectRequest(open.String(), "Proxy-Authorization: Bearer abc\r\n"), 407, "", ""},
		{"bad base64", withAuth, connectRequest(open.String(), "Proxy-Authorization: Basic !!!\r\n"), 407, "", ""},
		{"good credentials", withAuth, connectRequest(open.String(), good), 200, "", ""},
		{"GET before auth", withAuth, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "", ""},
		{"resolved", resolving, connectRequest("b.overlay:8080"), 200, "", ""},
		{"not resolved", resolving, connectRequest("nowhere.example:8080"), 502, "", "no such host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, c, err := connect(tt.proxy, tt.request)
			if err != nil {
				t.Fatal(err)
			}
			if c != nil {
				c.Close()
			}
			if resp.StatusCode != tt.status {
				body, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %s (%s), want %d", resp.Status, body, tt.status)
			}
			if tt.header != "" {
				k, v, _ := strings.Cut(tt.header, ": ")
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), tt.body) {
				t.Errorf("body %q does not say %q", body, tt.body)
			}
		})
	}
	want := httpconnect.Stats{Accepted: 16, Tunnels: 1, BadRequest: 8, MethodNotAllowed: 3, ResolveFailed: 1, DialFailed: 2, DialTimeout: 1}
	waitFor(t, "plain server idle", func() bool { return plainServer.Stats().Active == 0 })
	if diff := cmp.Diff(want, plainServer.Stats()); diff != "" {
		t.Errorf("plain server stats (-want +got):\n%s", diff)
	}
	if st := authed.Stats(); st.AuthFailed != 4 || st.MethodNotAllowed != 1 || st.Tunnels != 1 {
		t.Errorf("auth server stats %+v, want 4 auth failures, 1 method refusal, 1 tunnel", st)
	}
}

// TestCloseLeavesNothing closes a server with a tunnel open and a client
// that has not finished its request; the overlay helper then checks that
// no goroutine is left.
func TestCloseLeavesNothing(t *testing.T) {
	o := overlay(t)
	target := netip.AddrPortFrom(o.B.Inner4, 5005)
	ln, err := o.B.Stack.ListenTCP(target)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := &httpconnect.Server{Config: httpconnect.Config{Dialer: o.A.Stack}}
	ln1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln1) }()

	resp, c, err := connect(ln1.Addr().String(), connectRequest(target.String()))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	defer c.Close()
	far, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer far.Close()
	half, err := net.Dial("tcp", ln1.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	io.WriteString(half, "CONNECT 192.168.42.2:80 HTTP/1.1\r\n") // and no more
	waitFor(t, "both clients accepted", func() bool { return s.Stats().Active == 2 })

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, httpconnect.ErrServerClosed) {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
	if st := s.Stats(); st.Active != 0 {
		t.Errorf("%d connections active after Close", st.Active)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("tunnel after Close: read error %v, want a close", err)
	}
	far.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := far.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("target side after Close: read error %v, want a close", err)
	}
	// Serve after Close refuses at once.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ln2); !errors.Is(err, httpconnect.ErrServerClosed) {
		t.Errorf("Serve after Close = %v, want ErrServerClosed", err)
	}
	if err := (&httpconnect.Server{}).Serve(ln2); !errors.Is(err, httpconnect.ErrNoDialer) {
		t.Errorf("Serve without a Dialer = %v, want ErrNoDialer", err)
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

// TestShutdown: new clients are refused at once, an open tunnel may finish
// (first case) or is cut when the context ends (second case).
func TestShutdown(t *testing.T) {
	o := overlay(t)
	target := netip.AddrPortFrom(o.B.Inner4, 5006)
	ln, err := o.B.Stack.ListenTCP(target)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, drain := range []bool{true, false} {
		t.Run(fmt.Sprintf("drain=%v", drain), func(t *testing.T) {
			s := &httpconnect.Server{Config: httpconnect.Config{Dialer: o.A.Stack}}
			proxy := serve(t, s)
			resp, c, err := connect(proxy, connectRequest(target.String()))
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("CONNECT: %s", resp.Status)
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
			go func() { done <- s.Shutdown(ctx) }()
			// Probe by binding the port, not by dialing it: a probe that
			// beat the close would be one more connection to drain.
			waitFor(t, "listener closed", func() bool {
				l, err := net.Listen("tcp", proxy)
				if err == nil {
					l.Close()
				}
				return err == nil
			})
			if drain {
				// The tunnel still carries data, then both ends close.
				io.WriteString(c, "after shutdown")
				buf := make([]byte, 14)
				far.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadFull(far, buf); err != nil || string(buf) != "after shutdown" {
					t.Errorf("tunnel during shutdown: read %q, %v", buf, err)
				}
				c.Close()
				far.Close()
				if err := <-done; err != nil {
					t.Errorf("Shutdown = %v, want nil after the tunnel ended", err)
				}
				return
			}
			if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
				t.Errorf("tunnel after Shutdown's deadline: read error %v, want a close", err)
			}
		})
	}
}
