//go:build linux

package tun

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"

	"github.com/songgao/water"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/udptunnel/udptunnel/stack"
)

// Sentinel errors: Open's errors wrap one of these when the host cannot
// give the process a TUN interface at all, so that callers (and tests) can
// tell "not possible here" from a failure.
var (
	// ErrPermission: the process lacks CAP_NET_ADMIN (or may not open
	// /dev/net/tun). Run as root or grant the capability.
	ErrPermission = errors.New("tun: permission denied (need CAP_NET_ADMIN and access to /dev/net/tun)")
	// ErrNoTUN: /dev/net/tun is missing or the kernel has no tun driver.
	// Load the tun module or create the device node.
	ErrNoTUN = errors.New("tun: /dev/net/tun unavailable (no tun driver or device node)")
)

// DefaultMTU is the MTU Open uses when Config.MTU is 0.
const DefaultMTU = 1500

// Config configures a TUN device.
type Config struct {
	// Name is the interface name; empty lets the kernel pick one ("tunN").
	// At most 15 bytes (IFNAMSIZ - 1).
	Name string
	// MTU is the interface's and the endpoint's MTU, the largest IP packet
	// (0 = DefaultMTU; 68..65535).
	MTU uint32

	// Offload opens the interface with a virtio-net header and checksum
	// and TCP segmentation offload (IFF_VNET_HDR, TUNSETOFFLOAD
	// TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6) and serves it with this package's
	// own endpoint instead of fdbased (see vnet.go): partial checksums the
	// kernel hands over are finished, and tunnel devices with checksum and
	// segmentation offload can hand the endpoint 64 KiB super-packets.
	// Where the kernel takes UDP-tunnel GSO (Linux 6.17+:
	// TUN_F_UDP_TUNNEL_GSO and _CSUM, a 24-byte virtio-net header), such a
	// super-packet is written whole, one write per up to 64 KiB that the
	// kernel's VXLAN takes as one packet, and the kernel's own tunnel GSO
	// packets are received whole; on older kernels it is cut into UDP GSO
	// trains (Device.TunnelGSO says which). Experimental; off by default.
	Offload bool
	// NoTunnelGSO (with Offload) skips the UDP-tunnel GSO probe: the
	// 10-byte header and UDP GSO trains, as on a kernel without it.
	NoTunnelGSO bool
	// TunnelGSOWrites (with Offload, where the kernel takes UDP-tunnel
	// GSO) writes inner TCP super-packets over an IPv4 underlay whole,
	// one write per up to 64 KiB that the kernel's VXLAN takes as one
	// packet, instead of as UDP GSO trains. The kernel counts an Ethernet
	// header in the smallest outer_th_offset it takes even on this L3
	// device, so the outer IPv4 header of such a write carries 16 bytes of
	// NOP options (and the inner MSS shrinks by as much): harmless for a
	// peer on this host, but if the host forwards the packet on, every
	// segment takes the options onto the wire, where routers may send
	// them down a slow path or drop them. Hence opt-in. An IPv6 underlay
	// always gets trains (a padding option header of 16 bytes has no
	// standard form: Linux refuses runs of padding over 7 bytes).
	TunnelGSOWrites bool
	// InnerPort and InnerOffset (with Offload) name the tunnel datagrams
	// whose inner packets the endpoint finishes and segments: outer UDP to
	// InnerPort, the inner IP header InnerOffset bytes into the UDP
	// payload (VXLAN: 4789 and 8+14). InnerPort 0 turns that off; then the
	// tunnel devices must not use checksum offload.
	InnerPort   uint16
	InnerOffset int
}

// Device is a TUN interface of the host together with the gVisor link
// endpoint that serves it. It owns the interface: Close deletes it.
type Device struct {
	name string
	mtu  uint32
	ep   *linkEndpoint
	vnet *vnetEndpoint // the offloaded mode's endpoint, or nil

	// mu is held for reading by every write to fd and for writing by
	// Close, so that no write reaches the descriptor after it is closed
	// (its number could by then belong to another file).
	mu     sync.RWMutex
	fd     int
	closed bool

	// detaching tracks detaches that the stack started (see
	// linkEndpoint.Attach); Close waits for them before closing fd.
	detaching sync.WaitGroup
}

