package stack

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// datagram is one UDP payload passed to normal UDP by an Encap.
type datagram struct {
	from netip.AddrPort
	data []byte
}

// datagramQueue is the receive queue of a tunnel socket's "normal UDP"
// side. It is on the control-plane path (L2TP control messages, GTP-U
// echo), so it copies payloads and favours simplicity over speed.
type datagramQueue struct {
	mu       sync.Mutex
	q        []datagram
	max      int
	closed   bool
	deadline time.Time
	wake     chan struct{} // 1-buffered: a datagram arrived, the deadline changed or the queue closed
}

func newDatagramQueue(max int) *datagramQueue {
	return &datagramQueue{max: max, wake: make(chan struct{}, 1)}
}

func (q *datagramQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// push queues b, which the queue now owns; it reports false when the queue
// is full or closed.
func (q *datagramQueue) push(from netip.AddrPort, b []byte) bool {
	q.mu.Lock()
	if q.closed || len(q.q) >= q.max {
		q.mu.Unlock()
		return false
	}
	q.q = append(q.q, datagram{from: from, data: b})
	q.mu.Unlock()
	q.signal()
	return true
}

func (q *datagramQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.q = nil
	q.mu.Unlock()
	q.signal()
}

func (q *datagramQueue) setDeadline(t time.Time) {
	q.mu.Lock()
	q.deadline = t
	q.mu.Unlock()
	q.signal()
}

// pop blocks until a datagram, the deadline or close.
func (q *datagramQueue) pop() (datagram, error) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			q.signal() // pass the wake-up on: close concerns every blocked reader
			return datagram{}, net.ErrClosed
		}
		if len(q.q) > 0 {
			d := q.q[0]
			q.q[0] = datagram{}
			q.q = q.q[1:]
			more := len(q.q) > 0
			q.mu.Unlock()
			if more {
				q.signal() // let another reader in
			}
			return d, nil
		}
		deadline := q.deadline
		q.mu.Unlock()

		if deadline.IsZero() {
			<-q.wake
			continue
		}
		d := time.Until(deadline)
		if d <= 0 {
			q.signal() // likewise for the deadline
			return datagram{}, os.ErrDeadlineExceeded
		}
		t := time.NewTimer(d)
		select {
		case <-q.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// PacketConn returns the socket's normal-UDP face as a net.PacketConn:
// reads return the datagrams an Encap passed on with PassToUDP, writes send
// plain UDP datagrams from the socket's port (for a tunnel's control plane,
// such as L2TP's). Closing it closes the socket.
func (so *Socket) PacketConn() net.PacketConn { return (*udpConn)(so) }

type udpConn Socket

var _ net.PacketConn = (*udpConn)(nil)

// ReadFrom implements net.PacketConn.ReadFrom.
func (c *udpConn) ReadFrom(b []byte) (int, net.Addr, error) {
	d, err := c.queue.pop()
	if err != nil {
		return 0, nil, &net.OpError{Op: "read", Net: "udp", Source: c.LocalAddr(), Err: err}
	}
	return copy(b, d.data), net.UDPAddrFromAddrPort(d.from), nil
}

// WriteTo implements net.PacketConn.WriteTo.
func (c *udpConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: errors.New("not a *net.UDPAddr")}
	}
	dst := ua.AddrPort()
	so := (*Socket)(c)
	if err := so.SendDatagram(b, dst); err != nil {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: err}
	}
	return len(b), nil
}

// Close implements net.PacketConn.Close; it closes the socket.
func (c *udpConn) Close() error { return (*Socket)(c).Close() }

// LocalAddr implements net.PacketConn.LocalAddr.
func (c *udpConn) LocalAddr() net.Addr {
	return net.UDPAddrFromAddrPort((*Socket)(c).LocalAddr())
}

// SetDeadline implements net.PacketConn.SetDeadline (writes never block).
func (c *udpConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline implements net.PacketConn.SetReadDeadline.
func (c *udpConn) SetReadDeadline(t time.Time) error {
	c.queue.setDeadline(t)
	return nil
}

// SetWriteDeadline implements net.PacketConn.SetWriteDeadline; writes never
// block, so it has no effect.
func (*udpConn) SetWriteDeadline(time.Time) error { return nil }
