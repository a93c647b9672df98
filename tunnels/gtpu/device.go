package gtpu

import (
	"fmt"
	"maps"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/udptunnel/udptunnel/stack"
)

// SocketConfig configures a GTP-U socket: one UDP port serving the TEIDs of
// many devices (the kernel's GTP-U socket, handed to `gtp-link` by fd).
type SocketConfig struct {
	// Local is the address and port to listen on; a zero address listens
	// on all addresses of both families, port 0 means DefaultPort.
	Local netip.AddrPort
	// NIC, when non-zero, binds the socket to one underlay NIC.
	NIC stack.NICID
	// Checksum is the outer UDP checksum policy.
	Checksum stack.ChecksumPolicy
	// QueueLen bounds the queue of messages handed to the control plane
	// through Tunnel().PacketConn() (unknown TEIDs, Error Indications,
	// Echo Responses); 0 means 256.
	QueueLen int
	// ErrorIndications answers each G-PDU for an unknown TEID with an
	// Error Indication (TS 29.281 §7.3.1) to the sender's address and port
	// 2152, besides passing the G-PDU to the control plane. Off by
	// default: the kernel leaves this to its userspace daemon.
	ErrorIndications bool
	// ErrorIndicationRate bounds the Error Indications sent per second,
	// with bursts of as many (0 = 10); the excess is counted in
	// SocketStats.ErrorIndicationsLimited.
	ErrorIndicationRate int
}

// Socket is a GTP-U UDP socket: the encap that parses GTP-U headers, hands
// each G-PDU to the device owning its TEID, answers Echo Requests and
// passes everything else to the control plane. Several devices share one
// socket.
type Socket struct {
	sock *stack.Socket

	mu    sync.Mutex                         // serializes changes of teids and devs
	teids atomic.Pointer[map[TEID]teidEntry] // incoming TEID -> session
	devs  map[*Device]struct{}

	echoRequests, echoResponses, echoErrors, endMarkers atomic.Uint64
	errInds, errIndsLimited, errIndErrors               atomic.Uint64

	// errInd is the Error Indication policy and its token bucket.
	errInd     bool
	errIndRate float64
	bucketMu   sync.Mutex
	tokens     float64
	lastRefill time.Time
}

// teidEntry is what an incoming TEID maps to.
type teidEntry struct {
	dev  *Device
	sess *Session
}

// OpenSocket opens a GTP-U socket in st (the outer stack).
func OpenSocket(st *stack.Stack, cfg SocketConfig) (*Socket, error) {
	if cfg.Local.Port() == 0 {
		cfg.Local = netip.AddrPortFrom(cfg.Local.Addr(), DefaultPort)
	}
	if cfg.QueueLen < 0 {
		return nil, fmt.Errorf("gtpu socket: queue length %d: %w", cfg.QueueLen, stack.ErrInvalid)
	}
	if cfg.ErrorIndicationRate < 0 {
		return nil, fmt.Errorf("gtpu socket: error indication rate %d: %w", cfg.ErrorIndicationRate, stack.ErrInvalid)
	}
	if cfg.ErrorIndicationRate == 0 {
		cfg.ErrorIndicationRate = 10
	}
	s := &Socket{devs: map[*Device]struct{}{}, errInd: cfg.ErrorIndications, errIndRate: float64(cfg.ErrorIndicationRate)}
	s.tokens, s.lastRefill = s.errIndRate, time.Now()
	empty := map[TEID]teidEntry{}
	s.teids.Store(&empty)
	// The encap's BindSocket sets s.sock before the first datagram.
	_, err := st.OpenTunnelSocket(stack.SocketConfig{
		Local:    cfg.Local,
		NIC:      cfg.NIC,
		Checksum: cfg.Checksum,
		QueueLen: cfg.QueueLen,
	}, (*encap)(s))
	if err != nil {
		return nil, fmt.Errorf("gtpu socket: %w", err)
	}
	return s, nil
}

