//go:build linux

package tun

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/rawfile"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The offloaded mode (Config.Offload). The TUN is opened with
// IFF_VNET_HDR and TUNSETOFFLOAD(TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6), and
// served by vnetEndpoint, not by gVisor's fdbased: fdbased enables its
// virtio-net header (and so GSO) only on sockets (endpoint.go: "if
// isSocket { if opts.GSOMaxSize != 0 ..."), and on receive it skips the
// header without looking at it, so it would neither finish a partial
// checksum nor notice a GSO packet.
//
// UDP-tunnel GSO (Linux 6.17+). openVnet probes it once, unless
// Config.NoTunnelGSO: TUNSETOFFLOAD with TUN_F_UDP_TUNNEL_GSO and
// TUN_F_UDP_TUNNEL_GSO_CSUM as well (an older kernel refuses the unknown
// bits with EINVAL, and then everything below about it is off and the
// mode is exactly as before), then TUNSETVNETHDRSZ 24: every read and
// write starts with struct virtio_net_hdr_v1_hash_tunnel (the 10-byte
// header, num_buffers, the hash fields, outer_th_offset, inner_nh_offset;
// zeros where unused). Device.TunnelGSO reports the outcome.
//
// Receive: a packet the kernel marks VIRTIO_NET_HDR_F_NEEDS_CSUM gets its
// checksum finished at csum_start/csum_offset (the kernel's
// skb_checksum_help), so the stack sees and verifies complete packets. A
// TCP GSO packet (TSO4/TSO6: TCP to our own underlay address) is delivered
// whole, as GRO would; UDP GSO (USO) is not enabled, so never arrives.
// With tunnel GSO the kernel also hands over whole UDP-tunnel GSO packets
// (its VXLAN device's TSO super-packets, encapsulated): the inner TCP
// checksum is finished at csum_start, the outer UDP checksum too when
// VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM says it is partial (else it is zero),
// in one pass, and the packet is delivered whole. Malformed headers are
// dropped and counted by reason (VnetStats.RxDrop*), never trusted.
//
// Transmit: outer UDP datagrams to Config.InnerPort carry, InnerOffset
// bytes into their payload, an inner IP packet from a tunnel device with
// checksum and segmentation offload (stack.DeviceConfig.ChecksumOffload and
// GSO). The endpoint finishes their inner TCP/UDP checksums (and then the
// outer UDP checksum). An inner TCP GSO super-packet is, with tunnel GSO
// and Config.TunnelGSOWrites, written whole (writeTunnelGSO): one write of up to 64 KiB that the
// kernel takes as one skb and its VXLAN socket decapsulates as one, the
// inner TCP checksum left partial, the outer one partial
// (VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM) or zero as our socket sends it. The
// kernel counts an Ethernet header in the smallest outer_th_offset it
// takes even on this L3 device, so the outer IPv4 header of such a write
// is padded with NOP options (see writeTunnelGSO); hence only with
// Config.TunnelGSOWrites, and only over IPv4. Without tunnel GSO the endpoint cuts the super-packet
// into MSS-sized inner segments, each behind a copy of the tunnel, link,
// IP and TCP headers, which it hands to the kernel as one UDP GSO train
// (VIRTIO_NET_HDR_GSO_UDP_L4): one write for up to 64 KiB, split by the
// kernel's UDP layer before the tunnel socket sees it, the hostudp
// endpoint's inner-offload path with a TUN write for sendmmsg.

const (
	virtioNetHdrSize             = 10
	virtioNetHdrTnlSize          = 24 // struct virtio_net_hdr_v1_hash_tunnel
	virtioNetHdrFNeedsCsum       = 1
	virtioNetHdrFUDPTunnelCsum   = 8
	virtioNetHdrGSONone          = 0
	virtioNetHdrGSOTCPv4         = 1
	virtioNetHdrGSOTCPv6         = 4
	virtioNetHdrGSOUDPL4         = 5
	virtioNetHdrGSOUDPTunnelIPv4 = 0x20
	virtioNetHdrGSOUDPTunnelIPv6 = 0x40
	virtioNetHdrGSOUDPTunnel     = virtioNetHdrGSOUDPTunnelIPv4 | virtioNetHdrGSOUDPTunnelIPv6
	virtioNetHdrGSOECN           = 0x80
	tunFCsum                     = 0x01
	tunFTSO4                     = 0x02
	tunFTSO6                     = 0x04
	tunFUSO4                     = 0x20
	tunFUSO6                     = 0x40
	tunFUDPTunnelGSO             = 0x080
	tunFUDPTunnelGSOCsum         = 0x100
	maxTrainSegments             = 64
	maxPacket                    = 65535
	offloadGSOMaxSize            = 62 << 10 // inner super-packet, leaving room for the encapsulation
	vnetReadBufSize              = virtioNetHdrTnlSize + maxPacket
	// tnlMinOuterTh4 is the kernel's smallest outer_th_offset of a tunnel
	// GSO write over IPv4: virtio_net_hdr_tnl_to_skb counts an Ethernet
	// header (ETH_HLEN + the IP header) even on an L3 TUN.
	tnlMinOuterTh4          = 14 + header.IPv4MinimumSize
	vnetFlagsForOpen uint16 = unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR
)

