//go:build linux

package e2e_test

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/endpoints/hostudp"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// hostVTEP is a userspace VTEP whose underlay is a hostudp endpoint: one
// stack with the endpoint as its "underlay" NIC and a VXLAN socket and
// device on it.
type hostVTEP struct {
	st    *stack.Stack
	ep    *hostudp.Endpoint
	sock  *vxlan.Socket
	dev   *vxlan.Device
	inner netip.Prefix
}

// hostVTEPConfig describes one hostVTEP.
type hostVTEPConfig struct {
	ep hostudp.Config
	// under is the stack's underlay prefix (its address is ep.Addrs[0]).
	under netip.Prefix
	// remote is the peer VTEP's address as the stack knows it.
	remote netip.Addr
	// port is our VXLAN socket's port; dstPort the peer's (0 = port).
	port, dstPort uint16
	inner         netip.Prefix
	// underlayMTU is the outer path MTU the device derives its MTU from
	// (0 = 1500).
	underlayMTU uint32
	// gso gives the device GSO and checksum offload, for an endpoint with
	// the inner-offload path (hostudp.Config.InnerOffset).
	gso bool
}

func newHostVTEP(t testing.TB, c hostVTEPConfig) *hostVTEP {
	t.Helper()
	ep, err := hostudp.New(c.ep)
	if err != nil {
		t.Fatal(err)
	}
	return attachHostVTEP(t, ep, c)
}

// attachHostVTEP builds the stack of a hostVTEP around an open endpoint.
func attachHostVTEP(t testing.TB, ep *hostudp.Endpoint, c hostVTEPConfig) *hostVTEP {
	t.Helper()
	v := &hostVTEP{st: stack.New(stack.Options{}), ep: ep, inner: c.inner}
	t.Cleanup(func() {
		// The endpoint first: Close waits for its goroutines outside
		// the stack's locks (see memlink's Teardown).
		ep.Close()
		v.st.Close()
	})
	nic, err := v.st.AddNIC(ep, stack.NICOptions{Name: "underlay"})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.st.AddAddress(nic, c.under); err != nil {
		t.Fatal(err)
	}
	if v.sock, err = vxlan.OpenSocket(v.st, vxlan.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, c.port)}); err != nil {
		t.Fatal(err)
	}
	v.dev, err = v.sock.AddDevice(nil, vxlan.Config{
		VNI: 42, Remotes: []netip.Addr{c.remote}, Port: c.dstPort, Learning: true, UnderlayMTU: c.underlayMTU,
		GSO: c.gso, ChecksumOffload: c.gso,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.st.AddAddress(v.dev.NIC(), c.inner); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestHostUDPLoopback runs a VXLAN overlay between two stacks in this
// process whose underlays are hostudp endpoints on the host's loopback,
// without privileges: over IPv4 each binds port 4789 on its own loopback
// address (127.0.0.1, 127.0.0.2), as VXLAN peers do; over IPv6 (::1 only)
// they use ports 4789 and 4790 and send to each other's. The stacks know
// the peers by aliases (10.99.0.x, fd00:99::x), since gVisor refuses
// loopback addresses on a non-loopback NIC. Ping and a hashed 8 MiB TCP
// transfer both ways prove the path; the endpoint counters must have moved
// in both directions with batching visible and no drops.
func TestHostUDPLoopback(t *testing.T) {
	for _, tc := range []struct {
		name             string
		hostA, hostB     netip.Addr
		stackA, stackB   netip.Prefix
		portA, portB     uint16
		noGSO            bool
		trustHostChecksm bool
		innerOffset      int
	}{
		{name: "ipv4", hostA: netip.MustParseAddr("127.0.0.1"), hostB: netip.MustParseAddr("127.0.0.2"),
			stackA: netip.MustParsePrefix("10.99.0.1/24"), stackB: netip.MustParsePrefix("10.99.0.2/24"), portA: 4789, portB: 4789},
		{name: "ipv4-no-gso-trust-checksum", hostA: netip.MustParseAddr("127.0.0.1"), hostB: netip.MustParseAddr("127.0.0.2"),
			stackA: netip.MustParsePrefix("10.99.0.1/24"), stackB: netip.MustParsePrefix("10.99.0.2/24"), portA: 4789, portB: 4789,
			noGSO: true, trustHostChecksm: true},
		{name: "ipv4-inner-gso", hostA: netip.MustParseAddr("127.0.0.1"), hostB: netip.MustParseAddr("127.0.0.2"),
			stackA: netip.MustParsePrefix("10.99.0.1/24"), stackB: netip.MustParsePrefix("10.99.0.2/24"), portA: 4789, portB: 4789,
			innerOffset: vxlanInnerOffset},
		{name: "ipv6", hostA: netip.MustParseAddr("::1"), hostB: netip.MustParseAddr("::1"),
			stackA: netip.MustParsePrefix("fd00:99::1/64"), stackB: netip.MustParsePrefix("fd00:99::2/64"), portA: 4789, portB: 4790},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mk := func(self, peer netip.Prefix, host, peerHost netip.Addr, port, peerPort uint16, inner string) *hostVTEP {
				return newHostVTEP(t, hostVTEPConfig{
					ep: hostudp.Config{
						Addrs: []netip.Addr{self.Addr()}, Bind: []netip.Addr{host}, Ports: []uint16{port},
						Aliases: []hostudp.Alias{{Stack: peer.Addr(), Host: peerHost}},
						NoGSO:   tc.noGSO, TrustHostChecksum: tc.trustHostChecksm, InnerOffset: tc.innerOffset, InnerEthernet: tc.innerOffset > 0,
					},
					under: self, remote: peer.Addr(), port: port, dstPort: peerPort, gso: tc.innerOffset > 0,
					inner: netip.MustParsePrefix(inner),
				})
			}
			a := mk(tc.stackA, tc.stackB, tc.hostA, tc.hostB, tc.portA, tc.portB, "192.168.42.1/24")
			b := mk(tc.stackB, tc.stackA, tc.hostB, tc.hostA, tc.portB, tc.portA, "192.168.42.2/24")
			testHostPair(t, a, b)
		})
	}
}

