package socks5

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// Dialer opens the server's outbound connections. *stack.Stack implements it,
// which makes the destinations of CONNECT and UDP ASSOCIATE addresses inside
// the overlay; any other implementation (the host's sockets, a test double)
// works as well.
type Dialer interface {
	// DialTCP connects to addr.
	DialTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error)
	// ListenUDP opens an unconnected UDP socket bound to addr (the
	// unspecified address of a family and port 0 when the server calls it).
	ListenUDP(addr netip.AddrPort) (net.PacketConn, error)
}

// Resolver resolves DOMAINNAME addresses. *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Defaults for the zero values of Config.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultUDPIdleTimeout   = 2 * time.Minute
)

// Config configures a Server.
type Config struct {
	// Dialer opens outbound connections and UDP sockets. Required.
	Dialer Dialer
	// Auth, if set, requires username/password authentication (RFC 1929)
	// and reports whether a pair is valid; nil offers no authentication
	// (method 0x00) only.
	Auth func(user, password string) bool
	// UDP enables UDP ASSOCIATE; without it the command is replied with
	// ReplyCommandNotSupported.
	UDP bool
	// UDPBind is the host address that UDP relay sockets bind to (port 0);
	// the zero value is the local address of the client's control
	// connection, that is the TCP listener's IP.
	UDPBind netip.Addr
	// UDPIdleTimeout ends an association after this long without a datagram
	// either way (0 = DefaultUDPIdleTimeout).
	UDPIdleTimeout time.Duration
	// MaxUDPAssociations caps concurrent associations; a request beyond the
	// cap is replied with ReplyGeneralFailure (0 = no cap).
	MaxUDPAssociations int
	// HandshakeTimeout bounds the negotiation from accept to the reply,
	// dialing included (0 = DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// Logger receives per-connection debug messages (nil = discard).
	Logger *slog.Logger
	// Resolver resolves DOMAINNAME addresses; nil replies
	// ReplyAddrTypeNotSupported to them (and drops such datagrams).
	Resolver Resolver
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("socks5: server closed")

// Server is a SOCKS5 server. Its methods are safe for concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	open      map[io.Closer]struct{} // control conns, target conns, relay sockets
	udpCount  int

	wg sync.WaitGroup // one per connection goroutine and per relay goroutine
	c  counters
}

// NewServer returns a server for cfg, or an error naming the field that is
// invalid.
func NewServer(cfg Config) (*Server, error) {
	switch {
	case cfg.Dialer == nil:
		return nil, errors.New("socks5: Config.Dialer is nil")
	case cfg.UDPIdleTimeout < 0:
		return nil, fmt.Errorf("socks5: Config.UDPIdleTimeout %v is negative", cfg.UDPIdleTimeout)
	case cfg.HandshakeTimeout < 0:
		return nil, fmt.Errorf("socks5: Config.HandshakeTimeout %v is negative", cfg.HandshakeTimeout)
	case cfg.MaxUDPAssociations < 0:
		return nil, fmt.Errorf("socks5: Config.MaxUDPAssociations %d is negative", cfg.MaxUDPAssociations)
	case cfg.UDPBind.IsValid() && cfg.UDPBind.Zone() != "":
		return nil, fmt.Errorf("socks5: Config.UDPBind %v has a zone", cfg.UDPBind)
	}
	if cfg.UDPIdleTimeout == 0 {
		cfg.UDPIdleTimeout = DefaultUDPIdleTimeout
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		listeners: make(map[net.Listener]struct{}),
		open:      make(map[io.Closer]struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats { return s.c.snapshot() }

// Serve accepts connections on ln and serves each in its own goroutine until
// ln fails or the server is closed; it then closes ln and returns the error
// (ErrServerClosed after Close). It may be called for several listeners.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			// A transient failure (EMFILE and the like): wait and retry,
			// as net/http does.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("socks5: accept", "err", err, "retry", backoff)
				select {
				case <-time.After(backoff):
				case <-s.ctx.Done():
					return ErrServerClosed
				}
				continue
			}
			return err
		}
		backoff = 0
		if !s.track(conn) {
			conn.Close()
			return ErrServerClosed
		}
		s.c.connections.Add(1)
		s.c.active.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.c.active.Add(^uint64(0))
			defer s.release(conn)
			s.handle(conn)
		}()
	}
}