// virtioNetHdr is struct virtio_net_hdr_v1_hash_tunnel: struct
// virtio_net_hdr in the host's byte order (a TUN without TUNSETVNETBE is
// little-endian on little-endian hosts; the kernel reads a tunnel GSO
// header as little-endian whatever the host), then num_buffers, the hash
// fields and the tunnel offsets (little-endian), which exist only with
// the 24-byte header (TUNSETVNETHDRSZ).
type virtioNetHdr struct {
	flags, gsoType                         uint8
	hdrLen, gsoSize, csumStart, csumOffset uint16
	numBuffers                             uint16
	hashValue                              uint32
	hashReport, paddingReserved            uint16
	outerTh, innerNh                       uint16
}

// marshal writes h to b, whose length (virtioNetHdrSize or
// virtioNetHdrTnlSize) is the header's.
func (h *virtioNetHdr) marshal(b []byte) {
	b[0], b[1] = h.flags, h.gsoType
	binary.NativeEndian.PutUint16(b[2:], h.hdrLen)
	binary.NativeEndian.PutUint16(b[4:], h.gsoSize)
	binary.NativeEndian.PutUint16(b[6:], h.csumStart)
	binary.NativeEndian.PutUint16(b[8:], h.csumOffset)
	if len(b) < virtioNetHdrTnlSize {
		return
	}
	binary.LittleEndian.PutUint16(b[10:], h.numBuffers)
	binary.LittleEndian.PutUint32(b[12:], h.hashValue)
	binary.LittleEndian.PutUint16(b[16:], h.hashReport)
	binary.LittleEndian.PutUint16(b[18:], h.paddingReserved)
	binary.LittleEndian.PutUint16(b[20:], h.outerTh)
	binary.LittleEndian.PutUint16(b[22:], h.innerNh)
}

// parseVirtioNetHdr reads a header of len(b) bytes (at least
// virtioNetHdrSize); the tunnel fields stay zero in a short one.
func parseVirtioNetHdr(b []byte) virtioNetHdr {
	h := virtioNetHdr{
		flags: b[0], gsoType: b[1],
		hdrLen:     binary.NativeEndian.Uint16(b[2:]),
		gsoSize:    binary.NativeEndian.Uint16(b[4:]),
		csumStart:  binary.NativeEndian.Uint16(b[6:]),
		csumOffset: binary.NativeEndian.Uint16(b[8:]),
	}
	if len(b) >= virtioNetHdrTnlSize {
		h.numBuffers = binary.LittleEndian.Uint16(b[10:])
		h.hashValue = binary.LittleEndian.Uint32(b[12:])
		h.hashReport = binary.LittleEndian.Uint16(b[16:])
		h.paddingReserved = binary.LittleEndian.Uint16(b[18:])
		h.outerTh = binary.LittleEndian.Uint16(b[20:])
		h.innerNh = binary.LittleEndian.Uint16(b[22:])
	}
	return h
}

// vnetCaps is what openVnet found the kernel to take.
type vnetCaps struct {
	// uso: UDP segmentation offload (Linux 6.2+: it accepts
	// TUN_F_USO4|TUN_F_USO6, and so a VIRTIO_NET_HDR_GSO_UDP_L4 write).
	// USO towards us stays off: the endpoint would have to segment what it
	// reads.
	uso bool
	// tnl: UDP-tunnel GSO both ways (Linux 6.17+: TUN_F_UDP_TUNNEL_GSO and
	// _CSUM are on, and the virtio-net header is the 24-byte
	// virtio_net_hdr_v1_hash_tunnel).
	tnl bool
	// tnlWrites (with tnl): write inner TCP super-packets over IPv4 whole
	// (Config.TunnelGSOWrites).
	tnlWrites bool
}

// hdrSize is the virtio-net header's size on the descriptor.
func (c vnetCaps) hdrSize() int {
	if c.tnl {
		return virtioNetHdrTnlSize
	}
	return virtioNetHdrSize
}

// openVnet creates the TUN interface with a virtio-net header and the
// offloads, returning a non-blocking close-on-exec descriptor, the
// interface's name and what the kernel takes. Unless noTnl, it probes the
// UDP-tunnel GSO offload once: EINVAL (an older kernel) leaves the
// 10-byte header and the plain offloads exactly as without the probe.
func openVnet(name string, noTnl bool) (int, string, vnetCaps, error) {
	var caps vnetCaps
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, "", caps, openError(name, fmt.Errorf("open /dev/net/tun: %w", err))
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, "", caps, openError(name, err)
	}
	ifr.SetUint16(vnetFlagsForOpen)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, "", caps, openError(name, fmt.Errorf("TUNSETIFF: %w", err))
	}
	fail := func(what string, err error) (int, string, vnetCaps, error) {
		unix.Close(fd)
		return -1, "", caps, fmt.Errorf("tun: %s: %s: %w", ifr.Name(), what, err)
	}
	caps.uso = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunFCsum|tunFTSO4|tunFTSO6|tunFUSO4|tunFUSO6) == nil
	offloads := tunFCsum | tunFTSO4 | tunFTSO6
	if !noTnl {
		// The kernel refuses unknown TUNSETOFFLOAD bits with EINVAL; it
		// takes the tunnel bits only together with a plain GSO offload.
		// The interface is not up yet: no packet sees the tunnel offload
		// with the short header in between.
		switch err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offloads|tunFUDPTunnelGSO|tunFUDPTunnelGSOCsum); err {
		case nil:
			if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, virtioNetHdrTnlSize); err != nil {
				return fail("TUNSETVNETHDRSZ", err)
			}
			caps.tnl = true
			offloads |= tunFUDPTunnelGSO | tunFUDPTunnelGSOCsum
		case unix.EINVAL:
		default:
			return fail("TUNSETOFFLOAD (UDP tunnel GSO)", err)
		}
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offloads); err != nil {
		return fail("TUNSETOFFLOAD", err)
	}
	return fd, ifr.Name(), caps, nil
}

