package httpconnect_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/internal/httpconnect"
)

// refuser is a Dialer that refuses everything, so fuzzing never opens a
// connection.
type refuser struct{}

func (refuser) DialTCP(context.Context, netip.AddrPort) (net.Conn, error) {
	return nil, errors.New("connection was refused")
}

// scriptConn is a client connection that sends a fixed input, then EOF,
// and records what the server writes.
type scriptConn struct {
	net.Conn // nil: methods not overridden here are not used
	in       *bytes.Reader
	mu       sync.Mutex
	out      bytes.Buffer
	closed   chan struct{}
	once     sync.Once
}

func (c *scriptConn) Read(b []byte) (int, error) { return c.in.Read(b) }
func (c *scriptConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(b)
}
func (c *scriptConn) Close() error                     { c.once.Do(func() { close(c.closed) }); return nil }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// oneConn is a listener that hands out c once, then blocks until closed.
type oneConn struct {
	c    chan net.Conn
	done chan struct{}
}

func (l *oneConn) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *oneConn) Close() error {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}

func (l *oneConn) Addr() net.Addr { return &net.TCPAddr{} }

// FuzzRequest feeds arbitrary bytes to the server as a request: it must
// answer with one well-formed HTTP response that is never 200 (the dialer
// refuses everything), and never panic or hang.
func FuzzRequest(f *testing.F) {
	// A valid CONNECT with good credentials (refused by the dialer: 502).
	f.Add([]byte("CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: 192.0.2.1:443\r\nProxy-Authorization: Basic YTpi\r\n\r\n"))
	// A plain proxy request (405).
	f.Add([]byte("GET http://192.0.2.1/ HTTP/1.1\r\nHost: 192.0.2.1\r\n\r\n"))
	// No credentials (407).
	f.Add([]byte("CONNECT [2001:db8::1]:22 HTTP/1.1\r\n\r\n"))
	// Targets that are not host:port (400).
	f.Add([]byte("CONNECT :: HTTP/1.1\r\n\r\n"))
	f.Add([]byte("CONNECT host:-1 HTTP/1.0\r\n\r\n"))
	// A hostname, with no resolver (502).
	f.Add([]byte("CONNECT example.com:443 HTTP/1.1\r\nProxy-Authorization: Basic YTpi\r\n\r\n"))
	// A TLS ClientHello sent to the proxy by mistake, and an empty line (400).
	f.Add([]byte("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"))
	f.Add([]byte("\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &httpconnect.Server{Config: httpconnect.Config{
			Dialer: refuser{},
			Auth:   func(u, p string) bool { return u == "a" && p == "b" },
		}}
		c := &scriptConn{in: bytes.NewReader(in), closed: make(chan struct{})}
		ln := &oneConn{c: make(chan net.Conn, 1), done: make(chan struct{})}
		ln.c <- c
		done := make(chan error, 1)
		go func() { done <- s.Serve(ln) }()
		select {
		case <-c.closed:
		case <-time.After(5 * time.Second):
			t.Fatal("connection not closed within 5s")
		}
		s.Close()
		<-done
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(c.out.Bytes())), nil)
		if err != nil {
			t.Fatalf("response %q: %v", c.out.Bytes(), err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("response body %q: %v", body, err)
		}
		if resp.StatusCode == http.StatusOK {
			t.Error("status 200 with a dialer that refuses everything")
		}
	})
}
