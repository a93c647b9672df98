// Package httpconnect provides an HTTP CONNECT proxy server (RFC 9110
// section 9.3.6) whose outgoing connections are opened by a Dialer, such as
// a *stack.Stack, so that host applications reach addresses inside a
// udptunnel overlay without privileges.
//
// It is a tunnel-only proxy: CONNECT to an IP literal (or to a hostname when
// a Resolver is configured), a 200 reply, then a byte pipe with half-close.
// It does not forward plain HTTP requests (they get 405), does not cache,
// and speaks no TLS itself. The kernel has no analog; it is an adapter for
// applications, kept apart from the CLI so that the CLI only wires it up and
// an application embedding the library can reuse it. It is internal because
// its configuration surface is the CLI's.
package httpconnect

import (
	"bufio"
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/udptunnel/udptunnel/internal/relay"
	"github.com/udptunnel/udptunnel/stack"
)

// Dialer opens TCP connections to the targets of CONNECT requests.
type Dialer interface {
	DialTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error)
}

var _ Dialer = (*stack.Stack)(nil)

// Defaults for zero Config fields.
const (
	DefaultDialTimeout   = 10 * time.Second
	DefaultHeaderTimeout = 10 * time.Second
	// DefaultMaxHeaderBytes bounds the request line and headers.
	DefaultMaxHeaderBytes = 16 << 10
)

// Config configures a Server. Only Dialer is required.
type Config struct {
	// Dialer opens the connections to CONNECT targets (required).
	Dialer Dialer
	// Resolver, if set, turns a hostname target into addresses, tried in
	// order. Without it only IP literals are accepted: a hostname gets 502
	// with a body saying so.
	Resolver func(ctx context.Context, host string) ([]netip.Addr, error)
	// Auth, if set, checks the Basic credentials of Proxy-Authorization;
	// a request without them or with wrong ones gets 407.
	Auth func(user, password string) bool
	// Realm is the realm announced in Proxy-Authenticate ("" = "udptunnel").
	Realm string
	// Logger receives one record per refused request and per tunnel at
	// debug level (nil = discard).
	Logger *slog.Logger
	// DialTimeout bounds connecting to a target, all its addresses
	// together (0 = DefaultDialTimeout). Exceeding it gives 504.
	DialTimeout time.Duration
	// HeaderTimeout bounds reading the request (0 = DefaultHeaderTimeout).
	HeaderTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers
	// (0 = DefaultMaxHeaderBytes); a longer request gets 431.
	MaxHeaderBytes int
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("httpconnect: server closed")

// ErrNoDialer is returned by Serve when Config.Dialer is nil.
var ErrNoDialer = errors.New("httpconnect: Config.Dialer is nil")

// Stats are a server's counters since it was created.
type Stats struct {
	// Accepted counts client connections; Active those still open.
	Accepted, Active uint64
	// Tunnels counts CONNECT requests answered with 200.
	Tunnels uint64
	// BytesUp is what clients sent to targets, BytesDown the reverse.
	BytesUp, BytesDown uint64
	// Refusals by cause: unreadable or malformed request or target (400,
	// 431), a method other than CONNECT (405), missing or wrong
	// credentials (407), a hostname that could not be resolved (502),
	// a target that refused or was unreachable (502), a dial that timed
	// out (504).
	BadRequest, MethodNotAllowed, AuthFailed, ResolveFailed, DialFailed, DialTimeout uint64
}

// Server is an HTTP CONNECT proxy. Set Config and call Serve; the zero
// Config is invalid (it has no Dialer). A Server must not be copied after
// first use.
type Server struct {
	Config Config

	mu        sync.Mutex
	closed    bool // Close was called
	stopping  bool // Shutdown was called: no more listeners
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup
	ctx       context.Context // cancelled by Close: aborts dials
	cancel    context.CancelFunc

	accepted, active, tunnels, bytesUp, bytesDown                           atomic.Uint64
	badRequest, notAllowed, authFailed, resolveFailed, dialFailed, timeouts atomic.Uint64
}

// init sets up the server's state on first use; s.mu is held.
func (s *Server) init() {
	if s.ctx == nil {
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.listeners = make(map[net.Listener]struct{})
		s.conns = make(map[net.Conn]struct{})
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Config.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Config.Logger
}

// Serve accepts connections on ln and serves each on its own goroutine,
// until ln fails or the server is closed. It closes ln when it returns,
// and returns ErrServerClosed after Close.
func (s *Server) Serve(ln net.Listener) error {
	if s.Config.Dialer == nil {
		ln.Close()
		return ErrNoDialer
	}
	s.mu.Lock()
	s.init()
	if s.closed || s.stopping {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		ln.Close()
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		s.wg.Done()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed || s.stopping
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			return err
		}
		if !s.track(c) {
			c.Close()
			return ErrServerClosed
		}
		s.accepted.Add(1)
		s.active.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.active.Add(^uint64(0))
			defer s.untrack(c)
			s.serveConn(c)
		}()
	}
}

