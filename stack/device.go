package stack

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Layer is what a tunnel device carries.
type Layer uint8

const (
	// L3 devices carry IP packets (GTP-U, FOU/GUE, bareudp, Geneve with
	// an IP payload).
	L3 Layer = iota
	// L2 devices carry Ethernet frames (VXLAN, Geneve, L2TPv3 Ethernet
	// pseudowires) and resolve neighbours with ARP and NDP through the
	// stack.
	L2
)

// String returns "L2" or "L3".
func (l Layer) String() string {
	if l == L2 {
		return "L2"
	}
	return "L3"
}

// DeviceConfig configures a tunnel device.
type DeviceConfig struct {
	// Name is the device's NIC name ("vxlan42"); required.
	Name string
	// Layer says whether the device carries Ethernet frames or IP packets.
	Layer Layer
	// MAC is an L2 device's address; nil picks a random locally
	// administered unicast address. It must be unicast and non-zero.
	MAC net.HardwareAddr
	// MTU is the inner MTU (the IP packet size the device accepts); 0
	// derives it from UnderlayMTU minus the encapsulation overhead, as the
	// kernel does, and lets ICMP path MTU errors lower it.
	MTU uint32
	// UnderlayMTU is the MTU of the outer path, used when MTU is 0
	// (0 = 1500).
	UnderlayMTU uint32
	// EncapLen is the number of bytes the protocol adds between the outer
	// IP header and the inner frame: the UDP header and the tunnel header
	// (16 for VXLAN).
	EncapLen int
	// OuterIPv6 says the outer header is IPv6 (40 bytes, not 20), for the
	// MTU derivation.
	OuterIPv6 bool
	// Headroom is reserved below the encapsulation for the outer IP header
	// and the underlay's link headers (0 = DefaultOuterHeadroom). Raise it
	// for deep nesting so that packets never move to a larger buffer.
	Headroom int
	// ChecksumOffload advertises checksum offload on the inner side: the
	// inner stack neither computes nor verifies TCP/UDP checksums, as with
	// the kernel's VXLAN over a veth. Only sound when the underlay is an
	// in-process wire that cannot corrupt bytes (or an endpoint that
	// verifies inner checksums itself); off by default. Without it the
	// device completes partial checksums on receive (see Deliver).
	ChecksumOffload bool
	// GSO advertises segmentation offload to the inner stack: TCP hands
	// the device segments of up to 64 KiB, which are encapsulated once and
	// sent as one outer datagram, as the kernel's VXLAN passes GSO packets
	// to a GSO-capable lower device. Where the outer route's NIC has no GSO,
	// the outer IP layer fragments the datagram instead (correct, slower).
	// Requires ChecksumOffload (GSO packets carry partial checksums).
	GSO bool
	// OnClose, if set, runs once when the device closes, whoever closes
	// it (Device.Close or Stack.Close): the protocol's place to release
	// its own resources (timers, table entries).
	OnClose func()
}

// Transmitter is the protocol half of a tunnel device: its ndo_start_xmit.
type Transmitter interface {
	// Transmit encapsulates pkt and sends it through a tunnel socket
	// (NewTunnelPacket, then Socket.Xmit). pkt is borrowed. For an L2
	// device its link header is the inner Ethernet header; for both
	// layers its network header is the inner IP header, if any. An error
	// is counted on the device under DropReasonOf(err).
	Transmit(pkt *PacketBuffer) error
}

// Device is the tunnel device base that protocols embed: a gVisor link
// endpoint (wrapped in gVisor's Ethernet endpoint for L2) attached to a
// Stack as a NIC. Writes from the inner stack go to the protocol's
// Transmitter; the protocol's receive path hands decapsulated packets to
// Deliver. It is the analog of the kernel's tunnel net_device.
type Device struct {
	st     *Stack
	cfg    DeviceConfig
	tx     Transmitter
	nic    NICID
	mac    tcpip.LinkAddress
	ipHdr  int
	mtu    atomic.Uint32 // inner MTU
	disp   atomic.Pointer[dispatcher]
	closed atomic.Bool
	once   sync.Once

	// baseMTU is the MTU configured or derived at creation; a learned path
	// MTU lowers mtu below it until pmtuTimer restores it.
	baseMTU   uint32
	pmtuMu    sync.Mutex
	pmtuTimer *time.Timer

	counters Counters
}

type dispatcher struct{ gstack.NetworkDispatcher }

// linkEndpoint is the face a Device shows gVisor: a raw link endpoint that
// carries whole inner frames. Its methods are below.
type linkEndpoint Device

