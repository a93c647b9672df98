package stack_test

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/udptunnel/udptunnel/stack"
)

func TestOpenTunnelSocketReservesPort(t *testing.T) {
	tests := []struct {
		name  string
		local netip.AddrPort
		// clashes are UDP binds the tunnel socket must refuse.
		clashes []netip.AddrPort
	}{
		{
			name:  "any",
			local: netip.AddrPortFrom(netip.Addr{}, 7000),
			clashes: []netip.AddrPort{
				netip.AddrPortFrom(local4, 7000),
				netip.AddrPortFrom(netip.IPv4Unspecified(), 7000),
				netip.AddrPortFrom(local6, 7000),
			},
		},
		{
			name:  "ipv4",
			local: netip.AddrPortFrom(local4, 7000),
			clashes: []netip.AddrPort{
				netip.AddrPortFrom(local4, 7000),
				netip.AddrPortFrom(netip.IPv4Unspecified(), 7000),
			},
		},
		{
			name:    "ipv6",
			local:   netip.AddrPortFrom(local6, 7000),
			clashes: []netip.AddrPort{netip.AddrPortFrom(local6, 7000)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newWireHost(t, 0)
			cfg := stack.SocketConfig{Local: tt.local}
			so, err := h.st.OpenTunnelSocket(cfg, &recorder{})
			if err != nil {
				t.Fatalf("OpenTunnelSocket: %v", err)
			}
			if got := so.LocalAddr(); got != tt.local {
				t.Errorf("LocalAddr = %v, want %v", got, tt.local)
			}
			if _, err := h.st.OpenTunnelSocket(cfg, &recorder{}); !errors.Is(err, stack.ErrExists) {
				t.Errorf("second OpenTunnelSocket: got %v, want ErrExists", err)
			}
			for _, ap := range tt.clashes {
				if c, err := h.st.ListenUDP(ap); err == nil {
					c.Close()
					t.Errorf("ListenUDP(%v) succeeded on the tunnel port", ap)
				}
			}
			if err := so.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := so.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			so2, err := h.st.OpenTunnelSocket(cfg, &recorder{})
			if err != nil {
				t.Fatalf("OpenTunnelSocket after Close: %v", err)
			}
			so2.Close()
			for _, ap := range tt.clashes {
				c, err := h.st.ListenUDP(ap)
				if err != nil {
					t.Errorf("ListenUDP(%v) after Close: %v", ap, err)
					continue
				}
				c.Close()
			}
		})
	}
}

