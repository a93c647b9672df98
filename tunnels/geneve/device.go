package geneve

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/udptunnel/udptunnel/stack"
)

// SocketConfig configures a Geneve socket: one UDP port serving many VNIs
// (the kernel's struct geneve_sock).
type SocketConfig struct {
	// Local is the address and port to listen on; a zero address listens
	// on all addresses of both families, port 0 means DefaultPort.
	Local netip.AddrPort
	// NIC, when non-zero, binds the socket to one underlay NIC.
	NIC stack.NICID
	// Checksum is the outer UDP checksum policy; the zero value computes
	// and verifies checksums. ZeroRx6 is the kernel's "udp6zerocsumrx".
	Checksum stack.ChecksumPolicy
}

// Socket is a Geneve UDP socket: the encap that parses Geneve headers and
// hands each packet to the device of its VNI.
type Socket struct {
	sock *stack.Socket

	mu   sync.Mutex // serializes changes of devs
	devs stack.Registry[VNI, *Device]
}

// OpenSocket opens a Geneve socket in st (the outer stack).
func OpenSocket(st *stack.Stack, cfg SocketConfig) (*Socket, error) {
	if cfg.Local.Port() == 0 {
		cfg.Local = netip.AddrPortFrom(cfg.Local.Addr(), DefaultPort)
	}
	s := &Socket{}
	// The encap's BindSocket sets s.sock before the first datagram.
	_, err := st.OpenTunnelSocket(stack.SocketConfig{
		Local:    cfg.Local,
		NIC:      cfg.NIC,
		Checksum: cfg.Checksum,
	}, (*encap)(s))
	if err != nil {
		return nil, fmt.Errorf("geneve socket: %w", err)
	}
	return s, nil
}

// Tunnel returns the underlying tunnel socket; its counters hold the
// header drops (truncated, bad header, unknown VNI).
func (s *Socket) Tunnel() *stack.Socket { return s.sock }

// Device returns the device of vni, or nil.
func (s *Socket) Device(vni VNI) *Device { return s.devs.Get(vni) }

// Close closes every device of the socket, then the socket. It is
// idempotent.
func (s *Socket) Close() error {
	for _, d := range s.devs.All() {
		d.Close()
	}
	return s.sock.Close()
}

// DF is the outer IPv4 don't-fragment policy ("df unset|set|inherit").
type DF uint8

const (
	// DFUnset never sets DF (the kernel's default).
	DFUnset DF = iota
	// DFSet always sets DF; packets over the path MTU are dropped.
	DFSet
	// DFInherit copies DF from an inner IPv4 packet and sets it for inner
	// IPv6, as the kernel's geneve_xmit_skb does.
	DFInherit
)

// Metadata is the per-packet tunnel metadata of metadata mode (the kernel's
// "external"/collect_md ip_tunnel_info): what a receive hook sees and what
// Device.SendFrame sends.
type Metadata struct {
	// VNI is the packet's VNI (receive only; SendFrame uses the
	// device's).
	VNI VNI
	// Src and Dst are the outer addresses and ports. On SendFrame, a valid
	// Dst address replaces the device's remote (and a non-zero Dst port its
	// port); Src is ignored.
	Src, Dst netip.AddrPort
	// TOS and TTL are the outer IPv4 TOS/TTL or IPv6 traffic class/hop
	// limit. On SendFrame, zero means the device's.
	TOS, TTL uint8
	// OAM is the O bit: a control message.
	OAM bool
	// Critical is the C bit (on SendFrame also set when an option is
	// critical).
	Critical bool
	// Protocol is the Protocol Type (receive only).
	Protocol uint16
	// Options are the raw TLV options. On receive they alias the packet
	// and are valid only during the hook call; copy what must outlive it.
	Options Options
}

