package memlink

import (
	"runtime"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// rxQueue is an endpoint's bounded receive queue. Writers append to pending
// under mu and poke wake; one goroutine per endpoint takes the whole of
// pending at once and delivers it outside the lock. This costs a lock per
// packet and a channel send per batch, and lets the receiving stack work on
// batches.
//
// The queue holds the pending packets plus those the goroutine keeps for
// later (delayed or held back for reordering); packets it has taken for
// delivery right away have left the queue, as packets a NIC driver has
// polled have left the ring.
type rxQueue struct {
	// wake is poked, without blocking, when pending stops being empty. Its
	// buffer of one keeps a poke that comes while the goroutine is busy.
	wake chan struct{}

	mu sync.Mutex
	// dispatcher receives the packets; nil while detached.
	//
	// +checklocks:mu
	dispatcher stack.NetworkDispatcher
	// stop is closed to stop the running delivery goroutine; nil when none
	// runs.
	//
	// +checklocks:mu
	stop chan struct{}
	// pending holds the packets not yet taken by the goroutine.
	//
	// +checklocks:mu
	pending []inbound
	// kept counts the packets delivery goroutines keep for later.
	//
	// +checklocks:mu
	kept int
	// lastDue is the latest due time handed out, so that jitter never
	// reorders packets.
	//
	// +checklocks:mu
	lastDue time.Duration
}

// full reports whether q holds limit packets.
//
// +checklocks:q.mu
func (q *rxQueue) full(limit int) bool {
	return len(q.pending)+q.kept >= limit
}

// inbound is a packet queued for delivery.
type inbound struct {
	pkt   *stack.PacketBuffer
	proto tcpip.NetworkProtocolNumber
	// delay is how long the wire holds the packet.
	delay time.Duration
	// due is when the packet may be delivered, on the clock of now; zero
	// means at once.
	due time.Duration
	// holdBack asks for the packet to be delivered after the next one.
	holdBack bool
}

// epoch anchors now.
var epoch = time.Now()

// now reads the monotonic clock.
func now() time.Duration {
	return time.Since(epoch)
}

// enqueue queues p for the delivery goroutine, or drops it if e is detached
// or its queue is full.
func (e *Endpoint) enqueue(p inbound) {
	if e.delays {
		p.due = now() + p.delay
	}
	q := &e.rx
	q.mu.Lock()
	if q.stop != nil && q.full(e.queueLen) {
		// Yield once before dropping, so that a writer hogging the only
		// available CPU lets the delivery goroutine drain the queue: the
		// queue models a receiver that cannot keep up, not one that the Go
		// scheduler has not run yet.
		q.mu.Unlock()
		runtime.Gosched()
		q.mu.Lock()
	}
	switch {
	case q.stop == nil:
		q.mu.Unlock()
		p.pkt.DecRef()
		e.stats.notAttached.Add(1)
		return
	case q.full(e.queueLen):
		q.mu.Unlock()
		p.pkt.DecRef()
		e.stats.queueFull.Add(1)
		return
	}
	if e.delays {
		p.due = max(p.due, q.lastDue)
		q.lastDue = p.due
	}
	// Only the packet that makes pending non-empty needs to wake the
	// goroutine: it takes the whole of pending, later packets included.
	poke := len(q.pending) == 0
	q.pending = append(q.pending, p)
	q.mu.Unlock()
	if poke {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// run is the delivery goroutine. It delivers queued packets to the attached
// dispatcher until stop is closed, then drops what it still keeps.
func (e *Endpoint) run(stop <-chan struct{}) {
	defer e.workers.Done()
	q := &e.rx
	var (
		// work holds the packets taken from pending and not yet delivered,
		// in order; its front waits for its due time.
		work  []inbound
		spare []inbound
		// held is a packet held back to be delivered after the next one.
		held    inbound
		holding bool
		heldAt  time.Duration
		// kept is this goroutine's share of q.kept.
		kept int
	)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	defer func() {
		if holding {
			work = append(work, held)
		}
		if kept != 0 {
			q.mu.Lock()
			q.kept -= kept
			q.mu.Unlock()
		}
		e.release(work)
	}()

	for {
		select {
		case <-stop:
			return
		case <-q.wake:
		case <-timer.C:
		}

		q.mu.Lock()
		d := q.dispatcher
		got := q.pending
		q.pending = spare[:0]
		if e.delays || e.reorders {
			// Any of these may be kept: count them until we know.
			q.kept += len(got)
			kept += len(got)
		}
		q.mu.Unlock()
		work = append(work, got...)
		clear(got)
		spare = got[:0]

		var t time.Duration
		if e.delays || e.reorders {
			t = now()
		}
		i := 0
		for ; i < len(work); i++ {
			if d == nil || stopped(stop) {
				// Attach(nil) raced with taking the batch; the deferred
				// function drops the rest.
				work = work[i:]
				return
			}
			p := work[i]
			if p.due > t {
				break
			}
			work[i] = inbound{}
			if p.holdBack && !holding {
				held, holding, heldAt = p, true, t
				e.stats.reordered.Add(1)
				continue
			}
			e.deliver(d, p.proto, p.pkt)
			if holding {
				e.deliver(d, held.proto, held.pkt)
				held, holding = inbound{}, false
			}
		}
		if holding && t-heldAt >= reorderIdle {
			e.deliver(d, held.proto, held.pkt)
			held, holding = inbound{}, false
		}
		rest := copy(work, work[i:])
		clear(work[rest:])
		work = work[:rest]

		if k := len(work) + btoi(holding); k != kept {
			q.mu.Lock()
			q.kept += k - kept
			q.mu.Unlock()
			kept = k
		}

		// Sleep until the first waiting packet is due or the held packet
		// has waited long enough; a write wakes us earlier.
		next := time.Duration(-1)
		if len(work) > 0 {
			next = work[0].due
		}
		if holding && (next < 0 || heldAt+reorderIdle < next) {
			next = heldAt + reorderIdle
		}
		if next >= 0 {
			timer.Reset(max(next-now(), 0))
		}
	}
}

// btoi returns 1 for true and 0 for false.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// stopped reports whether stop is closed.
func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// release drops queued packets that will never be delivered because e was
// detached.
func (e *Endpoint) release(ps []inbound) {
	for _, p := range ps {
		p.pkt.DecRef()
	}
	e.stats.notAttached.Add(uint64(len(ps)))
}
