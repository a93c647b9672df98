//go:build linux

package hostudp

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// sys is the Linux state of an Endpoint: its host sockets and the
// transmit queue.
type sys struct {
	socks []*hostSocket

	txMu sync.Mutex
	// +checklocks:txMu
	txPending []*stack.PacketBuffer
	// txDone is set when the transmit goroutine has ended: later writes
	// are dropped, not queued.
	// +checklocks:txMu
	txDone bool
	txWake chan struct{}
	txStop chan struct{}
}

// hostSocket is one host UDP socket: one port of one family.
type hostSocket struct {
	e     *Endpoint
	conn  *net.UDPConn
	rc    syscall.RawConn
	is6   bool
	port  uint16
	bound netip.AddrPort
	// local is the stack's side of every datagram of this socket: the
	// stack's address and the socket's port.
	local netip.AddrPort
	gso   atomic.Bool
	gro   bool

	// errMu serializes reading the error queue, which both the receive
	// goroutine (ICMP errors) and the transmit goroutine (after EMSGSIZE)
	// do.
	errMu sync.Mutex
	// localMTU holds the path MTUs of the host's own EMSGSIZE errors
	// (SO_EE_ORIGIN_LOCAL) by destination, until the transmit goroutine
	// that provoked them takes them.
	// +checklocks:errMu
	localMTU map[netip.Addr]uint32
}

func (e *Endpoint) open() error {
	e.txWake = make(chan struct{}, 1)
	e.txStop = make(chan struct{})
	for _, f := range []*family{e.cfg.v4, e.cfg.v6} {
		if f == nil {
			continue
		}
		for _, port := range e.cfg.Ports {
			s, err := e.openSocket(f, port)
			if err != nil {
				for _, s := range e.socks {
					s.conn.Close()
				}
				e.socks = nil
				return err
			}
			e.socks = append(e.socks, s)
		}
	}
	for _, s := range e.socks {
		e.workers.Add(1)
		go s.receive()
	}
	e.workers.Add(1)
	go e.transmitLoop()
	return nil
}

func (e *Endpoint) openSocket(f *family, port uint16) (*hostSocket, error) {
	is6 := f.addr.Is6()
	network := "udp4"
	if is6 {
		network = "udp6"
	}
	bind := netip.AddrPortFrom(f.bind, port)
	var serr error
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		err := c.Control(func(fd uintptr) {
			serr = setSocketOptions(int(fd), is6, e.cfg.SocketBuffer)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), network, bind.String())
	if err != nil {
		return nil, fmt.Errorf("hostudp: listen %s %v: %w", network, bind, err)
	}
	conn := pc.(*net.UDPConn)
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("hostudp: %v: %w", bind, err)
	}
	s := &hostSocket{e: e, conn: conn, rc: rc, is6: is6, port: port, local: netip.AddrPortFrom(f.addr, port)}
	if a, ok := conn.LocalAddr().(*net.UDPAddr); ok {
		s.bound = a.AddrPort()
	}
	rc.Control(func(fd uintptr) {
		// UDP GSO: the option is readable wherever sends may carry it
		// (Linux 4.18).
		if !e.cfg.NoGSO {
			if _, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT); err == nil {
				s.gso.Store(true)
			}
		}
		if !e.cfg.NoGRO {
			s.gro = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
		}
	})
	return s, nil
}

// setSocketOptions sets, before bind: buffer sizes (best effort), error
// queue reporting and "never fragment" path MTU discovery.
func setSocketOptions(fd int, is6 bool, bufSize int) error {
	if bufSize > 0 {
		// The FORCE variants pass net.core.[rw]mem_max with
		// CAP_NET_ADMIN; unprivileged, the plain ones are capped there.
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bufSize) != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, bufSize)
		}
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, bufSize) != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, bufSize)
		}
	}
	if is6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1); err != nil {
			return fmt.Errorf("IPV6_RECVERR: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO); err != nil {
			return fmt.Errorf("IPV6_MTU_DISCOVER: %w", err)
		}
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVERR, 1); err != nil {
		return fmt.Errorf("IP_RECVERR: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO); err != nil {
		return fmt.Errorf("IP_MTU_DISCOVER: %w", err)
	}
	return nil
}

func (e *Endpoint) localAddrs() []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(e.socks))
	for _, s := range e.socks {
		out = append(out, s.bound)
	}
	return out
}