// VnetStats counts what the offloaded mode did.
type VnetStats struct {
	// RxPartialCsum: received packets whose checksum the kernel left to
	// us (finished here). RxGSO: received TCP GSO packets (delivered
	// whole). RxTunnelGSO: received UDP-tunnel GSO packets (inner TCP,
	// delivered whole; also counted in RxGSO and RxPartialCsum).
	RxPartialCsum, RxGSO, RxTunnelGSO uint64
	// RxDropped: malformed or unsupported received packets, the sum of
	// the reasons that follow. RxDropShort: no room for the virtio-net
	// header and a packet. RxDropCsum: a partial checksum's field beyond
	// the packet. RxDropGSO: a GSO type the endpoint did not ask for.
	// RxDropTunnel: a tunnel GSO header the kernel would not send
	// (offsets out of order or beyond the packet, both outer IP versions,
	// no NEEDS_CSUM, tunnel GSO not negotiated). RxDropNotIP: neither
	// IPv4 nor IPv6.
	RxDropped                                                     uint64
	RxDropShort, RxDropCsum, RxDropGSO, RxDropTunnel, RxDropNotIP uint64
	// TxTrains: UDP GSO trains written; TxTrainSegments: the datagrams in
	// them. TxTunnelGSO: inner TCP super-packets written whole as one
	// UDP-tunnel GSO packet. TxFinished: single tunnel datagrams whose
	// inner checksum was finished. TxPlain: other packets. TxErrors:
	// failed writes.
	TxTrains, TxTrainSegments, TxTunnelGSO, TxFinished, TxPlain, TxErrors uint64
}

// rxDrop is a reason to drop a received packet (VnetStats.RxDrop*); 0 keeps
// it.
type rxDrop int

const (
	rxOK rxDrop = iota
	rxDropShort
	rxDropCsum
	rxDropGSO
	rxDropTunnel
	rxDropNotIP
	numRxDrops
)

// vnetEndpoint is the offloaded mode's link endpoint.
type vnetEndpoint struct {
	fd          int
	mtu         atomic.Uint32
	innerOffset int
	innerPort   uint16
	// trains: the kernel takes UDP GSO writes; tnl: UDP-tunnel GSO both
	// ways, with the 24-byte header (see openVnet); tnlWrites: super-packets
	// over IPv4 are written whole (Config.TunnelGSOWrites).
	trains, tnl, tnlWrites bool
	// hdrSize is the virtio-net header's size: caps.hdrSize().
	hdrSize int
	// cur is the attached dispatcher, for the reader.
	cur atomic.Pointer[gstack.NetworkDispatcher]

	// mu guards the reader's state.
	mu      sync.Mutex
	disp    gstack.NetworkDispatcher
	stopFD  int
	done    chan struct{}
	onClose func()

	rxPartial, rxGSO, rxTnl                             atomic.Uint64
	rxDrops                                             [numRxDrops]atomic.Uint64
	txTrains, txSegs, txTnl, txFinished, txPlain, txErr atomic.Uint64
}

var (
	_ gstack.LinkEndpoint = (*vnetEndpoint)(nil)
	_ gstack.GSOEndpoint  = (*vnetEndpoint)(nil)
)

func newVnetEndpoint(fd int, mtu uint32, innerOffset int, innerPort uint16, caps vnetCaps) *vnetEndpoint {
	e := &vnetEndpoint{fd: fd, innerOffset: innerOffset, innerPort: innerPort,
		trains: caps.uso, tnl: caps.tnl, tnlWrites: caps.tnl && caps.tnlWrites, hdrSize: caps.hdrSize(), stopFD: -1}
	e.mtu.Store(mtu)
	return e
}

func (e *vnetEndpoint) stats() VnetStats {
	s := VnetStats{
		RxPartialCsum: e.rxPartial.Load(), RxGSO: e.rxGSO.Load(), RxTunnelGSO: e.rxTnl.Load(),
		RxDropShort: e.rxDrops[rxDropShort].Load(), RxDropCsum: e.rxDrops[rxDropCsum].Load(),
		RxDropGSO: e.rxDrops[rxDropGSO].Load(), RxDropTunnel: e.rxDrops[rxDropTunnel].Load(),
		RxDropNotIP: e.rxDrops[rxDropNotIP].Load(),
		TxTrains:    e.txTrains.Load(), TxTrainSegments: e.txSegs.Load(), TxTunnelGSO: e.txTnl.Load(),
		TxFinished: e.txFinished.Load(), TxPlain: e.txPlain.Load(), TxErrors: e.txErr.Load(),
	}
	s.RxDropped = s.RxDropShort + s.RxDropCsum + s.RxDropGSO + s.RxDropTunnel + s.RxDropNotIP
	return s
}

