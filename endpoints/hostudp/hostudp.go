package hostudp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Defaults applied to zero-valued Config fields.
const (
	// DefaultMTU is the NIC MTU: the largest IP packet, so that the stack's
	// outer IP layer never fragments.
	DefaultMTU = 65535
	// DefaultBatch is how many datagrams one sendmmsg or recvmmsg moves.
	DefaultBatch = 64
	// DefaultQueueLen bounds the transmit queue, in packets.
	DefaultQueueLen = 8192
	// DefaultSocketBuffer is the SO_SNDBUF and SO_RCVBUF asked for (the
	// kernel caps it at net.core.[rw]mem_max unless privileged).
	DefaultSocketBuffer = 4 << 20
)

// maxDatagram is the largest UDP payload a socket can receive (a GRO
// datagram or a 64 KiB datagram from a peer with GSO/TSO).
const maxDatagram = 1<<16 - 1

// minMTU is the smallest MTU an IPv4 host must accept (RFC 791).
const minMTU = 68

var (
	// ErrInvalidConfig is wrapped by New's errors for a Config it cannot
	// use; the message names the field.
	ErrInvalidConfig = errors.New("hostudp: invalid config")
	// ErrUnsupported is returned by New on platforms without an
	// implementation.
	ErrUnsupported = errors.New("hostudp: not supported on this platform")
)

// Config configures an Endpoint.
type Config struct {
	// Addrs are the stack's own underlay addresses, at most one IPv4 and
	// one IPv6 address: the address the NIC is given with AddAddress, the
	// destination of every rebuilt datagram. Each family listed gets host
	// sockets. Required.
	Addrs []netip.Addr
	// Bind are the host addresses to bind, at most one per family of
	// Addrs. A family without an entry binds its Addrs address; an
	// unspecified address (0.0.0.0, ::) binds all host addresses of the
	// family.
	Bind []netip.Addr
	// Ports are the UDP ports to serve (the tunnel ports, such as 4789):
	// one host socket per port and family. Required; no duplicates, no 0.
	Ports []uint16
	// MTU is the NIC's MTU (0 = DefaultMTU).
	MTU uint32
	// Batch is the number of datagrams per sendmmsg/recvmmsg (0 =
	// DefaultBatch, at most 1024).
	Batch int
	// QueueLen bounds the transmit queue in packets (0 = DefaultQueueLen);
	// writes to a full queue are dropped and counted.
	QueueLen int
	// SocketBuffer is the SO_SNDBUF/SO_RCVBUF size (0 =
	// DefaultSocketBuffer; negative leaves the kernel's default).
	SocketBuffer int
	// NoGSO and NoGRO turn UDP GSO on transmit and UDP GRO on receive off.
	NoGSO, NoGRO bool
	// TrustHostChecksum skips computing UDP checksums of rebuilt
	// datagrams (see the package doc).
	TrustHostChecksum bool
	// InnerOffset, when non-zero, turns on the inner-offload path: the
	// number of bytes between the outer UDP header and the inner IP header
	// (22 for VXLAN: its 8-byte header and the inner Ethernet header). The
	// endpoint then advertises GSO, so that a tunnel device with GSO and
	// ChecksumOffload (vxlan.Config.GSO) hands it inner TCP segments of up
	// to 64 KiB with inner checksums unfinished; it finishes the inner
	// TCP/UDP checksums of every packet and cuts GSO packets into
	// MSS-sized inner segments sent as UDP GSO trains (the kernel's
	// skb_udp_tunnel_segment). Every outer packet must then have its inner
	// IP header at that offset: one tunnel protocol and layout per
	// endpoint. Inner IP fragments are sent as they are (their checksums
	// cannot be finished here). Without it, do not give the tunnel device
	// GSO or checksum offload: its 64 KiB datagrams would reach the host
	// whole (this NIC's MTU lets them through) and be refused, and its
	// inner checksums would stay unfinished.
	InnerOffset int
	// InnerEthernet says the inner frame is Ethernet (VXLAN, Geneve's L2
	// devices): the two bytes before InnerOffset are its Ethertype, and
	// only IPv4 and IPv6 frames are inspected on receive (checksums
	// verified, TCP runs merged); the rest (ARP, VLAN-tagged frames) pass
	// as they came. Without it every inner packet is taken for IP by its
	// version nibble, as for an L3 tunnel. Requires InnerOffset >= 14.
	InnerEthernet bool
	// Aliases give remote peers a different address in the stack than on
	// the host: datagrams the stack sends to Alias.Stack go to Alias.Host,
	// and datagrams from Alias.Host arrive from Alias.Stack. Use it where
	// the stack cannot use the host's addresses, such as loopback (gVisor
	// drops packets from or to 127.0.0.0/8 and ::1 on a non-loopback NIC,
	// so every loopback peer, a plain sender on the host included, needs
	// an alias there). Each address may appear once per side.
	Aliases []Alias
}

