package bareudp

import (
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/udptunnel/udptunnel/stack"
)

// EtherType says what a device carries in its UDP payloads (the kernel's
// `ethertype` option of `ip link add type bareudp`).
type EtherType uint16

// The payload types a device can carry.
const (
	EtherTypeIPv4          EtherType = 0x0800
	EtherTypeIPv6          EtherType = 0x86DD
	EtherTypeMPLSUnicast   EtherType = 0x8847
	EtherTypeMPLSMulticast EtherType = 0x8848
)

// String returns the name iproute2 uses for t ("ipv4", "ipv6", "mpls_uc",
// "mpls_mc") or its hexadecimal value.
func (t EtherType) String() string {
	switch t {
	case EtherTypeIPv4:
		return "ipv4"
	case EtherTypeIPv6:
		return "ipv6"
	case EtherTypeMPLSUnicast:
		return "mpls_uc"
	case EtherTypeMPLSMulticast:
		return "mpls_mc"
	}
	return "0x" + strconv.FormatUint(uint64(t), 16)
}

// MPLSPort is the UDP port IANA assigned to MPLS-in-UDP (RFC 7510 §3).
const MPLSPort = 6635

// DefaultSrcPortMin is the lowest outer source port when Config.SrcPortMin
// is 0: the start of the IANA ephemeral range, which RFC 7510 §3 recommends.
const DefaultSrcPortMin = 49152

// SocketConfig configures a bareudp socket: the UDP port that the kernel's
// bareudp device listens on (its `dstport`).
type SocketConfig struct {
	// Local is the address and port to listen on. The port is required,
	// as the kernel's dstport is: bareudp has no port of its own (use
	// MPLSPort for MPLS-in-UDP). A zero address listens on all addresses
	// of both families.
	Local netip.AddrPort
	// NIC, when non-zero, binds the socket to one underlay NIC.
	NIC stack.NICID
	// Checksum is the outer UDP checksum policy. Over IPv6 a zero
	// checksum is accepted only with ZeroRx6, which RFC 7510 §3 allows
	// only where RFC 6936's conditions hold.
	Checksum stack.ChecksumPolicy
}

// Socket is a bareudp UDP socket with at most one device, as in the kernel,
// where each bareudp device owns its port.
type Socket struct {
	sock *stack.Socket
	mu   sync.Mutex // serializes AddDevice and detach
	dev  atomic.Pointer[Device]
}

// OpenSocket opens a bareudp socket in st (the outer stack).
func OpenSocket(st *stack.Stack, cfg SocketConfig) (*Socket, error) {
	if cfg.Local.Port() == 0 {
		return nil, fmt.Errorf("bareudp socket port: %w: required (MPLSPort %d for MPLS-in-UDP)", stack.ErrInvalid, MPLSPort)
	}
	s := &Socket{}
	// The encap's BindSocket sets s.sock before the first datagram.
	_, err := st.OpenTunnelSocket(stack.SocketConfig{
		Local:    cfg.Local,
		NIC:      cfg.NIC,
		Checksum: cfg.Checksum,
	}, (*encap)(s))
	if err != nil {
		return nil, fmt.Errorf("bareudp socket: %w", err)
	}
	return s, nil
}

// Tunnel returns the underlying tunnel socket. Its counters hold every drop
// that bareudp's receive path decides (see the package doc).
func (s *Socket) Tunnel() *stack.Socket { return s.sock }

// Device returns the socket's device, or nil.
func (s *Socket) Device() *Device { return s.dev.Load() }

// Close closes the socket's device, then the socket. It is idempotent.
func (s *Socket) Close() error {
	if d := s.dev.Load(); d != nil {
		d.Close()
	}
	return s.sock.Close()
}

// Route sends packets for inner destinations in Prefix with the label stack
// Labels (top first): an `ip route add PREFIX encap mpls L1/L2 dev DEV`.
type Route struct {
	Prefix netip.Prefix
	Labels []Label
}

