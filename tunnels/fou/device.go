package fou

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/udptunnel/udptunnel/stack"
)

// Type is the encapsulation of a socket: `ip fou add ... ipproto N` or
// `ip fou add ... gue`.
type Type uint8

// Encapsulation types.
const (
	// TypeFOU is Foo-over-UDP: the UDP payload is a packet of the socket's IP
	// protocol, with no header of its own.
	TypeFOU Type = iota
	// TypeGUE is Generic UDP Encapsulation: a GUE header names the payload's
	// IP protocol.
	TypeGUE
)

// String returns "fou" or "gue".
func (t Type) String() string {
	if t == TypeGUE {
		return "gue"
	}
	return "fou"
}

// SocketConfig configures a FOU or GUE receive port: the kernel's
// `ip fou add port PORT { ipproto N | gue } [local ADDR]`.
type SocketConfig struct {
	// Type is TypeFOU or TypeGUE.
	Type Type
	// Proto is a FOU port's IP protocol (ProtoIPIP, ProtoIPv6 or
	// ProtoGRE); it must be ProtoAuto (zero) for GUE, whose header names
	// each packet's.
	Proto Proto
	// Local is the address and port to listen on; a zero address listens
	// on all addresses of both families. Port 0 means the protocol's
	// port: GUEPort, GREPort for FOU carrying GRE (GRE-in-UDP), FOUPort
	// otherwise.
	Local netip.AddrPort
	// NIC, when non-zero, binds the socket to one underlay NIC.
	NIC stack.NICID
	// Checksum is the outer UDP checksum policy (the zero value computes
	// and verifies checksums).
	Checksum stack.ChecksumPolicy
}

// Socket is a FOU or GUE receive port (the kernel's struct fou) and the
// socket its devices send through.
type Socket struct {
	sock   *stack.Socket
	cfg    SocketConfig
	reg    *registry
	protos []Proto // the handlers this socket resubmits to

	mu     sync.Mutex // guards devs and closed
	devs   map[*Device]struct{}
	closed bool
}

// OpenSocket opens a FOU or GUE port in st (the outer stack) and makes
// sure st has the receive handlers it resubmits to: one per IP protocol,
// shared by every FOU and GUE socket of st.
func OpenSocket(st *stack.Stack, cfg SocketConfig) (*Socket, error) {
	var protos []Proto
	switch cfg.Type {
	case TypeFOU:
		switch cfg.Proto {
		case ProtoIPIP, ProtoIPv6, ProtoGRE:
			protos = []Proto{cfg.Proto}
		default:
			return nil, fmt.Errorf("fou socket: proto %v: %w: need ipip (4), ipv6 (41) or gre (47)", cfg.Proto, stack.ErrInvalid)
		}
	case TypeGUE:
		if cfg.Proto != ProtoAuto {
			return nil, fmt.Errorf("gue socket: proto %v: %w: GUE names the protocol per packet", cfg.Proto, stack.ErrInvalid)
		}
		protos = handledProtos[:]
	default:
		return nil, fmt.Errorf("fou socket: type %d: %w", cfg.Type, stack.ErrInvalid)
	}
	if cfg.Local.Port() == 0 {
		port := uint16(FOUPort)
		switch {
		case cfg.Type == TypeGUE:
			port = GUEPort
		case cfg.Proto == ProtoGRE:
			port = GREPort
		}
		cfg.Local = netip.AddrPortFrom(cfg.Local.Addr(), port)
	}
	reg, err := acquire(st, protos)
	if err != nil {
		return nil, fmt.Errorf("%v socket: %w", cfg.Type, err)
	}
	s := &Socket{cfg: cfg, reg: reg, protos: protos, devs: map[*Device]struct{}{}}
	var e stack.Encap = (*fouEncap)(s)
	if cfg.Type == TypeGUE {
		e = (*gueEncap)(s)
	}
	_, err = st.OpenTunnelSocket(stack.SocketConfig{Local: cfg.Local, NIC: cfg.NIC, Checksum: cfg.Checksum}, e) // e.BindSocket sets s.sock
	if err != nil {
		reg.release(protos)
		return nil, fmt.Errorf("%v socket: %w", cfg.Type, err)
	}
	return s, nil
}

// Tunnel returns the underlying tunnel socket; its counters include the
// FOU/GUE header drops (truncated, bad header, control messages as
// DropPolicy, protocols without a handler as DropNoHandler).
func (s *Socket) Tunnel() *stack.Socket { return s.sock }

// Config returns the socket's configuration, defaults applied.
func (s *Socket) Config() SocketConfig { return s.cfg }

// Handler returns the stack's receive handler for proto, whose counters
// hold the drops of resubmitted packets that found no device.
func (s *Socket) Handler(proto Proto) *Handler { return s.reg.handlers[proto] }

