package memlink

import (
	"math/rand/v2"
	"sync"
	"time"
)

// impairer draws the fate of the packets written to one endpoint.
type impairer struct {
	cfg Impairment

	mu sync.Mutex
	// +checklocks:mu
	rng *rand.Rand
}

// newImpairer returns an impairer drawing from the PCG stream number stream
// seeded by cfg.Seed, so that each endpoint of a pair or hub has its own
// repeatable sequence.
func newImpairer(cfg Impairment, stream uint64) *impairer {
	return &impairer{
		cfg: cfg,
		rng: rand.New(rand.NewPCG(cfg.Seed, stream)),
	}
}

// verdict is the fate of one written packet.
type verdict struct {
	lost     bool
	copies   int
	delay    time.Duration
	holdBack bool
}

// decide draws the fate of the next packet. It draws only for the
// impairments that are configured, always in the same order, so that a
// configuration and a seed give one sequence of verdicts.
func (im *impairer) decide() verdict {
	c := &im.cfg
	v := verdict{copies: 1, delay: c.Delay}
	im.mu.Lock()
	defer im.mu.Unlock()
	if c.Loss > 0 && im.rng.Float64() < c.Loss {
		v.lost = true
		return v
	}
	if c.Duplicate > 0 && im.rng.Float64() < c.Duplicate {
		v.copies = 2
	}
	if c.Reorder > 0 && im.rng.Float64() < c.Reorder {
		v.holdBack = true
	}
	if c.Jitter > 0 {
		v.delay += time.Duration(im.rng.Int64N(int64(c.Jitter)))
	}
	return v
}
