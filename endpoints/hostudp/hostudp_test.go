//go:build linux

package hostudp_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/udptunnel/udptunnel/endpoints/hostudp"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

var (
	loopback    = netip.MustParseAddr("127.0.0.1")
	stackAddr   = netip.MustParsePrefix("10.99.0.1/24")
	silentPeer  = netip.MustParseAddr("10.99.0.3") // 127.0.0.3 on the host
	plainSender = netip.MustParseAddr("10.99.0.9") // 127.0.0.1 on the host
)

// freePort returns a UDP port that is free on 127.0.0.1 right now.
func freePort(t *testing.T) uint16 {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

// vtep is a stack on a hostudp endpoint bound to 127.0.0.1 with a VXLAN
// socket on the endpoint's first port and a device (VNI 42) whose remote
// is silentPeer.
type vtep struct {
	st   *stack.Stack
	ep   *hostudp.Endpoint
	sock *vxlan.Socket
	dev  *vxlan.Device
}

func newVTEP(t *testing.T, ports ...uint16) *vtep {
	t.Helper()
	ep, err := hostudp.New(hostudp.Config{
		Addrs: []netip.Addr{stackAddr.Addr()}, Bind: []netip.Addr{loopback}, Ports: ports,
		Aliases: []hostudp.Alias{
			{Stack: silentPeer, Host: netip.MustParseAddr("127.0.0.3")},
			// Plain senders on 127.0.0.1: gVisor drops loopback sources
			// arriving on a non-loopback NIC.
			{Stack: plainSender, Host: loopback},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	v := &vtep{st: stack.New(stack.Options{}), ep: ep}
	t.Cleanup(func() {
		ep.Close()
		v.st.Close()
	})
	nic, err := v.st.AddNIC(ep, stack.NICOptions{Name: "underlay"})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.st.AddAddress(nic, stackAddr); err != nil {
		t.Fatal(err)
	}
	if v.sock, err = vxlan.OpenSocket(v.st, vxlan.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, ports[0])}); err != nil {
		t.Fatal(err)
	}
	if v.dev, err = v.sock.AddDevice(nil, vxlan.Config{VNI: 42, Remotes: []netip.Addr{silentPeer}}); err != nil {
		t.Fatal(err)
	}
	if err := v.st.AddAddress(v.dev.NIC(), netip.MustParsePrefix("192.168.42.1/24")); err != nil {
		t.Fatal(err)
	}
	return v
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConfigErrors(t *testing.T) {
	a := []netip.Addr{loopback}
	p := []uint16{4789}
	tests := []struct {
		name string
		cfg  hostudp.Config
		want string // in the message: the field
	}{
		{"no-addrs", hostudp.Config{Ports: p}, "Addrs"},
		{"unspecified-addr", hostudp.Config{Addrs: []netip.Addr{netip.IPv4Unspecified()}, Ports: p}, "Addrs"},
		{"two-ipv4", hostudp.Config{Addrs: []netip.Addr{loopback, loopback}, Ports: p}, "Addrs"},
		{"bind-without-family", hostudp.Config{Addrs: a, Bind: []netip.Addr{netip.IPv6Unspecified()}, Ports: p}, "Bind"},
		{"no-ports", hostudp.Config{Addrs: a}, "Ports"},
		{"port-0", hostudp.Config{Addrs: a, Ports: []uint16{0}}, "Ports"},
		{"duplicate-port", hostudp.Config{Addrs: a, Ports: []uint16{4789, 4789}}, "Ports"},
		{"mtu-small", hostudp.Config{Addrs: a, Ports: p, MTU: 60}, "MTU"},
		{"batch", hostudp.Config{Addrs: a, Ports: p, Batch: 5000}, "Batch"},
		{"queue", hostudp.Config{Addrs: a, Ports: p, QueueLen: -1}, "QueueLen"},
		{"alias-families", hostudp.Config{Addrs: a, Ports: p, Aliases: []hostudp.Alias{{Stack: loopback, Host: netip.IPv6Loopback()}}}, "Aliases"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ep, err := hostudp.New(tc.cfg)
			if err == nil {
				ep.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, hostudp.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q: want ErrInvalidConfig naming %s", err, tc.want)
			}
		})
	}
}

// TestPortInUse: a port taken on the host is an error, and nothing of the
// endpoint is left open.
func TestPortInUse(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	free := freePort(t)
	taken := uint16(c.LocalAddr().(*net.UDPAddr).Port)
	if _, err := hostudp.New(hostudp.Config{Addrs: []netip.Addr{loopback}, Ports: []uint16{free, taken}}); err == nil {
		t.Fatal("New bound a port in use")
	}
	// The first port was released again.
	c2, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(free)})
	if err != nil {
		t.Fatalf("port %d still bound after the failed New: %v", free, err)
	}
	c2.Close()
}

