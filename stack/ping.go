package stack

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Ping sends one ICMP (or ICMPv6) echo request of size payload bytes to dst
// from an unprivileged ping socket of the stack and waits for the matching
// reply, returning the round-trip time. It is for tests, demos and health
// checks of embedded stacks.
func (s *Stack) Ping(ctx context.Context, dst netip.Addr, seq uint16, size int) (time.Duration, error) {
	proto, icmpProto := header.IPv4ProtocolNumber, header.ICMPv4ProtocolNumber
	echo, reply := uint8(header.ICMPv4Echo), uint8(header.ICMPv4EchoReply)
	if netProto(dst) == header.IPv6ProtocolNumber {
		proto, icmpProto = header.IPv6ProtocolNumber, header.ICMPv6ProtocolNumber
		echo, reply = uint8(header.ICMPv6EchoRequest), uint8(header.ICMPv6EchoReply)
	}
	var wq waiter.Queue
	ep, terr := s.gs.NewEndpoint(icmpProto, proto, &wq)
	if terr != nil {
		return 0, fmt.Errorf("ping socket: %w", tcpipErr(terr))
	}
	defer ep.Close()
	if terr := ep.Connect(tcpip.FullAddress{Addr: tcpipAddr(dst)}); terr != nil {
		return 0, fmt.Errorf("ping %v: %w", dst, tcpipErr(terr))
	}
	we, ch := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&we)
	defer wq.EventUnregister(&we)

	msg := make([]byte, header.ICMPv4MinimumSize+size)
	msg[0] = echo
	binary.BigEndian.PutUint16(msg[6:8], seq)
	for i := header.ICMPv4MinimumSize; i < len(msg); i++ {
		msg[i] = byte(i)
	}
	start := time.Now()
	var r bytes.Reader
	r.Reset(msg)
	if _, terr := ep.Write(&r, tcpip.WriteOptions{}); terr != nil {
		return 0, fmt.Errorf("ping %v: %w", dst, tcpipErr(terr))
	}
	for {
		var buf bytes.Buffer
		_, terr := ep.Read(&buf, tcpip.ReadOptions{})
		if _, ok := terr.(*tcpip.ErrWouldBlock); ok {
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return 0, fmt.Errorf("ping %v seq %d: %w", dst, seq, ctx.Err())
			}
		}
		if terr != nil {
			return 0, fmt.Errorf("ping %v: %w", dst, tcpipErr(terr))
		}
		b := buf.Bytes()
		if len(b) >= header.ICMPv4MinimumSize && b[0] == reply && binary.BigEndian.Uint16(b[6:8]) == seq {
			if !bytes.Equal(b[header.ICMPv4MinimumSize:], msg[header.ICMPv4MinimumSize:]) {
				return 0, fmt.Errorf("ping %v seq %d: reply payload differs from request", dst, seq)
			}
			return time.Since(start), nil
		}
	}
}
