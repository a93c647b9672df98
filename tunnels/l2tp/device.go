package l2tp

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/udptunnel/udptunnel/stack"
)

// SocketConfig configures an L2TPv3 tunnel over UDP: the kernel's
// `ip l2tp add tunnel tunnel_id T peer_tunnel_id PT encap udp local L
// remote R udp_sport S udp_dport D [udp_csum on|off]`.
type SocketConfig struct {
	// TunnelID and PeerTunnelID are the Control Connection IDs of both
	// ends (RFC 3931 §3.2.1; "tunnel_id", "peer_tunnel_id"). Data messages
	// over UDP do not carry them: they are kept for the control plane.
	// Both must be non-zero.
	TunnelID, PeerTunnelID uint32
	// Local is the address and source port ("local", "udp_sport"); a
	// zero address lets the route choose, port 0 means DefaultPort.
	Local netip.AddrPort
	// Remote is the peer's address and port ("remote", "udp_dport");
	// required, port 0 means DefaultPort. The socket is connected to it,
	// as the kernel's tunnel socket is: datagrams from elsewhere are not
	// the tunnel's.
	Remote netip.AddrPort
	// NIC, when non-zero, binds the socket to one underlay NIC.
	NIC stack.NICID
	// Checksum is the receive checksum policy (and ZeroTx for IPv6 is
	// "udp6_csum_tx off"). The zero value computes and verifies checksums.
	Checksum stack.ChecksumPolicy
	// ZeroChecksum sends data messages without a UDP checksum ("udp_csum
	// off", the kernel's default over IPv4; here the default is on).
	// Over IPv6 the receiver must allow zero checksums (RFC 6935).
	ZeroChecksum bool
	// QueueLen bounds the queue of control messages and datagrams for
	// unknown sessions read through Tunnel().PacketConn() (0 = 256).
	QueueLen int
}

// Socket is one L2TPv3 tunnel over UDP: a tunnel socket connected to the
// peer whose data messages are handed to the session (Device) of their
// Session ID, while control messages and unknown sessions go to the
// socket's plain UDP face for the control plane, as the kernel's
// l2tp_udp_encap_recv returns them to the daemon's socket. It is the
// kernel's struct l2tp_tunnel with encap udp.
type Socket struct {
	sock *stack.Socket
	cfg  SocketConfig
	v6   bool
	src  netip.Addr // outer source address; zero lets the route choose

	mu       sync.Mutex // serializes changes of sessions
	sessions stack.Registry[SessionID, *Device]
}

// OpenSocket opens an L2TPv3 tunnel's UDP socket in st (the outer stack).
func OpenSocket(st *stack.Stack, cfg SocketConfig) (*Socket, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Local.Port() == 0 {
		cfg.Local = netip.AddrPortFrom(cfg.Local.Addr(), DefaultPort)
	}
	if cfg.Remote.Port() == 0 {
		cfg.Remote = netip.AddrPortFrom(cfg.Remote.Addr(), DefaultPort)
	}
	s := &Socket{cfg: cfg, v6: !cfg.Remote.Addr().Unmap().Is4()}
	if a := cfg.Local.Addr(); a.IsValid() && !a.IsUnspecified() {
		s.src = a.Unmap()
	}
	// The encap's BindSocket sets s.sock before the first datagram.
	_, err := st.OpenTunnelSocket(stack.SocketConfig{
		Local:    cfg.Local,
		Peer:     netip.AddrPortFrom(cfg.Remote.Addr().Unmap(), cfg.Remote.Port()),
		NIC:      cfg.NIC,
		Checksum: cfg.Checksum,
		QueueLen: cfg.QueueLen,
	}, (*encap)(s))
	if err != nil {
		return nil, fmt.Errorf("l2tp socket: %w", err)
	}
	return s, nil
}