// ReceiveHook receives the metadata of each packet of a device in metadata
// mode, with frame the inner frame (Ethernet, or IP for an L3 device).
// md.Options and frame alias the packet: they are valid only during the
// call. md is passed by value so that the call never allocates. The hook runs on the
// receiving goroutine and must not block.
type ReceiveHook func(md Metadata, frame []byte)

// Config configures one Geneve device: one VNI, the kernel's
// `ip link add NAME type geneve id VNI remote ADDR ...`.
type Config struct {
	// Name is the device (NIC) name; empty means "geneve<VNI>".
	Name string
	// VNI is the virtual network identifier ("id", 0..MaxVNI).
	VNI VNI
	// Remote is the outer destination ("remote"). It may be left zero only
	// in metadata mode (OnReceive set), where SendFrame names the
	// destination of each packet.
	Remote netip.Addr
	// Local is the outer source address ("local"); zero lets the route
	// choose. Its family must match Remote's.
	Local netip.Addr
	// Port is the outer UDP destination port ("dstport"); 0 means the
	// socket's own port.
	Port uint16
	// SrcPortMin and SrcPortMax bound the outer UDP source port, picked
	// from a hash of the inner flow; both 0 means 32768..60999, the
	// kernel's default local port range.
	SrcPortMin, SrcPortMax uint16
	// TTL is the outer TTL or hop limit ("ttl"); 0 means the route's
	// default.
	TTL uint8
	// TOS is the outer TOS or traffic class ("tos").
	TOS uint8
	// TOSInherit copies the inner IP TOS/traffic class ("tos inherit").
	TOSInherit bool
	// DF is the outer IPv4 don't-fragment policy ("df").
	DF DF
	// FlowLabel is the outer IPv6 flow label ("flowlabel", 20 bits).
	FlowLabel uint32
	// InnerProtoInherit makes the device L3 ("innerprotoinherit"): it
	// carries IPv4 and IPv6 packets with Protocol Type 0x0800 or 0x86DD
	// instead of Ethernet frames with 0x6558 (the default, L2).
	InnerProtoInherit bool
	// MAC is an L2 device's Ethernet address; nil picks a random locally
	// administered one.
	MAC net.HardwareAddr
	// MTU is the inner MTU; 0 derives it from UnderlayMTU minus the
	// overhead (1500 - 50 - TxOptionsRoom over IPv4 for L2).
	MTU uint32
	// UnderlayMTU is the outer path MTU used to derive MTU (0 = 1500).
	UnderlayMTU uint32
	// ZeroChecksum sends outer UDP datagrams without a checksum (IPv4
	// "noudpcsum", IPv6 "udp6zerocsumtx").
	ZeroChecksum bool
	// ChecksumOffload leaves inner checksums undone; see
	// stack.DeviceConfig.ChecksumOffload. Only for in-process underlays.
	ChecksumOffload bool
	// GSO passes TCP segments of up to 64 KiB through whole; see
	// stack.DeviceConfig.GSO. Requires ChecksumOffload.
	GSO bool
	// Headroom overrides stack.DefaultOuterHeadroom (nesting).
	Headroom int
	// Options lists the options the device understands. A received packet
	// with a critical option not in it is dropped (DropPolicy, RFC 8926
	// §3.5.1); non-critical unknown options are ignored.
	Options []OptionKey
	// TxOptions are options added to every packet the device sends; see
	// AppendOption. Device.SetTxOptions replaces them later.
	TxOptions Options
	// TxOptionsRoom is how many option bytes the device reserves in its
	// MTU and headroom (0 = len(TxOptions)); SetTxOptions and SendFrame
	// cannot exceed it.
	TxOptionsRoom int
	// OnReceive turns on metadata mode ("external"): it is called with the
	// metadata and inner frame of every received data packet before the
	// packet is delivered, and of every OAM packet, which is not delivered.
	// Without it OAM packets are dropped (DropPolicy).
	OnReceive ReceiveHook
}