// shutdown closes the sockets, which ends the receive goroutines, and
// stops the transmit goroutine.
func (e *Endpoint) shutdown() {
	for _, s := range e.socks {
		s.conn.Close()
	}
	close(e.txStop)
}

// mmsghdr is struct mmsghdr.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

func recvmmsg(fd uintptr, hs []mmsghdr, flags int) (int, syscall.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&hs[0])), uintptr(len(hs)), uintptr(flags), 0, 0)
	return int(n), errno
}

func sendmmsg(fd uintptr, hs []mmsghdr, flags int) (int, syscall.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&hs[0])), uintptr(len(hs)), uintptr(flags), 0, 0)
	return int(n), errno
}

// rxControlLen is room for a UDP_GRO control message.
const rxControlLen = 64

// receive is the receive goroutine of s: recvmmsg in batches until the
// socket closes, each datagram (each GRO segment) rebuilt and delivered.
func (s *hostSocket) receive() {
	e := s.e
	defer e.workers.Done()
	batch := e.cfg.Batch
	bufs := make([]byte, batch*maxDatagram)
	names := make([]unix.RawSockaddrInet6, batch)
	ctrls := make([]byte, batch*rxControlLen)
	iovs := make([]unix.Iovec, batch)
	hs := make([]mmsghdr, batch)
	for i := range hs {
		iovs[i].Base = &bufs[i*maxDatagram]
		iovs[i].SetLen(maxDatagram)
		hs[i].hdr.Iov = &iovs[i]
		hs[i].hdr.Iovlen = 1
		hs[i].hdr.Name = (*byte)(unsafe.Pointer(&names[i]))
		hs[i].hdr.Control = &ctrls[i*rxControlLen]
	}
	var (
		n     int
		errno syscall.Errno
		// co merges inner TCP segments (the inner-offload path only).
		co *coalescer
	)
	if e.cfg.InnerOffset > 0 {
		co = newCoalescer(e.cfg.InnerOffset, e.cfg.InnerEthernet, !e.cfg.TrustHostChecksum, e.deliver, &e.stats)
	}
	// Made once: a closure per call would allocate.
	read := func(fd uintptr) bool {
		for i := range hs {
			hs[i].hdr.Namelen = unix.SizeofSockaddrInet6
			hs[i].hdr.SetControllen(rxControlLen)
			hs[i].hdr.Flags = 0
			hs[i].len = 0
		}
		n, errno = recvmmsg(fd, hs, unix.MSG_DONTWAIT)
		if errno == unix.EAGAIN {
			// Woken with nothing to read: an error queued (EPOLLERR).
			s.drainErrors(fd)
			return false
		}
		return true
	}
	for {
		err := s.rc.Read(read)
		if err != nil {
			return // closed
		}
		if errno != 0 {
			// A pending socket error (ECONNREFUSED, EMSGSIZE, ...) set
			// by an ICMP error: the details are in the error queue.
			s.rc.Read(func(fd uintptr) bool { s.drainErrors(fd); return true })
			continue
		}
		e.stats.rxSyscalls.Add(1)
		for i := range n {
			h := &hs[i]
			size := int(h.len)
			if h.hdr.Flags&unix.MSG_TRUNC != 0 {
				e.stats.truncated.Add(1)
				continue
			}
			src, ok := sockaddrAddrPort(&names[i], s.is6)
			if !ok {
				e.stats.badSource.Add(1)
				continue
			}
			if len(e.cfg.Aliases) > 0 {
				src = netip.AddrPortFrom(e.cfg.toStack(src.Addr()), src.Port())
			}
			data := bufs[i*maxDatagram : i*maxDatagram+size]
			seg := size
			if s.gro {
				if g := groSize(ctrls[i*rxControlLen : i*rxControlLen+int(h.hdr.Controllen)]); g > 0 && g < size {
					seg = g
					e.stats.rxGRO.Add(1)
				}
			}
			if size == 0 {
				co.flush()
				e.deliver(newInbound(src, s.local, nil, !e.cfg.TrustHostChecksum))
				continue
			}
			for off := 0; off < size; off += seg {
				if co != nil {
					co.add(src, s.local, data[off:min(off+seg, size)])
					continue
				}
				e.deliver(newInbound(src, s.local, data[off:min(off+seg, size)], !e.cfg.TrustHostChecksum))
			}
		}
		// The read buffers are reused by the next read.
		co.flush()
	}
}

