package vxlan

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/udptunnel/udptunnel/stack"
)

// SocketConfig configures a VXLAN socket: one UDP port that serves many
// VNIs (the kernel's struct vxlan_sock).
type SocketConfig struct {
	// Local is the address and port to listen on; a zero address listens
	// on all addresses of both families, port 0 means DefaultPort.
	Local netip.AddrPort
	// NIC, when non-zero, binds the socket to one underlay NIC.
	NIC stack.NICID
	// Checksum is the outer UDP checksum policy; the zero value computes
	// and verifies checksums, as the kernel's VXLAN does by default
	// ("udpcsum"; `ip -d link show` on Linux 6.18 with iproute2 6.1).
	// Devices can still send without one (Config.ZeroChecksum).
	Checksum stack.ChecksumPolicy
}

// Socket is a VXLAN UDP socket: the encap that parses VXLAN headers and
// hands each packet to the device of its VNI. Several devices (VNIs) share
// one socket, as in the kernel.
type Socket struct {
	sock *stack.Socket

	mu   sync.Mutex // serializes changes of devs
	devs stack.Registry[VNI, *Device]
}

// OpenSocket opens a VXLAN socket in st (the outer stack).
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
		return nil, fmt.Errorf("vxlan socket: %w", err)
	}
	return s, nil
}

// Tunnel returns the underlying tunnel socket (its counters include the
// VXLAN header drops: truncated, bad header, unknown VNI).
func (s *Socket) Tunnel() *stack.Socket { return s.sock }

// Device returns the device of vni, or nil.
func (s *Socket) Device(vni VNI) *Device { return s.devs.Get(vni) }

// Close closes every device of the socket, then the socket.
func (s *Socket) Close() error {
	for _, d := range s.devs.All() {
		d.Close()
	}
	return s.sock.Close()
}

// Config configures one VXLAN device: one VNI, the kernel's
// `ip link add NAME type vxlan id VNI ...`.
type Config struct {
	// Name is the device (NIC) name; empty means "vxlan<VNI>".
	Name string
	// VNI is the VXLAN network identifier (0..MaxVNI).
	VNI VNI
	// Local is the outer source address ("local"); zero lets the route
	// choose. Its family, or else the first remote's, is the outer family.
	Local netip.Addr
	// Port is the outer UDP destination port ("dstport"); 0 means the
	// socket's own port.
	Port uint16
	// SrcPortMin and SrcPortMax bound the outer UDP source port, picked
	// from a hash of the inner flow ("srcport MIN MAX"); both 0 means the
	// kernel's default local port range, 32768..60999.
	SrcPortMin, SrcPortMax uint16
	// TTL is the outer TTL or hop limit ("ttl"); 0 means the route's
	// default (64).
	TTL uint8
	// TOS is the outer TOS or traffic class ("tos").
	TOS uint8
	// TOSInherit copies the inner IP header's TOS/traffic class to the
	// outer header ("tos inherit") instead of TOS.
	TOSInherit bool
	// FlowLabel is the outer IPv6 flow label ("flowlabel", 20 bits); 0
	// sends none.
	FlowLabel uint32
	// DF sets the outer IPv4 don't-fragment bit ("df set"); packets over
	// the path MTU are then dropped, never fragmented.
	DF bool
	// Learning turns on source MAC learning from received frames
	// ("learning"; the kernel's default is on, here it must be asked for).
	Learning bool
	// AgeingTime is how long learned entries live ("ageing"); 0 means
	// DefaultAgeingTime, negative means never.
	AgeingTime time.Duration
	// MaxEntries caps the FDB ("maxaddress"); 0 means unlimited.
	MaxEntries int
	// Remotes are the default entry's remote VTEPs ("remote" for one; the
	// kernel's flood list of all-zeros entries for several): broadcast,
	// multicast and unknown unicast frames are replicated to each.
	Remotes []netip.Addr
	// MAC is the device's Ethernet address; nil picks a random locally
	// administered one.
	MAC net.HardwareAddr
	// MTU is the inner MTU; 0 derives it from UnderlayMTU (1500 - 50 = 1450
	// over IPv4, 1430 over IPv6).
	MTU uint32
	// UnderlayMTU is the outer path MTU used to derive MTU (0 = 1500).
	UnderlayMTU uint32
	// ZeroChecksum sends outer UDP datagrams without a checksum, over
	// IPv4 ("noudpcsum") and IPv6 ("udp6zerocsumtx").
	ZeroChecksum bool
	// ChecksumOffload leaves inner checksums undone; see
	// stack.DeviceConfig.ChecksumOffload. Only for in-process underlays.
	ChecksumOffload bool
	// GSO passes TCP segments of up to 64 KiB through the device whole;
	// see stack.DeviceConfig.GSO. Requires ChecksumOffload.
	GSO bool
	// Headroom overrides stack.DefaultOuterHeadroom (nesting).
	Headroom int
	// Proxy turns on ARP/ND proxy ("proxy", the kernel's VXLAN_F_PROXY,
	// what EVPN calls ARP suppression): an ARP request or IPv6 neighbour
	// solicitation that the inner stack sends for an address in the
	// device's neighbour table (Device.AddNeighbor) is answered by the
	// device itself (the reply is delivered back to the inner stack)
	// instead of being flooded. Requests for other addresses go out as
	// before.
	Proxy bool
}