// Tunnel returns the underlying tunnel socket. Its counters include the
// header drops (truncated, bad header); its PacketConn reads the messages
// passed to the control plane.
func (s *Socket) Tunnel() *stack.Socket { return s.sock }

// SocketStats counts the signalling a Socket handled itself.
type SocketStats struct {
	// EchoRequests is the number of Echo Requests received.
	EchoRequests uint64
	// EchoResponses is the number of Echo Responses sent.
	EchoResponses uint64
	// EchoErrors is the number of Echo Responses that could not be sent.
	EchoErrors uint64
	// EndMarkers is the number of End Markers received and consumed.
	EndMarkers uint64
	// PassedToUDP is the number of messages handed to the control plane
	// (unknown TEID, Error Indication, Echo Response, other types).
	PassedToUDP uint64
	// ErrorIndications is the number of Error Indications sent.
	ErrorIndications uint64
	// ErrorIndicationsLimited is the number not sent for the rate limit.
	ErrorIndicationsLimited uint64
	// ErrorIndicationErrors is the number that could not be sent.
	ErrorIndicationErrors uint64
}

// Stats returns a snapshot of the socket's signalling counters.
func (s *Socket) Stats() SocketStats {
	return SocketStats{
		EchoRequests:  s.echoRequests.Load(),
		EchoResponses: s.echoResponses.Load(),
		EchoErrors:    s.echoErrors.Load(),
		EndMarkers:    s.endMarkers.Load(),
		PassedToUDP:   s.sock.Counters().Stats().Passed,

		ErrorIndications:        s.errInds.Load(),
		ErrorIndicationsLimited: s.errIndsLimited.Load(),
		ErrorIndicationErrors:   s.errIndErrors.Load(),
	}
}

// Lookup returns the device and session of incoming TEID t, or nil.
func (s *Socket) Lookup(t TEID) (*Device, *Session) {
	e := (*s.teids.Load())[t]
	return e.dev, e.sess
}

// Close closes every device of the socket, then the socket. It is
// idempotent.
func (s *Socket) Close() error {
	s.closeDevices()
	return s.sock.Close()
}

func (s *Socket) closeDevices() {
	s.mu.Lock()
	devs := make([]*Device, 0, len(s.devs))
	for d := range s.devs {
		devs = append(devs, d)
	}
	s.mu.Unlock()
	for _, d := range devs {
		d.Close()
	}
}

// Role is the side of the tunnel a device plays, the kernel's
// IFLA_GTP_ROLE: it decides which inner address selects the session.
type Role uint8

const (
	// RoleGGSN is the network side (GGSN, P-GW, UPF): packets to a UE are
	// sent on the session whose UE address is the inner destination, and
	// received packets must come from the session's UE address.
	RoleGGSN Role = iota
	// RoleSGSN is the access side (SGSN, S-GW, eNodeB, gNB): packets from
	// a UE are sent on the session whose UE address is the inner source,
	// and received packets must be for the session's UE address.
	RoleSGSN
)

// String returns "ggsn" or "sgsn", as `gtp-link` spells the roles.
func (r Role) String() string {
	if r == RoleSGSN {
		return "sgsn"
	}
	return "ggsn"
}

// Session is one tunnel (a PDP context or PDU session; the kernel's struct
// pdp_ctx, `gtp-tunnel add`).
type Session struct {
	// LocalTEID is the TEID the peer sends to (i_tei); unique per socket.
	LocalTEID TEID
	// RemoteTEID is the TEID this end sends with (o_tei).
	RemoteTEID TEID
	// Peer is the outer address of the peer GTP-U entity.
	Peer netip.Addr
	// UE4 and UE6 are the UE's (MS's) IPv4 and IPv6 addresses; at least
	// one is required. Each is matched exactly.
	UE4, UE6 netip.Addr
}

