package tunneltest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/udptunnel/udptunnel/stack"
)

// Counts is the part of a stack.Stats delta the tests compare: packets
// received and sent, and the non-zero drops by reason.
type Counts struct {
	Rx, Tx uint64
	Drops  map[stack.DropReason]uint64
}

// Since returns the change of c since the snapshot before.
func Since(before stack.Stats, c *stack.Counters) Counts {
	return Delta(before, c.Stats())
}

// Delta returns the change from before to after.
func Delta(before, after stack.Stats) Counts {
	d := Counts{Rx: after.RxPackets - before.RxPackets, Tx: after.TxPackets - before.TxPackets}
	for _, r := range stack.DropReasons() {
		if n := after.Dropped(r) - before.Dropped(r); n != 0 {
			if d.Drops == nil {
				d.Drops = map[stack.DropReason]uint64{}
			}
			d.Drops[r] = n
		}
	}
	return d
}

// RxOnly returns c without its Tx: the delta of a receive-path check
// whose delivered packets may draw replies from the inner stack.
func (c Counts) RxOnly() Counts {
	c.Tx = 0
	return c
}

// CheckCounts compares a counter delta with want, exactly (a nil and an
// empty Drops are the same).
func CheckCounts(t testing.TB, what string, got, want Counts) {
	t.Helper()
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("%s counters moved unexpectedly (-want +got):\n%s", what, diff)
	}
}

// Eventually polls cond every millisecond for up to 5 s and fails t if it
// never holds.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
