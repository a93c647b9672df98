package stack

import (
	"fmt"
	"sync/atomic"
)

// DropReason says why a packet was dropped, in the spirit of the kernel's
// enum skb_drop_reason. Every drop on the tunnel path is counted under one.
type DropReason uint8

// Drop reasons shared by all tunnel protocols.
const (
	// DropTruncated: the packet is shorter than the headers it claims.
	DropTruncated DropReason = iota
	// DropBadChecksum: the outer UDP checksum is wrong, or zero where the
	// checksum policy does not allow it (RFC 6936).
	DropBadChecksum
	// DropBadHeader: a tunnel header violates its specification (flags,
	// reserved bits, version).
	DropBadHeader
	// DropUnknownTunnel: no device for the tunnel identifier (VNI, TEID,
	// session ID).
	DropUnknownTunnel
	// DropNoRemote: no forwarding entry for the destination (no FDB entry
	// and no default remote).
	DropNoRemote
	// DropNoRoute: no outer route to the remote endpoint.
	DropNoRoute
	// DropLoop: the outer route leaves through the tunnel's own device
	// (the kernel's ELOOP).
	DropLoop
	// DropNestingLimit: the packet is nested deeper than MaxNesting
	// (the kernel's XMIT_RECURSION_LIMIT).
	DropNestingLimit
	// DropTooBig: the outer packet exceeds the path MTU and may not be
	// fragmented.
	DropTooBig
	// DropNoHandler: a resubmit verdict named an IP protocol that has no
	// handler.
	DropNoHandler
	// DropQueueFull: a receive queue (PassToUDP datagrams) is full.
	DropQueueFull
	// DropDeviceDown: the device or socket is closed or not attached.
	DropDeviceDown
	// DropWriteError: the outer IP layer refused the packet.
	DropWriteError
	// DropNotForUs: an L2 frame for another host's MAC address, or an inner
	// packet of an unsupported protocol.
	DropNotForUs
	// DropPolicy: a configured policy refused the packet (a protocol option
	// the device does not understand, an unexpected source).
	DropPolicy

	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	DropTruncated:     "truncated",
	DropBadChecksum:   "bad_checksum",
	DropBadHeader:     "bad_header",
	DropUnknownTunnel: "unknown_tunnel",
	DropNoRemote:      "no_remote",
	DropNoRoute:       "no_route",
	DropLoop:          "loop",
	DropNestingLimit:  "nesting_limit",
	DropTooBig:        "too_big",
	DropNoHandler:     "no_handler",
	DropQueueFull:     "queue_full",
	DropDeviceDown:    "device_down",
	DropWriteError:    "write_error",
	DropNotForUs:      "not_for_us",
	DropPolicy:        "policy",
}

// String returns the reason's snake_case name, as used in metrics.
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropReasonNames[r]
	}
	return fmt.Sprintf("drop_reason_%d", uint8(r))
}

// DropReasons lists every drop reason, for exporters that iterate them.
func DropReasons() []DropReason {
	rs := make([]DropReason, numDropReasons)
	for i := range rs {
		rs[i] = DropReason(i)
	}
	return rs
}

// Counters are the packet counters of one socket or device. The zero value
// is ready to use; all methods are safe for concurrent use and never
// allocate.
type Counters struct {
	rxPackets, rxBytes atomic.Uint64
	txPackets, txBytes atomic.Uint64
	passed             atomic.Uint64
	completed          atomic.Uint64
	drops              [numDropReasons]atomic.Uint64
}

// Rx counts one received packet of n bytes.
func (c *Counters) Rx(n int) {
	c.rxPackets.Add(1)
	c.rxBytes.Add(uint64(n))
}

// Tx counts one transmitted packet of n bytes.
func (c *Counters) Tx(n int) {
	c.txPackets.Add(1)
	c.txBytes.Add(uint64(n))
}

// Pass counts one datagram an Encap handed to the socket's plain UDP face
// (the PassToUDP verdict).
func (c *Counters) Pass() { c.passed.Add(1) }

// Completed counts one received packet whose partial TCP/UDP checksum a
// device completed (see Device.Deliver).
func (c *Counters) Completed() { c.completed.Add(1) }

// Drop counts one packet dropped for reason r.
func (c *Counters) Drop(r DropReason) {
	if r < numDropReasons {
		c.drops[r].Add(1)
	}
}

// Stats returns a snapshot of the counters.
func (c *Counters) Stats() Stats {
	s := Stats{
		RxPackets: c.rxPackets.Load(),
		RxBytes:   c.rxBytes.Load(),
		TxPackets: c.txPackets.Load(),
		TxBytes:   c.txBytes.Load(),
		Passed:    c.passed.Load(),
		Completed: c.completed.Load(),
	}
	for i := range c.drops {
		s.Drops[i] = c.drops[i].Load()
	}
	return s
}

// Stats is a snapshot of Counters.
type Stats struct {
	RxPackets, RxBytes uint64
	TxPackets, TxBytes uint64
	// Passed counts the datagrams a socket's Encap passed on to the
	// socket's plain UDP face for a control plane (PassToUDP), whether
	// or not its queue then had room.
	Passed uint64
	// Completed counts the received packets of a device whose TCP or UDP
	// checksum field held only the pseudo-header sum, left for an offload
	// by a sender on the same host, and was completed before the inner
	// stack verified it.
	Completed uint64
	// Drops is indexed by DropReason.
	Drops [numDropReasons]uint64
}

// Dropped returns the number of packets dropped for reason r.
func (s Stats) Dropped(r DropReason) uint64 {
	if r < numDropReasons {
		return s.Drops[r]
	}
	return 0
}

// TotalDrops returns the number of packets dropped for any reason.
func (s Stats) TotalDrops() uint64 {
	var n uint64
	for _, d := range s.Drops {
		n += d
	}
	return n
}

// String formats the snapshot like `ip -s link`: one line, drops by reason
// only where non-zero.
func (s Stats) String() string {
	out := fmt.Sprintf("rx %d pkts %d bytes, tx %d pkts %d bytes", s.RxPackets, s.RxBytes, s.TxPackets, s.TxBytes)
	if s.Passed != 0 {
		out += fmt.Sprintf(", passed to udp %d", s.Passed)
	}
	for i, d := range s.Drops {
		if d != 0 {
			out += fmt.Sprintf(", drop %s=%d", DropReason(i), d)
		}
	}
	return out
}