// sockaddrAddrPort decodes a received source address of a socket of the
// given family.
func sockaddrAddrPort(sa *unix.RawSockaddrInet6, is6 bool) (netip.AddrPort, bool) {
	switch sa.Family {
	case unix.AF_INET:
		if is6 {
			return netip.AddrPort{}, false
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		a := netip.AddrFrom4(sa4.Addr)
		return netip.AddrPortFrom(a, ntohs(sa4.Port)), !a.IsUnspecified()
	case unix.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if !is6 || a.Is4In6() || a.IsUnspecified() {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(a, ntohs(sa.Port)), true
	}
	return netip.AddrPort{}, false
}

// ntohs turns a port as the kernel stores it in a sockaddr (network byte
// order in a uint16) into a number.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return binary.BigEndian.Uint16(b[:])
}

func htons(p uint16) uint16 {
	var v uint16
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&v))[:], p)
	return v
}

// cmsgs calls f for each control message in b, without allocating.
func cmsgs(b []byte, f func(level, typ int32, data []byte)) {
	for len(b) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(b) {
			return
		}
		f(h.Level, h.Type, b[unix.CmsgLen(0):l])
		b = b[min(len(b), unix.CmsgSpace(l-unix.CmsgLen(0))):]
	}
}

// groSize returns the segment size of a GRO datagram from its control
// messages, or 0.
func groSize(ctrl []byte) int {
	var g int
	cmsgs(ctrl, func(level, typ int32, data []byte) {
		if level == unix.IPPROTO_UDP && typ == unix.UDP_GRO && len(data) >= 4 {
			g = int(*(*int32)(unsafe.Pointer(&data[0])))
		}
	})
	return g
}

// drainErrors reads s's error queue until it is empty: ICMP errors become
// synthesized ICMP packets for the stack; the host's own EMSGSIZE errors
// leave their path MTU for the transmit goroutine.
func (s *hostSocket) drainErrors(fd uintptr) {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	var (
		payload [maxQuote]byte
		ctrl    [256]byte
		name    unix.RawSockaddrInet6
		iov     unix.Iovec
		msg     unix.Msghdr
	)
	for {
		iov.Base = &payload[0]
		iov.SetLen(len(payload))
		msg = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&name)), Namelen: unix.SizeofSockaddrInet6, Iov: &iov, Iovlen: 1, Control: &ctrl[0]}
		msg.SetControllen(len(ctrl))
		n, _, errno := unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&msg)), unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if errno != 0 {
			return
		}
		var ee *unix.SockExtendedErr
		var offender []byte
		cmsgs(ctrl[:msg.Controllen], func(level, typ int32, data []byte) {
			if (level == unix.IPPROTO_IP && typ == unix.IP_RECVERR) || (level == unix.IPPROTO_IPV6 && typ == unix.IPV6_RECVERR) {
				if len(data) >= sizeofSockExtendedErr {
					ee = (*unix.SockExtendedErr)(unsafe.Pointer(&data[0]))
					offender = data[sizeofSockExtendedErr:]
				}
			}
		})
		if ee == nil {
			continue
		}
		remote, _ := sockaddrAddrPort(&name, s.is6)
		switch ee.Origin {
		case unix.SO_EE_ORIGIN_LOCAL:
			if ee.Errno == uint32(unix.EMSGSIZE) && remote.Addr().IsValid() {
				if s.localMTU == nil || len(s.localMTU) > 64 {
					s.localMTU = map[netip.Addr]uint32{}
				}
				s.localMTU[remote.Addr()] = ee.Info
			}
			continue
		case unix.SO_EE_ORIGIN_ICMP, unix.SO_EE_ORIGIN_ICMP6:
		default:
			continue
		}
		if !remote.IsValid() {
			continue
		}
		from := remote.Addr()
		if len(offender) >= unix.SizeofSockaddrInet4 {
			var sa unix.RawSockaddrInet6
			copy((*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(&sa))[:], offender)
			if a, ok := sockaddrAddrPort(&sa, s.is6); ok {
				from = a.Addr()
			} else if sa.Family == unix.AF_INET || sa.Family == unix.AF_INET6 {
				// sockaddrAddrPort refuses port-less offenders of
				// the other family only; take the address anyway.
				if sa.Family == unix.AF_INET && !s.is6 {
					from = netip.AddrFrom4((*unix.RawSockaddrInet4)(unsafe.Pointer(&sa)).Addr)
				}
			}
		}
		remote = netip.AddrPortFrom(s.e.cfg.toStack(remote.Addr()), remote.Port())
		from = s.e.cfg.toStack(from)
		q := min(int(n), len(payload))
		s.e.injectError(&hostError{
			kind: icmpRaw, typ: ee.Type, code: ee.Code, mtu: ee.Info,
			from: from, local: s.local, remote: remote,
			quoted: payload[:q], length: int(n),
		})
	}
}