// track registers c so that Close can close it, and counts its goroutine.
// It returns false if the server is closed.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close closes the listeners and every connection, client or target,
// aborts dials in progress and waits for all of the server's goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.init()
	s.closed = true
	s.cancel()
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Shutdown closes the listeners, lets the open connections finish until
// ctx is done, then closes what is left as Close does. It returns ctx's
// error if connections had to be cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.init()
	s.stopping = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	err := waitIdle(ctx, func() bool { return s.active.Load() == 0 })
	s.Close()
	return err
}

// waitIdle polls idle until it is true or ctx is done, as net/http's
// Shutdown does: connections end on their own goroutines, nothing to
// wait on.
func waitIdle(ctx context.Context, idle func() bool) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !idle() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Accepted:         s.accepted.Load(),
		Active:           s.active.Load(),
		Tunnels:          s.tunnels.Load(),
		BytesUp:          s.bytesUp.Load(),
		BytesDown:        s.bytesDown.Load(),
		BadRequest:       s.badRequest.Load(),
		MethodNotAllowed: s.notAllowed.Load(),
		AuthFailed:       s.authFailed.Load(),
		ResolveFailed:    s.resolveFailed.Load(),
		DialFailed:       s.dialFailed.Load(),
		DialTimeout:      s.timeouts.Load(),
	}
}