func TestOpenTunnelSocketEphemeralPort(t *testing.T) {
	h := newWireHost(t, 0)
	a, err := h.st.OpenTunnelSocket(stack.SocketConfig{}, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := h.st.OpenTunnelSocket(stack.SocketConfig{Local: netip.AddrPortFrom(local4, 0)}, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pa, pb := a.LocalAddr().Port(), b.LocalAddr().Port()
	if pa == 0 || pb == 0 || pa == pb {
		t.Fatalf("ephemeral ports %d and %d: want two distinct non-zero ports", pa, pb)
	}
	if got := b.LocalAddr().Addr(); got != local4 {
		t.Errorf("LocalAddr().Addr() = %v, want %v", got, local4)
	}
	if c, err := h.st.ListenUDP(netip.AddrPortFrom(local4, pa)); err == nil {
		c.Close()
		t.Errorf("ListenUDP on the picked port %d succeeded", pa)
	}
	// The picked port receives.
	rec := &recorder{}
	c, err := h.st.OpenTunnelSocket(stack.SocketConfig{}, rec)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h.inject(udpPacket(netip.AddrPortFrom(peer4, 1), netip.AddrPortFrom(local4, c.LocalAddr().Port()), []byte("x"), csumGood))
	if n := len(rec.received()); n != 1 {
		t.Errorf("encap on the ephemeral port received %d datagrams, want 1", n)
	}
}

func TestOpenTunnelSocketConfigErrors(t *testing.T) {
	const port = 7000
	tests := []struct {
		name  string
		cfg   stack.SocketConfig
		encap stack.Encap
		want  error
		field string
	}{
		{"nil encap", stack.SocketConfig{}, nil, stack.ErrInvalid, "encap"},
		{"multicast local", stack.SocketConfig{Local: netip.MustParseAddrPort("224.0.0.1:7000")}, &recorder{}, stack.ErrInvalid, "local address"},
		{"multicast local6", stack.SocketConfig{Local: netip.MustParseAddrPort("[ff02::1]:7000")}, &recorder{}, stack.ErrInvalid, "local address"},
		{"4in6 local", stack.SocketConfig{Local: netip.MustParseAddrPort("[::ffff:192.0.2.1]:7000")}, &recorder{}, stack.ErrInvalid, "local address"},
		{"peer family", stack.SocketConfig{Local: netip.AddrPortFrom(local4, port), Peer: netip.AddrPortFrom(peer6, 1)}, &recorder{}, stack.ErrInvalid, "peer"},
		{"peer family6", stack.SocketConfig{Local: netip.AddrPortFrom(local6, port), Peer: netip.AddrPortFrom(peer4, 1)}, &recorder{}, stack.ErrInvalid, "peer"},
		{"peer without port", stack.SocketConfig{Local: netip.AddrPortFrom(local4, port), Peer: netip.AddrPortFrom(peer4, 0)}, &recorder{}, stack.ErrInvalid, "peer"},
		{"peer unspecified", stack.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, port), Peer: netip.AddrPortFrom(netip.IPv4Unspecified(), 1)}, &recorder{}, stack.ErrInvalid, "peer"},
		{"unknown NIC", stack.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, port), NIC: 99}, &recorder{}, stack.ErrNotFound, "NIC 99"},
		{"negative queue", stack.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, port), QueueLen: -1}, &recorder{}, stack.ErrInvalid, "queue length"},
	}
	h := newWireHost(t, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cfg.Local.Port() == 0 {
				tt.cfg.Local = netip.AddrPortFrom(tt.cfg.Local.Addr(), port)
			}
			so, err := h.st.OpenTunnelSocket(tt.cfg, tt.encap)
			if err == nil {
				so.Close()
				t.Fatalf("OpenTunnelSocket(%+v) succeeded", tt.cfg)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error %q does not wrap %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name the field %q", err, tt.field)
			}
			// Nothing stays reserved: the port is free for a plain UDP
			// socket and for a tunnel socket.
			c, err := h.st.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), port))
			if err != nil {
				t.Fatalf("ListenUDP after the failed open: %v", err)
			}
			c.Close()
			so, err = h.st.OpenTunnelSocket(stack.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, port)}, &recorder{})
			if err != nil {
				t.Fatalf("OpenTunnelSocket after the failed open: %v", err)
			}
			so.Close()
		})
	}
}

func TestConnectedSocketOnlyReceivesFromPeer(t *testing.T) {
	for _, tc := range []struct {
		name        string
		local, peer netip.AddrPort
		others      []netip.AddrPort
	}{
		{
			name:   "ipv4 any",
			local:  netip.AddrPortFrom(netip.Addr{}, 7000),
			peer:   netip.AddrPortFrom(peer4, 5555),
			others: []netip.AddrPort{netip.AddrPortFrom(other4, 5555), netip.AddrPortFrom(peer4, 5556)},
		},
		{
			name:   "ipv4 bound",
			local:  netip.AddrPortFrom(local4, 7000),
			peer:   netip.AddrPortFrom(peer4, 5555),
			others: []netip.AddrPort{netip.AddrPortFrom(other4, 5555), netip.AddrPortFrom(peer4, 5556)},
		},
		{
			name:   "ipv6",
			local:  netip.AddrPortFrom(local6, 7000),
			peer:   netip.AddrPortFrom(peer6, 5555),
			others: []netip.AddrPort{netip.AddrPortFrom(other6, 5555), netip.AddrPortFrom(peer6, 5556)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newWireHost(t, 0)
			rec := &recorder{}
			so, err := h.st.OpenTunnelSocket(stack.SocketConfig{Local: tc.local, Peer: tc.peer}, rec)
			if err != nil {
				t.Fatal(err)
			}
			defer so.Close()
			dst := netip.AddrPortFrom(local4, 7000)
			if tc.peer.Addr().Is6() {
				dst = netip.AddrPortFrom(local6, 7000)
			}
			for _, src := range tc.others {
				h.inject(udpPacket(src, dst, []byte("stranger"), csumGood))
			}
			h.inject(udpPacket(tc.peer, dst, []byte("peer"), csumGood))
			got := rec.received()
			if len(got) != 1 || string(got[0].payload) != "peer" || got[0].src != tc.peer {
				t.Fatalf("encap received %+v, want only the peer's datagram", got)
			}
			if s := so.Counters().Stats(); s.RxPackets != 1 {
				t.Errorf("RxPackets = %d, want 1", s.RxPackets)
			}
		})
	}
}