func (e *vnetEndpoint) MTU() uint32                             { return e.mtu.Load() }
func (e *vnetEndpoint) SetMTU(mtu uint32)                       { e.mtu.Store(mtu) }
func (e *vnetEndpoint) MaxHeaderLength() uint16                 { return 0 }
func (e *vnetEndpoint) LinkAddress() tcpip.LinkAddress          { return "" }
func (e *vnetEndpoint) SetLinkAddress(tcpip.LinkAddress)        {}
func (e *vnetEndpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }
func (e *vnetEndpoint) AddHeader(*gstack.PacketBuffer)          {}
func (e *vnetEndpoint) ParseHeader(*gstack.PacketBuffer) bool   { return true }
func (e *vnetEndpoint) Close()                                  {}
func (e *vnetEndpoint) SetOnCloseAction(f func())               { e.mu.Lock(); e.onClose = f; e.mu.Unlock() }

// Capabilities implements stack.LinkEndpoint: none beyond GSO; the stack
// computes and verifies the outer checksums itself.
func (e *vnetEndpoint) Capabilities() gstack.LinkEndpointCapabilities { return 0 }

// GSOMaxSize implements stack.GSOEndpoint.
func (e *vnetEndpoint) GSOMaxSize() uint32 { return offloadGSOMaxSize }

// SupportedGSO implements stack.GSOEndpoint: host GSO, which lets the
// tunnel devices' super-packets through the outer IP layer whole (see
// stack.NewTunnelPacket); this endpoint segments them.
func (e *vnetEndpoint) SupportedGSO() gstack.SupportedGSO { return gstack.HostGSOSupported }

func (e *vnetEndpoint) IsAttached() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.disp != nil
}

// Wait implements stack.LinkEndpoint.Wait: it waits for the reader.
func (e *vnetEndpoint) Wait() {
	e.mu.Lock()
	done := e.done
	e.mu.Unlock()
	if done != nil {
		<-done
	}
}

// Attach starts the reader with disp, or (nil) stops it and waits for it.
func (e *vnetEndpoint) Attach(disp gstack.NetworkDispatcher) {
	e.mu.Lock()
	if disp == nil {
		done, stop := e.done, e.stopFD
		e.disp, e.done, e.stopFD = nil, nil, -1
		e.mu.Unlock()
		if done != nil {
			var one [8]byte
			binary.NativeEndian.PutUint64(one[:], 1)
			unix.Write(stop, one[:])
			<-done
			unix.Close(stop)
		}
		return
	}
	defer e.mu.Unlock()
	e.cur.Store(&disp)
	if e.disp != nil {
		e.disp = disp
		return
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return
	}
	e.disp, e.stopFD, e.done = disp, efd, make(chan struct{})
	go e.read(efd, e.done)
}

// read is the reading goroutine: one packet per readv.
func (e *vnetEndpoint) read(efd int, done chan struct{}) {
	defer close(done)
	buf := make([]byte, vnetReadBufSize)
	iov := []unix.Iovec{{Base: &buf[0]}}
	iov[0].SetLen(len(buf))
	for {
		n, errno := rawfile.BlockingReadvUntilStopped(efd, e.fd, iov)
		if n < 0 {
			return // stopped
		}
		if errno != 0 {
			if errno == unix.EBADFD || errno == unix.EBADF {
				return
			}
			continue
		}
		if n <= e.hdrSize {
			e.rxDrops[rxDropShort].Add(1)
			continue
		}
		h := parseVirtioNetHdr(buf[:e.hdrSize])
		p := buf[e.hdrSize:n]
		if why := e.finishRx(&h, p); why != rxOK {
			e.rxDrops[why].Add(1)
			continue
		}
		var proto tcpip.NetworkProtocolNumber
		switch p[0] >> 4 {
		case 4:
			proto = header.IPv4ProtocolNumber
		case 6:
			proto = header.IPv6ProtocolNumber
		default:
			e.rxDrops[rxDropNotIP].Add(1)
			continue
		}
		pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(p)})
		(*e.cur.Load()).DeliverNetworkPacket(proto, pkt)
		pkt.DecRef()
	}
}