var _ gstack.LinkEndpoint = (*linkEndpoint)(nil)
var _ gstack.GSOEndpoint = (*linkEndpoint)(nil)

// NewDevice creates a tunnel device in st and attaches it as a NIC named
// cfg.Name. tx is the protocol's transmit function.
func NewDevice(st *Stack, cfg DeviceConfig, tx Transmitter) (*Device, error) {
	if cfg.Name == "" {
		return nil, fmt.Errorf("device name: %w: empty", ErrInvalid)
	}
	if tx == nil {
		return nil, fmt.Errorf("device %s transmitter: %w: nil", cfg.Name, ErrInvalid)
	}
	if cfg.Layer > L2 {
		return nil, fmt.Errorf("device %s layer %d: %w", cfg.Name, cfg.Layer, ErrInvalid)
	}
	if cfg.EncapLen < header.UDPMinimumSize {
		return nil, fmt.Errorf("device %s encapsulation length %d: %w: below the UDP header", cfg.Name, cfg.EncapLen, ErrInvalid)
	}
	if cfg.GSO && !cfg.ChecksumOffload {
		return nil, fmt.Errorf("device %s GSO: %w: needs ChecksumOffload", cfg.Name, ErrInvalid)
	}
	if cfg.Headroom < 0 || cfg.Headroom > 4096 {
		return nil, fmt.Errorf("device %s headroom %d: %w: outside 0..4096", cfg.Name, cfg.Headroom, ErrInvalid)
	}
	if cfg.EncapLen > 1024 {
		return nil, fmt.Errorf("device %s encapsulation length %d: %w: above 1024", cfg.Name, cfg.EncapLen, ErrInvalid)
	}
	if cfg.UnderlayMTU != 0 && (cfg.UnderlayMTU < 68 || cfg.UnderlayMTU > 65535) {
		return nil, fmt.Errorf("device %s underlay MTU %d: %w: outside 68..65535", cfg.Name, cfg.UnderlayMTU, ErrInvalid)
	}
	if cfg.Headroom == 0 {
		cfg.Headroom = DefaultOuterHeadroom
	}
	if cfg.UnderlayMTU == 0 {
		cfg.UnderlayMTU = 1500
	}
	d := &Device{st: st, cfg: cfg, tx: tx, ipHdr: header.IPv4MinimumSize}
	if cfg.OuterIPv6 {
		d.ipHdr = header.IPv6MinimumSize
	}
	mtu := cfg.MTU
	if mtu == 0 {
		derived := int(cfg.UnderlayMTU) - d.ipHdr - cfg.EncapLen - d.l2Len()
		if derived < 68 {
			return nil, fmt.Errorf("device %s underlay MTU %d: %w: leaves %d bytes for inner packets", cfg.Name, cfg.UnderlayMTU, ErrInvalid, derived)
		}
		mtu = uint32(derived)
	}
	if mtu < 68 || mtu > 65535 {
		return nil, fmt.Errorf("device %s MTU %d: %w: outside 68..65535", cfg.Name, mtu, ErrInvalid)
	}
	d.mtu.Store(mtu)
	d.baseMTU = mtu

	var ep LinkEndpoint = (*linkEndpoint)(d)
	if wrap := st.wrapDevice; wrap != nil {
		var err error
		if ep, err = wrap(cfg.Name, cfg.Layer, ep); err != nil {
			return nil, fmt.Errorf("device %s: wrap: %w", cfg.Name, err)
		}
	}
	if cfg.Layer == L2 {
		mac := cfg.MAC
		if mac == nil {
			mac = make(net.HardwareAddr, 6)
			rand.Read(mac)
			mac[0] = mac[0]&^1 | 2 // unicast, locally administered
		}
		if len(mac) != 6 || mac[0]&1 != 0 || tcpip.LinkAddress(mac) == header.UnspecifiedEthernetAddress {
			return nil, fmt.Errorf("device %s MAC %v: %w: need a non-zero unicast Ethernet address", cfg.Name, mac, ErrInvalid)
		}
		d.mac = tcpip.LinkAddress(mac)
		ep = ethernet.New(ep)
	} else if cfg.MAC != nil {
		return nil, fmt.Errorf("device %s MAC: %w: an L3 device has no link address", cfg.Name, ErrInvalid)
	}
	nic, err := st.AddNIC(ep, NICOptions{Name: cfg.Name})
	if err != nil {
		return nil, err
	}
	d.nic = nic
	st.mu.Lock()
	if st.closed {
		// Stack.Close has run (or is running) and would never close us.
		st.mu.Unlock()
		st.RemoveNIC(nic)
		return nil, fmt.Errorf("device %s: stack: %w", cfg.Name, ErrClosed)
	}
	st.devices[d] = struct{}{}
	st.mu.Unlock()
	st.log.Info("tunnel device up", "name", cfg.Name, "layer", cfg.Layer, "mtu", mtu, "nic", nic)
	return d, nil
}