func TestReceiveConsumed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst netip.AddrPort
		size     int
	}{
		{"ipv4", netip.AddrPortFrom(peer4, 40000), netip.AddrPortFrom(local4, 7000), 100},
		{"ipv4 odd", netip.AddrPortFrom(peer4, 40001), netip.AddrPortFrom(local4, 7000), 1001},
		{"ipv4 empty", netip.AddrPortFrom(peer4, 40001), netip.AddrPortFrom(local4, 7000), 0},
		{"ipv6", netip.AddrPortFrom(peer6, 40000), netip.AddrPortFrom(local6, 7000), 1400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newWireHost(t, 0)
			rec := &recorder{verdict: stack.Consumed}
			so, err := h.st.OpenTunnelSocket(stack.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, 7000)}, rec)
			if err != nil {
				t.Fatal(err)
			}
			defer so.Close()
			payload := pattern(tc.size, 1)
			h.inject(udpPacket(tc.src, tc.dst, payload, csumGood))
			want := []received{{payload: payload, src: tc.src, dst: tc.dst}}
			if diff := cmp.Diff(want, rec.received(), cmp.AllowUnexported(received{}), cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.AddrPort{})); diff != "" {
				t.Errorf("encap received (-want +got):\n%s", diff)
			}
			s := so.Counters().Stats()
			if s.RxPackets != 1 || s.RxBytes != uint64(tc.size) || s.TotalDrops() != 0 {
				t.Errorf("counters %v, want 1 packet of %d bytes and no drops", s, tc.size)
			}
			// A consumed datagram is not queued for normal UDP.
			pc := so.PacketConn()
			pc.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			if _, _, err := pc.ReadFrom(make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("ReadFrom after a consumed datagram: %v, want a deadline error", err)
			}
		})
	}
}

func TestReceivePassToUDP(t *testing.T) {
	h := newWireHost(t, 0)
	rec := &recorder{verdict: stack.PassToUDP}
	so, err := h.st.OpenTunnelSocket(stack.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, 7000), QueueLen: 2}, rec)
	if err != nil {
		t.Fatal(err)
	}
	defer so.Close()
	pc := so.PacketConn()
	if got := pc.LocalAddr().(*net.UDPAddr).Port; got != 7000 {
		t.Errorf("LocalAddr port = %d, want 7000", got)
	}

	srcs := []netip.AddrPort{netip.AddrPortFrom(peer4, 1001), netip.AddrPortFrom(peer6, 1002), netip.AddrPortFrom(other4, 1003)}
	for i, src := range srcs {
		dst := netip.AddrPortFrom(local4, 7000)
		if src.Addr().Is6() {
			dst = netip.AddrPortFrom(local6, 7000)
		}
		h.inject(udpPacket(src, dst, pattern(100+i, byte(i)), csumGood))
	}
	if got := so.Counters().Stats().Dropped(stack.DropQueueFull); got != 1 {
		t.Errorf("DropQueueFull = %d, want 1 (queue of 2, 3 datagrams)", got)
	}
	if got := so.Counters().Stats().Passed; got != 3 {
		t.Errorf("Passed = %d, want 3 (the queue's overflow included)", got)
	}
	if n := len(rec.received()); n != 3 {
		t.Errorf("encap saw %d datagrams, want 3", n)
	}
	buf := make([]byte, 2048)
	for i, src := range srcs[:2] {
		pc.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("ReadFrom %d: %v", i, err)
		}
		if !bytes.Equal(buf[:n], pattern(100+i, byte(i))) {
			t.Errorf("datagram %d: got % x", i, buf[:n])
		}
		if got := from.(*net.UDPAddr).AddrPort(); got != src {
			t.Errorf("datagram %d from %v, want %v", i, got, src)
		}
	}

	// Read deadlines: an empty queue times out, no earlier than asked.
	start := time.Now()
	pc.SetReadDeadline(start.Add(30 * time.Millisecond))
	_, _, err = pc.ReadFrom(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadFrom on an empty queue: %v, want os.ErrDeadlineExceeded", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("error %v is not a net.Error timeout", err)
	}
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Errorf("ReadFrom returned after %v, before its deadline", d)
	}
	pc.SetReadDeadline(time.Now().Add(-time.Second))
	if _, _, err := pc.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ReadFrom past its deadline: %v", err)
	}
	// Clearing the deadline lets a later datagram through.
	pc.SetDeadline(time.Time{})
	h.inject(udpPacket(netip.AddrPortFrom(peer4, 9), netip.AddrPortFrom(local4, 7000), []byte("late"), csumGood))
	n, _, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "late" {
		t.Errorf("ReadFrom = %q, %v; want late", buf[:n], err)
	}
}