// Close closes the socket's devices, then the socket, and releases the
// stack's handlers if no other FOU or GUE socket uses them. It is
// idempotent.
func (s *Socket) Close() error {
	// The tunnel socket's Close calls closeEncap, which does the rest.
	return s.sock.Close()
}

// closeEncap runs once when the tunnel socket closes, by Socket.Close or
// by its stack's Close (encap_destroy).
func (s *Socket) closeEncap() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	devs := make([]*Device, 0, len(s.devs))
	for d := range s.devs {
		devs = append(devs, d)
	}
	s.mu.Unlock()
	for _, d := range devs {
		d.Close()
	}
	s.reg.release(s.protos)
}

// Config configures one tunnel device with FOU or GUE encapsulation: the
// kernel's `ip link add NAME type ipip|sit|ip6tnl|gre remote R local L
// encap fou|gue encap-sport auto encap-dport PORT`.
type Config struct {
	// Name is the device (NIC) name; empty means "fouN" or "gueN".
	Name string
	// Proto is the IP protocol the device sends and receives inside the
	// encapsulation: ProtoIPIP (inner IPv4 only, an ipip device),
	// ProtoIPv6 (inner IPv6 only, sit/ip6tnl) or ProtoGRE (both, gre).
	// ProtoAuto is the socket's protocol for FOU and, for GUE, both inner
	// families with the GUE header naming each packet's.
	Proto Proto
	// Remote is the outer destination and the source that received
	// packets must come from ("remote"); required.
	Remote netip.Addr
	// Local is the outer source and the destination received packets
	// must be sent to ("local"); zero lets the route choose and accepts
	// any.
	Local netip.Addr
	// EncapSport is the outer UDP source port ("encap-sport"); 0 means
	// "auto": hashed from the inner flow.
	EncapSport uint16
	// EncapDport is the outer UDP destination port ("encap-dport"); 0
	// means the socket's own port.
	EncapDport uint16
	// HasKey and Key set the GRE key ("key"), sent on every packet and
	// required on every received one (RFC 2890 §2.1). GRE only.
	HasKey bool
	Key    uint32
	// GRECsum sends GRE checksums ("csum"); received ones are always
	// verified. GRE only.
	GRECsum bool
	// TTL is the outer TTL or hop limit ("ttl"); 0 means the route's.
	TTL uint8
	// TOS is the outer TOS or traffic class ("tos").
	TOS uint8
	// DF sets the outer IPv4 don't-fragment bit ("pmtudisc"); IPv4 only.
	DF bool
	// MTU is the inner MTU; 0 derives it from UnderlayMTU.
	MTU uint32
	// UnderlayMTU is the outer path MTU used to derive MTU (0 = 1500).
	UnderlayMTU uint32
	// ZeroChecksum sends outer UDP datagrams without a checksum
	// ("encap-udp6-csum" off, "encap-csum" off).
	ZeroChecksum bool
	// ChecksumOffload leaves inner checksums undone; see
	// stack.DeviceConfig.ChecksumOffload. Only for in-process underlays.
	ChecksumOffload bool
	// GSO passes TCP segments of up to 64 KiB through the device whole;
	// see stack.DeviceConfig.GSO. Requires ChecksumOffload.
	GSO bool
	// Headroom overrides stack.DefaultOuterHeadroom (nesting).
	Headroom int
}

// Device is an L3 tunnel device with FOU or GUE encapsulation, sending
// through a Socket and receiving from the stack's handlers by its outer
// address pair.
type Device struct {
	*stack.Device
	sock   *Socket
	cfg    Config
	protos []Proto // the handlers the device is bound in
	key    tunnelKey
	v6     bool // outer family
	nic    atomic.Uint32
	closed atomic.Bool // set by detach
}

var devCounter atomic.Uint32

