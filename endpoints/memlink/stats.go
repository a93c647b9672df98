package memlink

import (
	"fmt"
	"sync/atomic"
)

// Stats are an endpoint's counters, in the spirit of `ip -s link`. Bytes
// count whole packets as carried on the wire, link header included.
//
// A packet is counted where it is dropped: Loss, TooBig, Malformed and
// LinkDown (for writes) at the writing endpoint; QueueFull, NotAttached and
// LinkDown (for arrivals) at the receiving one. Only Loss counts packets
// that were also counted as sent.
type Stats struct {
	// TxPackets and TxBytes count the packets this endpoint put on the wire,
	// including those the wire then lost.
	TxPackets, TxBytes uint64

	// RxPackets and RxBytes count the packets delivered to this endpoint's
	// stack, duplicates included.
	RxPackets, RxBytes uint64

	// Duplicated counts the extra copies the wire made of packets written
	// here.
	Duplicated uint64

	// Reordered counts the packets arriving here that the wire held back
	// behind a later one.
	Reordered uint64

	// Dropped counts the packets dropped, by reason.
	Dropped Drops
}

// Drops counts dropped packets by reason.
type Drops struct {
	// Loss counts packets written here that Impairment.Loss dropped.
	Loss uint64

	// TooBig counts packets written here above the MTU: a wire does not
	// fragment.
	TooBig uint64

	// QueueFull counts packets arriving here while the receive queue held
	// Options.QueueLen packets.
	QueueFull uint64

	// LinkDown counts packets written here or arriving here while this
	// endpoint was down (see SetLinkUp).
	LinkDown uint64

	// NotAttached counts packets that could not be delivered because this
	// endpoint had no stack attached or was closed, including packets still
	// queued when it was detached, and packets written to a closed endpoint.
	NotAttached uint64

	// Malformed counts frames written to a hub port that are too short to
	// hold an Ethernet header.
	Malformed uint64
}

// counters holds Stats as atomics, so that the packet path takes no lock to
// count.
type counters struct {
	txPackets, txBytes atomic.Uint64
	rxPackets, rxBytes atomic.Uint64
	duplicated         atomic.Uint64
	reordered          atomic.Uint64

	loss, tooBig, queueFull, linkDown, notAttached, malformed atomic.Uint64
}

// Stats returns a snapshot of e's counters. Each counter is read atomically;
// the snapshot as a whole is not.
func (e *Endpoint) Stats() Stats {
	c := &e.stats
	return Stats{
		TxPackets:  c.txPackets.Load(),
		TxBytes:    c.txBytes.Load(),
		RxPackets:  c.rxPackets.Load(),
		RxBytes:    c.rxBytes.Load(),
		Duplicated: c.duplicated.Load(),
		Reordered:  c.reordered.Load(),
		Dropped: Drops{
			Loss:        c.loss.Load(),
			TooBig:      c.tooBig.Load(),
			QueueFull:   c.queueFull.Load(),
			LinkDown:    c.linkDown.Load(),
			NotAttached: c.notAttached.Load(),
			Malformed:   c.malformed.Load(),
		},
	}
}

// String formats the snapshot on one line, like stack.Stats: drops only
// where non-zero.
func (s Stats) String() string {
	out := fmt.Sprintf("rx %d pkts %d bytes, tx %d pkts %d bytes", s.RxPackets, s.RxBytes, s.TxPackets, s.TxBytes)
	for _, d := range []struct {
		name string
		n    uint64
	}{
		{"duplicated", s.Duplicated}, {"reordered", s.Reordered},
		{"drop loss", s.Dropped.Loss}, {"drop too_big", s.Dropped.TooBig}, {"drop queue_full", s.Dropped.QueueFull},
		{"drop link_down", s.Dropped.LinkDown}, {"drop not_attached", s.Dropped.NotAttached}, {"drop malformed", s.Dropped.Malformed},
	} {
		if d.n != 0 {
			out += fmt.Sprintf(", %s=%d", d.name, d.n)
		}
	}
	return out
}