func TestPacketConnBlockedReadersWake(t *testing.T) {
	for _, tc := range []struct {
		name string
		wake func(so *stack.Socket)
		want error
	}{
		{"close", func(so *stack.Socket) { so.Close() }, net.ErrClosed},
		{"deadline", func(so *stack.Socket) { so.PacketConn().SetReadDeadline(time.Now()) }, os.ErrDeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newWireHost(t, 0)
			so, err := h.st.OpenTunnelSocket(stack.SocketConfig{}, &recorder{verdict: stack.PassToUDP})
			if err != nil {
				t.Fatal(err)
			}
			defer so.Close()
			const readers = 3
			errs := make(chan error, readers)
			var started sync.WaitGroup
			for range readers {
				started.Add(1)
				go func() {
					started.Done()
					_, _, err := so.PacketConn().ReadFrom(make([]byte, 10))
					errs <- err
				}()
			}
			started.Wait()
			time.Sleep(20 * time.Millisecond) // let them block
			tc.wake(so)
			for i := range readers {
				select {
				case err := <-errs:
					if !errors.Is(err, tc.want) {
						t.Errorf("reader %d: %v, want %v", i, err, tc.want)
					}
				case <-time.After(2 * time.Second):
					so.Close()
					t.Fatalf("%d of %d blocked readers still blocked after %s", readers-i, readers, tc.name)
				}
			}
		})
	}
}

func TestPacketConnWriteTo(t *testing.T) {
	h := newWireHost(t, 0)
	so, err := h.st.OpenTunnelSocket(stack.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, 7000)}, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	defer so.Close()
	pc := so.PacketConn()
	for _, dst := range []netip.AddrPort{netip.AddrPortFrom(peer4, 1701), netip.AddrPortFrom(peer6, 1702)} {
		msg := pattern(333, 5)
		n, err := pc.WriteTo(msg, net.UDPAddrFromAddrPort(dst))
		if err != nil || n != len(msg) {
			t.Fatalf("WriteTo(%v) = %d, %v", dst, n, err)
		}
		o := parseOuter(t, h.readUDP(t))
		if o.dst != dst || o.src.Port() != 7000 || !bytes.Equal(o.payload, msg) || !o.checksumValid {
			t.Errorf("on the wire: %+v; want %v from port 7000 with a valid checksum", o, dst)
		}
	}
	if _, err := pc.WriteTo([]byte("x"), &net.TCPAddr{}); err == nil {
		t.Error("WriteTo a TCP address succeeded")
	}
	if s := so.Counters().Stats(); s.TxPackets != 2 || s.TxBytes != 666 {
		t.Errorf("counters %v, want 2 packets of 333 bytes", s)
	}
	pc.Close()
	if _, err := pc.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer4, 1))); !errors.Is(err, stack.ErrClosed) {
		t.Errorf("WriteTo after Close: %v, want ErrClosed", err)
	}
}

// ipHandler is an IPProtocolHandler that records what it gets.
type ipHandler struct {
	mu  sync.Mutex
	got []received
}

func (h *ipHandler) ReceiveIP(pkt *stack.PacketBuffer, src, dst netip.Addr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, received{
		payload: pkt.Data().AsRange().ToSlice(),
		src:     netip.AddrPortFrom(src, 0),
		dst:     netip.AddrPortFrom(dst, 0),
	})
}