// takeLocalMTU returns the path MTU the host reported with its EMSGSIZE
// error for dst, reading the error queue first.
func (s *hostSocket) takeLocalMTU(fd uintptr, dst netip.Addr) uint32 {
	s.drainErrors(fd)
	s.errMu.Lock()
	defer s.errMu.Unlock()
	mtu := s.localMTU[dst]
	delete(s.localMTU, dst)
	return mtu
}

// injectError synthesizes the ICMP error he into the stack.
func (e *Endpoint) injectError(he *hostError) {
	if he.kind == icmpTooBig && he.mtu == 0 {
		return
	}
	e.stats.icmpErrors.Add(1)
	e.deliver(newICMPError(he))
}

// enqueue queues pkts for the transmit goroutine.
func (e *Endpoint) enqueue(pkts []*stack.PacketBuffer) {
	e.txMu.Lock()
	if e.txDone {
		e.txMu.Unlock()
		e.stats.notAttached.Add(uint64(len(pkts)))
		return
	}
	for _, p := range pkts {
		if len(e.txPending) >= e.cfg.QueueLen {
			e.stats.queueFull.Add(1)
			continue
		}
		e.txPending = append(e.txPending, p.IncRef())
	}
	e.txMu.Unlock()
	select {
	case e.txWake <- struct{}{}:
	default:
	}
}

// transmitLoop is the transmit goroutine: it takes everything queued and
// sends it in batches.
func (e *Endpoint) transmitLoop() {
	defer e.workers.Done()
	t := newTxBatch(e.cfg.Batch)
	var spare []*stack.PacketBuffer
	for {
		select {
		case <-e.txWake:
		case <-e.txStop:
			e.txMu.Lock()
			pending := e.txPending
			e.txPending = nil
			e.txDone = true
			e.txMu.Unlock()
			for _, p := range pending {
				e.stats.notAttached.Add(1)
				p.DecRef()
			}
			return
		}
		for {
			e.txMu.Lock()
			pkts := e.txPending
			e.txPending = spare[:0]
			e.txMu.Unlock()
			if len(pkts) == 0 {
				spare = pkts
				break
			}
			e.transmit(t, pkts)
			for i, p := range pkts {
				p.DecRef()
				pkts[i] = nil
			}
			spare = pkts
		}
	}
}

// Limits of one sendmmsg.
const (
	maxIovs        = 1024 // UIO_MAXIOV, per message
	maxGSOSegments = 64   // UDP_MAX_SEGMENTS
	// txIovsPerMsg is the iovecs of a batch per message: the
	// inner-offload path's trains take two or more per datagram (headers,
	// then the payload in place).
	txIovsPerMsg = 2 * maxGSOSegments
	// maxGSOBytes bounds a GSO datagram's payload: an IP packet's 64 KiB
	// less the IPv6 and UDP headers.
	maxGSOBytes = 65535 - 40 - 8
	// txControlLen is room for UDP_SEGMENT, IP_TTL and IP_TOS.
	txControlLen = 3 * 24
)

// txMsg is one datagram (or GSO train) of a sendmmsg.
type txMsg struct {
	first, count int // its packets in txBatch.pkts
	segSize      int // GSO segment size (the first packet's payload)
	bytes        int
	closed       bool // a short last segment ends the train
	// segs is the number of datagrams of an arena message (the
	// inner-offload path), 0 for a message of packets.
	segs int
}

// datagrams returns how many datagrams m carries.
func (m *txMsg) datagrams() int {
	if m.segs > 0 {
		return m.segs
	}
	return m.count
}

// txPkt is a parsed packet of a batch.
type txPkt struct {
	pkt *stack.PacketBuffer
	o   outgoing
}