// finishRx applies the virtio-net header h to the received packet p:
// a partial checksum is finished; a TCP GSO packet is accepted whole, and
// so is a UDP-tunnel GSO packet with an inner TCP one once negotiated
// (finishRxTunnel). It returns why p is to be dropped, or rxOK. Nothing in
// h is trusted: every offset is checked against p.
func (e *vnetEndpoint) finishRx(h *virtioNetHdr, p []byte) rxDrop {
	if tnl := h.gsoType & virtioNetHdrGSOUDPTunnel; tnl != 0 {
		return e.finishRxTunnel(h, p, tnl)
	}
	// VIRTIO_NET_HDR_F_DATA_VALID (and UDP_TUNNEL_CSUM with it) says
	// the kernel checked the checksums; the stack checks them again.
	if h.flags&virtioNetHdrFNeedsCsum != 0 {
		start, field := int(h.csumStart), int(h.csumStart)+int(h.csumOffset)
		if field+2 > len(p) {
			return rxDropCsum
		}
		// The field holds the pseudo-header sum; the kernel's
		// skb_checksum_help folds in the rest.
		c := ^checksum.Checksum(p[start:], 0)
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(p[field:], c)
		e.rxPartial.Add(1)
	}
	switch h.gsoType &^ virtioNetHdrGSOECN {
	case virtioNetHdrGSONone:
	case virtioNetHdrGSOTCPv4, virtioNetHdrGSOTCPv6:
		e.rxGSO.Add(1)
	default:
		return rxDropGSO
	}
	return rxOK
}

// finishRxTunnel is finishRx for a UDP-tunnel GSO packet (the kernel's
// virtio_net_hdr_tnl_from_skb): an outer IPv4 or IPv6 (tnl) UDP datagram
// at outer_th_offset whose inner IP packet at inner_nh_offset carries a
// TCP GSO super-packet at csum_start. The inner TCP checksum is partial
// (NEEDS_CSUM, its field holds the pseudo-header sum of the whole
// super-packet) and is finished here; with VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM
// the outer UDP checksum is partial too (the pseudo-header sum) and is
// finished from the sums already taken, one pass over the packet in all.
// Without the flag the outer checksum is zero (none). The packet is then
// delivered whole, as the kernel's GRO would.
func (e *vnetEndpoint) finishRxTunnel(h *virtioNetHdr, p []byte, tnl uint8) rxDrop {
	inner := h.gsoType &^ (virtioNetHdrGSOECN | virtioNetHdrGSOUDPTunnel)
	switch {
	case !e.tnl, tnl == virtioNetHdrGSOUDPTunnel, h.flags&virtioNetHdrFNeedsCsum == 0:
		return rxDropTunnel
	case inner != virtioNetHdrGSOTCPv4 && inner != virtioNetHdrGSOTCPv6:
		// USO (UDP_L4) is not negotiated, UFO never rides a tunnel.
		return rxDropGSO
	}
	outerL3, innerL3 := header.IPv4MinimumSize, header.IPv4MinimumSize
	if tnl == virtioNetHdrGSOUDPTunnelIPv6 {
		outerL3 = header.IPv6MinimumSize
	}
	if inner == virtioNetHdrGSOTCPv6 {
		innerL3 = header.IPv6MinimumSize
	}
	outerTh, innerNh, innerTh := int(h.outerTh), int(h.innerNh), int(h.csumStart)
	if outerTh < outerL3 || innerNh < outerTh+header.UDPMinimumSize || innerTh < innerNh+innerL3 ||
		h.csumOffset != 16 || innerTh+header.TCPMinimumSize > len(p) {
		return rxDropTunnel
	}
	// The inner TCP checksum: the field's pseudo-header sum plus the
	// segment's bytes without it.
	field := innerTh + 16
	pseudo := binary.BigEndian.Uint16(p[field:])
	p[field], p[field+1] = 0, 0
	sum := checksum.Checksum(p[innerTh:], 0)
	c := ^checksum.Combine(sum, pseudo)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(p[field:], c)
	if h.flags&virtioNetHdrFUDPTunnelCsum != 0 {
		// The outer UDP checksum: its header up to the inner TCP
		// header (with the pseudo-header sum in its field) plus the
		// inner TCP bytes as finished above.
		var osum uint16
		if (innerTh-outerTh)%2 == 0 {
			osum = checksum.Combine(checksum.Checksum(p[outerTh:innerTh], 0), checksum.Combine(sum, c))
		} else {
			osum = checksum.Checksum(p[outerTh:], 0) // never from the kernel: an odd split
		}
		oc := ^osum
		if oc == 0 {
			oc = 0xffff
		}
		binary.BigEndian.PutUint16(p[outerTh+6:], oc)
	}
	e.rxPartial.Add(1)
	e.rxGSO.Add(1)
	e.rxTnl.Add(1)
	return rxOK
}

// WritePackets implements stack.LinkEndpoint.WritePackets.
func (e *vnetEndpoint) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		if err := e.writePacket(pkt); err != nil {
			if n == 0 {
				return 0, err
			}
			break
		}
		n++
	}
	return n, nil
}

// zeroVnetHdr is the header of a packet without offloads (its first
// hdrSize bytes).
var zeroVnetHdr [virtioNetHdrTnlSize]byte

func (e *vnetEndpoint) writePacket(pkt *gstack.PacketBuffer) tcpip.Error {
	if e.innerPort != 0 {
		if done, err := e.writeTunnel(pkt); done {
			return err
		}
	}
	e.txPlain.Add(1)
	iovs := append([][]byte{zeroVnetHdr[:e.hdrSize]}, pkt.AsSlices()...)
	return e.writev(iovs)
}

