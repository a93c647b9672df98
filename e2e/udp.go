package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/udptunnel/udptunnel/stack"
)

// UDPEcho serves UDP echo (RFC 862) on addr in st: every datagram goes back
// to its sender unchanged. It runs until the returned Closer is closed.
func UDPEcho(st *stack.Stack, addr netip.AddrPort) (io.Closer, error) {
	pc, err := st.ListenUDP(addr)
	if err != nil {
		return nil, fmt.Errorf("udp echo on %v: %w", addr, err)
	}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			pc.WriteTo(buf[:n], from) // a lost reply is the client's to see
		}
	}()
	return pc, nil
}

// ErrBadReply: a UDP reply arrived whose bytes differ from the request's.
var ErrBadReply = errors.New("reply differs from request")

// RequestResponse sends count UDP requests of size bytes (at least 8) from
// src to dst, one at a time, each waiting up to timeout for its reply, as
// to a UDPEcho server. Each request carries its sequence number and seeded
// pseudo-random bytes; a reply must be an exact copy of one, or
// RequestResponse fails with ErrBadReply. Late replies to requests already
// given up on are skipped. The result counts requests and replies like
// Ping's; it fails when no reply came at all.
func RequestResponse(ctx context.Context, src *stack.Stack, dst netip.AddrPort, count, size int, timeout time.Duration) (PingResult, error) {
	var r PingResult
	if size < 8 {
		return r, fmt.Errorf("request size %d: want at least 8 bytes", size)
	}
	c, err := src.DialUDP(dst)
	if err != nil {
		return r, fmt.Errorf("dial %v: %w", dst, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	pattern := newPatternReader(uint64(size))
	req, reply := make([]byte, size), make([]byte, 65535)
	for seq := range uint64(count) {
		binary.BigEndian.PutUint64(req, seq)
		pattern.Read(req[8:])
		start := time.Now()
		if _, err := c.Write(req); err != nil {
			return r, fmt.Errorf("request %d: %w", seq, err)
		}
		r.Sent++
		c.SetReadDeadline(start.Add(timeout))
		for {
			n, err := c.Read(reply)
			if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
				break // lost: on to the next request
			}
			if err != nil {
				return r, fmt.Errorf("reply %d: %w", seq, err)
			}
			if n >= 8 && binary.BigEndian.Uint64(reply) < seq {
				continue // the late reply to a request given up on
			}
			if !bytes.Equal(reply[:n], req) {
				return r, fmt.Errorf("reply %d (%d bytes, request %d): %w", seq, n, size, ErrBadReply)
			}
			r.Received++
			r.RTTs = append(r.RTTs, time.Since(start))
			break
		}
	}
	if r.Received == 0 {
		return r, fmt.Errorf("udp %v: no reply to %d requests", dst, r.Sent)
	}
	return r, nil
}