// Alias pairs a remote peer's address in the stack with its address on
// the host; both of the same family.
type Alias struct {
	Stack, Host netip.Addr
}

// toHost returns the host address of a destination the stack sent to.
func (c *config) toHost(a netip.Addr) netip.Addr {
	for _, al := range c.Aliases {
		if al.Stack == a {
			return al.Host
		}
	}
	return a
}

// toStack returns the stack's address for a host address.
func (c *config) toStack(a netip.Addr) netip.Addr {
	for _, al := range c.Aliases {
		if al.Host == a {
			return al.Stack
		}
	}
	return a
}

// family is one address family's settings, validated.
type family struct {
	addr netip.Addr // the stack's address
	bind netip.Addr // the host address to bind
}

// config is a validated Config.
type config struct {
	Config
	v4, v6 *family
}

func (c Config) validate() (config, error) {
	invalid := func(format string, args ...any) (config, error) {
		return config{}, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	out := config{Config: c}
	out.Addrs = slices.Clone(c.Addrs)
	out.Bind = slices.Clone(c.Bind)
	out.Ports = slices.Clone(c.Ports)
	if len(c.Addrs) == 0 {
		return invalid("Addrs is empty: the stack needs its own address")
	}
	for _, a := range c.Addrs {
		switch {
		case !a.IsValid() || a.IsUnspecified() || a.IsMulticast():
			return invalid("Addrs: %v is not a unicast address", a)
		case a.Zone() != "":
			return invalid("Addrs: %v has a zone", a)
		case a.Is4() || a.Is4In6():
			if out.v4 != nil {
				return invalid("Addrs: two IPv4 addresses (%v, %v)", out.v4.addr, a)
			}
			out.v4 = &family{addr: a.Unmap(), bind: a.Unmap()}
		default:
			if out.v6 != nil {
				return invalid("Addrs: two IPv6 addresses (%v, %v)", out.v6.addr, a)
			}
			out.v6 = &family{addr: a, bind: a}
		}
	}
	seen4, seen6 := false, false
	for _, b := range c.Bind {
		switch {
		case !b.IsValid():
			return invalid("Bind: invalid address")
		case b.Is4() || b.Is4In6():
			if out.v4 == nil || seen4 {
				return invalid("Bind: %v: no IPv4 address in Addrs, or two IPv4 bind addresses", b)
			}
			out.v4.bind, seen4 = b.Unmap(), true
		default:
			if out.v6 == nil || seen6 {
				return invalid("Bind: %v: no IPv6 address in Addrs, or two IPv6 bind addresses", b)
			}
			out.v6.bind, seen6 = b, true
		}
	}
	out.Aliases = nil
	for i, al := range c.Aliases {
		st, h := al.Stack.Unmap(), al.Host.Unmap()
		switch {
		case !st.IsValid() || !h.IsValid() || st.IsUnspecified() || h.IsUnspecified():
			return invalid("Aliases[%d]: %v = %v: both addresses must be valid and specified", i, al.Stack, al.Host)
		case st.Is4() != h.Is4():
			return invalid("Aliases[%d]: %v = %v: addresses of different families", i, al.Stack, al.Host)
		}
		for _, o := range out.Aliases {
			if o.Stack == st || o.Host == h {
				return invalid("Aliases[%d]: %v = %v: address aliased twice", i, al.Stack, al.Host)
			}
		}
		out.Aliases = append(out.Aliases, Alias{Stack: st, Host: h})
	}
	if c.InnerOffset < 0 || c.InnerOffset > 128 {
		return invalid("InnerOffset %d is outside 0..128", c.InnerOffset)
	}
	if c.InnerEthernet && c.InnerOffset < header.EthernetMinimumSize {
		return invalid("InnerEthernet with InnerOffset %d: the Ethernet header needs 14 bytes", c.InnerOffset)
	}
	if len(c.Ports) == 0 {
		return invalid("Ports is empty: the endpoint serves tunnel ports")
	}
	for i, p := range c.Ports {
		if p == 0 {
			return invalid("Ports: port 0")
		}
		if slices.Contains(c.Ports[:i], p) {
			return invalid("Ports: %d twice", p)
		}
	}
	switch {
	case c.MTU == 0:
		out.MTU = DefaultMTU
	case c.MTU < minMTU || c.MTU > DefaultMTU:
		return invalid("MTU %d is outside %d..%d", c.MTU, minMTU, DefaultMTU)
	}
	switch {
	case c.Batch == 0:
		out.Batch = DefaultBatch
	case c.Batch < 0 || c.Batch > 1024:
		return invalid("Batch %d is outside 1..1024", c.Batch)
	}
	switch {
	case c.QueueLen == 0:
		out.QueueLen = DefaultQueueLen
	case c.QueueLen < 0:
		return invalid("QueueLen %d is negative", c.QueueLen)
	}
	if c.SocketBuffer == 0 {
		out.SocketBuffer = DefaultSocketBuffer
	}
	return out, nil
}

// Stats are an endpoint's counters, in the spirit of `ip -s link`. Bytes
// count whole IP packets as the stack wrote or received them.
type Stats struct {
	// TxPackets and TxBytes count the packets handed to the host.
	TxPackets, TxBytes uint64
	// RxPackets and RxBytes count the packets delivered to the stack,
	// synthesized ICMP errors included.
	RxPackets, RxBytes uint64
	// TxSyscalls and RxSyscalls count sendmmsg and recvmmsg calls, and
	// TxGSO and RxGRO the datagrams sent or received coalesced (one count
	// per coalesced datagram), to show how well batching works.
	TxSyscalls, RxSyscalls uint64
	TxGSO, RxGRO           uint64
	// RxMerged counts the packets delivered that merge several received
	// datagrams of one inner TCP flow, and RxCoalesced the datagrams they
	// hold (the inner-offload path's receive side, Config.InnerOffset).
	RxMerged, RxCoalesced uint64
	// RxChecksumCompleted counts received datagrams whose inner TCP/UDP
	// checksum field held only the pseudo-header sum, left for an offload
	// by a sender on this host, and was completed (the inner-offload
	// path; see the package doc, "Inner checksums").
	RxChecksumCompleted uint64
	// ICMPErrors counts the ICMP errors synthesized into the stack, from
	// the error queue or a refused send.
	ICMPErrors uint64
	// Dropped counts the packets dropped, by reason.
	Dropped Drops
}

// Drops counts dropped packets by reason.
type Drops struct {
	// NotUDP counts written packets that are not IPv4/IPv6 + UDP (ICMP the
	// stack sends, for example).
	NotUDP uint64
	// Malformed counts written packets whose IP or UDP header is invalid.
	Malformed uint64
	// NoSocket counts written packets neither of whose ports, or whose
	// family, has a host socket.
	NoSocket uint64
	// QueueFull counts writes to a full transmit queue.
	QueueFull uint64
	// TooBig counts datagrams the host refused for its path MTU (EMSGSIZE).
	TooBig uint64
	// SendError counts datagrams the host refused for another reason.
	SendError uint64
	// Truncated counts received datagrams larger than the receive buffer
	// (MSG_TRUNC).
	Truncated uint64
	// BadSource counts received datagrams whose source address could not
	// be used (wrong family, unspecified).
	BadSource uint64
	// NotAttached counts received datagrams and writes while no stack was
	// attached or after Close.
	NotAttached uint64
	// InnerChecksum counts received datagrams whose inner IPv4 header,
	// TCP or UDP checksum does not verify (the inner-offload path, where
	// the endpoint verifies them for the inner stack).
	InnerChecksum uint64
}

// Each calls f with every drop reason's name (snake case, as in metrics)
// and count, in a fixed order.
func (d Drops) Each(f func(reason string, n uint64)) {
	for _, r := range []struct {
		name string
		n    uint64
	}{
		{"not_udp", d.NotUDP}, {"malformed", d.Malformed}, {"no_socket", d.NoSocket}, {"queue_full", d.QueueFull},
		{"too_big", d.TooBig}, {"send_error", d.SendError}, {"truncated", d.Truncated}, {"bad_source", d.BadSource},
		{"not_attached", d.NotAttached}, {"inner_checksum", d.InnerChecksum},
	} {
		f(r.name, r.n)
	}
}

// String formats the snapshot on one line: drops only where non-zero.
func (s Stats) String() string {
	out := fmt.Sprintf("rx %d pkts %d bytes (%d syscalls, %d gro, %d merged from %d, %d checksums completed), tx %d pkts %d bytes (%d syscalls, %d gso), icmp %d",
		s.RxPackets, s.RxBytes, s.RxSyscalls, s.RxGRO, s.RxMerged, s.RxCoalesced, s.RxChecksumCompleted, s.TxPackets, s.TxBytes, s.TxSyscalls, s.TxGSO, s.ICMPErrors)
	s.Dropped.Each(func(reason string, n uint64) {
		if n != 0 {
			out += fmt.Sprintf(", drop %s=%d", reason, n)
		}
	})
	return out
}

// counters holds Stats as atomics.
type counters struct {
	txPackets, txBytes, rxPackets, rxBytes atomic.Uint64
	txSyscalls, rxSyscalls, txGSO, rxGRO   atomic.Uint64
	icmpErrors                             atomic.Uint64
	rxMerged, rxCoalesced, rxCompleted     atomic.Uint64

	notUDP, malformed, noSocket, queueFull, tooBig, sendError, truncated, badSource, notAttached, innerChecksum atomic.Uint64
}

// Stats returns a snapshot of e's counters; each counter is read
// atomically, the snapshot as a whole is not.
func (e *Endpoint) Stats() Stats {
	c := &e.stats
	return Stats{
		TxPackets: c.txPackets.Load(), TxBytes: c.txBytes.Load(),
		RxPackets: c.rxPackets.Load(), RxBytes: c.rxBytes.Load(),
		TxSyscalls: c.txSyscalls.Load(), RxSyscalls: c.rxSyscalls.Load(),
		TxGSO: c.txGSO.Load(), RxGRO: c.rxGRO.Load(),
		RxMerged: c.rxMerged.Load(), RxCoalesced: c.rxCoalesced.Load(), RxChecksumCompleted: c.rxCompleted.Load(),
		ICMPErrors: c.icmpErrors.Load(),
		Dropped: Drops{
			NotUDP: c.notUDP.Load(), Malformed: c.malformed.Load(), NoSocket: c.noSocket.Load(),
			QueueFull: c.queueFull.Load(), TooBig: c.tooBig.Load(), SendError: c.sendError.Load(),
			Truncated: c.truncated.Load(), BadSource: c.badSource.Load(), NotAttached: c.notAttached.Load(),
			InnerChecksum: c.innerChecksum.Load(),
		},
	}
}

var (
	_ stack.LinkEndpoint = (*Endpoint)(nil)
	_ stack.GSOEndpoint  = (*Endpoint)(nil)
)

// GSOMaxSize implements stack.GSOEndpoint.GSOMaxSize: an IP packet's
// 64 KiB with the inner-offload path (Config.InnerOffset), else 0.
func (e *Endpoint) GSOMaxSize() uint32 {
	if e.cfg.InnerOffset > 0 {
		return DefaultMTU
	}
	return 0
}

// SupportedGSO implements stack.GSOEndpoint.SupportedGSO: host GSO with
// the inner-offload path, which segments in the endpoint.
func (e *Endpoint) SupportedGSO() stack.SupportedGSO {
	if e.cfg.InnerOffset > 0 {
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}

// Endpoint is a link endpoint whose packets travel through host UDP
// sockets. It implements stack.LinkEndpoint; all its methods are safe for
// concurrent use.
type Endpoint struct {
	cfg config
	mtu atomic.Uint32

	stats counters

	// dispatcher is the attached stack (nil when detached).
	dispatcher atomic.Pointer[dispatcherBox]

	mu sync.Mutex
	// +checklocks:mu
	linkAddr tcpip.LinkAddress
	// +checklocks:mu
	onClose func()

	closed  atomic.Bool
	workers sync.WaitGroup

	sys // the platform's sockets and queues
}

type dispatcherBox struct{ d stack.NetworkDispatcher }

// New opens the host sockets of cfg in the calling thread's network
// namespace and starts the receive and transmit goroutines. Attach the
// endpoint to a stack with Stack.AddNIC and give the NIC the address of
// cfg.Addrs; Close it (or remove the NIC) to stop everything.
func New(cfg Config) (*Endpoint, error) {
	c, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	e := &Endpoint{cfg: c}
	e.mtu.Store(c.MTU)
	if err := e.open(); err != nil {
		return nil, err
	}
	return e, nil
}

// LocalAddrs returns the host addresses and ports the sockets are bound
// to, one per socket.
func (e *Endpoint) LocalAddrs() []netip.AddrPort { return e.localAddrs() }

// MTU implements stack.LinkEndpoint.MTU.
func (e *Endpoint) MTU() uint32 { return e.mtu.Load() }

// SetMTU implements stack.LinkEndpoint.SetMTU. Values outside
// 68..65535 are ignored.
func (e *Endpoint) SetMTU(mtu uint32) {
	if mtu >= minMTU && mtu <= DefaultMTU {
		e.mtu.Store(mtu)
	}
}

// MaxHeaderLength implements stack.LinkEndpoint.MaxHeaderLength: zero, there
// is no link header.
func (*Endpoint) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements stack.LinkEndpoint.LinkAddress.
func (e *Endpoint) LinkAddress() tcpip.LinkAddress {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.linkAddr
}

// SetLinkAddress implements stack.LinkEndpoint.SetLinkAddress.
func (e *Endpoint) SetLinkAddress(addr tcpip.LinkAddress) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.linkAddr = addr
}

// Capabilities implements stack.LinkEndpoint.Capabilities: checksum
// offload both ways. The stack's outer UDP checksum is never sent (the
// host kernel computes its own), so the stack need not compute it: for a
// 64 KiB packet of the inner-offload path that is a pass over every byte.
// Received datagrams were verified by the host kernel; gVisor's NIC marks
// a packet verified (PacketBuffer.RXChecksumValidated) from this
// capability alone, overriding what the endpoint set, so without it the
// tunnel socket would verify every rebuilt or merged datagram again.
func (*Endpoint) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityRXChecksumOffload | stack.CapabilityTXChecksumOffload
}