// TestCloseReleases: Close stops every goroutine and frees the ports, also
// when the endpoint was attached to a stack that carried traffic.
func TestCloseReleases(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	port := freePort(t)
	func() {
		v := newVTEP(&testing.T{}, port) // cleanup below, not at the test's end
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		v.st.Ping(ctx, netip.MustParseAddr("192.168.42.2"), 1, 56)
		v.ep.Close()
		v.ep.Close() // idempotent
		v.st.Close()
	}()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
	if err != nil {
		t.Fatalf("port %d still bound after Close: %v", port, err)
	}
	c.Close()
}

// TestGarbage sends datagrams that are not VXLAN, or broken VXLAN, from a
// plain UDP socket: each is rebuilt and delivered (the endpoint does not
// judge payloads), the tunnel socket counts each as a drop, and nothing
// panics. The largest UDP datagram fits the receive buffers whole.
func TestGarbage(t *testing.T) {
	port := freePort(t)
	v := newVTEP(t, port)
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big := make([]byte, 65507)
	for i := range big {
		big[i] = byte(i * 7)
	}
	datagrams := [][]byte{
		{},                                 // empty: no VXLAN header
		{0x08},                             // one byte
		{0x08, 0, 0, 0, 0, 0, 0},           // 7 bytes: truncated header
		{0xff, 0, 0, 0, 0, 0, 42, 0},       // reserved flags set
		{0x08, 0, 0, 0, 0, 0, 7, 0},        // unknown VNI 7, no frame
		{0x08, 0, 0, 0, 0, 0, 42, 0, 1, 2}, // VNI 42, a 2-byte "frame"
		big,                                // 64 KiB of noise
		append([]byte{0x08, 0, 0, 0, 0, 0, 42, 0}, big[:1000]...), // VNI 42, noise frame
	}
	for _, d := range datagrams {
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "all datagrams delivered", func() bool { return v.ep.Stats().RxPackets >= uint64(len(datagrams)) })
	s := v.ep.Stats()
	t.Logf("endpoint: %v", s)
	t.Logf("socket: %v", v.sock.Tunnel().Counters().Stats())
	t.Logf("device: %v", v.dev.Counters().Stats())
	// The first five and the 64 KiB of noise fail at the VXLAN header.
	eventually(t, "drops counted", func() bool { return v.sock.Tunnel().Counters().Stats().TotalDrops() >= 6 })
	t.Logf("socket: %v", v.sock.Tunnel().Counters().Stats())
	if s.RxBytes < uint64(len(big)) {
		t.Errorf("the 64 KiB datagram was not delivered whole: %v", s)
	}
}