// AddDevice creates a tunnel device in inner (nil means the socket's own
// stack) sending through s. Bad configuration is an error naming the field
// and wrapping stack.ErrInvalid; a device with the same outer pair (and
// GRE key) in the same protocol is stack.ErrExists. Nothing changes on
// error.
func (s *Socket) AddDevice(inner *stack.Stack, cfg Config) (*Device, error) {
	if inner == nil {
		inner = s.sock.Stack()
	}
	if cfg.Proto == ProtoAuto && s.cfg.Type == TypeFOU {
		cfg.Proto = s.cfg.Proto
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("%v%d", s.cfg.Type, devCounter.Add(1)-1)
	}
	if cfg.EncapDport == 0 {
		cfg.EncapDport = s.sock.LocalAddr().Port()
	}
	cfg.Remote, cfg.Local = cfg.Remote.Unmap(), cfg.Local.Unmap()
	d := &Device{sock: s, cfg: cfg, v6: cfg.Remote.Is6(),
		key: tunnelKey{remote: cfg.Remote, local: cfg.Local, hasKey: cfg.HasKey, key: cfg.Key}}
	switch cfg.Proto {
	case ProtoAuto:
		d.protos = []Proto{ProtoIPIP, ProtoIPv6}
	default:
		d.protos = []Proto{cfg.Proto}
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("%v socket: %w", s.cfg.Type, stack.ErrClosed)
	}
	if err := s.reg.check(d.protos, d.key); err != nil {
		return nil, err
	}
	dev, err := stack.NewDevice(inner, stack.DeviceConfig{
		Name:            cfg.Name,
		Layer:           stack.L3,
		MTU:             cfg.MTU,
		UnderlayMTU:     cfg.UnderlayMTU,
		EncapLen:        8 + d.encapLen(),
		OuterIPv6:       d.v6,
		Headroom:        cfg.Headroom,
		ChecksumOffload: cfg.ChecksumOffload,
		GSO:             cfg.GSO,
		OnClose:         d.detach,
	}, (*transmitter)(d))
	if err != nil {
		return nil, err
	}
	// The receive handlers see the device only once it is complete.
	d.Device = dev
	d.nic.Store(uint32(dev.NIC()))
	if err := s.reg.add(d, d.protos, d.key); err != nil {
		// Another socket's AddDevice took the pair meanwhile.
		dev.Close()
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		dev.Close()
		return nil, fmt.Errorf("%v socket: %w", s.cfg.Type, stack.ErrClosed)
	}
	s.devs[d] = struct{}{}
	s.mu.Unlock()
	if d.closed.Load() {
		// Closed with its stack before it was registered: detach ran
		// too early to unbind it.
		s.reg.remove(d)
		s.mu.Lock()
		delete(s.devs, d)
		s.mu.Unlock()
		return nil, fmt.Errorf("%v device: %w", s.cfg.Type, stack.ErrClosed)
	}
	return d, nil
}

func (c *Config) validate() error {
	limits := stack.CheckDeviceLimits(c.Headroom, c.UnderlayMTU)
	switch {
	case c.Proto != ProtoAuto && c.Proto != ProtoIPIP && c.Proto != ProtoIPv6 && c.Proto != ProtoGRE:
		return fmt.Errorf("proto %v: %w: need ipip, ipv6 or gre", c.Proto, stack.ErrInvalid)
	case !c.Remote.IsValid() || c.Remote.IsUnspecified() || c.Remote.IsMulticast():
		return fmt.Errorf("remote %v: %w: need a unicast address", c.Remote, stack.ErrInvalid)
	case c.Local.IsValid() && (c.Local.IsUnspecified() || c.Local.IsMulticast()):
		return fmt.Errorf("local %v: %w: need a unicast address", c.Local, stack.ErrInvalid)
	case c.Local.IsValid() && c.Local.Unmap().Is4() != c.Remote.Unmap().Is4():
		return fmt.Errorf("local %v: %w: address family differs from remote %v", c.Local, stack.ErrInvalid, c.Remote)
	case (c.HasKey || c.Key != 0) && c.Proto != ProtoGRE:
		return fmt.Errorf("key: %w: only GRE has a key", stack.ErrInvalid)
	case c.GRECsum && c.Proto != ProtoGRE:
		return fmt.Errorf("gre csum: %w: only GRE has a checksum", stack.ErrInvalid)
	case limits != nil:
		return limits
	case c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535):
		return fmt.Errorf("MTU %d: %w: outside 68..65535", c.MTU, stack.ErrInvalid)
	case c.DF && !c.Remote.Unmap().Is4():
		return fmt.Errorf("df: %w: IPv6 has no don't-fragment bit", stack.ErrInvalid)
	case c.GSO && !c.ChecksumOffload:
		return fmt.Errorf("gso: %w: requires checksum offload", stack.ErrInvalid)
	case c.DF && c.GSO:
		return fmt.Errorf("df with gso: %w: choose one", stack.ErrInvalid)
	}
	return nil
}

// encapLen is the tunnel header length after the UDP header (without a
// GUE or GRE header's variable parts that depend on nothing per packet).
func (d *Device) encapLen() int {
	n := 0
	if d.sock.cfg.Type == TypeGUE {
		n += GUEHeaderLen
	}
	if d.cfg.Proto == ProtoGRE {
		f := d.greFields(0)
		n += f.Len()
	}
	return n
}

// greFields returns the GRE header fields of a packet of EtherType proto.
func (d *Device) greFields(proto uint16) GREFields {
	return GREFields{Protocol: proto, Checksum: d.cfg.GRECsum, HasKey: d.cfg.HasKey, Key: d.cfg.Key}
}

// Config returns the device's configuration, defaults applied.
func (d *Device) Config() Config { return d.cfg }

// Close removes the device from its stack and from the receive handlers.
// The socket stays open for its other devices.
func (d *Device) Close() error { return d.Device.Close() }

// detach runs when the stack device closes, by Close or by its stack's
// Close.
func (d *Device) detach() {
	d.closed.Store(true)
	d.sock.reg.remove(d)
	s := d.sock
	s.mu.Lock()
	delete(s.devs, d)
	s.mu.Unlock()
}