// Config configures one GTP-U device: the kernel's `gtp-link add NAME` with
// its role and options, and the sessions of `gtp-tunnel add`.
type Config struct {
	// Name is the device (NIC) name; empty means "gtp<N>".
	Name string
	// Role is the device's side of the tunnel (default RoleGGSN).
	Role Role
	// Local is the outer source address; zero lets the route choose. Its
	// family, or else the first session's peer's, is the outer family.
	Local netip.Addr
	// Port is the outer UDP destination port; 0 means DefaultPort.
	Port uint16
	// SrcPortMin and SrcPortMax bound the outer UDP source port, picked
	// from a hash of the inner flow; both 0 means 49152..65535.
	// TS 29.281 §4.4.2.3 lets the sender choose the source port of a
	// G-PDU.
	SrcPortMin, SrcPortMax uint16
	// FixedSrcPort sends every G-PDU from the socket's own port (2152), as
	// the Linux kernel does, instead of a flow-hashed one.
	FixedSrcPort bool
	// TTL is the outer TTL or hop limit; 0 means the route's default.
	TTL uint8
	// TOS is the outer TOS or traffic class.
	TOS uint8
	// DF sets the outer IPv4 don't-fragment bit.
	DF bool
	// MTU is the inner MTU; 0 derives it from UnderlayMTU (1500 - 36 =
	// 1464 over IPv4, 1444 over IPv6).
	MTU uint32
	// UnderlayMTU is the outer path MTU used to derive MTU (0 = 1500).
	UnderlayMTU uint32
	// ZeroChecksum sends outer UDP datagrams without a checksum.
	ZeroChecksum bool
	// ChecksumOffload leaves inner checksums undone; see
	// stack.DeviceConfig.ChecksumOffload. Only for in-process underlays.
	ChecksumOffload bool
	// GSO passes TCP segments of up to 64 KiB through the device whole;
	// see stack.DeviceConfig.GSO. Requires ChecksumOffload.
	GSO bool
	// Headroom overrides stack.DefaultOuterHeadroom (nesting).
	Headroom int
	// Sessions are the device's initial sessions.
	Sessions []Session
}

// Device is one GTP-U device: an L3 tunnel device of the inner stack with
// its sessions, sending through a Socket of the outer stack.
type Device struct {
	*stack.Device
	sock *Socket
	cfg  Config
	v6   bool // outer family
	// byUE maps a UE address to its session (tx lookup, by inner
	// destination or source according to the role).
	byUE atomic.Pointer[map[netip.Addr]*Session]
	nic  atomic.Uint32
	// sessions is the device's own list, guarded by sock.mu.
	sessions map[TEID]*Session
}

var devSeq atomic.Uint32