// Config configures a bareudp device: `ip link add NAME type bareudp
// dstport PORT ethertype TYPE [srcportmin N] [multiproto]`, plus the
// remote and outer header options that the kernel takes from tunnel
// metadata instead (its device is collect_md only), and the MPLS label
// tables that the kernel keeps in net/mpls.
type Config struct {
	// Name is the device (NIC) name; empty means "bareudp<port>".
	Name string
	// EtherType is the payload type: EtherTypeIPv4, EtherTypeIPv6 or
	// EtherTypeMPLSUnicast. Required.
	EtherType EtherType
	// Multiproto lets an IPv4 device carry IPv6 too, and an MPLS unicast
	// device accept MPLS multicast (datagrams to a multicast outer
	// address), as the kernel's "multiproto".
	Multiproto bool
	// Remote is the outer destination, required. Datagrams from other
	// addresses are dropped (DropPolicy): with no header, nothing else
	// ties a datagram to this tunnel.
	Remote netip.Addr
	// Local is the outer source address; zero lets the route choose. Its
	// family must be Remote's.
	Local netip.Addr
	// Port is the outer UDP destination port; 0 means the socket's own
	// port, as the kernel uses dstport both ways.
	Port uint16
	// SrcPortMin is the lowest outer source port ("srcportmin"); ports
	// are picked from a hash of the inner flow in [SrcPortMin, 65535). 0
	// means DefaultSrcPortMin.
	SrcPortMin uint16
	// TTL is the outer TTL or hop limit; 0 means the route's default.
	TTL uint8
	// TOS is the outer TOS or traffic class.
	TOS uint8
	// DF sets the outer IPv4 don't-fragment bit.
	DF bool
	// MTU is the inner MTU; 0 derives it from UnderlayMTU minus the
	// outer IP and UDP headers and LabelDepth labels.
	MTU uint32
	// UnderlayMTU is the outer path MTU used to derive MTU (0 = 1500).
	UnderlayMTU uint32
	// ZeroChecksum sends outer datagrams without a UDP checksum (IPv4:
	// RFC 7510 §3 allows it; IPv6: only where RFC 6935/6936 allow it, the
	// kernel's udp6zerocsumtx).
	ZeroChecksum bool
	// ChecksumOffload leaves inner checksums undone; see
	// stack.DeviceConfig.ChecksumOffload. Only for in-process underlays.
	ChecksumOffload bool
	// GSO passes TCP segments of up to 64 KiB through whole; see
	// stack.DeviceConfig.GSO. Requires ChecksumOffload.
	GSO bool
	// Headroom overrides stack.DefaultOuterHeadroom (nesting).
	Headroom int

	// Labels (MPLS only) is the label stack pushed on packets that no
	// route matches, top first; empty drops them (DropNoRemote).
	Labels []Label
	// Routes (MPLS only) are the initial per-prefix label stacks; the
	// longest prefix matching the inner destination wins over Labels.
	Routes []Route
	// LabelDepth (MPLS only) is the label stack depth the MTU and
	// headroom are reserved for; 0 means the deepest of Labels and
	// Routes (at least 1). Routes added later may not be deeper.
	LabelDepth int
	// LabelTTL (MPLS only) is the TTL of pushed labels; 0 copies the
	// inner IP TTL or hop limit (RFC 3443's uniform model).
	LabelTTL uint8
	// LocalLabels (MPLS only) are the labels this device pops and
	// delivers (an ILM entry "pop and deliver" per label). A received
	// stack may hold these and explicit nulls only; anything else is
	// DropUnknownTunnel.
	LocalLabels []Label
}

// Device is a bareudp device: an L3 tunnel device of the inner stack that
// sends through a Socket of the outer stack.
type Device struct {
	*stack.Device
	sock  *Socket
	cfg   Config
	mpls  bool
	local map[Label]struct{} // read-only after AddDevice

	routeMu sync.Mutex // serializes route changes
	routes  atomic.Pointer[routeTable]

	// nic is the device's NIC for Transmit's loop check, set as soon as
	// the stack device exists.
	nic atomic.Uint32
}