func (d *Device) l2Len() int {
	if d.cfg.Layer == L2 {
		return header.EthernetMinimumSize
	}
	return 0
}

// NIC returns the device's NIC in its stack.
func (d *Device) NIC() NICID { return d.nic }

// Name returns the device's name.
func (d *Device) Name() string { return d.cfg.Name }

// Stack returns the stack the device is attached to.
func (d *Device) Stack() *Stack { return d.st }

// MAC returns an L2 device's address (nil for L3).
func (d *Device) MAC() net.HardwareAddr {
	if d.mac == "" {
		return nil
	}
	return net.HardwareAddr(d.mac)
}

// InnerMTU returns the device's current MTU: the largest inner IP packet.
func (d *Device) InnerMTU() uint32 { return d.mtu.Load() }

// Counters returns the device's counters: inner frames in and out, drops
// by reason.
func (d *Device) Counters() *Counters { return &d.counters }

// UpdatePathMTU lowers the device MTU to fit an outer path MTU learned
// from ICMP or from a DF packet refused, when the MTU was derived rather
// than configured (the kernel's tunnel PMTU update). It never raises the
// MTU, never lowers it below 1280 if it was at least that (inner IPv6
// needs that much; larger inner packets are then fragmented outside, or
// dropped with DF) nor below 68, and restores
// the derived MTU when the learned path MTU expires, after PathMTUExpiry
// without a further update, as the kernel's learned PMTUs do.
func (d *Device) UpdatePathMTU(pathMTU uint32) { d.lowerMTU(pathMTU, 1280) }

// lowerMTU lowers a derived MTU to fit pathMTU, not below floor (or 68)
// unless the device started below floor. ICMP errors, true or forged, use
// 1280 to keep inner IPv6; a DF packet refused by the device's own path MTU
// check uses 68, since that path MTU was measured, not reported.
func (d *Device) lowerMTU(pathMTU uint32, floor int) {
	if d.cfg.MTU != 0 {
		return
	}
	d.pmtuMu.Lock()
	defer d.pmtuMu.Unlock()
	if d.baseMTU < uint32(floor) {
		floor = 68
	}
	inner := max(int(pathMTU)-d.ipHdr-d.cfg.EncapLen-d.l2Len(), floor, 68)
	if d.closed.Load() || uint32(inner) >= d.mtu.Load() {
		return
	}
	d.mtu.Store(uint32(inner))
	d.st.log.Info("tunnel device path MTU", "name", d.cfg.Name, "path_mtu", pathMTU, "mtu", inner)
	if d.pmtuTimer == nil {
		d.pmtuTimer = time.AfterFunc(pathMTUExpiry, d.expirePathMTU)
	} else {
		d.pmtuTimer.Reset(pathMTUExpiry)
	}
}

// PathMTUExpiry is how long a path MTU learned by a device holds (the
// kernel's ip_rt_mtu_expires).
const PathMTUExpiry = 10 * time.Minute

// pathMTUExpiry is PathMTUExpiry, shortened by tests.
var pathMTUExpiry = PathMTUExpiry

func (d *Device) expirePathMTU() {
	d.pmtuMu.Lock()
	defer d.pmtuMu.Unlock()
	if !d.closed.Load() {
		d.mtu.Store(d.baseMTU)
	}
}

// Close removes the device's NIC from its stack. It is idempotent.
func (d *Device) Close() error {
	var err error
	d.once.Do(func() {
		d.pmtuMu.Lock()
		d.closed.Store(true)
		if d.pmtuTimer != nil {
			d.pmtuTimer.Stop()
		}
		d.pmtuMu.Unlock()
		if d.cfg.OnClose != nil {
			d.cfg.OnClose()
		}
		err = d.st.RemoveNIC(d.nic)
		d.st.mu.Lock()
		delete(d.st.devices, d)
		d.st.mu.Unlock()
		d.st.log.Info("tunnel device removed", "name", d.cfg.Name)
	})
	return err
}