// txBatch holds the preallocated state of sendmmsg calls.
type txBatch struct {
	hs    []mmsghdr
	names []unix.RawSockaddrInet6
	ctrls []byte
	iovs  []unix.Iovec // never grown past its capacity: hs point into it
	msgs  []txMsg
	pkts  []txPkt
	sock  *hostSocket
	// arena holds the copies of the inner-offload path (allocated on
	// first use).
	arena []byte

	// write is the sendmmsg callback for RawConn.Write, made once so that
	// flush does not allocate a closure; off is its argument, n and errno
	// its results.
	write  func(fd uintptr) bool
	off, n int
	errno  syscall.Errno
}

func newTxBatch(batch int) *txBatch {
	t := &txBatch{
		hs:    make([]mmsghdr, 0, batch),
		names: make([]unix.RawSockaddrInet6, batch),
		ctrls: make([]byte, batch*txControlLen),
		iovs:  make([]unix.Iovec, 0, max(maxIovs, batch*txIovsPerMsg)),
		msgs:  make([]txMsg, 0, batch),
		pkts:  make([]txPkt, 0, batch*maxGSOSegments),
	}
	t.write = func(fd uintptr) bool {
		t.n, t.errno = sendmmsg(fd, t.hs[t.off:], unix.MSG_DONTWAIT)
		return t.errno != unix.EAGAIN
	}
	return t
}

// socketFor returns the socket a datagram leaves from: the one bound to
// its source port, else the one bound to its destination port, else the
// family's first socket (a peer that listens on another port).
func (e *Endpoint) socketFor(o *outgoing) *hostSocket {
	var byDst, first *hostSocket
	for _, s := range e.socks {
		if s.is6 != o.is6 {
			continue
		}
		if s.port == o.srcPort {
			return s
		}
		if s.port == o.dstPort {
			byDst = s
		}
		if first == nil {
			first = s
		}
	}
	if byDst != nil {
		return byDst
	}
	return first
}

// transmit sends pkts.
func (e *Endpoint) transmit(t *txBatch, pkts []*stack.PacketBuffer) {
	for _, pkt := range pkts {
		var o outgoing
		switch parseOutgoing(pkt, &o) {
		case parseNotUDP:
			e.stats.notUDP.Add(1)
			continue
		case parseMalformed:
			e.stats.malformed.Add(1)
			continue
		}
		s := e.socketFor(&o)
		if s == nil {
			e.stats.noSocket.Add(1)
			continue
		}
		if s != t.sock || len(t.pkts) == cap(t.pkts) || cap(t.iovs)-len(t.iovs) < 16 {
			e.flush(t)
			t.sock = s
		}
		if e.cfg.InnerOffset > 0 {
			e.addInner(t, pkt, &o)
			continue
		}
		t.add(pkt, &o)
	}
	e.flush(t)
}

// add appends a packet to the batch, to the last message's GSO train if
// it fits there; the caller made sure the batch has room for one more
// packet's iovecs. When the messages are full, the batch is flushed
// first.
func (t *txBatch) add(pkt *stack.PacketBuffer, o *outgoing) {
	if n := len(t.msgs); n > 0 && t.sock.gso.Load() {
		m := &t.msgs[n-1]
		prev := &t.pkts[m.first].o
		if !m.closed && o.payloadLen > 0 && o.payloadLen <= m.segSize && m.count < maxGSOSegments &&
			m.bytes+o.payloadLen <= maxGSOBytes && prev.dst == o.dst && prev.dstPort == o.dstPort &&
			prev.tos == o.tos && prev.ttl == o.ttl && len(t.iovs)-int(iovIndex(t, n-1)) <= maxIovs-16 {
			t.pkts = append(t.pkts, txPkt{pkt, *o})
			m.count++
			m.bytes += o.payloadLen
			m.closed = o.payloadLen < m.segSize
			t.appendIovecs(pkt, o)
			t.hs[n-1].hdr.Iovlen = uint64(len(t.iovs)) - iovIndex(t, n-1)
			return
		}
	}
	if len(t.msgs) == cap(t.msgs) {
		t.sock.e.flush(t)
	}
	t.pkts = append(t.pkts, txPkt{pkt, *o})
	t.msgs = append(t.msgs, txMsg{first: len(t.pkts) - 1, count: 1, segSize: o.payloadLen, bytes: o.payloadLen})
	i := len(t.hs)
	t.hs = append(t.hs, mmsghdr{})
	start := len(t.iovs)
	t.appendIovecs(pkt, o)
	h := &t.hs[i].hdr
	h.Name = (*byte)(unsafe.Pointer(&t.names[i]))
	h.Namelen = putSockaddr(&t.names[i], t.sock.e.cfg.toHost(o.dst), o.dstPort)
	if len(t.iovs) > start {
		h.Iov = &t.iovs[start]
	}
	h.Iovlen = uint64(len(t.iovs) - start)
}

