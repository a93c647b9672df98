package stack_test

import (
	"regexp"
	"sync"
	"testing"

	"github.com/udptunnel/udptunnel/stack"
)

func TestDropReasonNames(t *testing.T) {
	rs := stack.DropReasons()
	if len(rs) == 0 || rs[0] != stack.DropTruncated {
		t.Fatalf("DropReasons() = %v", rs)
	}
	snake := regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)
	seen := map[string]stack.DropReason{}
	for i, r := range rs {
		if int(r) != i {
			t.Errorf("DropReasons()[%d] = %d", i, r)
		}
		name := r.String()
		if !snake.MatchString(name) {
			t.Errorf("reason %d is named %q, not snake_case", r, name)
		}
		if prev, ok := seen[name]; ok {
			t.Errorf("reasons %d and %d are both named %q", prev, r, name)
		}
		seen[name] = r
	}
	for _, tc := range []struct {
		r    stack.DropReason
		want string
	}{
		{stack.DropTruncated, "truncated"},
		{stack.DropBadChecksum, "bad_checksum"},
		{stack.DropNestingLimit, "nesting_limit"},
		{stack.DropPolicy, "policy"},
		{stack.DropReason(200), "drop_reason_200"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("DropReason(%d).String() = %q, want %q", tc.r, got, tc.want)
		}
	}
}

func TestCounters(t *testing.T) {
	var c stack.Counters
	c.Rx(100)
	c.Rx(50)
	c.Tx(7)
	c.Drop(stack.DropLoop)
	c.Drop(stack.DropLoop)
	c.Drop(stack.DropTooBig)
	c.Drop(stack.DropReason(250)) // unknown: ignored, no panic
	s := c.Stats()
	if s.RxPackets != 2 || s.RxBytes != 150 || s.TxPackets != 1 || s.TxBytes != 7 {
		t.Errorf("Stats = %+v", s)
	}
	if s.Dropped(stack.DropLoop) != 2 || s.Dropped(stack.DropTooBig) != 1 || s.Dropped(stack.DropReason(250)) != 0 || s.TotalDrops() != 3 {
		t.Errorf("drops %v", s)
	}
	if got, want := s.String(), "rx 2 pkts 150 bytes, tx 1 pkts 7 bytes, drop loop=2, drop too_big=1"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := (stack.Stats{}).String(), "rx 0 pkts 0 bytes, tx 0 pkts 0 bytes"; got != want {
		t.Errorf("zero String() = %q, want %q", got, want)
	}
	// A snapshot does not move with the counters.
	c.Drop(stack.DropLoop)
	if s.Dropped(stack.DropLoop) != 2 {
		t.Error("snapshot changed")
	}
}

func TestCountersConcurrent(t *testing.T) {
	var c stack.Counters
	const workers, n = 8, 1000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				c.Rx(1)
				c.Tx(2)
				c.Drop(stack.DropReason((w + i) % len(stack.DropReasons())))
				_ = c.Stats()
			}
		}()
	}
	wg.Wait()
	s := c.Stats()
	if s.RxPackets != workers*n || s.RxBytes != workers*n || s.TxPackets != workers*n || s.TxBytes != 2*workers*n || s.TotalDrops() != workers*n {
		t.Errorf("after %d concurrent updates: %v", workers*n, s)
	}
}

func TestCountersNoAllocs(t *testing.T) {
	var c stack.Counters
	if n := testing.AllocsPerRun(100, func() {
		c.Rx(1)
		c.Tx(1)
		c.Drop(stack.DropNoRoute)
		_ = c.Stats().Dropped(stack.DropNoRoute)
	}); n != 0 {
		t.Errorf("counter updates allocate %v times", n)
	}
}