// Deliver injects a decapsulated packet into the device: pkt's data must
// start at the inner frame (Ethernet for L2, IP for L3). This is where the
// packet re-enters the stack (ip_local_deliver #2, via netif_rx and
// eth_type_trans for L2). pkt is borrowed, but its data moves into the
// inner packet without a copy: afterwards pkt holds no bytes and its
// headers must not be read; the caller only releases it. A device without
// ChecksumOffload first completes an inner TCP or UDP checksum that a
// sender on the same host left partial (see partial.go; counted in
// Stats.Completed), so that its inner stack can verify it.
func (d *Device) Deliver(pkt *PacketBuffer) {
	disp := d.disp.Load()
	if disp == nil || d.closed.Load() {
		d.counters.Drop(DropDeviceDown)
		return
	}
	// proto is what the inner NIC is told (none for L2: its link layer
	// reads the Ethernet header); l3 and l3Off are the network protocol
	// and where its header starts.
	var proto, l3 tcpip.NetworkProtocolNumber
	l3Off := 0
	if d.cfg.Layer == L2 {
		eth, ok := pkt.Data().PullUp(header.EthernetMinimumSize)
		if !ok {
			d.counters.Drop(DropTruncated)
			return
		}
		dst, src := header.Ethernet(eth).DestinationAddress(), header.Ethernet(eth).SourceAddress()
		if src == d.mac {
			// Our own frame came back: a forwarding loop (vxlan_rcv).
			d.counters.Drop(DropLoop)
			return
		}
		if dst != d.mac && !header.IsMulticastEthernetAddress(dst) && dst != header.EthernetBroadcastAddress {
			d.counters.Drop(DropNotForUs)
			return
		}
		l3, l3Off = header.Ethernet(eth).Type(), header.EthernetMinimumSize
	} else {
		b, ok := pkt.Data().PullUp(1)
		if !ok {
			d.counters.Drop(DropTruncated)
			return
		}
		switch b[0] >> 4 {
		case 4:
			proto = header.IPv4ProtocolNumber
		case 6:
			proto = header.IPv6ProtocolNumber
		default:
			d.counters.Drop(DropNotForUs)
			return
		}
		l3 = proto
	}
	if !d.cfg.ChecksumOffload && completePartial(pkt.Data(), l3Off, l3) {
		d.counters.Completed()
	}
	n := pkt.Data().Size()
	// Move the inner frame out of pkt rather than share it: gVisor's
	// parsers pull headers up through Buffer.PullUp, which copies any chunk
	// that another buffer still references, so a shared inner frame would
	// be copied whole on its first header parse.
	in := gstack.NewPacketBuffer(gstack.PacketBufferOptions{})
	in.Data().Merge(pkt.Data())
	setNestingDepth(in, NestingDepth(pkt)+1) // one tunnel deeper than the outer packet
	d.counters.Rx(n)
	disp.DeliverNetworkPacket(proto, in)
	in.DecRef()
}

// DropReasonOf maps an error from a Transmitter or Socket.Xmit to the drop
// reason it is counted under.
func DropReasonOf(err error) DropReason {
	switch {
	case errors.Is(err, ErrNoRemote):
		return DropNoRemote
	case errors.Is(err, ErrNoRoute):
		return DropNoRoute
	case errors.Is(err, ErrLoop):
		return DropLoop
	case errors.Is(err, ErrNestingLimit):
		return DropNestingLimit
	case errors.Is(err, ErrTooBig):
		return DropTooBig
	case errors.Is(err, ErrClosed):
		return DropDeviceDown
	case errors.Is(err, ErrUnsupported):
		return DropNotForUs
	case errors.Is(err, ErrInvalid):
		return DropBadHeader
	}
	return DropWriteError
}

// ErrNoRemote is returned by a Transmitter that has no remote for a
// packet's destination (no FDB entry and no default entry, no session).
var ErrNoRemote = errors.New("no remote for destination")

// ErrUnsupported is returned by a Transmitter for an inner packet of a
// protocol the device does not carry (IPv6 on an IPv4-only device, a
// non-IP packet on an L3 device); it is counted as DropNotForUs.
var ErrUnsupported = errors.New("inner protocol not carried by the device")