// iovIndex returns the index in t.iovs of message i's first iovec.
func iovIndex(t *txBatch, i int) uint64 {
	h := &t.hs[i].hdr
	if h.Iov == nil {
		return uint64(len(t.iovs))
	}
	return uint64((uintptr(unsafe.Pointer(h.Iov)) - uintptr(unsafe.Pointer(&t.iovs[0]))) / unsafe.Sizeof(unix.Iovec{}))
}

// appendIovecs appends iovecs for pkt's UDP payload.
func (t *txBatch) appendIovecs(pkt *stack.PacketBuffer, o *outgoing) {
	views, off := pkt.AsViewList()
	off += o.payloadOff
	for v := views.Front(); v != nil; v = v.Next() {
		b := v.AsSlice()
		if off >= len(b) {
			off -= len(b)
			continue
		}
		b = b[off:]
		off = 0
		if len(t.iovs) == cap(t.iovs) {
			return // cannot happen: transmit keeps 16 free
		}
		t.iovs = append(t.iovs, unix.Iovec{Base: &b[0]})
		t.iovs[len(t.iovs)-1].SetLen(len(b))
	}
}

// putSockaddr writes addr:port into sa and returns its length.
func putSockaddr(sa *unix.RawSockaddrInet6, addr netip.Addr, port uint16) uint32 {
	if addr.Is4() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: htons(port), Addr: addr.As4()}
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: htons(port), Addr: addr.As16()}
	return unix.SizeofSockaddrInet6
}

// putControl writes the control messages of message i: UDP_SEGMENT for a
// GSO train, the TTL and, when set, the TOS.
func (t *txBatch) putControl(i int, is6 bool) {
	m := &t.msgs[i]
	o := &t.pkts[m.first].o
	b := t.ctrls[i*txControlLen : (i+1)*txControlLen]
	n := 0
	put := func(level, typ int32, size int, val int) {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[n]))
		h.Level, h.Type = level, typ
		h.SetLen(unix.CmsgLen(size))
		d := b[n+unix.CmsgLen(0):]
		if size == 2 {
			*(*uint16)(unsafe.Pointer(&d[0])) = uint16(val)
		} else {
			*(*int32)(unsafe.Pointer(&d[0])) = int32(val)
		}
		n += unix.CmsgSpace(size)
	}
	if m.datagrams() > 1 {
		put(unix.IPPROTO_UDP, unix.UDP_SEGMENT, 2, m.segSize)
	}
	if is6 {
		put(unix.IPPROTO_IPV6, unix.IPV6_HOPLIMIT, 4, int(o.ttl))
		if o.tos != 0 {
			put(unix.IPPROTO_IPV6, unix.IPV6_TCLASS, 4, int(o.tos))
		}
	} else {
		put(unix.IPPROTO_IP, unix.IP_TTL, 4, int(o.ttl))
		if o.tos != 0 {
			put(unix.IPPROTO_IP, unix.IP_TOS, 4, int(o.tos))
		}
	}
	h := &t.hs[i].hdr
	h.Control = &b[0]
	h.SetControllen(n)
}

// flush sends the batch's messages from its socket and resets it.
func (e *Endpoint) flush(t *txBatch) {
	defer func() {
		t.hs, t.msgs, t.pkts, t.iovs, t.arena = t.hs[:0], t.msgs[:0], t.pkts[:0], t.iovs[:0], t.arena[:0]
	}()
	if len(t.msgs) == 0 {
		return
	}
	s := t.sock
	for i := range t.msgs {
		if t.pkts[t.msgs[i].first].o.ttl == 0 {
			t.pkts[t.msgs[i].first].o.ttl = 64
		}
		t.putControl(i, s.is6)
	}
	off := 0
	for off < len(t.hs) {
		t.off = off
		err := s.rc.Write(t.write)
		n, errno := t.n, t.errno
		if err != nil {
			// Closed: the rest is dropped.
			for _, m := range t.msgs[off:] {
				e.stats.notAttached.Add(uint64(m.count))
			}
			return
		}
		e.stats.txSyscalls.Add(1)
		if errno == 0 {
			for _, m := range t.msgs[off : off+n] {
				e.sent(t, &m)
			}
			off += n
			continue
		}
		// Message off failed: handle it, go on after it.
		e.sendFailed(t, off, errno)
		off++
	}
}