// testHostPair pings and transfers both ways between two hostVTEPs and
// checks their endpoints' counters.
func testHostPair(t *testing.T, a, b *hostVTEP) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, d := range []struct {
		name     string
		src, dst *hostVTEP
	}{{"a-to-b", a, b}, {"b-to-a", b, a}} {
		r, err := e2e.Ping(ctx, d.src.st, d.dst.inner.Addr(), 3, 2*time.Second)
		if err != nil || r.Received != r.Sent {
			t.Fatalf("%s: ping %v: %v, %v", d.name, d.dst.inner.Addr(), r, err)
		}
		const size = 8 << 20
		res, err := e2e.TransferTCP(ctx, d.src.st, d.dst.st, netip.AddrPortFrom(d.dst.inner.Addr(), 5001), size, nil)
		if err != nil {
			t.Fatalf("%s: TCP: %v", d.name, err)
		}
		t.Logf("%s: %v", d.name, res)
	}
	for _, v := range []*hostVTEP{a, b} {
		s := v.ep.Stats()
		t.Logf("%v endpoint: %v", v.ep.LocalAddrs(), s)
		if s.TxPackets == 0 || s.RxPackets == 0 || s.TxBytes < 8<<20 || s.RxBytes < 8<<20 {
			t.Errorf("counters did not move both ways: %v", s)
		}
		if s.TxSyscalls == 0 || s.RxSyscalls == 0 {
			t.Errorf("no syscalls counted: %v", s)
		}
		d := s.Dropped
		if d.Malformed+d.NoSocket+d.QueueFull+d.TooBig+d.SendError+d.Truncated+d.BadSource != 0 {
			t.Errorf("drops: %v", s)
		}
		if ss := v.sock.Tunnel().Counters().Stats(); ss.TotalDrops() != 0 {
			t.Errorf("tunnel socket drops: %v", ss)
		}
	}
}

// TestHostUDPLoopbackUnprivileged runs TestHostUDPLoopback again as user
// nobody (setpriv), when the tests run as root: the endpoint itself must
// need no privileges.
func TestHostUDPLoopbackUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("already unprivileged: TestHostUDPLoopback is the proof")
	}
	if os.Getenv("HOSTUDP_UNPRIVILEGED") != "" {
		t.Skip("inside the unprivileged run")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux) to drop privileges")
	}
	// The test binary may sit in a directory only root can enter.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "e2e.test")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
		bin, "-test.run=^TestHostUDPLoopback$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOSTUDP_UNPRIVILEGED=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestHostUDPLoopback ") {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
	t.Logf("as nobody:\n%s", out)
}