// AddDevice creates a GTP-U device in inner (nil means the socket's own
// stack) with cfg's sessions. Bad configuration is an error naming the
// field and wrapping stack.ErrInvalid; a TEID or UE address already in use
// wraps stack.ErrExists. Nothing is created then.
func (s *Socket) AddDevice(inner *stack.Stack, cfg Config) (*Device, error) {
	if inner == nil {
		inner = s.sock.Stack()
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Sessions = append([]Session(nil), cfg.Sessions...)
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("gtp%d", devSeq.Add(1)-1)
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	v6 := s.sock.LocalAddr().Addr().Is6() && !s.sock.LocalAddr().Addr().Is4In6()
	switch {
	case cfg.Local.IsValid():
		v6 = !cfg.Local.Unmap().Is4()
	case len(cfg.Sessions) > 0:
		v6 = !cfg.Sessions[0].Peer.Unmap().Is4()
	}
	d := &Device{sock: s, cfg: cfg, v6: v6, sessions: map[TEID]*Session{}}
	byUE := map[netip.Addr]*Session{}

	s.mu.Lock()
	defer s.mu.Unlock()
	teids := maps.Clone(*s.teids.Load())
	for i := range cfg.Sessions {
		ss := &d.cfg.Sessions[i]
		if err := d.checkSession(ss, teids, byUE); err != nil {
			return nil, fmt.Errorf("sessions[%d]: %w", i, err)
		}
		teids[ss.LocalTEID] = teidEntry{dev: d, sess: ss}
		d.sessions[ss.LocalTEID] = ss
		for _, a := range []netip.Addr{ss.UE4, ss.UE6} {
			if a.IsValid() {
				byUE[a] = ss
			}
		}
	}
	d.cfg.Sessions = nil
	d.byUE.Store(&byUE)
	dev, err := stack.NewDevice(inner, stack.DeviceConfig{
		Name:            cfg.Name,
		Layer:           stack.L3,
		MTU:             cfg.MTU,
		UnderlayMTU:     cfg.UnderlayMTU,
		EncapLen:        8 + HeaderLen,
		OuterIPv6:       v6,
		Headroom:        cfg.Headroom,
		ChecksumOffload: cfg.ChecksumOffload,
		GSO:             cfg.GSO,
		OnClose:         d.detach,
	}, (*transmitter)(d))
	if err != nil {
		return nil, err
	}
	d.Device = dev
	d.nic.Store(uint32(dev.NIC()))
	s.devs[d] = struct{}{}
	s.teids.Store(&teids)
	return d, nil
}

func (c *Config) validate() error {
	limits := stack.CheckDeviceLimits(c.Headroom, c.UnderlayMTU)
	ports := stack.CheckSrcPortRange(c.SrcPortMin, c.SrcPortMax)
	switch {
	case c.Role > RoleSGSN:
		return fmt.Errorf("role %d: %w: want RoleGGSN or RoleSGSN", c.Role, stack.ErrInvalid)
	case c.Local.IsValid() && (c.Local.IsUnspecified() || c.Local.IsMulticast()):
		return fmt.Errorf("local %v: %w: need a unicast address", c.Local, stack.ErrInvalid)
	case ports != nil:
		return ports
	case c.FixedSrcPort && c.SrcPortMax != 0:
		return fmt.Errorf("fixed srcport with srcport %d-%d: %w: choose one", c.SrcPortMin, c.SrcPortMax, stack.ErrInvalid)
	case limits != nil:
		return limits
	case c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535-8-HeaderLen-40):
		return fmt.Errorf("MTU %d: %w: outside 68..%d", c.MTU, stack.ErrInvalid, 65535-8-HeaderLen-40)
	case c.DF && c.Local.IsValid() && !c.Local.Unmap().Is4():
		return fmt.Errorf("df: %w: IPv6 has no don't-fragment bit", stack.ErrInvalid)
	case c.DF && c.GSO:
		return fmt.Errorf("df with gso: %w: choose one", stack.ErrInvalid)
	case c.GSO && !c.ChecksumOffload:
		return fmt.Errorf("gso: %w: needs ChecksumOffload", stack.ErrInvalid)
	}
	return nil
}

