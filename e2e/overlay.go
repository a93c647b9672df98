package e2e

import (
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/udptunnel/udptunnel/endpoints/capture"
	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// OverlayConfig describes a two-host overlay: two in-process stacks joined
// by a memlink wire (the underlay), each with a tunnel device pointing at the
// other (the overlay). The zero value is a lossless IPv4 underlay with MTU
// 1500 and a VXLAN overlay with VNI 42.
type OverlayConfig struct {
	// Tunnel builds each host's tunnel device; nil is VXLAN. See
	// Protocols for one per protocol of this module.
	Tunnel TunnelFunc
	// IPv6Underlay puts IPv6 on the wire (fd00:99::1, fd00:99::2) instead
	// of IPv4 (10.99.0.1, 10.99.0.2).
	IPv6Underlay bool
	// UnderlayMTU is the wire's MTU (0 = 1500).
	UnderlayMTU uint32
	// Impairment degrades the wire (loss, duplication, reordering, delay).
	Impairment memlink.Impairment
	// NoTunnel builds the same two stacks without the overlay: the inner
	// addresses sit directly on the wire. It is the baseline that tunnel
	// overhead is measured against.
	NoTunnel bool
	// VNI is the overlay's tunnel identifier (0 = 42): VXLAN's and
	// Geneve's VNI, and whatever identifies a tunnel in other protocols
	// (a session ID, a TEID, an MPLS label), as each TunnelFunc documents.
	VNI vxlan.VNI
	// ChecksumOffload makes the wire and the tunnel devices skip transport
	// checksums, as a kernel veth does (see memlink.Options and
	// stack.DeviceConfig). Off by default.
	ChecksumOffload bool
	// GSO lets TCP hand 64 KiB segments to the wire and the tunnel
	// devices whatever the MTU (memlink.Options.GSO,
	// stack.DeviceConfig.GSO), as the kernel's veth and VXLAN do. It
	// implies ChecksumOffload.
	GSO bool
	// Learning turns on FDB learning on both devices (VXLAN).
	Learning bool
	// DF sets the outer IPv4 don't-fragment bit, so that a router on the
	// path answers outer packets over its next hop's MTU with ICMP
	// "fragmentation needed" instead of fragmenting them: the tunnel's
	// path MTU discovery. An IPv6 underlay has no such bit (routers never
	// fragment IPv6) and ignores it. Honoured by the TunnelFuncs whose
	// protocol has a DF setting and that pass it on (VXLAN's does).
	DF bool
	// Capture, if set, receives a pcap stream (LINKTYPE_RAW) of every
	// packet host a sends and receives on the wire: see endpoints/capture.
	Capture io.Writer
	// InnerCapture, if set, receives a pcap stream of the packets host
	// a's tunnel device sends and receives: Ethernet frames for an L2
	// tunnel, IP packets for an L3 one (stack.Options.WrapDevice).
	InnerCapture io.Writer
	// SyncWire delivers each packet on the sender's goroutine (see
	// memlink.Options.Sync): deterministic, and the way to measure the
	// per-packet cost of a path without queueing.
	SyncWire bool
}

// Host is one end of an Overlay.
type Host struct {
	// Name is "a" or "b".
	Name string
	// Stack hosts both the inner and the outer IP layer.
	Stack *stack.Stack
	// Underlay is the NIC on the wire; Outer its address.
	Underlay stack.NICID
	Outer    netip.Addr
	// Wire is the host's end of the underlay wire.
	Wire *memlink.Endpoint
	// Tunnel is the host's tunnel device, whatever its protocol, and
	// TunnelSocket the tunnel socket under it (both nil with NoTunnel).
	Tunnel       *stack.Device
	TunnelSocket *stack.Socket
	// Lower lists the tunnels that Tunnel runs over in a Nested overlay,
	// outermost first (empty otherwise).
	Lower []TunnelEnd
	// Socket and Device are the host's VXLAN socket and device when the
	// overlay is VXLAN (nil otherwise).
	Socket *vxlan.Socket
	Device *vxlan.Device
	// Inner4 and Inner6 are the host's overlay addresses (192.168.42.x,
	// fd00:42::x); with NoTunnel they are on the wire NIC.
	Inner4, Inner6 netip.Addr

	peer *Host
}

// Peer returns the other host of h's overlay.
func (h *Host) Peer() *Host { return h.peer }

// TunnelFunc builds host h's end of an overlay's tunnel, once both hosts'
// underlays are up: a tunnel socket on h.Stack and a device that sends to
// peer.Outer and carries traffic for peer.Inner4 and peer.Inner6. cfg has
// its defaults filled in. NewOverlay assigns h.Inner4 and h.Inner6 to the
// returned device. What the function opens on h.Stack closes with it.
type TunnelFunc func(h *Host, cfg OverlayConfig) (TunnelEnd, error)

// TunnelEnd is what a TunnelFunc built on one host.
type TunnelEnd struct {
	// Device is the tunnel device; the inner addresses go on its NIC.
	Device *stack.Device
	// Socket is the tunnel socket the device sends through.
	Socket *stack.Socket
}

// VXLAN is the TunnelFunc of a VXLAN overlay: one socket on port 4789 and
// one device with cfg.VNI whose default remote is the peer.
func VXLAN(h *Host, cfg OverlayConfig) (TunnelEnd, error) {
	var err error
	if h.Socket, err = vxlan.OpenSocket(h.Stack, vxlan.SocketConfig{}); err != nil {
		return TunnelEnd{}, err
	}
	h.Device, err = h.Socket.AddDevice(nil, vxlan.Config{
		VNI:             cfg.VNI,
		Remotes:         []netip.Addr{h.Peer().Outer},
		UnderlayMTU:     cfg.UnderlayMTU,
		Learning:        cfg.Learning,
		DF:              cfg.DF && !cfg.IPv6Underlay,
		ChecksumOffload: cfg.ChecksumOffload,
		GSO:             cfg.GSO,
	})
	if err != nil {
		return TunnelEnd{}, err
	}
	return TunnelEnd{Device: h.Device.Device, Socket: h.Socket.Tunnel()}, nil
}

// Overlay is a two-host overlay built by NewOverlay.
type Overlay struct {
	A, B *Host
}

// NewOverlay builds the topology of cfg. Close it when done.
func NewOverlay(cfg OverlayConfig) (_ *Overlay, err error) {
	if cfg.UnderlayMTU == 0 {
		cfg.UnderlayMTU = 1500
	}
	if cfg.VNI == 0 {
		cfg.VNI = 42
	}
	if cfg.GSO {
		cfg.ChecksumOffload = true
	}
	wa, wb, err := memlink.NewPair(memlink.Options{
		MTU: cfg.UnderlayMTU, Impairment: cfg.Impairment, ChecksumOffload: cfg.ChecksumOffload, GSO: cfg.GSO, Sync: cfg.SyncWire,
		// Deep enough for a full 4 MiB TCP window of 1500-byte packets,
		// so that a transfer measures the path, not tail drops.
		QueueLen: 4096,
	})
	if err != nil {
		return nil, fmt.Errorf("underlay: %w", err)
	}
	outer := [2]netip.Prefix{netip.MustParsePrefix("10.99.0.1/24"), netip.MustParsePrefix("10.99.0.2/24")}
	if cfg.IPv6Underlay {
		outer = [2]netip.Prefix{netip.MustParsePrefix("fd00:99::1/64"), netip.MustParsePrefix("fd00:99::2/64")}
	}
	inner4 := [2]netip.Prefix{netip.MustParsePrefix("192.168.42.1/24"), netip.MustParsePrefix("192.168.42.2/24")}
	inner6 := [2]netip.Prefix{netip.MustParsePrefix("fd00:42::1/64"), netip.MustParsePrefix("fd00:42::2/64")}

	o := &Overlay{}
	defer func() {
		if err != nil {
			o.Close()
		}
	}()
	for i, w := range []*memlink.Endpoint{wa, wb} {
		var opts stack.Options
		if i == 0 && cfg.InnerCapture != nil {
			opts.WrapDevice = func(_ string, layer stack.Layer, ep stack.LinkEndpoint) (stack.LinkEndpoint, error) {
				lt := capture.LinkRaw
				if layer == stack.L2 {
					lt = capture.LinkEthernet
				}
				return capture.New(ep, cfg.InnerCapture, capture.Options{LinkType: lt})
			}
		}
		h := &Host{Name: string(rune('a' + i)), Stack: stack.New(opts), Wire: w, Outer: outer[i].Addr(),
			Inner4: inner4[i].Addr(), Inner6: inner6[i].Addr()}
		if i == 0 {
			o.A = h
		} else {
			o.B = h
		}
		var ep stack.LinkEndpoint = w
		if i == 0 && cfg.Capture != nil {
			if ep, err = capture.New(w, cfg.Capture, capture.Options{LinkType: capture.LinkRaw}); err != nil {
				return nil, err
			}
		}
		if h.Underlay, err = h.Stack.AddNIC(ep, stack.NICOptions{Name: "underlay"}); err != nil {
			return nil, err
		}
		addrs := []netip.Prefix{outer[i]}
		if cfg.NoTunnel {
			// The baseline: inner addresses straight on the wire.
			addrs = []netip.Prefix{inner4[i], inner6[i]}
		}
		for _, p := range addrs {
			if err := h.Stack.AddAddress(h.Underlay, p); err != nil {
				return nil, err
			}
		}
	}
	o.A.peer, o.B.peer = o.B, o.A
	if cfg.NoTunnel {
		return o, nil
	}
	tunnel := cfg.Tunnel
	if tunnel == nil {
		tunnel = VXLAN
	}
	for i, h := range o.Hosts() {
		end, err := tunnel(h, cfg)
		if err != nil {
			return nil, fmt.Errorf("host %s: tunnel: %w", h.Name, err)
		}
		if end.Device == nil || end.Socket == nil {
			return nil, fmt.Errorf("host %s: tunnel function returned no device or socket", h.Name)
		}
		h.Tunnel, h.TunnelSocket = end.Device, end.Socket
		for _, p := range []netip.Prefix{inner4[i], inner6[i]} {
			if err := h.Stack.AddAddress(h.Tunnel.NIC(), p); err != nil {
				return nil, err
			}
		}
	}
	return o, nil
}

// Hosts returns both hosts.
func (o *Overlay) Hosts() []*Host { return []*Host{o.A, o.B} }

// Close tears both hosts down: devices, sockets, wires and stacks.
func (o *Overlay) Close() error {
	var errs []error
	for _, h := range []*Host{o.A, o.B} {
		if h == nil {
			continue
		}
		if h.Socket != nil {
			errs = append(errs, h.Socket.Close())
		}
		// Closing the stack closes every tunnel socket and device on it.
		h.Stack.Close()
	}
	return errors.Join(errs...)
}