// serveConn reads one request from c and either refuses it or turns c into
// a tunnel. c is closed by the caller.
func (s *Server) serveConn(c net.Conn) {
	cfg := &s.Config
	log := s.logger().With("client", c.RemoteAddr().String())
	headerTimeout := cmp.Or(cfg.HeaderTimeout, DefaultHeaderTimeout)
	maxHeader := cmp.Or(cfg.MaxHeaderBytes, DefaultMaxHeaderBytes)

	c.SetReadDeadline(time.Now().Add(headerTimeout))
	// The limit applies to the request head only; it is lifted once the
	// head is parsed, as net/http does.
	lr := &io.LimitedReader{R: c, N: int64(maxHeader)}
	br := bufio.NewReader(lr)
	req, err := http.ReadRequest(br)
	if err != nil {
		if s.ctx.Err() != nil {
			return // Close closed c under the read: not the client's fault
		}
		s.badRequest.Add(1)
		if lr.N <= 0 {
			log.Debug("request head too large", "limit", maxHeader)
			reply(c, http.StatusRequestHeaderFieldsTooLarge, nil, "request head exceeds %d bytes", maxHeader)
			return
		}
		log.Debug("unreadable request", "err", err)
		reply(c, http.StatusBadRequest, nil, "malformed request: %v", err)
		return
	}
	if req.Method != http.MethodConnect {
		s.notAllowed.Add(1)
		log.Debug("method not allowed", "method", req.Method)
		reply(c, http.StatusMethodNotAllowed, http.Header{"Allow": {http.MethodConnect}},
			"this proxy only tunnels (CONNECT host:port); %s is not forwarded", req.Method)
		return
	}
	if cfg.Auth != nil {
		user, pass, ok := proxyBasicAuth(req.Header.Get("Proxy-Authorization"))
		if !ok || !cfg.Auth(user, pass) {
			s.authFailed.Add(1)
			log.Debug("proxy authentication failed", "user", user, "credentials", ok)
			realm := cmp.Or(cfg.Realm, "udptunnel")
			reply(c, http.StatusProxyAuthRequired,
				http.Header{"Proxy-Authenticate": {`Basic realm="` + realm + `"`}},
				"proxy authentication required")
			return
		}
	}
	host, port, err := splitTarget(req.RequestURI)
	if err != nil {
		s.badRequest.Add(1)
		log.Debug("bad target", "target", req.RequestURI, "err", err)
		reply(c, http.StatusBadRequest, nil, "bad CONNECT target %q: %v", req.RequestURI, err)
		return
	}

	ctx, cancel := context.WithTimeout(s.ctx, cmp.Or(cfg.DialTimeout, DefaultDialTimeout))
	defer cancel()
	addrs, err := s.resolve(ctx, host)
	if err != nil {
		s.resolveFailed.Add(1)
		log.Debug("cannot resolve target", "target", req.RequestURI, "err", err)
		reply(c, http.StatusBadGateway, nil, "cannot resolve %q: %v", host, err)
		return
	}
	up, err := s.dial(ctx, addrs, port)
	if err != nil {
		if s.ctx.Err() != nil {
			return // aborted by Close
		}
		status := http.StatusBadGateway
		if isTimeout(err) {
			status = http.StatusGatewayTimeout
			s.timeouts.Add(1)
		} else {
			s.dialFailed.Add(1)
		}
		log.Debug("cannot reach target", "target", req.RequestURI, "err", err)
		reply(c, status, nil, "cannot reach %s: %v", req.RequestURI, err)
		return
	}
	if !s.track(up) {
		up.Close()
		return
	}
	defer s.wg.Done()
	defer s.untrack(up)

	c.SetReadDeadline(time.Time{})
	lr.N = math.MaxInt64
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	s.tunnels.Add(1)
	log.Debug("tunnel open", "target", req.RequestURI, "via", up.LocalAddr().String())
	// br may hold bytes the client sent right after the request head.
	relay.Pipe(c, br, up, &s.bytesUp, &s.bytesDown)
	log.Debug("tunnel closed", "target", req.RequestURI)
}

// resolve returns the addresses of host: the literal itself, or what the
// Resolver says.
func (s *Server) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	if s.Config.Resolver == nil {
		return nil, errors.New("not an IP address, and this proxy has no resolver: CONNECT to an IP literal")
	}
	addrs, err := s.Config.Resolver(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, errors.New("resolver returned no addresses")
	}
	return addrs, nil
}

// dial tries addrs in order and returns the first connection, or the
// first error when all fail (the last one if the deadline ran out).
func (s *Server) dial(ctx context.Context, addrs []netip.Addr, port uint16) (net.Conn, error) {
	var first error
	for _, a := range addrs {
		c, err := s.Config.Dialer.DialTCP(ctx, netip.AddrPortFrom(a.Unmap(), port))
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// splitTarget parses the authority-form target of CONNECT.
func splitTarget(target string) (host string, port uint16, err error) {
	h, p, err := net.SplitHostPort(target)
	if err != nil {
		return "", 0, err
	}
	if h == "" {
		return "", 0, errors.New("empty host")
	}
	if a, err := netip.ParseAddr(h); err == nil && a.Zone() != "" {
		return "", 0, errors.New("zoned addresses are not accepted")
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("port %q is not in 1-65535", p)
	}
	return h, uint16(n), nil
}

// proxyBasicAuth decodes "Basic base64(user:password)".
func proxyBasicAuth(v string) (user, password string, ok bool) {
	scheme, cred, found := strings.Cut(v, " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(raw), ":")
}

// isTimeout reports whether a dial failed for lack of time rather than
// being refused. gVisor's gonet reports its own connect timeout only as
// the text of tcpip.ErrTimeout, hence the string match.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) ||
		strings.Contains(err.Error(), "timed out")
}

// reply writes a complete HTTP/1.1 response with a text body and asks the
// client to close.
func reply(c net.Conn, status int, h http.Header, format string, args ...any) {
	body := fmt.Sprintf(format, args...) + "\n"
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	for k, vs := range h {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	fmt.Fprintf(&b, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, b.String())
}