// checkSession validates ss against the device's outer family and the
// tables being built (TEIDs of the socket, UE addresses of the device).
// The caller holds sock.mu.
func (d *Device) checkSession(ss *Session, teids map[TEID]teidEntry, byUE map[netip.Addr]*Session) error {
	switch {
	case !ss.Peer.IsValid() || ss.Peer.IsUnspecified() || ss.Peer.IsMulticast():
		return fmt.Errorf("peer %v: %w: need a unicast address", ss.Peer, stack.ErrInvalid)
	case ss.Peer.Unmap().Is4() == d.v6:
		return fmt.Errorf("peer %v: %w: address family differs from the device's outer family", ss.Peer, stack.ErrInvalid)
	case d.cfg.DF && !ss.Peer.Unmap().Is4():
		return fmt.Errorf("peer %v: %w: df set and IPv6 has no don't-fragment bit", ss.Peer, stack.ErrInvalid)
	case !ss.UE4.IsValid() && !ss.UE6.IsValid():
		return fmt.Errorf("ue: %w: need an IPv4 or IPv6 UE address", stack.ErrInvalid)
	case ss.UE4.IsValid() && !ss.UE4.Is4():
		return fmt.Errorf("ue4 %v: %w: not an IPv4 address", ss.UE4, stack.ErrInvalid)
	case ss.UE6.IsValid() && (!ss.UE6.Is6() || ss.UE6.Is4In6()):
		return fmt.Errorf("ue6 %v: %w: not an IPv6 address", ss.UE6, stack.ErrInvalid)
	}
	if _, ok := teids[ss.LocalTEID]; ok {
		return fmt.Errorf("local TEID %v: %w: the socket already has a session for it", ss.LocalTEID, stack.ErrExists)
	}
	for _, a := range []netip.Addr{ss.UE4, ss.UE6} {
		if _, ok := byUE[a]; ok && a.IsValid() {
			return fmt.Errorf("ue %v: %w: the device already has a session for it", a, stack.ErrExists)
		}
	}
	return nil
}

// AddSession adds a session to the device (`gtp-tunnel add`). Errors name
// the field; nothing changes on error.
func (d *Device) AddSession(ss Session) error {
	s := d.sock
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.devs[d]; !ok {
		return fmt.Errorf("gtpu device %s: %w", d.cfg.Name, stack.ErrClosed)
	}
	teids := *s.teids.Load()
	byUE := *d.byUE.Load()
	if err := d.checkSession(&ss, teids, byUE); err != nil {
		return err
	}
	p := &ss
	nt := maps.Clone(teids)
	nt[ss.LocalTEID] = teidEntry{dev: d, sess: p}
	nu := maps.Clone(byUE)
	for _, a := range []netip.Addr{ss.UE4, ss.UE6} {
		if a.IsValid() {
			nu[a] = p
		}
	}
	d.sessions[ss.LocalTEID] = p
	d.byUE.Store(&nu)
	s.teids.Store(&nt)
	return nil
}

// RemoveSession removes the session whose LocalTEID is t (`gtp-tunnel
// delete`); it returns an error wrapping stack.ErrNotFound if the device
// has none.
func (d *Device) RemoveSession(t TEID) error {
	s := d.sock
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := d.sessions[t]
	if !ok {
		return fmt.Errorf("local TEID %v: %w", t, stack.ErrNotFound)
	}
	d.removeLocked(ss)
	return nil
}

// removeLocked unpublishes ss; the caller holds sock.mu.
func (d *Device) removeLocked(ss *Session) {
	s := d.sock
	delete(d.sessions, ss.LocalTEID)
	nt := maps.Clone(*s.teids.Load())
	delete(nt, ss.LocalTEID)
	nu := maps.Clone(*d.byUE.Load())
	for a, p := range nu {
		if p == ss {
			delete(nu, a)
		}
	}
	d.byUE.Store(&nu)
	s.teids.Store(&nt)
}

// Sessions returns a copy of the device's sessions, in no order.
func (d *Device) Sessions() []Session {
	d.sock.mu.Lock()
	defer d.sock.mu.Unlock()
	out := make([]Session, 0, len(d.sessions))
	for _, ss := range d.sessions {
		out = append(out, *ss)
	}
	return out
}

// Config returns the device's configuration, defaults applied; its
// Sessions field is nil (see Sessions).
func (d *Device) Config() Config { return d.cfg }

// Close removes the device, its sessions and its NIC. The socket stays
// open for its other devices. It is idempotent.
func (d *Device) Close() error { return d.Device.Close() }

// detach runs when the stack device closes, by Close or by its stack's
// Close: it unbinds the device's TEIDs from the socket.
func (d *Device) detach() {
	s := d.sock
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range d.sessions {
		d.removeLocked(ss)
	}
	delete(s.devs, d)
}