// Device is one Geneve device (one VNI): a tunnel device of the inner stack
// sending through a Socket of the outer stack.
type Device struct {
	*stack.Device
	sock  *Socket
	cfg   Config
	v6    bool // outer family
	proto uint16
	// nic is the device's NIC, for Transmit's loop check: set once the
	// stack device exists.
	nic   atomic.Uint32
	txOpt atomic.Pointer[Options]
}

// AddDevice creates a Geneve device in inner (the stack whose applications
// use the overlay; nil means the socket's own stack) and binds its VNI to
// the socket. Bad configuration is an error naming the field; nothing is
// created then.
func (s *Socket) AddDevice(inner *stack.Stack, cfg Config) (*Device, error) {
	if inner == nil {
		inner = s.sock.Stack()
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("geneve%d", cfg.VNI)
	}
	if cfg.Port == 0 {
		cfg.Port = s.sock.LocalAddr().Port()
	}
	if cfg.SrcPortMin == 0 && cfg.SrcPortMax == 0 {
		cfg.SrcPortMin, cfg.SrcPortMax = 32768, 61000
	}
	if cfg.TxOptionsRoom == 0 {
		cfg.TxOptionsRoom = len(cfg.TxOptions)
	}
	cfg.Options = append([]OptionKey(nil), cfg.Options...)
	txOpt := append(Options(nil), cfg.TxOptions...)
	cfg.TxOptions = nil // the live set is Device.TxOptions
	v6 := s.sock.LocalAddr().Addr().Is6()
	switch {
	case cfg.Remote.IsValid():
		v6 = !cfg.Remote.Unmap().Is4()
	case cfg.Local.IsValid():
		v6 = !cfg.Local.Unmap().Is4()
	}
	layer, proto := stack.L2, ProtoTEB
	if cfg.InnerProtoInherit {
		layer, proto = stack.L3, 0
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.devs.Get(cfg.VNI) != nil {
		return nil, fmt.Errorf("vni %d: %w: the socket already has a device for it", cfg.VNI, stack.ErrExists)
	}
	d := &Device{sock: s, cfg: cfg, v6: v6, proto: proto}
	d.txOpt.Store(&txOpt)
	dev, err := stack.NewDevice(inner, stack.DeviceConfig{
		Name:            cfg.Name,
		Layer:           layer,
		MAC:             cfg.MAC,
		MTU:             cfg.MTU,
		UnderlayMTU:     cfg.UnderlayMTU,
		EncapLen:        8 + HeaderLen + cfg.TxOptionsRoom,
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
	s.devs.Set(cfg.VNI, d)
	return d, nil
}

func (c *Config) validate() error {
	fam4 := func(a netip.Addr) bool { return a.Unmap().Is4() }
	limits := stack.CheckDeviceLimits(c.Headroom, c.UnderlayMTU)
	ports := stack.CheckSrcPortRange(c.SrcPortMin, c.SrcPortMax)
	switch {
	case !c.VNI.Valid():
		return fmt.Errorf("vni %d: %w: above %d", c.VNI, stack.ErrInvalid, MaxVNI)
	case !c.Remote.IsValid() && c.OnReceive == nil:
		return fmt.Errorf("remote: %w: required unless OnReceive (metadata mode) is set", stack.ErrInvalid)
	case c.Remote.IsValid() && (c.Remote.IsUnspecified() || c.Remote.IsMulticast()):
		return fmt.Errorf("remote %v: %w: need a unicast address", c.Remote, stack.ErrInvalid)
	case c.Local.IsValid() && (c.Local.IsUnspecified() || c.Local.IsMulticast()):
		return fmt.Errorf("local %v: %w: need a unicast address", c.Local, stack.ErrInvalid)
	case c.Local.IsValid() && c.Remote.IsValid() && fam4(c.Local) != fam4(c.Remote):
		return fmt.Errorf("local %v: %w: address family differs from remote %v", c.Local, stack.ErrInvalid, c.Remote)
	case ports != nil:
		return ports
	case c.DF > DFInherit:
		return fmt.Errorf("df %d: %w: want DFUnset, DFSet or DFInherit", c.DF, stack.ErrInvalid)
	case c.DF != DFUnset && ((c.Remote.IsValid() && !fam4(c.Remote)) || (c.Local.IsValid() && !fam4(c.Local))):
		return fmt.Errorf("df: %w: IPv6 has no don't-fragment bit", stack.ErrInvalid)
	case c.DF != DFUnset && c.GSO:
		return fmt.Errorf("df with gso: %w: GSO packets are never fragmented by DF rules", stack.ErrInvalid)
	case c.FlowLabel > 0xfffff:
		return fmt.Errorf("flowlabel %#x: %w: above 20 bits", c.FlowLabel, stack.ErrInvalid)
	case c.FlowLabel != 0 && ((c.Remote.IsValid() && fam4(c.Remote)) || (c.Local.IsValid() && fam4(c.Local))):
		return fmt.Errorf("flowlabel: %w: IPv4 has no flow label", stack.ErrInvalid)
	case c.InnerProtoInherit && c.MAC != nil:
		return fmt.Errorf("mac: %w: an L3 (innerprotoinherit) device has no MAC address", stack.ErrInvalid)
	case limits != nil:
		return limits
	case c.TxOptionsRoom < 0 || c.TxOptionsRoom > MaxOptionsLen || c.TxOptionsRoom%4 != 0:
		return fmt.Errorf("tx options room %d: %w: need a multiple of 4 in 0..%d", c.TxOptionsRoom, stack.ErrInvalid, MaxOptionsLen)
	case len(c.TxOptions)%4 != 0 || len(c.TxOptions) > MaxOptionsLen:
		return fmt.Errorf("tx options: %w: %d bytes, need a multiple of 4 up to %d", stack.ErrInvalid, len(c.TxOptions), MaxOptionsLen)
	case c.TxOptionsRoom != 0 && len(c.TxOptions) > c.TxOptionsRoom:
		return fmt.Errorf("tx options: %w: %d bytes exceed TxOptionsRoom %d", stack.ErrInvalid, len(c.TxOptions), c.TxOptionsRoom)
	}
	if err := c.TxOptions.Validate(); err != nil {
		return fmt.Errorf("tx options: %w: %w", stack.ErrInvalid, err)
	}
	return nil
}

// Config returns the device's configuration, defaults applied (TxOptions
// empty: see TxOptions).
func (d *Device) Config() Config { return d.cfg }

// VNI returns the device's VNI.
func (d *Device) VNI() VNI { return d.cfg.VNI }

// TxOptions returns the options currently added to every packet sent; the
// caller must not modify them.
func (d *Device) TxOptions() Options { return *d.txOpt.Load() }

// SetTxOptions replaces the options added to every packet the device sends
// from now on. They must be well-formed and fit the device's
// TxOptionsRoom. opts is copied.
func (d *Device) SetTxOptions(opts Options) error {
	if err := opts.Validate(); err != nil || len(opts) > d.cfg.TxOptionsRoom {
		return fmt.Errorf("tx options: %w: need whole options within TxOptionsRoom %d", stack.ErrInvalid, d.cfg.TxOptionsRoom)
	}
	c := append(Options(nil), opts...)
	d.txOpt.Store(&c)
	return nil
}

// Close removes the device from its socket and its stack. The socket stays
// open for its other devices. It is idempotent.
func (d *Device) Close() error { return d.Device.Close() }

// detach runs when the stack device closes, by Close or by its stack's
// Close: it unbinds the VNI from the socket.
func (d *Device) detach() {
	s := d.sock
	s.mu.Lock()
	defer s.mu.Unlock()
	s.devs.DeleteValue(d)
}

// errNoRemote wraps stack.ErrNoRemote for a metadata-mode device with no
// configured remote.
var errNoRemote = fmt.Errorf("geneve: device has no remote: %w", stack.ErrNoRemote)
