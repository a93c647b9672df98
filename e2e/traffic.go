package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/udptunnel/udptunnel/stack"
)

// PingResult summarises a run of pings.
type PingResult struct {
	Sent, Received int
	// RTTs are the round-trip times of the received replies, in order.
	RTTs []time.Duration
}

// Loss returns the fraction of pings that got no reply.
func (r PingResult) Loss() float64 {
	if r.Sent == 0 {
		return 0
	}
	return 1 - float64(r.Received)/float64(r.Sent)
}

// Median returns the median RTT (0 without replies).
func (r PingResult) Median() time.Duration {
	if len(r.RTTs) == 0 {
		return 0
	}
	s := slices.Clone(r.RTTs)
	slices.Sort(s)
	return s[len(s)/2]
}

// String summarises the run like ping(8)'s last lines.
func (r PingResult) String() string {
	if len(r.RTTs) == 0 {
		return fmt.Sprintf("%d sent, %d received", r.Sent, r.Received)
	}
	return fmt.Sprintf("%d sent, %d received, %.0f%% loss, rtt min/median/max %v/%v/%v",
		r.Sent, r.Received, 100*r.Loss(), slices.Min(r.RTTs), r.Median(), slices.Max(r.RTTs))
}

// Ping sends count echo requests from st to dst, each waiting up to timeout
// for its reply. It returns an error only when no reply came at all.
func Ping(ctx context.Context, st *stack.Stack, dst netip.Addr, count int, timeout time.Duration) (PingResult, error) {
	var r PingResult
	var last error
	for i := range count {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		rtt, err := st.Ping(pctx, dst, uint16(i+1), 56)
		cancel()
		r.Sent++
		if err != nil {
			last = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		r.Received++
		r.RTTs = append(r.RTTs, rtt)
	}
	if r.Received == 0 {
		return r, fmt.Errorf("ping %v: no reply: %w", dst, last)
	}
	return r, nil
}

// TransferResult is the outcome of a TCP transfer.
type TransferResult struct {
	Bytes    int64
	Duration time.Duration
	// Sum is the hash of what the receiver got; it equalled the sender's
	// or TransferTCP returned an error.
	Sum []byte
}

// Gbps returns the goodput in Gbit/s.
func (r TransferResult) Gbps() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Bytes) * 8 / r.Duration.Seconds() / 1e9
}

// String gives size, time, goodput and the matching hash.
func (r TransferResult) String() string {
	return fmt.Sprintf("%d bytes in %v, %.2f Gbit/s, hash %x (match)", r.Bytes, r.Duration.Round(time.Millisecond), r.Gbps(), r.Sum)
}

// ErrHashMismatch: the receiver got different bytes than were sent.
var ErrHashMismatch = errors.New("received data differs from sent data (hash mismatch)")

// TransferTCP moves size bytes of seeded pseudo-random data over one TCP
// connection from src to dst (a listener is opened on dst's stack at
// dstAddr), hashing both ends with newHash (nil = SHA-256), and fails
// unless the hashes match. Throughput measurements pass a hash that is
// cheap next to the path under test, such as CRC-32C: SHA-256 runs at about
// 1-2 GB/s here, below what an in-process path can carry.
func TransferTCP(ctx context.Context, src, dst *stack.Stack, dstAddr netip.AddrPort, size int64, newHash func() hash.Hash) (TransferResult, error) {
	ln, err := dst.ListenTCP(dstAddr)
	if err != nil {
		return TransferResult{}, fmt.Errorf("listen %v: %w", dstAddr, err)
	}
	defer ln.Close()
	res, err := Transfer(ctx, ln, func() (net.Conn, error) { return src.DialTCP(ctx, dstAddr) }, size, newHash)
	if err != nil {
		return res, fmt.Errorf("transfer to %v: %w", dstAddr, err)
	}
	return res, nil
}

// Transfer is TransferTCP between any two ends: it accepts one connection
// on ln, opens one with dial, and moves size bytes from the dialled end to
// the accepted one, hashing both (newHash nil = SHA-256). Either end may be
// a kernel socket, such as one made in a network namespace with Netns.Do.
// Cancelling ctx unblocks both ends.
func Transfer(ctx context.Context, ln net.Listener, dial func() (net.Conn, error), size int64, newHash func() hash.Hash) (TransferResult, error) {
	if newHash == nil {
		newHash = sha256.New
	}
	type rcv struct {
		sum []byte
		n   int64
		err error
	}
	done := make(chan rcv, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- rcv{err: err}
			return
		}
		defer c.Close()
		// Cancellation, not only a deadline, must unblock the copy.
		stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
		defer stop()
		h := newHash()
		n, err := io.Copy(h, c)
		done <- rcv{sum: h.Sum(nil), n: n, err: err}
	}()

	start := time.Now()
	c, err := dial()
	if err != nil {
		ln.Close() // ends the Accept
		<-done
		return TransferResult{}, fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	sent := newHash()
	w := io.MultiWriter(c, sent)
	_, err = io.CopyBuffer(w, io.LimitReader(newPatternReader(uint64(size)), size), make([]byte, 256<<10))
	if cw, ok := c.(interface{ CloseWrite() error }); ok && err == nil {
		err = cw.CloseWrite()
	}
	if err != nil {
		return TransferResult{}, fmt.Errorf("send: %w", err)
	}
	var r rcv
	select {
	case r = <-done:
	case <-ctx.Done():
		return TransferResult{}, ctx.Err()
	}
	res := TransferResult{Bytes: r.n, Duration: time.Since(start), Sum: r.sum}
	if r.err != nil && !errors.Is(r.err, net.ErrClosed) {
		return res, fmt.Errorf("receive (after %d bytes): %w", r.n, r.err)
	}
	if r.n != size || !bytes.Equal(r.sum, sent.Sum(nil)) {
		return res, fmt.Errorf("sent %d bytes, got %d: %w", size, r.n, ErrHashMismatch)
	}
	return res, nil
}

// patternReader yields a seeded pseudo-random stream cheaply: a random
// block of a prime length, repeated, so that block boundaries fall at
// varying offsets of the packets carrying them.
type patternReader struct {
	block []byte
	off   int
}

const patternLen = 65521 // the largest prime below 64 KiB

func newPatternReader(seed uint64) io.Reader {
	r := rand.New(rand.NewPCG(seed, 0x75647074))
	b := make([]byte, patternLen)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return &patternReader{block: b}
}

// Read implements io.Reader; it never fails.
func (p *patternReader) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		c := copy(b[n:], p.block[p.off:])
		n += c
		p.off = (p.off + c) % len(p.block)
	}
	return n, nil
}