func TestReceiveResubmit(t *testing.T) {
	const proto = tcpip.TransportProtocolNumber(4) // IPIP, as FOU resubmits
	h := newWireHost(t, 0)
	handler := &ipHandler{}
	if err := h.st.RegisterIPProtocol(proto, handler); err != nil {
		t.Fatalf("RegisterIPProtocol: %v", err)
	}
	if err := h.st.RegisterIPProtocol(proto, &ipHandler{}); !errors.Is(err, stack.ErrExists) {
		t.Errorf("second RegisterIPProtocol: %v, want ErrExists", err)
	}
	rec := &recorder{verdict: stack.Resubmit(proto), consume: 4}
	so, err := h.st.OpenTunnelSocket(stack.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, 5555)}, rec)
	if err != nil {
		t.Fatal(err)
	}
	defer so.Close()
	inner := pattern(60, 9)
	payload := append([]byte{0xde, 0xad, 0xbe, 0xef}, inner...)
	h.inject(udpPacket(netip.AddrPortFrom(peer4, 1), netip.AddrPortFrom(local4, 5555), payload, csumGood))
	handler.mu.Lock()
	got := append([]received(nil), handler.got...)
	handler.mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("handler got %d packets, want 1", len(got))
	}
	if !bytes.Equal(got[0].payload, inner) {
		t.Errorf("handler data % x, want the bytes after the 4 the encap consumed (% x)", got[0].payload, inner)
	}
	if got[0].src.Addr() != peer4 || got[0].dst.Addr() != local4 {
		t.Errorf("handler src %v dst %v, want %v %v", got[0].src.Addr(), got[0].dst.Addr(), peer4, local4)
	}
	if s := so.Counters().Stats(); s.TotalDrops() != 0 || s.RxPackets != 1 {
		t.Errorf("counters %v, want 1 packet and no drops", s)
	}

	// Without a handler the packet is dropped and counted.
	h.st.UnregisterIPProtocol(proto)
	h.inject(udpPacket(netip.AddrPortFrom(peer4, 1), netip.AddrPortFrom(local4, 5555), payload, csumGood))
	if s := so.Counters().Stats(); s.Dropped(stack.DropNoHandler) != 1 {
		t.Errorf("DropNoHandler = %d, want 1", s.Dropped(stack.DropNoHandler))
	}
	handler.mu.Lock()
	if len(handler.got) != 1 {
		t.Errorf("unregistered handler got a packet")
	}
	handler.mu.Unlock()
	if err := h.st.RegisterIPProtocol(proto, handler); err != nil {
		t.Errorf("RegisterIPProtocol after Unregister: %v", err)
	}
	h.st.UnregisterIPProtocol(proto)
}

func TestRegisterIPProtocolErrors(t *testing.T) {
	st := newStack(t)
	for _, tc := range []struct {
		name  string
		proto tcpip.TransportProtocolNumber
		h     stack.IPProtocolHandler
		want  error
	}{
		{"zero", 0, &ipHandler{}, stack.ErrInvalid},
		{"above 255", 256, &ipHandler{}, stack.ErrInvalid},
		{"nil handler", 47, nil, stack.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := st.RegisterIPProtocol(tc.proto, tc.h); !errors.Is(err, tc.want) {
				t.Errorf("RegisterIPProtocol(%d) = %v, want %v", tc.proto, err, tc.want)
			}
		})
	}
	st.UnregisterIPProtocol(1000) // out of range: no panic
}

func TestVerdictResubmitProtocol(t *testing.T) {
	for _, tc := range []struct {
		name  string
		v     stack.Verdict
		proto tcpip.TransportProtocolNumber
		ok    bool
	}{
		{"consumed", stack.Consumed, 0, false},
		{"pass", stack.PassToUDP, 0, false},
		{"ipip", stack.Resubmit(4), 4, true},
		{"ipv6 in ip", stack.Resubmit(41), 41, true},
		{"255", stack.Resubmit(255), 255, true},
		{"0 is not consumed", stack.Resubmit(0), 0, true},
		{"out of range", stack.Verdict(-257), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proto, ok := tc.v.ResubmitProtocol()
			if proto != tc.proto || ok != tc.ok {
				t.Errorf("ResubmitProtocol() = %d, %v; want %d, %v", proto, ok, tc.proto, tc.ok)
			}
		})
	}
}

// binder records the socket BindSocket gave it and checks, from Receive,
// that it had it before the first datagram.
type binder struct {
	recorder
	bound   *stack.Socket
	calls   int
	unbound int
}

func (b *binder) BindSocket(so *stack.Socket) { b.bound, b.calls = so, b.calls+1 }

func (b *binder) Receive(pkt *stack.PacketBuffer, src, dst netip.AddrPort) stack.Verdict {
	if b.bound == nil {
		b.unbound++
	}
	return b.recorder.Receive(pkt, src, dst)
}

// TestEncapBinder checks that OpenTunnelSocket hands an EncapBinder its
// socket once, and that it is the socket returned.
func TestEncapBinder(t *testing.T) {
	h := newWireHost(t, 0)
	b := &binder{recorder: recorder{verdict: stack.Consumed}}
	so, err := h.st.OpenTunnelSocket(stack.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, 7001)}, b)
	if err != nil {
		t.Fatal(err)
	}
	defer so.Close()
	if b.calls != 1 || b.bound != so {
		t.Fatalf("BindSocket called %d times with %p; want once with %p", b.calls, b.bound, so)
	}
	h.inject(udpPacket(netip.AddrPortFrom(peer4, 1001), netip.AddrPortFrom(local4, 7001), pattern(10, 1), csumGood))
	if n := len(b.received()); n != 1 || b.unbound != 0 {
		t.Errorf("received %d datagrams, %d before the socket was bound; want 1, 0", n, b.unbound)
	}
}