// WritePackets implements stack.LinkWriter.WritePackets: the inner stack's
// packets enter the tunnel here (ndo_start_xmit).
func (e *linkEndpoint) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	d := (*Device)(e)
	for _, pkt := range pkts.AsSlice() {
		if d.closed.Load() {
			d.counters.Drop(DropDeviceDown)
			continue
		}
		if NestingDepth(pkt) >= MaxNesting {
			d.counters.Drop(DropNestingLimit)
			continue
		}
		n := pkt.Size()
		if err := d.tx.Transmit(pkt); err != nil {
			d.counters.Drop(DropReasonOf(err))
			// skb_tunnel_check_pmtu: the outer path is smaller than the
			// device assumed; shrink the device so that the inner stack
			// fragments or resizes what it sends next.
			var tb *TooBigError
			if errors.As(err, &tb) {
				d.lowerMTU(tb.MTU, 68)
			}
			continue
		}
		d.counters.Tx(n)
	}
	return pkts.Len(), nil
}

// MTU implements stack.LinkEndpoint.MTU: the inner MTU, plus the Ethernet
// header for L2 (gVisor's Ethernet wrapper subtracts it again).
func (e *linkEndpoint) MTU() uint32 { return e.mtu.Load() + uint32((*Device)(e).l2Len()) }

// SetMTU implements stack.LinkEndpoint.SetMTU.
//
// The value is the inner IP MTU for both layers: gVisor's Ethernet wrapper
// passes SetMTU through unchanged (it subtracts its header only when it
// reads MTU). Values outside 68..65535 are ignored; a set MTU replaces the
// derived one as the MTU that path MTU expiry restores.
func (e *linkEndpoint) SetMTU(mtu uint32) {
	if mtu < 68 || mtu > 65535 {
		return
	}
	d := (*Device)(e)
	d.pmtuMu.Lock()
	defer d.pmtuMu.Unlock()
	d.baseMTU = mtu
	d.mtu.Store(mtu)
}

// MaxHeaderLength implements stack.LinkEndpoint.MaxHeaderLength: the
// encapsulation and the outer headroom, so that upper layers reserve room
// and encapsulation is a push, not a copy.
func (e *linkEndpoint) MaxHeaderLength() uint16 {
	return uint16(e.cfg.EncapLen + e.cfg.Headroom)
}

// LinkAddress implements stack.LinkEndpoint.LinkAddress.
func (e *linkEndpoint) LinkAddress() tcpip.LinkAddress { return e.mac }

// SetLinkAddress implements stack.LinkEndpoint.SetLinkAddress; a tunnel
// device keeps the address it was created with.
func (*linkEndpoint) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.LinkEndpoint.Capabilities.
func (e *linkEndpoint) Capabilities() gstack.LinkEndpointCapabilities {
	if e.cfg.ChecksumOffload {
		return gstack.CapabilityTXChecksumOffload | gstack.CapabilityRXChecksumOffload
	}
	return 0
}

// Attach implements stack.LinkEndpoint.Attach.
func (e *linkEndpoint) Attach(d gstack.NetworkDispatcher) {
	if d == nil {
		e.disp.Store(nil)
		return
	}
	e.disp.Store(&dispatcher{d})
}

// IsAttached implements stack.LinkEndpoint.IsAttached.
func (e *linkEndpoint) IsAttached() bool { return e.disp.Load() != nil }

// Wait implements stack.LinkEndpoint.Wait; a device owns no goroutine.
func (*linkEndpoint) Wait() {}

// ARPHardwareType implements stack.LinkEndpoint.ARPHardwareType.
func (*linkEndpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements stack.LinkEndpoint.AddHeader (the Ethernet wrapper
// adds the L2 header).
func (*linkEndpoint) AddHeader(*PacketBuffer) {}

// ParseHeader implements stack.LinkEndpoint.ParseHeader.
func (*linkEndpoint) ParseHeader(*PacketBuffer) bool { return true }

// Close implements stack.LinkEndpoint.Close, called when the NIC goes.
func (e *linkEndpoint) Close() { e.closed.Store(true) }

// SetOnCloseAction implements stack.LinkEndpoint.SetOnCloseAction.
func (*linkEndpoint) SetOnCloseAction(func()) {}

// GSOMaxSize implements stack.GSOEndpoint.GSOMaxSize: the largest inner
// packet whose encapsulation still fits in one IP datagram.
func (e *linkEndpoint) GSOMaxSize() uint32 {
	if !e.cfg.GSO {
		return 0
	}
	return uint32(0xffff - header.IPv6MinimumSize - e.cfg.EncapLen - (*Device)(e).l2Len())
}

// SupportedGSO implements stack.GSOEndpoint.SupportedGSO.
func (e *linkEndpoint) SupportedGSO() gstack.SupportedGSO {
	if e.cfg.GSO {
		return gstack.HostGSOSupported
	}
	return gstack.GSONotSupported
}