// TestPortUnreachable sends to a host address where nothing listens: the
// host's ICMP port unreachable, read from the socket's error queue, must
// reach the tunnel socket as an ICMP error quoting our VXLAN datagram.
func TestPortUnreachable(t *testing.T) {
	v := newVTEP(t, freePort(t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; v.sock.Tunnel().ICMPErrors() == 0 && ctx.Err() == nil; i++ {
		pctx, pcancel := context.WithTimeout(ctx, 100*time.Millisecond)
		v.st.Ping(pctx, netip.MustParseAddr("192.168.42.2"), uint16(i), 56)
		pcancel()
	}
	s := v.ep.Stats()
	t.Logf("endpoint: %v; socket ICMP errors %d", s, v.sock.Tunnel().ICMPErrors())
	if s.ICMPErrors == 0 || v.sock.Tunnel().ICMPErrors() == 0 {
		t.Fatalf("no ICMP error reached the tunnel socket")
	}
}

// TestNotUDP: the stack answers a datagram to a served port where it has
// no socket with an ICMP port unreachable; the endpoint cannot send ICMP
// through a UDP socket and counts it.
func TestNotUDP(t *testing.T) {
	p1, p2 := freePort(t), freePort(t)
	for p2 == p1 {
		p2 = freePort(t)
	}
	v := newVTEP(t, p1, p2)
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(p2)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello"))
	eventually(t, "the stack's ICMP counted as not UDP", func() bool { return v.ep.Stats().Dropped.NotUDP > 0 })
}

// TestTTLAndTOS: the outer TTL and TOS the tunnel sets (vxlan Config.TTL,
// TOS) leave the host on the datagram (IP_TTL and IP_TOS control
// messages), as a receiver with IP_RECVTTL and IP_RECVTOS sees.
func TestTTLAndTOS(t *testing.T) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 4)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	rc, err := rx.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVTTL, 1)
		unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVTOS, 1)
	})
	peer := netip.MustParseAddr("10.99.0.4")
	port := uint16(rx.LocalAddr().(*net.UDPAddr).Port)
	ep, err := hostudp.New(hostudp.Config{
		Addrs: []netip.Addr{stackAddr.Addr()}, Bind: []netip.Addr{loopback}, Ports: []uint16{freePort(t)},
		Aliases: []hostudp.Alias{{Stack: peer, Host: netip.MustParseAddr("127.0.0.4")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := stack.New(stack.Options{})
	defer func() { ep.Close(); st.Close() }()
	nic, err := st.AddNIC(ep, stack.NICOptions{Name: "underlay"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddAddress(nic, stackAddr); err != nil {
		t.Fatal(err)
	}
	sock, err := vxlan.OpenSocket(st, vxlan.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, ep.LocalAddrs()[0].Port())})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := sock.AddDevice(nil, vxlan.Config{VNI: 42, Remotes: []netip.Addr{peer}, Port: port, TTL: 17, TOS: 0x28})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddAddress(dev.NIC(), netip.MustParsePrefix("192.168.42.1/24")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	st.Ping(ctx, netip.MustParseAddr("192.168.42.2"), 1, 56) // an ARP request goes out
	rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf, oob := make([]byte, 2048), make([]byte, 256)
	_, oobn, _, from, err := rx.ReadMsgUDPAddrPort(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		t.Fatal(err)
	}
	ttl, tos := -1, -1
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TTL && len(m.Data) >= 4:
			ttl = int(int32(binary.NativeEndian.Uint32(m.Data)))
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TOS && len(m.Data) >= 1:
			tos = int(m.Data[0])
		}
	}
	if ttl != 17 || tos != 0x28 {
		t.Errorf("datagram from %v: TTL %d TOS %#x, want 17 and 0x28", from, ttl, tos)
	}
	if from != ep.LocalAddrs()[0] {
		t.Errorf("datagram from %v, want from the endpoint's socket %v (the flow-hashed source port is lost)", from, ep.LocalAddrs()[0])
	}
}

// TestWildcardBind: bound to all host addresses, the endpoint receives on
// any of them, and rebuilt datagrams are addressed to the stack's address.
func TestWildcardBind(t *testing.T) {
	port := freePort(t)
	ep, err := hostudp.New(hostudp.Config{
		Addrs: []netip.Addr{stackAddr.Addr()}, Bind: []netip.Addr{netip.IPv4Unspecified()}, Ports: []uint16{port},
		Aliases: []hostudp.Alias{{Stack: plainSender, Host: loopback}},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := stack.New(stack.Options{})
	defer func() { ep.Close(); st.Close() }()
	nic, err := st.AddNIC(ep, stack.NICOptions{Name: "underlay"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddAddress(nic, stackAddr); err != nil {
		t.Fatal(err)
	}
	pc, err := st.ListenUDP(netip.AddrPortFrom(stackAddr.Addr(), port))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if got := ep.LocalAddrs()[0]; got.Addr() != netip.IPv4Unspecified() {
		t.Errorf("bound to %v, want 0.0.0.0", got)
	}
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("to 127.0.0.1"))
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	n, from, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:n]) != "to 127.0.0.1" || !strings.HasPrefix(from.String(), plainSender.String()+":") {
		t.Errorf("stack socket got %q from %v", buf[:n], from)
	}
}