// Open creates a TUN interface in the calling thread's network namespace,
// sets its MTU and brings it up. Close the Device to delete the interface.
// Errors wrap ErrPermission or ErrNoTUN when the host cannot provide one,
// stack.ErrExists when Name belongs to another interface, and
// stack.ErrInvalid for a bad Config.
func Open(cfg Config) (*Device, error) {
	if err := checkName(cfg.Name); err != nil {
		return nil, err
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MTU < 68 || cfg.MTU > 65535 {
		return nil, fmt.Errorf("tun: MTU %d: %w: outside 68..65535", cfg.MTU, stack.ErrInvalid)
	}
	if cfg.Offload {
		return openOffload(cfg)
	}
	ifce, err := water.New(water.Config{
		DeviceType:             water.TUN,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: cfg.Name},
	})
	if err != nil {
		// (water leaks its descriptor of /dev/net/tun when the ioctls
		// fail; there is no handle on it from here.)
		return nil, openError(cfg.Name, err)
	}
	// Take a descriptor of our own and close water's *os.File: the file is
	// registered with the Go runtime's poller, which fdbased's own
	// poll/readv loop does not need. The interface lives as long as any
	// descriptor of it is open.
	fd, err := dupFile(ifce.ReadWriteCloser)
	ifce.Close()
	if err != nil {
		return nil, fmt.Errorf("tun: %s: %w", ifce.Name(), err)
	}
	d := &Device{name: ifce.Name(), mtu: cfg.MTU, fd: fd}
	if err := setLink(d.name, cfg.MTU); err != nil {
		unix.Close(fd)
		return nil, err
	}
	ep, err := fdbased.New(&fdbased.Options{
		FDs: []int{fd},
		MTU: cfg.MTU,
		// One processor: packets are delivered on the reading goroutine,
		// and no goroutine runs before the endpoint is attached (fdbased
		// starts extra processors in New and stops them only when an
		// attached reader exits).
		ProcessorsPerChannel: 1,
	})
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun: %s: link endpoint: %w", d.name, err)
	}
	d.ep = &linkEndpoint{LinkEndpoint: ep, d: d}
	return d, nil
}

// openOffload is Open in the offloaded mode.
func openOffload(cfg Config) (*Device, error) {
	if cfg.InnerOffset < 0 || cfg.InnerOffset > 128 {
		return nil, fmt.Errorf("tun: InnerOffset %d: %w: outside 0..128", cfg.InnerOffset, stack.ErrInvalid)
	}
	fd, name, caps, err := openVnet(cfg.Name, cfg.NoTunnelGSO)
	caps.tnlWrites = cfg.TunnelGSOWrites
	if err != nil {
		return nil, err
	}
	d := &Device{name: name, mtu: cfg.MTU, fd: fd}
	if err := setLink(d.name, cfg.MTU); err != nil {
		unix.Close(fd)
		return nil, err
	}
	d.vnet = newVnetEndpoint(fd, cfg.MTU, cfg.InnerOffset, cfg.InnerPort, caps)
	d.ep = &linkEndpoint{LinkEndpoint: d.vnet, d: d}
	return d, nil
}

// VnetStats returns the offloaded mode's counters (zero without
// Config.Offload).
func (d *Device) VnetStats() VnetStats {
	if d.vnet == nil {
		return VnetStats{}
	}
	return d.vnet.stats()
}

// TunnelGSO reports whether the offloaded mode uses UDP-tunnel GSO (the
// kernel took TUN_F_UDP_TUNNEL_GSO; see Config.Offload).
func (d *Device) TunnelGSO() bool { return d.vnet != nil && d.vnet.tnl }

// checkName applies the kernel's dev_valid_name, so that an EINVAL from
// TUNSETIFF can only mean a name taken by another kind of interface. A
// "%d" in the name is the kernel's template for the next free number.
func checkName(name string) error {
	switch {
	case len(name) > unix.IFNAMSIZ-1:
		return fmt.Errorf("tun: name %q: %w: longer than %d bytes", name, stack.ErrInvalid, unix.IFNAMSIZ-1)
	case name == "." || name == "..", strings.ContainsAny(name, "/: \t\n\v\f\r"):
		return fmt.Errorf("tun: name %q: %w: not an interface name", name, stack.ErrInvalid)
	}
	return nil
}

// openError classifies water's error.
func openError(name string, err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("tun: create %q: %w: %w", name, ErrPermission, err)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		return fmt.Errorf("tun: create %q: %w: %w", name, ErrNoTUN, err)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("tun: create %q: %w: a TUN interface in use has the name: %w", name, stack.ErrExists, err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("tun: create %q: %w: an interface of another kind has the name: %w", name, stack.ErrExists, err)
	}
	return fmt.Errorf("tun: create %q: %w", name, err)
}