func (e *vnetEndpoint) writev(iovs [][]byte) tcpip.Error {
	if _, err := unix.Writev(e.fd, iovs); err != nil {
		e.txErr.Add(1)
		if errno, ok := err.(unix.Errno); ok {
			return tcpip.TranslateErrno(errno)
		}
		return &tcpip.ErrClosedForSend{}
	}
	return nil
}

// outer describes an outer IP/UDP header.
type outerHeaders struct {
	v6       bool
	udpOff   int // the outer UDP header's offset (the IP header's length)
	src, dst tcpip.Address
}

// parseOuter finds an outer IPv4/IPv6 UDP header to innerPort in b.
func (e *vnetEndpoint) parseOuter(b []byte) (outerHeaders, bool) {
	var o outerHeaders
	if len(b) < header.IPv4MinimumSize {
		return o, false
	}
	switch b[0] >> 4 {
	case 4:
		ip := header.IPv4(b)
		hl := int(ip.HeaderLength())
		if hl < header.IPv4MinimumSize || ip.TransportProtocol() != header.UDPProtocolNumber || ip.More() || ip.FragmentOffset() != 0 {
			return o, false
		}
		o.udpOff, o.src, o.dst = hl, ip.SourceAddress(), ip.DestinationAddress()
	case 6:
		if len(b) < header.IPv6MinimumSize {
			return o, false
		}
		ip := header.IPv6(b)
		if ip.TransportProtocol() != header.UDPProtocolNumber {
			return o, false
		}
		o.v6, o.udpOff, o.src, o.dst = true, header.IPv6MinimumSize, ip.SourceAddress(), ip.DestinationAddress()
	default:
		return o, false
	}
	if len(b) < o.udpOff+header.UDPMinimumSize || header.UDP(b[o.udpOff:]).DestinationPort() != e.innerPort {
		return o, false
	}
	return o, true
}

// inner describes the inner headers of a tunnel datagram, offsets from the
// start of the outer packet.
type innerHeaders struct {
	v6           bool
	proto        tcpip.TransportProtocolNumber
	ipOff, l4Off int
	dataOff      int
	src, dst     tcpip.Address
}

func parseInner(b []byte, ipOff int) (innerHeaders, bool) {
	h := innerHeaders{ipOff: ipOff}
	if len(b) < ipOff+header.IPv4MinimumSize {
		return h, false
	}
	ib := b[ipOff:]
	switch ib[0] >> 4 {
	case 4:
		ip := header.IPv4(ib)
		hl := int(ip.HeaderLength())
		if hl < header.IPv4MinimumSize || len(ib) < hl || ip.More() || ip.FragmentOffset() != 0 ||
			int(ip.TotalLength()) != len(ib) {
			return h, false
		}
		h.proto, h.l4Off = ip.TransportProtocol(), ipOff+hl
		h.src, h.dst = ip.SourceAddress(), ip.DestinationAddress()
	case 6:
		if len(ib) < header.IPv6MinimumSize {
			return h, false
		}
		ip := header.IPv6(ib)
		h.v6, h.proto, h.l4Off = true, ip.TransportProtocol(), ipOff+header.IPv6MinimumSize
		h.src, h.dst = ip.SourceAddress(), ip.DestinationAddress()
		if int(ip.PayloadLength())+header.IPv6MinimumSize != len(ib) {
			return h, false
		}
	default:
		return h, false
	}
	switch h.proto {
	case header.TCPProtocolNumber:
		if len(b) < h.l4Off+header.TCPMinimumSize {
			return h, false
		}
		thl := int(b[h.l4Off+12]>>4) * 4
		if thl < header.TCPMinimumSize || len(b) < h.l4Off+thl {
			return h, false
		}
		h.dataOff = h.l4Off + thl
	case header.UDPProtocolNumber:
		if len(b) < h.l4Off+header.UDPMinimumSize {
			return h, false
		}
		h.dataOff = h.l4Off + header.UDPMinimumSize
	default:
		return h, false
	}
	return h, true
}