// AddDevice creates the socket's device in inner (the stack whose
// applications use the tunnel; nil means the socket's own stack). Bad
// configuration is an error naming the field; nothing is created then. A
// socket has at most one device: a second is stack.ErrExists.
func (s *Socket) AddDevice(inner *stack.Stack, cfg Config) (*Device, error) {
	if inner == nil {
		inner = s.sock.Stack()
	}
	cfg.Labels = append([]Label(nil), cfg.Labels...)
	cfg.LocalLabels = append([]Label(nil), cfg.LocalLabels...)
	cfg.Routes = append([]Route(nil), cfg.Routes...)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	port := s.sock.LocalAddr().Port()
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("bareudp%d", port)
	}
	if cfg.Port == 0 {
		cfg.Port = port
	}
	if cfg.SrcPortMin == 0 {
		cfg.SrcPortMin = DefaultSrcPortMin
	}
	d := &Device{sock: s, mpls: cfg.EtherType == EtherTypeMPLSUnicast}
	encapLen := 8
	if d.mpls {
		if cfg.LabelDepth == 0 {
			cfg.LabelDepth = max(1, len(cfg.Labels))
			for _, r := range cfg.Routes {
				cfg.LabelDepth = max(cfg.LabelDepth, len(r.Labels))
			}
		}
		encapLen += cfg.LabelDepth * EntryLen
		d.local = make(map[Label]struct{}, len(cfg.LocalLabels))
		for _, l := range cfg.LocalLabels {
			d.local[l] = struct{}{}
		}
		t := &routeTable{}
		for _, r := range cfg.Routes {
			t = t.with(r.Prefix.Masked(), append([]Label(nil), r.Labels...))
		}
		d.routes.Store(t)
	}
	d.cfg = cfg

	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.dev.Load(); old != nil {
		return nil, fmt.Errorf("device: %w: the socket on port %d already has device %s", stack.ErrExists, port, old.Name())
	}
	dev, err := stack.NewDevice(inner, stack.DeviceConfig{
		Name:            cfg.Name,
		Layer:           stack.L3,
		MTU:             cfg.MTU,
		UnderlayMTU:     cfg.UnderlayMTU,
		EncapLen:        encapLen,
		OuterIPv6:       cfg.Remote.Is6() && !cfg.Remote.Is4In6(),
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
	s.dev.Store(d)
	return d, nil
}

func (c *Config) validate() error {
	mpls := c.EtherType == EtherTypeMPLSUnicast
	limits := stack.CheckDeviceLimits(c.Headroom, c.UnderlayMTU)
	switch {
	case c.EtherType != EtherTypeIPv4 && c.EtherType != EtherTypeIPv6 && !mpls:
		return fmt.Errorf("ethertype %v: %w: need ipv4, ipv6 or mpls_uc", c.EtherType, stack.ErrInvalid)
	case c.Multiproto && c.EtherType == EtherTypeIPv6:
		return fmt.Errorf("multiproto: %w: only for ethertype ipv4 or mpls_uc", stack.ErrInvalid)
	case !c.Remote.IsValid() || c.Remote.IsUnspecified() || c.Remote.IsMulticast():
		return fmt.Errorf("remote %v: %w: need a unicast address", c.Remote, stack.ErrInvalid)
	case c.Local.IsValid() && (c.Local.IsUnspecified() || c.Local.IsMulticast()):
		return fmt.Errorf("local %v: %w: need a unicast address", c.Local, stack.ErrInvalid)
	case c.Local.IsValid() && c.Local.Unmap().Is4() != c.Remote.Unmap().Is4():
		return fmt.Errorf("local %v: %w: address family differs from remote %v", c.Local, stack.ErrInvalid, c.Remote)
	case c.DF && !c.Remote.Unmap().Is4():
		return fmt.Errorf("df: %w: IPv6 has no don't-fragment bit", stack.ErrInvalid)
	case c.DF && c.GSO:
		return fmt.Errorf("df with gso: %w: choose one (GSO packets are never fragmented by DF rules)", stack.ErrInvalid)
	case limits != nil:
		return limits
	case !mpls && (len(c.Labels) > 0 || len(c.Routes) > 0 || len(c.LocalLabels) > 0 || c.LabelDepth != 0 || c.LabelTTL != 0):
		return fmt.Errorf("labels: %w: MPLS options on an %v device", stack.ErrInvalid, c.EtherType)
	case c.LabelDepth < 0 || c.LabelDepth > MaxLabelDepth:
		return fmt.Errorf("label depth %d: %w: outside 0..%d", c.LabelDepth, stack.ErrInvalid, MaxLabelDepth)
	}
	if err := validLabels("labels", c.Labels, c.LabelDepth); err != nil {
		return err
	}
	for i, r := range c.Routes {
		if !r.Prefix.IsValid() {
			return fmt.Errorf("routes[%d] prefix %v: %w", i, r.Prefix, stack.ErrInvalid)
		}
		if err := validLabels(fmt.Sprintf("routes[%d] labels", i), r.Labels, c.LabelDepth); err != nil {
			return err
		}
		for _, q := range c.Routes[:i] {
			if q.Prefix.Masked() == r.Prefix.Masked() {
				return fmt.Errorf("routes[%d] prefix %v: %w: listed twice", i, r.Prefix, stack.ErrInvalid)
			}
		}
	}
	for i, l := range c.LocalLabels {
		if !l.Valid() || l.Reserved() {
			return fmt.Errorf("local labels[%d] %v: %w: need %d..%d", i, l, stack.ErrInvalid, FirstUnreservedLabel, MaxLabel)
		}
	}
	return nil
}

// validLabels checks a label stack to push: at most depth labels (or
// MaxLabelDepth when depth is 0), each 20 bits, never implicit null, which
// means "push nothing" and may not appear on the wire (RFC 3032 §2.1; the
// kernel's nla_get_labels refuses it too).
func validLabels(field string, labels []Label, depth int) error {
	if depth == 0 {
		depth = MaxLabelDepth
	}
	if len(labels) > depth {
		return fmt.Errorf("%s: %w: %d labels, at most %d", field, stack.ErrInvalid, len(labels), depth)
	}
	for i, l := range labels {
		if !l.Valid() || l == LabelImplicitNull {
			return fmt.Errorf("%s[%d] %v: %w: need a 20-bit label other than implicit null (3)", field, i, l, stack.ErrInvalid)
		}
	}
	return nil
}

// Config returns the device's configuration, defaults applied.
func (d *Device) Config() Config { return d.cfg }

// AddRoute adds or replaces the label stack for r.Prefix (MPLS devices).
// Readers on the transmit path never wait: they see the old table or the
// new one.
func (d *Device) AddRoute(r Route) error {
	if !d.mpls {
		return fmt.Errorf("route: %w: not an MPLS device", stack.ErrInvalid)
	}
	if !r.Prefix.IsValid() {
		return fmt.Errorf("route prefix %v: %w", r.Prefix, stack.ErrInvalid)
	}
	if err := validLabels("route labels", r.Labels, d.cfg.LabelDepth); err != nil {
		return err
	}
	d.routeMu.Lock()
	defer d.routeMu.Unlock()
	d.routes.Store(d.routes.Load().with(r.Prefix.Masked(), append([]Label(nil), r.Labels...)))
	return nil
}

// DeleteRoute removes the route for p; stack.ErrNotFound if there is none.
func (d *Device) DeleteRoute(p netip.Prefix) error {
	if !d.mpls {
		return fmt.Errorf("route: %w: not an MPLS device", stack.ErrInvalid)
	}
	d.routeMu.Lock()
	defer d.routeMu.Unlock()
	t, ok := d.routes.Load().without(p.Masked())
	if !ok {
		return fmt.Errorf("route %v: %w", p, stack.ErrNotFound)
	}
	d.routes.Store(t)
	return nil
}

// Routes returns the device's routes, in no particular order.
func (d *Device) Routes() []Route {
	if !d.mpls {
		return nil
	}
	return d.routes.Load().list()
}

// LabelsFor returns the label stack the device pushes for a packet to dst:
// the longest matching route's, else Config.Labels. The result must not
// be modified. It never allocates.
func (d *Device) LabelsFor(dst netip.Addr) []Label {
	if !d.mpls {
		return nil
	}
	if l, ok := d.routes.Load().lookup(dst); ok {
		return l
	}
	return d.cfg.Labels
}

// Close removes the device from its socket and its stack. The socket stays
// open, and a new device may be added to it.
func (d *Device) Close() error { return d.Device.Close() }

// detach runs when the stack device closes (Device.Close, Socket.Close or
// the stack's Close) and unbinds it from the socket.
func (d *Device) detach() {
	s := d.sock
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dev.CompareAndSwap(d, nil)
}