// Device is one VXLAN device (one VNI): an L2 tunnel device of the inner
// stack with its forwarding database, sending through a Socket of the outer
// stack.
type Device struct {
	*stack.Device
	sock *Socket
	cfg  Config
	fdb  *FDB
	v6   bool // outer family
	mac  MAC
	// nic is the device's NIC, for Transmit's loop check: set once the
	// stack device exists, since the NIC can carry packets a moment before
	// the embedded *stack.Device is assigned.
	nic atomic.Uint32

	ager    *time.Timer
	closeMu sync.Mutex
	closed  bool

	proxy proxy // neighbour table, ARP/ND proxy, local neighbour hook
}

// ageInterval is how often learned entries are scanned for expiry, the
// kernel's FDB_AGE_INTERVAL.
const ageInterval = 10 * time.Second

// AddDevice creates a VXLAN device in inner (the stack whose applications
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
		cfg.Name = fmt.Sprintf("vxlan%d", cfg.VNI)
	}
	if cfg.Port == 0 {
		cfg.Port = s.sock.LocalAddr().Port()
	}
	if cfg.SrcPortMin == 0 && cfg.SrcPortMax == 0 {
		cfg.SrcPortMin, cfg.SrcPortMax = 32768, 61000
	}
	if cfg.AgeingTime == 0 {
		cfg.AgeingTime = DefaultAgeingTime
	}
	v6 := cfg.Local.Is6() && !cfg.Local.Is4In6()
	if !cfg.Local.IsValid() && len(cfg.Remotes) > 0 {
		v6 = cfg.Remotes[0].Is6() && !cfg.Remotes[0].Is4In6()
	}
	if !cfg.Local.IsValid() && len(cfg.Remotes) == 0 {
		v6 = s.sock.LocalAddr().Addr().Is6()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.devs.Get(cfg.VNI) != nil {
		return nil, fmt.Errorf("vni %d: %w: the socket already has a device for it", cfg.VNI, stack.ErrExists)
	}
	d := &Device{sock: s, cfg: cfg, v6: v6, fdb: NewFDB(FDBConfig{MaxEntries: cfg.MaxEntries, AgeingTime: max(cfg.AgeingTime, 0)})}
	for _, r := range cfg.Remotes {
		if err := d.fdb.Append(MAC{}, Remote{Addr: r}); err != nil {
			return nil, fmt.Errorf("remotes: %w", err)
		}
	}
	dev, err := stack.NewDevice(inner, stack.DeviceConfig{
		Name:            cfg.Name,
		Layer:           stack.L2,
		MAC:             cfg.MAC,
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
	copy(d.mac[:], dev.MAC())
	d.nic.Store(uint32(dev.NIC()))
	s.devs.Set(cfg.VNI, d)
	if cfg.Proxy {
		// After d.Device is set, which the worker reads; a no-op if
		// Stack.Close has closed the device meanwhile.
		d.startProxy()
	}
	if cfg.Learning && cfg.AgeingTime > 0 {
		d.fdb.Tick(time.Now())
		d.closeMu.Lock()
		// The device is already visible to Stack.Close, which may have
		// closed it meanwhile: arm the timer only on a live device.
		if !d.closed {
			d.ager = time.AfterFunc(ageInterval, d.age)
		}
		d.closeMu.Unlock()
	}
	return d, nil
}

func (c *Config) validate() error {
	limits := stack.CheckDeviceLimits(c.Headroom, c.UnderlayMTU)
	ports := stack.CheckSrcPortRange(c.SrcPortMin, c.SrcPortMax)
	switch {
	case !c.VNI.Valid():
		return fmt.Errorf("vni %d: %w: above %d", c.VNI, stack.ErrInvalid, MaxVNI)
	case c.Local.IsValid() && (c.Local.IsUnspecified() || c.Local.IsMulticast()):
		return fmt.Errorf("local %v: %w: need a unicast address", c.Local, stack.ErrInvalid)
	case ports != nil:
		return ports
	case c.MaxEntries < 0:
		return fmt.Errorf("max entries %d: %w", c.MaxEntries, stack.ErrInvalid)
	case limits != nil:
		return limits
	case c.DF && c.Local.Is6() && !c.Local.Is4In6():
		return fmt.Errorf("df: %w: IPv6 has no don't-fragment bit", stack.ErrInvalid)
	case c.FlowLabel > 0xfffff:
		return fmt.Errorf("flowlabel %#x: %w: above 20 bits", c.FlowLabel, stack.ErrInvalid)
	case c.FlowLabel != 0 && c.Local.IsValid() && c.Local.Unmap().Is4():
		return fmt.Errorf("flowlabel: %w: IPv4 has no flow label", stack.ErrInvalid)
	case c.DF && c.GSO:
		// A GSO super-packet may only be split by the underlay; with DF
		// and an underlay that cannot, every one would be refused.
		return fmt.Errorf("df with gso: %w: choose one (GSO packets are never fragmented by DF rules)", stack.ErrInvalid)
	}
	for i, r := range c.Remotes {
		if !r.IsValid() || r.IsUnspecified() {
			return fmt.Errorf("remotes[%d] %v: %w: need an address", i, r, stack.ErrInvalid)
		}
		if c.Local.IsValid() && (r.Unmap().Is4() != c.Local.Unmap().Is4()) {
			return fmt.Errorf("remotes[%d] %v: %w: address family differs from local %v", i, r, stack.ErrInvalid, c.Local)
		}
		if r.Unmap().Is4() != c.Remotes[0].Unmap().Is4() {
			// One device has one outer family (its MTU depends on it).
			return fmt.Errorf("remotes[%d] %v: %w: address family differs from remotes[0] %v", i, r, stack.ErrInvalid, c.Remotes[0])
		}
		if c.DF && !r.Unmap().Is4() {
			return fmt.Errorf("df with remotes[%d] %v: %w: IPv6 has no don't-fragment bit", i, r, stack.ErrInvalid)
		}
	}
	return nil
}

// Config returns the device's configuration, defaults applied.
func (d *Device) Config() Config { return d.cfg }

// VNI returns the device's VNI.
func (d *Device) VNI() VNI { return d.cfg.VNI }

// FDB returns the device's forwarding database ("bridge fdb").
func (d *Device) FDB() *FDB { return d.fdb }

// age is the ageing timer (vxlan_cleanup).
func (d *Device) age() {
	d.fdb.Tick(time.Now())
	d.closeMu.Lock()
	defer d.closeMu.Unlock()
	if !d.closed {
		d.ager.Reset(ageInterval)
	}
}

// Close removes the device from its socket and its stack and stops its
// ageing timer. The socket stays open for its other devices.
func (d *Device) Close() error { return d.Device.Close() }

// detach runs when the stack device closes, by Close or by its stack's
// Close: it stops the ageing timer and the proxy's worker and unbinds the
// VNI from the socket.
func (d *Device) detach() {
	d.stopProxy()
	d.closeMu.Lock()
	d.closed = true
	if d.ager != nil {
		d.ager.Stop()
	}
	d.closeMu.Unlock()

	s := d.sock
	s.mu.Lock()
	defer s.mu.Unlock()
	s.devs.DeleteValue(d)
}

// errNoFDB wraps stack.ErrNoRemote for frames the FDB has no remote for.
var errNoFDB = fmt.Errorf("vxlan: no FDB entry and no default remote: %w", stack.ErrNoRemote)