// sent counts message m as sent.
func (e *Endpoint) sent(t *txBatch, m *txMsg) {
	if m.datagrams() > 1 {
		e.stats.txGSO.Add(1)
	}
	if m.segs > 0 {
		hdr := t.pkts[m.first].o.payloadOff
		e.stats.txPackets.Add(uint64(m.segs))
		e.stats.txBytes.Add(uint64(m.bytes + m.segs*hdr))
		return
	}
	for _, p := range t.pkts[m.first : m.first+m.count] {
		e.stats.txPackets.Add(1)
		e.stats.txBytes.Add(uint64(p.o.size))
	}
}

// sendFailed handles the error of message i: a GSO train the kernel
// refused as such is sent datagram by datagram (and GSO turned off for
// good on EIO, the kernel's "no GSO on this path"); EMSGSIZE becomes an
// ICMP error for the stack; anything else is counted.
func (e *Endpoint) sendFailed(t *txBatch, i int, errno syscall.Errno) {
	m := &t.msgs[i]
	s := t.sock
	if m.segs > 1 && (errno == unix.EIO || errno == unix.EINVAL) {
		if errno == unix.EIO {
			s.gso.Store(false)
		}
		e.resendArena(t, i)
		return
	}
	if m.segs > 0 {
		e.failed(s, &t.pkts[m.first], m.segs, errno)
		return
	}
	if m.count > 1 && (errno == unix.EIO || errno == unix.EINVAL || errno == unix.EMSGSIZE) {
		if errno == unix.EIO {
			s.gso.Store(false)
		}
		for _, p := range t.pkts[m.first : m.first+m.count] {
			e.sendOne(s, &p)
		}
		return
	}
	e.failed(s, &t.pkts[m.first], m.count, errno)
}

// sendOne sends one datagram with sendmsg, the slow path after a GSO
// failure.
func (e *Endpoint) sendOne(s *hostSocket, p *txPkt) {
	one := newTxBatch(1)
	one.sock = s
	one.pkts = append(one.pkts, *p)
	one.msgs = append(one.msgs, txMsg{first: 0, count: 1, segSize: p.o.payloadLen, bytes: p.o.payloadLen})
	one.hs = append(one.hs, mmsghdr{})
	one.appendIovecs(p.pkt, &p.o)
	h := &one.hs[0].hdr
	h.Name = (*byte)(unsafe.Pointer(&one.names[0]))
	h.Namelen = putSockaddr(&one.names[0], e.cfg.toHost(p.o.dst), p.o.dstPort)
	if len(one.iovs) > 0 {
		h.Iov = &one.iovs[0]
	}
	h.Iovlen = uint64(len(one.iovs))
	e.flush(one)
}

// failed counts count datagrams starting with p as refused with errno,
// and tells the stack about a path MTU the host knows.
func (e *Endpoint) failed(s *hostSocket, p *txPkt, count int, errno syscall.Errno) {
	if errno != unix.EMSGSIZE {
		e.stats.sendError.Add(uint64(count))
		return
	}
	e.stats.tooBig.Add(uint64(count))
	var mtu uint32
	s.rc.Control(func(fd uintptr) { mtu = s.takeLocalMTU(fd, e.cfg.toHost(p.o.dst)) })
	if mtu == 0 {
		return
	}
	var quoted [maxQuote]byte
	q := copyPayload(p.pkt, &p.o, quoted[:])
	e.injectError(&hostError{
		kind: icmpTooBig, mtu: mtu, from: p.o.dst,
		local: s.local, remote: netip.AddrPortFrom(p.o.dst, p.o.dstPort),
		quoted: quoted[:q], length: p.o.payloadLen,
	})
}

// copyPayload copies the start of pkt's UDP payload into b.
func copyPayload(pkt *stack.PacketBuffer, o *outgoing, b []byte) int {
	views, off := pkt.AsViewList()
	off += o.payloadOff
	n := 0
	for v := views.Front(); v != nil && n < len(b); v = v.Next() {
		s := v.AsSlice()
		if off >= len(s) {
			off -= len(s)
			continue
		}
		n += copy(b[n:], s[off:])
		off = 0
	}
	return n
}

// sizeofSockExtendedErr is sizeof(struct sock_extended_err).
const sizeofSockExtendedErr = int(unsafe.Sizeof(unix.SockExtendedErr{}))