// setInnerLengths sets the inner IP header's length (and IPv4 header
// checksum) for the packet p's size and returns the L4 length; p starts at
// the outer header.
func setInnerLengths(p []byte, h *innerHeaders) int {
	l4Len := len(p) - h.l4Off
	if h.v6 {
		binary.BigEndian.PutUint16(p[h.ipOff+4:], uint16(l4Len))
	} else {
		ip := header.IPv4(p[h.ipOff:])
		ip.SetTotalLength(uint16(len(p) - h.ipOff))
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	return l4Len
}

// fixInner sets the inner IP lengths (and IPv4 header checksum) for the
// packet's size and finishes the inner TCP/UDP checksum; p starts at the
// outer header.
func fixInner(p []byte, h *innerHeaders) {
	l4Len := setInnerLengths(p, h)
	l4 := p[h.l4Off:]
	csumOff := 16
	if h.proto == header.UDPProtocolNumber {
		csumOff = 6
		binary.BigEndian.PutUint16(l4[4:], uint16(l4Len))
	}
	l4[csumOff], l4[csumOff+1] = 0, 0
	c := ^checksum.Checksum(l4, header.PseudoHeaderChecksum(h.proto, h.src, h.dst, uint16(l4Len)))
	if c == 0 && h.proto == header.UDPProtocolNumber {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[csumOff:], c)
}

// fixOuter sets the outer lengths for p's size (and the IPv4 header
// checksum). full finishes the outer UDP checksum; !full leaves the
// pseudo-header sum there for the kernel (NEEDS_CSUM). A zero outer
// checksum (the sender's policy, IPv4 or RFC 6935 IPv6) stays zero.
func fixOuter(p []byte, o *outerHeaders, full bool) {
	udpLen := len(p) - o.udpOff
	if o.v6 {
		binary.BigEndian.PutUint16(p[4:], uint16(udpLen))
	} else {
		ip := header.IPv4(p)
		ip.SetTotalLength(uint16(len(p)))
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	u := header.UDP(p[o.udpOff:])
	u.SetLength(uint16(udpLen))
	if u.Checksum() == 0 {
		return
	}
	u.SetChecksum(0)
	sum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, o.src, o.dst, uint16(udpLen))
	if !full {
		u.SetChecksum(sum)
		return
	}
	c := ^checksum.Checksum(p[o.udpOff:], sum)
	if c == 0 {
		c = 0xffff
	}
	u.SetChecksum(c)
}

// writeTunnel writes pkt if it is a tunnel datagram with an inner TCP or
// UDP packet (done); otherwise the caller writes it as it is.
func (e *vnetEndpoint) writeTunnel(pkt *gstack.PacketBuffer) (done bool, err tcpip.Error) {
	var hb [256]byte
	hdr := hb[:copyPrefix(pkt, hb[:])]
	o, ok := e.parseOuter(hdr)
	if !ok {
		return false, nil
	}
	ipOff := o.udpOff + header.UDPMinimumSize + e.innerOffset
	if len(hdr) <= ipOff || (hdr[ipOff]>>4 != 4 && hdr[ipOff]>>4 != 6) {
		return false, nil
	}
	b := pkt.ToView().AsSlice() // a copy we may change
	h, ok := parseInner(b, ipOff)
	if !ok {
		return false, nil
	}
	gso := pkt.GSOOptions
	data := len(b) - h.dataOff
	if h.proto != header.TCPProtocolNumber || gso.Type == gstack.GSONone || gso.MSS == 0 || data <= int(gso.MSS) {
		fixInner(b, &h)
		fixOuter(b, &o, true)
		e.txFinished.Add(1)
		return true, e.writev([][]byte{zeroVnetHdr[:e.hdrSize], b})
	}
	if e.tnlWrites && !o.v6 && gso.MSS > 2*(tnlMinOuterTh4-header.IPv4MinimumSize) {
		return true, e.writeTunnelGSO(b, &o, &h, int(gso.MSS))
	}
	return true, e.writeTrain(b, &o, &h, int(gso.MSS))
}

// writeTrain segments the inner TCP super-packet in b (outer headers o,
// inner h) into MSS-sized inner segments and writes them in UDP GSO trains.
func (e *vnetEndpoint) writeTrain(b []byte, o *outerHeaders, h *innerHeaders, mss int) tcpip.Error {
	prefix := h.dataOff // outer + tunnel + inner headers
	outerLen := o.udpOff + header.UDPMinimumSize
	segPayload := prefix - outerLen + mss // UDP payload of a full segment
	data := b[prefix:]
	group := min(maxTrainSegments, (maxPacket-outerLen)/segPayload)
	tcp := header.TCP(b[h.l4Off:])
	seq, flags := tcp.SequenceNumber(), tcp.Flags()
	var id uint16
	if !h.v6 {
		id = header.IPv4(b[h.ipOff:]).ID()
	}
	// A zero outer checksum cannot ride a NEEDS_CSUM train; without USO
	// the kernel cannot take a train at all.
	single := header.UDP(b[o.udpOff:]).Checksum() == 0 || !e.trains
	seg := make([]byte, prefix+mss)
	i := 0
	for off := 0; off < len(data); {
		n := min(group, (len(data)-off+mss-1)/mss)
		train := make([]byte, 0, outerLen+n*segPayload)
		train = append(train, b[:outerLen]...)
		for range n {
			chunk := min(mss, len(data)-off)
			s := seg[:prefix+chunk]
			copy(s, b[:prefix])
			copy(s[prefix:], data[off:off+chunk])
			if !h.v6 {
				header.IPv4(s[h.ipOff:]).SetID(id + uint16(i))
			}
			st := header.TCP(s[h.l4Off:])
			st.SetSequenceNumber(seq + uint32(off))
			f := flags
			if off+chunk < len(data) {
				f &^= header.TCPFlagFin | header.TCPFlagPsh
			}
			if i > 0 {
				f &^= header.TCPFlagCwr
			}
			st.SetFlags(uint8(f))
			fixInner(s, h)
			if single || n == 1 {
				// One datagram at a time.
				fixOuter(s, o, true)
				if err := e.writev([][]byte{zeroVnetHdr[:e.hdrSize], s}); err != nil {
					return err
				}
				e.txSegs.Add(1)
			} else {
				train = append(train, s[outerLen:]...)
			}
			off += chunk
			i++
		}
		if single || n == 1 {
			continue
		}
		fixOuter(train, o, false)
		vh := virtioNetHdr{
			flags:      virtioNetHdrFNeedsCsum,
			gsoType:    virtioNetHdrGSOUDPL4,
			hdrLen:     uint16(outerLen),
			gsoSize:    uint16(segPayload),
			csumStart:  uint16(o.udpOff),
			csumOffset: 6,
		}
		var vb [virtioNetHdrTnlSize]byte
		vh.marshal(vb[:e.hdrSize])
		if err := e.writev([][]byte{vb[:e.hdrSize], train}); err != nil {
			return err
		}
		e.txTrains.Add(1)
		e.txSegs.Add(uint64(n))
	}
	return nil
}

// writeTunnelGSO writes the inner TCP super-packet in b (outer headers o,
// inner h) whole, as one UDP-tunnel GSO packet (Linux 6.17+): the kernel
// takes it as one skb (SKB_GSO_UDP_TUNNEL[_CSUM] over SKB_GSO_TCPV4/6),
// which its VXLAN socket decapsulates whole when the packet is for this
// host, and segments only if it forwards it.
//
// The kernel's rules (virtio_net_hdr_tnl_to_skb): NEEDS_CSUM with
// csum_start at the inner TCP header and csum_offset 16, the TCP field
// holding the pseudo-header sum of the whole super-packet (the kernel's
// TSO fixes it per segment); outer_th_offset and inner_nh_offset give the
// outer UDP and inner IP headers; VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM when
// the outer UDP checksum is to be computed per segment, its field then
// holding the outer pseudo-header sum; a zero outer checksum (no checksum
// over IPv4, RFC 6935 over IPv6) stays zero, without the flag.
//
// outer_th_offset must be at least 14 + the outer IP header's minimum:
// the kernel counts an Ethernet header even on an L3 TUN, so a plain outer
// header (20 bytes) is refused with EINVAL. The outer IPv4 header is
// therefore padded for the write with NOP options up to 36 bytes, legal
// and ignored by the receiver; gso_size (the inner MSS) shrinks by as
// much, so that segments the kernel would cut to forward the packet still
// fit the MTU the stack planned for. Only with Config.TunnelGSOWrites (the
// options reach the wire if the host forwards the packet), and only over
// IPv4: an IPv6 underlay would need a 16-byte padding option header, which
// has no standard form (Linux refuses runs of padding over 7 bytes).
func (e *vnetEndpoint) writeTunnelGSO(b []byte, o *outerHeaders, h *innerHeaders, mss int) tcpip.Error {
	// The padded outer IPv4 header (the caller never sends IPv6 here).
	var ob [64]byte
	hl := max(o.udpOff, (tnlMinOuterTh4+3)&^3)
	oh := ob[:hl]
	copy(oh, b[:o.udpOff])
	for i := o.udpOff; i < hl; i++ {
		oh[i] = 1 // NOP
	}
	oh[0] = 0x40 | uint8(hl/4)
	pad := len(oh) - o.udpOff
	udp := b[o.udpOff:]
	udpLen := len(udp)
	ip := header.IPv4(oh)
	ip.SetTotalLength(uint16(len(oh) + udpLen))
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum())
	u := header.UDP(udp)
	u.SetLength(uint16(udpLen))
	flags := uint8(virtioNetHdrFNeedsCsum)
	if u.Checksum() != 0 {
		u.SetChecksum(header.PseudoHeaderChecksum(header.UDPProtocolNumber, o.src, o.dst, uint16(udpLen)))
		flags |= virtioNetHdrFUDPTunnelCsum
	}
	// The inner IP lengths and the TCP pseudo-header sum.
	l4Len := setInnerLengths(b, h)
	gsoType := uint8(virtioNetHdrGSOTCPv4)
	if h.v6 {
		gsoType = virtioNetHdrGSOTCPv6
	}
	binary.BigEndian.PutUint16(b[h.l4Off+16:], header.PseudoHeaderChecksum(header.TCPProtocolNumber, h.src, h.dst, uint16(l4Len)))
	gsoType |= virtioNetHdrGSOUDPTunnelIPv4
	if header.TCP(b[h.l4Off:]).Flags()&header.TCPFlagCwr != 0 {
		// As the kernel's own TSO marks it (SKB_GSO_TCP_ECN): CWR on
		// the first segment only.
		gsoType |= virtioNetHdrGSOECN
	}
	vh := virtioNetHdr{
		flags:      flags,
		gsoType:    gsoType,
		hdrLen:     uint16(pad + h.dataOff),
		gsoSize:    uint16(mss - pad),
		csumStart:  uint16(pad + h.l4Off),
		csumOffset: 16,
		outerTh:    uint16(pad + o.udpOff),
		innerNh:    uint16(pad + h.ipOff),
	}
	var vb [virtioNetHdrTnlSize]byte
	vh.marshal(vb[:])
	if err := e.writev([][]byte{vb[:], oh, udp}); err != nil {
		return err
	}
	e.txTnl.Add(1)
	return nil
}

// copyPrefix copies the first bytes of pkt into b.
func copyPrefix(pkt *gstack.PacketBuffer, b []byte) int {
	n := 0
	for _, s := range pkt.AsSlices() {
		n += copy(b[n:], s)
		if n == len(b) {
			break
		}
	}
	return n
}