// ARPHardwareType implements stack.LinkEndpoint.ARPHardwareType.
func (*Endpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements stack.LinkEndpoint.AddHeader: no link header.
func (*Endpoint) AddHeader(*stack.PacketBuffer) {}

// ParseHeader implements stack.LinkEndpoint.ParseHeader.
func (*Endpoint) ParseHeader(*stack.PacketBuffer) bool { return true }

// Attach implements stack.LinkEndpoint.Attach. Datagrams received while
// detached are dropped and counted (Drops.NotAttached).
func (e *Endpoint) Attach(d stack.NetworkDispatcher) {
	if d == nil || e.closed.Load() {
		e.dispatcher.Store(nil)
		return
	}
	e.dispatcher.Store(&dispatcherBox{d})
}

// IsAttached implements stack.LinkEndpoint.IsAttached.
func (e *Endpoint) IsAttached() bool { return e.dispatcher.Load() != nil }

// Wait implements stack.LinkEndpoint.Wait: it waits for the endpoint's
// goroutines, which Close stops.
func (e *Endpoint) Wait() { e.workers.Wait() }

// SetOnCloseAction implements stack.LinkEndpoint.SetOnCloseAction.
func (e *Endpoint) SetOnCloseAction(action func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.onClose = action
}

// Close implements stack.LinkEndpoint.Close: it detaches the endpoint,
// closes every host socket (freeing the ports), drops the packets still
// queued and waits for its goroutines. It is idempotent.
func (e *Endpoint) Close() {
	if e.closed.Swap(true) {
		return
	}
	e.dispatcher.Store(nil)
	e.shutdown()
	e.workers.Wait()
	e.mu.Lock()
	action := e.onClose
	e.onClose = nil
	e.mu.Unlock()
	if action != nil {
		// gVisor's action removes the NIC, which calls Close again.
		action()
	}
}

// WritePackets implements stack.LinkWriter.WritePackets. Packets are queued
// (with a reference) for the transmit goroutine; like a NIC, it reports
// every packet as written and counts the ones it drops.
func (e *Endpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	if e.closed.Load() {
		e.stats.notAttached.Add(uint64(pkts.Len()))
		return pkts.Len(), nil
	}
	e.enqueue(pkts.AsSlice())
	return pkts.Len(), nil
}

// deliver injects pkt into the attached stack and releases it.
func (e *Endpoint) deliver(pkt *stack.PacketBuffer, proto tcpip.NetworkProtocolNumber) {
	box := e.dispatcher.Load()
	if box == nil {
		e.stats.notAttached.Add(1)
		pkt.DecRef()
		return
	}
	e.stats.rxPackets.Add(1)
	e.stats.rxBytes.Add(uint64(pkt.Size()))
	box.d.DeliverNetworkPacket(proto, pkt)
	pkt.DecRef()
}

// familyOf returns the validated family settings for an address family,
// or nil.
func (c *config) familyOf(is6 bool) *family {
	if is6 {
		return c.v6
	}
	return c.v4
}