// Close closes every listener given to Serve, every connection and relay,
// and waits for the goroutines serving them to return.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.cancel()
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track registers c to be closed by Close; it reports false if the server
// is already closed (then the caller closes c).
func (s *Server) track(c io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.open[c] = struct{}{}
	return true
}

// release closes c and forgets it.
func (s *Server) release(c io.Closer) {
	s.mu.Lock()
	delete(s.open, c)
	s.mu.Unlock()
	c.Close()
}

// handle serves one control connection: negotiation, authentication, the
// request, then the command.
func (s *Server) handle(conn net.Conn) {
	log := s.log.With("client", conn.RemoteAddr().String())
	deadline := time.Now().Add(s.cfg.HandshakeTimeout)
	conn.SetDeadline(deadline)

	// 512 bytes hold any message: the longest is a username/password
	// request (1+1+255+1+255) or a domain address (1+255+2).
	buf := make([]byte, 512)
	methods, err := readGreeting(conn, buf)
	if err != nil {
		s.c.handshakeErrors.Add(1)
		log.Debug("socks5: greeting", "err", err)
		return
	}
	want := MethodNoAuth
	if s.cfg.Auth != nil {
		want = MethodUserPass
	}
	if !containsMethod(methods, want) {
		s.c.authFailures.Add(1)
		conn.Write([]byte{socksVersion, byte(MethodNoAcceptable)})
		log.Debug("socks5: no acceptable method", "offered", methods)
		return
	}
	if _, err := conn.Write([]byte{socksVersion, byte(want)}); err != nil {
		s.c.handshakeErrors.Add(1)
		return
	}
	if want == MethodUserPass {
		user, pass, err := readUserPass(conn, buf)
		if err != nil {
			s.c.handshakeErrors.Add(1)
			log.Debug("socks5: username/password request", "err", err)
			return
		}
		if !s.cfg.Auth(user, pass) {
			s.c.authFailures.Add(1)
			conn.Write([]byte{authVersion, 0x01})
			log.Debug("socks5: authentication failed", "user", user)
			return
		}
		if _, err := conn.Write([]byte{authVersion, 0x00}); err != nil {
			s.c.handshakeErrors.Add(1)
			return
		}
	}

	req, err := readRequest(conn, buf)
	switch {
	case errors.Is(err, ErrAddrType):
		s.reply(conn, ReplyAddrTypeNotSupported, Addr{})
		log.Debug("socks5: request", "err", err)
		return
	case errors.Is(err, ErrMalformed):
		s.reply(conn, ReplyGeneralFailure, Addr{})
		log.Debug("socks5: request", "err", err)
		return
	case err != nil:
		s.c.handshakeErrors.Add(1)
		log.Debug("socks5: request", "err", err)
		return
	}
	s.c.request(req.Command)
	log = log.With("cmd", req.Command.String(), "dst", req.Dst.String())
	switch {
	case req.Command == CommandConnect:
		s.connect(conn, req, deadline, log)
	case req.Command == CommandUDPAssociate && s.cfg.UDP:
		s.associate(conn, req, log)
	default:
		s.reply(conn, ReplyCommandNotSupported, Addr{})
		log.Debug("socks5: command not supported")
	}
}

func containsMethod(methods []byte, m Method) bool {
	for _, b := range methods {
		if Method(b) == m {
			return true
		}
	}
	return false
}

// reply writes a reply and counts it if it is a failure.
func (s *Server) reply(conn net.Conn, rep Reply, bnd Addr) error {
	s.c.failure(rep)
	var b [maxReplyLen]byte
	_, err := conn.Write(appendReply(b[:0], rep, bnd))
	return err
}

// addrPortOf returns a net.Addr's IP and port, IPv4-mapped addresses
// unmapped; the zero AddrPort if it has none.
func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	case nil:
		return netip.AddrPort{}
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}