func (c *SocketConfig) validate() error {
	r, l := c.Remote.Addr(), c.Local.Addr()
	switch {
	case c.TunnelID == 0:
		return fmt.Errorf("tunnel id 0: %w: reserved (RFC 3931 §3.2.1)", stack.ErrInvalid)
	case c.PeerTunnelID == 0:
		return fmt.Errorf("peer tunnel id 0: %w: reserved (RFC 3931 §3.2.1)", stack.ErrInvalid)
	case !r.IsValid() || r.IsUnspecified() || r.IsMulticast():
		return fmt.Errorf("remote %v: %w: need a unicast address", c.Remote, stack.ErrInvalid)
	case l.IsValid() && (l.IsMulticast() || (!l.IsUnspecified() && l.Unmap().Is4() != r.Unmap().Is4())):
		return fmt.Errorf("local %v: %w: need a unicast address of the remote's family", c.Local, stack.ErrInvalid)
	case c.QueueLen < 0:
		return fmt.Errorf("queue length %d: %w", c.QueueLen, stack.ErrInvalid)
	}
	return nil
}

// Tunnel returns the underlying tunnel socket. Its counters include the
// drops decided before a session is known (truncated, bad version); its
// PacketConn reads the control messages and the data messages of unknown
// sessions, and writes control messages from the tunnel's port.
func (s *Socket) Tunnel() *stack.Socket { return s.sock }

// Config returns the tunnel's configuration, defaults applied.
func (s *Socket) Config() SocketConfig { return s.cfg }

// Device returns the session with local Session ID id, or nil.
func (s *Socket) Device(id SessionID) *Device { return s.sessions.Get(id) }

// Close closes every session of the tunnel, then its socket. It is
// idempotent.
func (s *Socket) Close() error {
	for _, d := range s.sessions.All() {
		d.Close()
	}
	return s.sock.Close()
}

// SeqMode is a session's sequencing ("seq none|send|recv|both").
type SeqMode uint8

const (
	// SeqNone neither sends nor requires sequence numbers.
	SeqNone SeqMode = iota
	// SeqSend sets the S bit and an incrementing sequence number on every
	// data message sent.
	SeqSend
	// SeqRecv drops received data messages without a valid sequence
	// number (the kernel's recv_seq).
	SeqRecv
	// SeqBoth is SeqSend and SeqRecv.
	SeqBoth
)

func (m SeqMode) sends() bool    { return m == SeqSend || m == SeqBoth }
func (m SeqMode) requires() bool { return m == SeqRecv || m == SeqBoth }

// String returns the mode as iproute2 spells it.
func (m SeqMode) String() string {
	switch m {
	case SeqNone:
		return "none"
	case SeqSend:
		return "send"
	case SeqRecv:
		return "recv"
	case SeqBoth:
		return "both"
	}
	return fmt.Sprintf("seq(%d)", uint8(m))
}

// Config configures one session, an Ethernet pseudowire: the kernel's
// `ip l2tp add session tunnel_id T session_id S peer_session_id PS
// [cookie HEX] [peer_cookie HEX] [l2spec_type none|default]
// [seq none|send|recv|both]` with its l2tpeth device.
type Config struct {
	// Name is the device (NIC) name; empty means "l2tpeth<ID>".
	Name string
	// ID is the local Session ID, the one received data messages carry
	// ("session_id"); non-zero.
	ID SessionID
	// PeerID is the peer's Session ID, put in every data message sent
	// ("peer_session_id"); non-zero.
	PeerID SessionID
	// Cookie is sent in every data message ("cookie"): 0, 4 or 8 bytes.
	Cookie []byte
	// PeerCookie is the cookie every received data message must carry
	// ("peer_cookie"): 0, 4 or 8 bytes. A mismatch drops the message
	// (DropPolicy), as the kernel's rx_cookie_discards.
	PeerCookie []byte
	// L2Spec is the L2-Specific Sublayer of both directions
	// ("l2spec_type").
	L2Spec L2SpecType
	// Seq is the sequencing mode ("seq"); anything but SeqNone needs
	// L2SpecDefault, the sublayer that carries the numbers.
	Seq SeqMode
	// MAC is the device's Ethernet address; nil picks a random locally
	// administered one.
	MAC net.HardwareAddr
	// MTU is the inner MTU; 0 derives it from UnderlayMTU minus the
	// overhead (1500 - 20 - 8 - 8 - cookie - sublayer - 14 over IPv4).
	MTU uint32
	// UnderlayMTU is the outer path MTU used to derive MTU (0 = 1500).
	UnderlayMTU uint32
	// TTL is the outer TTL or hop limit; 0 means the route's default.
	TTL uint8
	// TOS is the outer TOS or traffic class.
	TOS uint8
	// DF sets the outer IPv4 don't-fragment bit; packets over the path MTU
	// are then dropped, never fragmented.
	DF bool
	// ChecksumOffload leaves inner checksums undone; see
	// stack.DeviceConfig.ChecksumOffload. Only for in-process underlays.
	ChecksumOffload bool
	// GSO passes TCP segments of up to 64 KiB through the device whole;
	// see stack.DeviceConfig.GSO. Requires ChecksumOffload.
	GSO bool
	// Headroom overrides stack.DefaultOuterHeadroom (nesting).
	Headroom int
}