// dupFile returns a close-on-exec duplicate of f's descriptor without
// switching f to blocking mode (as os.File.Fd would).
func dupFile(f any) (int, error) {
	file, ok := f.(*os.File)
	if !ok {
		return -1, fmt.Errorf("water returned %T, not an *os.File", f)
	}
	rc, err := file.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var dupErr error
	if err := rc.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if dupErr != nil {
		return -1, fmt.Errorf("dup: %w", dupErr)
	}
	return fd, nil
}

// setLink sets the MTU of interface name and brings it up, with ioctls on
// a socket of the calling thread's network namespace (that of the
// interface).
func setLink(name string, mtu uint32) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("tun: %s: control socket: %w", name, err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("tun: %s: %w", name, err)
	}
	ifr.SetUint32(mtu)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFMTU, ifr); err != nil {
		return fmt.Errorf("tun: %s: set MTU %d: %w", name, mtu, err)
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("tun: %s: get flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("tun: %s: set up: %w", name, err)
	}
	return nil
}

// Name returns the interface's name.
func (d *Device) Name() string { return d.name }

// MTU returns the MTU the device was opened with.
func (d *Device) MTU() uint32 { return d.mtu }

// LinkEndpoint returns the device's link endpoint, to be attached to one
// stack as a NIC (stack.Stack.AddNIC). It carries bare IP packets: no link
// header, no link address resolution. Every call returns the same endpoint.
func (d *Device) LinkEndpoint() stack.LinkEndpoint { return d.ep }

// Close stops the endpoint's reading goroutine, closes the descriptor and
// so deletes the interface. The NIC may stay in its stack: it then drops
// what it sends. Close is idempotent. (gVisor's fdbased never closes the
// eventfd that stops its reader: each Device leaves one behind.)
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	// Stop and wait for the reader before the descriptor goes; a NIC
	// removed later finds the endpoint detached and does nothing.
	d.ep.LinkEndpoint.Attach(nil)
	d.detaching.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := unix.Close(d.fd); err != nil {
		return fmt.Errorf("tun: %s: close: %w", d.name, err)
	}
	d.fd = -1
	return nil
}

// linkEndpoint is gVisor's fdbased endpoint with writes fenced off from a
// closed descriptor.
type linkEndpoint struct {
	stack.LinkEndpoint
	d *Device
}

var _ gstack.LinkEndpoint = (*linkEndpoint)(nil)

// WritePackets implements stack.LinkEndpoint.WritePackets.
func (e *linkEndpoint) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	e.d.mu.RLock()
	defer e.d.mu.RUnlock()
	if e.d.closed {
		return 0, &tcpip.ErrClosedForSend{}
	}
	return e.LinkEndpoint.WritePackets(pkts)
}

// Attach implements stack.LinkEndpoint.Attach; a closed device stays
// detached.
func (e *linkEndpoint) Attach(disp gstack.NetworkDispatcher) {
	if disp == nil {
		// gVisor detaches while holding its stack lock (RemoveNIC), and
		// fdbased's detach waits for its reader, which may be delivering
		// a packet that needs that lock: detach on another goroutine,
		// which Close waits for. No lock of ours either: the reader may be
		// writing.
		e.d.detaching.Add(1)
		go func() {
			defer e.d.detaching.Done()
			e.LinkEndpoint.Attach(nil)
		}()
		return
	}
	// Attaching only starts the reader; holding the lock orders it
	// before Close's detach, or after Close so that it does not happen.
	e.d.mu.RLock()
	defer e.d.mu.RUnlock()
	if !e.d.closed {
		e.LinkEndpoint.Attach(disp)
	}
}

// GSOMaxSize implements stack.GSOEndpoint.
func (e *linkEndpoint) GSOMaxSize() uint32 {
	if g, ok := e.LinkEndpoint.(gstack.GSOEndpoint); ok {
		return g.GSOMaxSize()
	}
	return 0
}

// SupportedGSO implements stack.GSOEndpoint: host GSO in the offloaded
// mode, none otherwise.
func (e *linkEndpoint) SupportedGSO() gstack.SupportedGSO {
	if g, ok := e.LinkEndpoint.(gstack.GSOEndpoint); ok {
		return g.SupportedGSO()
	}
	return gstack.GSONotSupported
}