// oosCountMax is how many consecutive in-sequence packets behind the
// expected number resynchronise the receive sequence (the kernel's
// nr_oos_count_max default).
const oosCountMax = 4

// Device is one L2TPv3 session: an Ethernet pseudowire, an L2 tunnel device
// of the inner stack sending through its tunnel's Socket (the kernel's
// struct l2tp_session with its l2tpeth net_device).
type Device struct {
	*stack.Device
	sock       *Socket
	cfg        Config
	cookie     [MaxCookieLen]byte
	peerCookie [MaxCookieLen]byte
	// nic is the device's NIC for Transmit's loop check, set once the
	// stack device exists.
	nic atomic.Uint32

	txMu    sync.Mutex    // orders sequence numbers with the wire when sending them
	txDepth atomic.Int32  // nesting depth of the packet sent under txMu
	ns      atomic.Uint32 // next sequence number to send (modulo MaxSeq+1)

	rxMu     sync.Mutex // the receive sequence state below
	synced   bool       // a sequenced packet was received
	nr       uint32     // next expected sequence number
	nrOOS    uint32     // last out-of-sequence number seen
	oosCount int        // consecutive in-sequence packets among the OOS ones

	seqDiscards, seqJumps, seqResyncs atomic.Uint64
}

// AddDevice creates a session with its Ethernet device in inner (the stack
// whose applications use the pseudowire; nil means the socket's own stack).
// Bad configuration is an error naming the field; nothing is created then.
// A second session with the same ID is refused with stack.ErrExists.
func (s *Socket) AddDevice(inner *stack.Stack, cfg Config) (*Device, error) {
	if inner == nil {
		inner = s.sock.Stack()
	}
	if err := cfg.validate(s.v6); err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("l2tpeth%d", cfg.ID)
	}
	d := &Device{sock: s}
	copy(d.cookie[:], cfg.Cookie)
	copy(d.peerCookie[:], cfg.PeerCookie)
	// Keep copies: the caller may reuse its slices.
	cfg.Cookie = d.cookie[:len(cfg.Cookie):len(cfg.Cookie)]
	cfg.PeerCookie = d.peerCookie[:len(cfg.PeerCookie):len(cfg.PeerCookie)]
	cfg.MAC = append(net.HardwareAddr(nil), cfg.MAC...)
	if len(cfg.MAC) == 0 {
		cfg.MAC = nil
	}
	d.cfg = cfg

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions.Get(cfg.ID) != nil {
		return nil, fmt.Errorf("session id %d: %w: the tunnel already has it", cfg.ID, stack.ErrExists)
	}
	dev, err := stack.NewDevice(inner, stack.DeviceConfig{
		Name:            cfg.Name,
		Layer:           stack.L2,
		MAC:             cfg.MAC,
		MTU:             cfg.MTU,
		UnderlayMTU:     cfg.UnderlayMTU,
		EncapLen:        8 + d.hdrLen(),
		OuterIPv6:       s.v6,
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
	s.sessions.Set(cfg.ID, d)
	return d, nil
}

func (c *Config) validate(v6 bool) error {
	cookieOK := func(n int) bool { return n == 0 || n == 4 || n == 8 }
	limits := stack.CheckDeviceLimits(c.Headroom, c.UnderlayMTU)
	switch {
	case c.ID == 0:
		return fmt.Errorf("session id 0: %w: reserved for control messages (RFC 3931 §4.1.2.1)", stack.ErrInvalid)
	case c.PeerID == 0:
		return fmt.Errorf("peer session id 0: %w: reserved for control messages (RFC 3931 §4.1.2.1)", stack.ErrInvalid)
	case !cookieOK(len(c.Cookie)):
		return fmt.Errorf("cookie of %d bytes: %w: need 0, 4 or 8", len(c.Cookie), stack.ErrInvalid)
	case !cookieOK(len(c.PeerCookie)):
		return fmt.Errorf("peer cookie of %d bytes: %w: need 0, 4 or 8", len(c.PeerCookie), stack.ErrInvalid)
	case c.L2Spec > L2SpecDefault:
		return fmt.Errorf("l2spec type %d: %w: need none or default", c.L2Spec, stack.ErrInvalid)
	case c.Seq > SeqBoth:
		return fmt.Errorf("seq %d: %w: need none, send, recv or both", c.Seq, stack.ErrInvalid)
	case c.Seq != SeqNone && c.L2Spec != L2SpecDefault:
		return fmt.Errorf("seq %v: %w: sequence numbers need l2spec type default", c.Seq, stack.ErrInvalid)
	case len(c.MAC) != 0 && len(c.MAC) != 6:
		return fmt.Errorf("mac %v: %w: need 6 bytes", c.MAC, stack.ErrInvalid)
	case limits != nil:
		return limits
	case c.DF && v6:
		return fmt.Errorf("df: %w: IPv6 has no don't-fragment bit", stack.ErrInvalid)
	case c.DF && c.GSO:
		return fmt.Errorf("df with gso: %w: choose one (GSO packets are never fragmented by DF rules)", stack.ErrInvalid)
	case c.GSO && !c.ChecksumOffload:
		return fmt.Errorf("gso: %w: needs checksum offload", stack.ErrInvalid)
	}
	return nil
}

// hdrLen is the L2TPv3 header length of the data messages d sends, which
// sizes the headroom and the derived MTU.
func (d *Device) hdrLen() int {
	return HeaderLen + len(d.cfg.Cookie) + d.cfg.L2Spec.Len()
}

// Config returns the session's configuration, defaults applied.
func (d *Device) Config() Config { return d.cfg }

// ID returns the local Session ID.
func (d *Device) ID() SessionID { return d.cfg.ID }

// SeqStats are a session's receive sequencing counters, the kernel's
// rx_seq_discards and friends.
type SeqStats struct {
	// Discards: packets dropped for an old sequence number (duplicate or
	// reordered) or for none where one is required; also counted as
	// DropPolicy on the device.
	Discards uint64
	// Jumps: packets accepted ahead of the expected number (the packets
	// in between were lost or are late).
	Jumps uint64
	// Resyncs: times the expected number was reset after oosCountMax+1
	// consecutive packets behind it (a restarted peer).
	Resyncs uint64
}

// SeqStats returns the session's sequencing counters.
func (d *Device) SeqStats() SeqStats {
	return SeqStats{Discards: d.seqDiscards.Load(), Jumps: d.seqJumps.Load(), Resyncs: d.seqResyncs.Load()}
}

// Close removes the session from its tunnel and its device from its stack.
// The tunnel stays open for its other sessions. It is idempotent.
func (d *Device) Close() error { return d.Device.Close() }

// detach runs when the stack device closes, by Close or by its stack's
// Close: it unbinds the Session ID from the tunnel.
func (d *Device) detach() {
	s := d.sock
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions.DeleteValue(d)
}
