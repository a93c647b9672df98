//go:build linux

package main

// The end-to-end proof of `udptunnel run` (issue 4): the built binary,
// started as an ordinary process inside a network namespace, joins a Linux
// kernel VXLAN device in another namespace, and host applications reach the
// overlay through its SOCKS5 server, HTTP CONNECT proxy and port forwards.
//
//	namespace A (the client's host)            namespace B (the kernel peer)
//	  udptunnel run (uid nobody, no caps)        vx42: VXLAN 42, 192.168.42.2/24
//	    hostudp sockets on 10.201.0.1:4789  <-veth->  10.201.0.2
//	    stack: vxlan42 192.168.42.1/24             HTTP server, UDP echo
//	  curl, SOCKS5 UDP client, host server
//
// The tun run puts the stack's underlay on a TUN in A instead (10.202.0.1 on
// the stack's side, 10.202.0.2 on the kernel's), A routing to B.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/e2e"
)

// e2eBody is what the HTTP server in B serves: large enough to take many
// full-sized TCP segments through the tunnel, and recognizable.
var e2eBody = func() []byte {
	var b bytes.Buffer
	b.WriteString("hello from the kernel's side of VXLAN 42\n")
	for i := 0; b.Len() < 200<<10; i++ {
		fmt.Fprintf(&b, "line %06d of the body served in namespace B\n", i)
	}
	return b.Bytes()
}()

// e2eRequire skips t, naming what is missing, unless the machine can run
// the end-to-end tests.
func e2eRequire(t *testing.T, cmds ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("end-to-end run: needs root (network namespaces, veth, kernel VXLAN)")
	}
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("end-to-end run: needs the %s command, not found in PATH", c)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("end-to-end run: needs /dev/net/tun: %v", err)
	}
}

// TestRunEndToEnd builds udptunnel and runs it against the kernel's VXLAN:
// rootless over the hostudp underlay, as root over a TUN underlay, and with
// bad configurations that must start nothing.
func TestRunEndToEnd(t *testing.T) {
	e2eRequire(t, "ip", "curl", "setpriv", "ping", "bridge")
	if testing.Short() {
		t.Skip("end-to-end run: skipped in -short mode")
	}
	bin := buildBinary(t)
	t.Run("hostudp", func(t *testing.T) { t.Parallel(); testRunHostUDP(t, bin) })
	t.Run("tun", func(t *testing.T) { t.Parallel(); testRunTUN(t, bin) })
	t.Run("hostudp offload", func(t *testing.T) { t.Parallel(); testRunOffload(t, bin) })
	t.Run("config errors", func(t *testing.T) { t.Parallel(); testRunConfigErrors(t, bin) })
}

// buildBinary builds the command into a directory everyone may read, so
// that the unprivileged user can execute it.
func buildBinary(t *testing.T) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("end-to-end run: needs the go command to build udptunnel, not found in PATH")
	}
	dir := publicTempDir(t)
	bin := filepath.Join(dir, "udptunnel")
	out, err := exec.Command(goCmd, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// publicTempDir returns a t.TempDir that every user may read and write
// (t.TempDir makes its directories 0700, for root alone).
func publicTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// writeFile writes a file every user may read.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// lab is the two namespaces of a run, joined by a veth pair: A
// (10.201.0.1/24 on vA) and B (10.201.0.2/24 on vB).
type lab struct {
	a, b *e2e.Netns
}

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{a: e2e.NewNetns(t, "ut-clia"), b: e2e.NewNetns(t, "ut-clib")}
	l.a.Run(t, "ip", "link", "add", "vA", "type", "veth", "peer", "name", "vB", "netns", l.b.Name())
	l.a.Run(t, "ip", "addr", "add", "10.201.0.1/24", "dev", "vA")
	l.b.Run(t, "ip", "addr", "add", "10.201.0.2/24", "dev", "vB")
	for _, s := range []struct {
		ns  *e2e.Netns
		dev string
	}{{l.a, "vA"}, {l.b, "vB"}} {
		s.ns.Run(t, "ip", "link", "set", s.dev, "up")
		s.ns.Run(t, "ip", "link", "set", "lo", "up")
	}
	return l
}

// addKernelVXLAN makes B's vx42 (VNI 42, port 4789, learning on, the
// kernel's default) sending to remote, with 192.168.42.2/24.
//
// vx42 keeps the kernel's default offloads: it leaves inner checksums
// partial (CHECKSUM_PARTIAL: the pseudo-header sum only) for the device
// below, and a veth passes the skb on with the promise attached, so the
// datagram reaches our host UDP socket with the inner checksum unfinished
// (and, with TSO, one datagram carries a 64 KiB burst). Our device (or,
// in the offload run, the endpoint) completes such checksums; without that
// every inner TCP segment would be dropped as bad while ping still worked.
func addKernelVXLAN(t *testing.T, b *e2e.Netns, remote string) {
	t.Helper()
	b.Run(t, "ip", "link", "add", "vx42", "type", "vxlan", "id", "42", "dstport", "4789",
		"remote", remote, "local", "10.201.0.2")
	b.Run(t, "ip", "addr", "add", "192.168.42.2/24", "dev", "vx42")
	b.Run(t, "ip", "link", "set", "vx42", "up")
}

// peerServers are the servers in B on 192.168.42.2: HTTP (serving
// e2eBody) and a UDP echo.
type peerServers struct {
	httpPort, udpPort int
}

func startPeerServers(t *testing.T, b *e2e.Netns) peerServers {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	if err := b.Do(func() (err error) {
		if ln, err = net.Listen("tcp4", "192.168.42.2:0"); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", "192.168.42.2:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write(e2eBody)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("echo: "), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() { pc.Close() })
	return peerServers{httpPort: ln.Addr().(*net.TCPAddr).Port, udpPort: pc.LocalAddr().(*net.UDPAddr).Port}
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// client is a running `udptunnel run`.
type client struct {
	cmd    *exec.Cmd
	ns     *e2e.Netns
	stderr *syncBuffer
	done   chan struct{}
	err    error // the process's exit, once done is closed
}

// startClient starts `udptunnel run -c cfg` inside ns: as the user nobody
// (setpriv: no capabilities, no supplementary groups) when rootless.
func startClient(t *testing.T, ns *e2e.Netns, bin, cfg string, rootless bool) *client {
	t.Helper()
	args := []string{bin, "run", "-c", cfg}
	if rootless {
		uid, gid := nobody(t)
		args = append([]string{"setpriv", "--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(gid), "--clear-groups"}, args...)
	}
	c := &client{cmd: ns.Command(args...), ns: ns, stderr: &syncBuffer{}, done: make(chan struct{})}
	c.cmd.Stdout, c.cmd.Stderr = c.stderr, c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			c.cmd.Process.Kill()
			<-c.done
		}
		if t.Failed() {
			t.Logf("udptunnel output:\n%s", c.stderr.String())
		}
	})
	return c
}

// nobody returns the user nobody's uid and primary gid (the group is
// nogroup on Debian, nobody elsewhere), skipping t if there is no such user.
func nobody(t *testing.T) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("end-to-end run: needs the user nobody to run the client without root: %v", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// exited waits up to d for the process to end and returns its exit code
// (-1 if it did not end).
func (c *client) exited(d time.Duration) int {
	select {
	case <-c.done:
		return c.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		return -1
	}
}

// httpClient returns an HTTP client whose connections are made inside ns.
func httpClient(ns *e2e.Netns) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = ns.Do(func() error {
				c, err = new(net.Dialer).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

// waitHealthy polls the admin listener's /healthz until it answers 200.
func (c *client) waitHealthy(t *testing.T, admin string) {
	t.Helper()
	hc := httpClient(c.ns)
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-c.done:
			t.Fatalf("udptunnel exited before it was healthy: %v\n%s", c.err, c.stderr.String())
		default:
		}
		resp, err := hc.Get("http://" + admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz not OK within 15 s: %v\n%s", err, c.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metrics scrapes /metrics into a map from series ("name{labels}") to value.
func metrics(t *testing.T, ns *e2e.Netns, admin string) map[string]float64 {
	t.Helper()
	resp, err := httpClient(ns).Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// curl runs curl inside ns and returns the body it fetched.
func curl(t *testing.T, ns *e2e.Netns, args ...string) []byte {
	t.Helper()
	out, err := ns.Command(append([]string{"curl", "-sS", "--fail", "--max-time", "10"}, args...)...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

// checkBody fails t unless got is e2eBody.
func checkBody(t *testing.T, how string, got []byte) {
	t.Helper()
	if !bytes.Equal(got, e2eBody) {
		t.Errorf("%s: got %d bytes, want the %d-byte body (prefix %q)", how, len(got), len(e2eBody), got[:min(len(got), 60)])
	}
}

// socks5UDPExchange sends msg to dst through the SOCKS5 server at proxy with
// UDP ASSOCIATE (RFC 1928 §7), from sockets inside ns, and returns the
// payload of the reply and the address it came from.
func socks5UDPExchange(ns *e2e.Netns, proxy string, dst netip.AddrPort, msg []byte) ([]byte, netip.AddrPort, error) {
	var ctrl net.Conn
	var pc *net.UDPConn
	if err := ns.Do(func() (err error) {
		if ctrl, err = net.DialTimeout("tcp", proxy, 5*time.Second); err != nil {
			return err
		}
		pc, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		return err
	}); err != nil {
		if ctrl != nil {
			ctrl.Close()
		}
		return nil, netip.AddrPort{}, err
	}
	defer ctrl.Close()
	defer pc.Close()
	ctrl.SetDeadline(time.Now().Add(5 * time.Second))
	// Greeting: version 5, one method, no authentication.
	if _, err := ctrl.Write([]byte{5, 1, 0}); err != nil {
		return nil, netip.AddrPort{}, err
	}
	var sel [2]byte
	if _, err := io.ReadFull(ctrl, sel[:]); err != nil || sel != [2]byte{5, 0} {
		return nil, netip.AddrPort{}, fmt.Errorf("method selection %v: %v", sel, err)
	}
	// UDP ASSOCIATE, declaring the address we will send from.
	me := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	req := []byte{5, 3, 0, 1}
	req = append(req, me.Addr().AsSlice()...)
	req = binary.BigEndian.AppendUint16(req, me.Port())
	if _, err := ctrl.Write(req); err != nil {
		return nil, netip.AddrPort{}, err
	}
	var rep [10]byte // VER REP RSV ATYP(1: IPv4) ADDR(4) PORT(2)
	if _, err := io.ReadFull(ctrl, rep[:]); err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("UDP ASSOCIATE reply: %v", err)
	}
	if rep[0] != 5 || rep[1] != 0 || rep[3] != 1 {
		return nil, netip.AddrPort{}, fmt.Errorf("UDP ASSOCIATE reply %v", rep)
	}
	relay := netip.AddrPortFrom(netip.AddrFrom4([4]byte(rep[4:8])), binary.BigEndian.Uint16(rep[8:]))
	// RSV RSV FRAG ATYP DST.ADDR DST.PORT DATA
	dgram := []byte{0, 0, 0, 1}
	dgram = append(dgram, dst.Addr().AsSlice()...)
	dgram = binary.BigEndian.AppendUint16(dgram, dst.Port())
	dgram = append(dgram, msg...)
	buf := make([]byte, 64<<10)
	for try := 0; try < 3; try++ {
		if _, err := pc.WriteToUDPAddrPort(dgram, relay); err != nil {
			return nil, netip.AddrPort{}, err
		}
		pc.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			continue // the first datagram may wait for ARP
		}
		if from != relay || n < 10 || !bytes.Equal(buf[:4], []byte{0, 0, 0, 1}) {
			return nil, netip.AddrPort{}, fmt.Errorf("reply from %v: % x", from, buf[:min(n, 10)])
		}
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(buf[4:8])), binary.BigEndian.Uint16(buf[8:10]))
		return append([]byte(nil), buf[10:n]...), src, nil
	}
	return nil, netip.AddrPort{}, errors.New("no reply through the UDP relay")
}

// udpExchange sends msg to addr from a socket inside ns and returns the reply.
func udpExchange(ns *e2e.Netns, addr string, msg []byte) ([]byte, error) {
	var c net.Conn
	if err := ns.Do(func() (err error) { c, err = net.Dial("udp4", addr); return err }); err != nil {
		return nil, err
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	for try := 0; try < 3; try++ {
		if _, err := c.Write(msg); err != nil {
			return nil, err
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := c.Read(buf); err == nil {
			return buf[:n], nil
		}
	}
	return nil, errors.New("no reply")
}

// waitFor polls cond for up to 5 s and fails t if it never holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// checkPortsFree fails t unless every address can be bound inside ns
// (tcp:ADDR or udp:ADDR): nothing of the client is left holding them.
func checkPortsFree(t *testing.T, ns *e2e.Netns, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		network, addr, _ := strings.Cut(a, ":")
		err := ns.Do(func() error {
			if network == "tcp" {
				ln, err := net.Listen("tcp4", addr)
				if err == nil {
					ln.Close()
				}
				return err
			}
			pc, err := net.ListenPacket("udp4", addr)
			if err == nil {
				pc.Close()
			}
			return err
		})
		if err != nil {
			t.Errorf("%s %s is still taken: %v", network, addr, err)
		}
	}
}

// tshark returns the fields tshark prints for the packets of file that
// match filter, one line per packet.
func tshark(file, filter string, fields ...string) ([]string, error) {
	args := []string{"-n", "-r", file, "-Y", filter, "-T", "fields"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		return nil, fmt.Errorf("tshark %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.Fields(strings.TrimSpace(string(out))), nil
}

// testRunHostUDP is the rootless run: hostudp underlay, every access path.
func testRunHostUDP(t *testing.T, bin string) {
	l := newLab(t)
	addKernelVXLAN(t, l.b, "10.201.0.1")
	peer := startPeerServers(t, l.b)

	// The host server in A that the overlay-to-host forward reaches.
	var hostLn net.Listener
	if err := l.a.Do(func() (err error) { hostLn, err = net.Listen("tcp4", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer hostLn.Close()
	const hostReply = "hello from A's host server\n"
	go func() {
		for {
			c, err := hostLn.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				io.WriteString(c, hostReply+"you said: "+line)
			}()
		}
	}()

	dir := publicTempDir(t)
	uid, gid := nobody(t)
	pcapDir := filepath.Join(dir, "pcap")
	if err := os.Mkdir(pcapDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(pcapDir, uid, gid); err != nil {
		t.Fatal(err)
	}
	outerPcap, innerPcap := filepath.Join(pcapDir, "outer.pcap"), filepath.Join(pcapDir, "inner.pcap")
	cfg := filepath.Join(dir, "cfg.yaml")
	writeFile(t, cfg, fmt.Sprintf(`# The rootless client of the end-to-end test.
log: {level: info}
admin: {listen: "127.0.0.1:9090"}
underlay: {type: hostudp}
interfaces:
  - type: vxlan
    id: 42
    remote: 10.201.0.2
    addresses: [192.168.42.1/24]
    vxlan: {learning: true}
socks5: {listen: "127.0.0.1:1080"}
http_connect: {listen: "127.0.0.1:8080"}
forwards:
  - {proto: tcp, listen: "127.0.0.1:8081", target: "192.168.42.2:%d"}
  - {proto: udp, listen: "127.0.0.1:5353", target: "192.168.42.2:%d"}
  - {proto: tcp, direction: overlay-to-host, listen: "192.168.42.1:9000", target: "%s"}
pcap: {outer: %q, inner: %q}
shutdown_timeout: 2s
`, peer.httpPort, peer.udpPort, hostLn.Addr(), outerPcap, innerPcap))

	c := startClient(t, l.a, bin, cfg, true)
	c.waitHealthy(t, "127.0.0.1:9090")

	// It really runs as nobody, with no capabilities at all.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d", uid, uid, uid, uid),
		"CapPrm:\t0000000000000000", "CapEff:\t0000000000000000", "CapAmb:\t0000000000000000",
	} {
		if !strings.Contains(string(status), want+"\n") {
			t.Errorf("/proc/PID/status lacks %q:\n%s", want, status)
		}
	}

	// The kernel pings our stack (ARP flooded to us, answered, learned).
	l.b.Run(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", "192.168.42.1")

	// TCP from A's host into the overlay: SOCKS5, HTTP CONNECT, forward.
	url := fmt.Sprintf("http://192.168.42.2:%d/", peer.httpPort)
	checkBody(t, "curl through SOCKS5", curl(t, l.a, "--socks5", "127.0.0.1:1080", url))
	checkBody(t, "curl through HTTP CONNECT", curl(t, l.a, "-p", "-x", "http://127.0.0.1:8080", url))
	checkBody(t, "curl through the TCP forward", curl(t, l.a, "http://127.0.0.1:8081/"))

	// UDP: SOCKS5 UDP ASSOCIATE and the UDP forward, to B's echo.
	echo := netip.AddrPortFrom(netip.MustParseAddr("192.168.42.2"), uint16(peer.udpPort))
	got, src, err := socks5UDPExchange(l.a, "127.0.0.1:1080", echo, []byte("through SOCKS5 UDP ASSOCIATE"))
	if err != nil {
		t.Errorf("SOCKS5 UDP ASSOCIATE: %v", err)
	} else if string(got) != "echo: through SOCKS5 UDP ASSOCIATE" || src != echo {
		t.Errorf("SOCKS5 UDP ASSOCIATE: reply %q from %v", got, src)
	}
	if got, err := udpExchange(l.a, "127.0.0.1:5353", []byte("through the UDP forward")); err != nil {
		t.Errorf("UDP forward: %v", err)
	} else if string(got) != "echo: through the UDP forward" {
		t.Errorf("UDP forward: reply %q", got)
	}

	// TCP from the kernel's side into A's host: the overlay-to-host forward.
	var conn net.Conn
	if err := l.b.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp4", "192.168.42.1:9000", 5*time.Second)
		return err
	}); err != nil {
		t.Errorf("B dials the overlay-to-host forward: %v", err)
	} else {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "hi from B\n")
		reply, err := io.ReadAll(conn)
		conn.Close()
		if want := hostReply + "you said: hi from B\n"; string(reply) != want || err != nil {
			t.Errorf("overlay-to-host forward: %q, %v; want %q", reply, err, want)
		}
	}

	// The kernel learned our MAC: an entry besides the all-zeros default,
	// pointing at our underlay address, and the one its ARP resolved.
	neigh := strings.Fields(l.b.Run(t, "ip", "neigh", "show", "192.168.42.1", "dev", "vx42"))
	ourMAC := ""
	for i, f := range neigh {
		if f == "lladdr" && i+1 < len(neigh) {
			ourMAC = neigh[i+1]
		}
	}
	fdb := l.b.Run(t, "bridge", "fdb", "show", "dev", "vx42")
	if ourMAC == "" || !slices.Contains(kernelLearned(fdb, "10.201.0.1"), ourMAC) {
		t.Errorf("the kernel did not learn our MAC %q behind 10.201.0.1:\n%s", ourMAC, fdb)
	}

	// Our side: counters, and the FDB learned the kernel's MAC.
	m := metrics(t, l.a, "127.0.0.1:9090")
	checkMetrics(t, m, "vxlan42")

	// SIGTERM with a connection open through the TCP forward that never
	// ends by itself: /healthz turns 503 while it drains, the drain gives
	// up at shutdown_timeout (2 s) and closes it, the process exits 0,
	// having said so, and frees its ports.
	var held net.Conn
	if err := l.a.Do(func() (err error) { held, err = net.Dial("tcp4", "127.0.0.1:8081"); return err }); err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	waitFor(t, "the held connection to be forwarded", func() bool {
		return metrics(t, l.a, "127.0.0.1:9090")[`udptunnel_forward_sessions_active{direction="host-to-overlay",listen="127.0.0.1:8081",proto="tcp"}`] == 1
	})
	start := time.Now()
	c.cmd.Process.Signal(syscall.SIGTERM)
	waitFor(t, "/healthz to answer 503 while draining", func() bool {
		resp, err := httpClient(l.a).Get("http://127.0.0.1:9090/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	if code := c.exited(2*time.Second + 3*time.Second); code != 0 {
		t.Fatalf("after SIGTERM: exit code %d (-1: still running after %v), %v\n%s", code, time.Since(start), c.err, c.stderr.String())
	}
	t.Logf("exited %v after SIGTERM; its log:\n%s", time.Since(start).Round(time.Millisecond), c.stderr.String())
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Errorf("exited %v after SIGTERM: the open connection was not given the 2 s drain", d)
	}
	for _, w := range []string{"shutting down", "drain timed out"} {
		if !strings.Contains(c.stderr.String(), w) {
			t.Errorf("the log does not say %q:\n%s", w, c.stderr.String())
		}
	}
	held.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := held.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the held connection is still open after the exit: %v", err)
	}
	checkPortsFree(t, l.a, "tcp:127.0.0.1:1080", "tcp:127.0.0.1:8080", "tcp:127.0.0.1:8081", "tcp:127.0.0.1:9090",
		"udp:127.0.0.1:5353", "udp:10.201.0.1:4789")

	// The captures: outer packets are VXLAN 42, inner ones Ethernet frames
	// with the pings and the TCP connections in them.
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Log("tshark not installed: the pcap files are not decoded")
		return
	}
	// (tshark starts slowly: the three run at once.)
	var wg sync.WaitGroup
	var vnis, icmp, tcp []string
	errs := make([]error, 3)
	wg.Add(3)
	go func() { defer wg.Done(); vnis, errs[0] = tshark(outerPcap, "udp.port == 4789", "vxlan.vni") }()
	go func() { defer wg.Done(); icmp, errs[1] = tshark(innerPcap, "eth && icmp.type == 0", "eth.src") }()
	go func() {
		defer wg.Done()
		tcp, errs[2] = tshark(innerPcap, fmt.Sprintf("eth && tcp.port == %d", peer.httpPort), "frame.number")
	}()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if len(vnis) == 0 {
		t.Error("outer capture: no VXLAN packets")
	}
	for _, v := range vnis {
		if v != "42" {
			t.Errorf("outer capture: a VXLAN packet with VNI %q", v)
			break
		}
	}
	// The kernel's TSO puts up to 64 KiB in one frame: the HTTP
	// exchanges (SYNs, requests, bodies, ACKs, FINs) still take dozens.
	if len(icmp) < 3 || len(tcp) < 30 {
		t.Errorf("inner capture: %d ICMP echo replies (want 3), %d TCP frames to or from the HTTP server", len(icmp), len(tcp))
	}
	t.Logf("captures: %d outer VXLAN 42 packets; inner: %d echo replies, %d HTTP TCP frames", len(vnis), len(icmp), len(tcp))
}

// kernelLearned returns the MACs of `bridge fdb show` output that the
// kernel's VXLAN maps to the remote dst, other than the all-zeros default.
func kernelLearned(fdb, dst string) []string {
	var macs []string
	re := regexp.MustCompile(`(?m)^([0-9a-f:]{17}) dst ` + regexp.QuoteMeta(dst) + ` `)
	for _, m := range re.FindAllStringSubmatch(fdb, -1) {
		if m[1] != "00:00:00:00:00:00" {
			macs = append(macs, m[1])
		}
	}
	return macs
}

// checkMetrics checks the scraped counters of interface name: packets
// both ways, no drops, and a learned FDB entry (the kernel's vx42 MAC).
func checkMetrics(t *testing.T, m map[string]float64, name string) {
	t.Helper()
	iface := fmt.Sprintf(`{kind="interface",name=%q,type="vxlan"}`, name)
	sock := `{kind="socket",name=":4789",type="vxlan"}`
	for _, s := range []string{
		"udptunnel_rx_packets_total" + iface, "udptunnel_tx_packets_total" + iface,
		"udptunnel_rx_bytes_total" + iface, "udptunnel_tx_bytes_total" + iface,
		"udptunnel_rx_packets_total" + sock, "udptunnel_tx_packets_total" + sock,
		"udptunnel_fdb_learned_total" + iface,
	} {
		if v, ok := m[s]; !ok || v == 0 {
			t.Errorf("/metrics: %s = %v (present %v), want > 0", s, v, ok)
		}
	}
	// The all-zeros default (the remote) and at least the kernel's MAC.
	if v := m["udptunnel_fdb_entries"+iface]; v < 2 {
		t.Errorf("/metrics: fdb_entries = %v, want the default and a learned entry", v)
	}
	for s, v := range m {
		if strings.HasPrefix(s, "udptunnel_drops_total{") && v != 0 {
			t.Errorf("/metrics: %s = %v, want no drops", s, v)
		}
	}
	t.Logf("vxlan42: rx %v packets, tx %v packets; fdb %v entries, %v learned",
		m["udptunnel_rx_packets_total"+iface], m["udptunnel_tx_packets_total"+iface],
		m["udptunnel_fdb_entries"+iface], m["udptunnel_fdb_learned_total"+iface])
}

// testRunTUN is the run with the tun underlay (root: it creates the TUN).
// The stack's underlay address is 10.202.0.1 on the TUN ut0, whose kernel
// side is 10.202.0.2; A forwards between ut0 and the veth, and B reaches
// 10.202.0.0/24 through A.
func testRunTUN(t *testing.T, bin string) {
	l := newLab(t)
	l.a.Run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	l.b.Run(t, "ip", "route", "add", "10.202.0.0/24", "via", "10.201.0.1")
	addKernelVXLAN(t, l.b, "10.202.0.1")
	peer := startPeerServers(t, l.b)

	dir := publicTempDir(t)
	cfg := filepath.Join(dir, "cfg.yaml")
	writeFile(t, cfg, `log: {level: info}
admin: {listen: "127.0.0.1:9090"}
underlay: {type: tun, name: ut0, address: 10.202.0.1/24, gateway: 10.202.0.2}
interfaces:
  - {type: vxlan, id: 42, remote: 10.201.0.2, addresses: [192.168.42.1/24], vxlan: {learning: true}}
socks5: {listen: "127.0.0.1:1080"}
shutdown_timeout: 2s
`)
	c := startClient(t, l.a, bin, cfg, false)
	c.waitHealthy(t, "127.0.0.1:9090")
	// The kernel's side of the TUN, which the client brought up.
	l.a.Run(t, "ip", "addr", "add", "10.202.0.2/24", "dev", "ut0")

	l.b.Run(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", "192.168.42.1")
	checkBody(t, "curl through SOCKS5", curl(t, l.a, "--socks5", "127.0.0.1:1080", fmt.Sprintf("http://192.168.42.2:%d/", peer.httpPort)))
	fdb := l.b.Run(t, "bridge", "fdb", "show", "dev", "vx42")
	if len(kernelLearned(fdb, "10.202.0.1")) == 0 {
		t.Errorf("the kernel did not learn our MAC behind 10.202.0.1:\n%s", fdb)
	}
	checkMetrics(t, metrics(t, l.a, "127.0.0.1:9090"), "vxlan42")

	c.cmd.Process.Signal(syscall.SIGTERM)
	if code := c.exited(5 * time.Second); code != 0 {
		t.Fatalf("after SIGTERM: exit code %d, %v\n%s", code, c.err, c.stderr.String())
	}
	// The TUN went with the process.
	if out, err := l.a.Command("ip", "link", "show", "ut0").CombinedOutput(); err == nil {
		t.Errorf("ut0 is still there after the client exited:\n%s", out)
	}
	checkPortsFree(t, l.a, "tcp:127.0.0.1:1080", "tcp:127.0.0.1:9090")
}

// testRunConfigErrors runs the client (rootless) with bad configurations:
// each exits non-zero naming the bad key, and opens nothing: the outer
// capture file, the first thing made on the host, is never created, and
// the SOCKS5 port stays free.
func testRunConfigErrors(t *testing.T, bin string) {
	l := newLab(t)
	dir := publicTempDir(t)
	good := func(iface, rest string) string {
		return "admin: {listen: \"127.0.0.1:9090\"}\n" +
			"pcap: {outer: " + strconv.Quote(filepath.Join(dir, "outer.pcap")) + "}\n" +
			"socks5: {listen: \"127.0.0.1:1080\"}\n" +
			"interfaces:\n  - {type: vxlan, id: 42, remote: 10.201.0.2, addresses: [192.168.42.1/24]" + iface + "}\n" + rest
	}
	for _, tc := range []struct {
		name, cfg string
		want      []string // in the error
	}{
		{"unknown key", good(", vni: 42", ""), []string{"line 5: interfaces[0].vni: unknown key"}},
		{"bad underlay type", good("", "underlay: {type: udp}\n"), []string{"underlay.type", `"udp"`}},
		{"vni out of range", strings.Replace(good("", ""), "id: 42", "id: 16777216", 1), []string{"interfaces[0]", "16777216"}},
		{"forward without a port", good("", "forwards: [{proto: tcp, listen: \"127.0.0.1:8081\", target: 192.168.42.2}]\n"),
			[]string{"forwards[0].target", "192.168.42.2"}},
		{"bad inner address", strings.Replace(good("", ""), "192.168.42.1/24", "192.168.42.1", 1), []string{"interfaces[0].addresses[0]"}},
		{"bad duration", good("", "shutdown_timeout: soon\n"), []string{"shutdown_timeout", `"soon" is not a duration`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			writeFile(t, cfg, tc.cfg)
			c := startClient(t, l.a, bin, cfg, true)
			code := c.exited(10 * time.Second)
			out := c.stderr.String()
			if code <= 0 {
				t.Fatalf("exit code %d, want non-zero:\n%s", code, out)
			}
			t.Logf("exit code %d: %s", code, strings.TrimSpace(out))
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("the error does not name %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "listening") || strings.Contains(out, "underlay up") {
				t.Errorf("something started:\n%s", out)
			}
			if _, err := os.Stat(filepath.Join(dir, "outer.pcap")); err == nil {
				t.Errorf("the outer capture file was created")
			}
			checkPortsFree(t, l.a, "tcp:127.0.0.1:1080", "udp:10.201.0.1:4789")
		})
	}

	// A listener that cannot open (the admin port is taken) fails the run
	// after the underlay and the SOCKS5 listener opened: they are closed
	// again, the process exits 1 naming the key.
	t.Run("admin port taken", func(t *testing.T) {
		var taken net.Listener
		if err := l.a.Do(func() (err error) { taken, err = net.Listen("tcp4", "127.0.0.1:9090"); return err }); err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		cfg := filepath.Join(dir, "taken.yaml")
		writeFile(t, cfg, good("", ""))
		c := startClient(t, l.a, bin, cfg, true)
		if code := c.exited(10 * time.Second); code != 1 {
			t.Fatalf("exit code %d, want 1:\n%s", code, c.stderr.String())
		}
		if !strings.Contains(c.stderr.String(), "admin.listen") {
			t.Errorf("the error does not name admin.listen:\n%s", c.stderr.String())
		}
		checkPortsFree(t, l.a, "tcp:127.0.0.1:1080", "udp:10.201.0.1:4789")
	})
}

// testRunOffload is the rootless run with the hostudp underlay's
// inner-offload mode (underlay.offload): 8 MiB each way between A's host
// and a server behind the kernel's VXLAN in B, through a TCP forward,
// SHA-256 checked, so that every 64 KiB segment our device sends is cut
// into datagrams the kernel accepts and every merged run we receive is the
// stream the kernel sent.
func testRunOffload(t *testing.T, bin string) {
	l := newLab(t)
	addKernelVXLAN(t, l.b, "10.201.0.1")
	const size = 8 << 20
	// In B: port 7000 hashes what it receives and answers the hash,
	// port 7001 sends size bytes of a seeded stream.
	var up, down net.Listener
	if err := l.b.Do(func() (err error) {
		if up, err = net.Listen("tcp4", "192.168.42.2:7000"); err != nil {
			return err
		}
		down, err = net.Listen("tcp4", "192.168.42.2:7001")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	defer down.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			h := sha256.New()
			io.Copy(h, c)
			fmt.Fprintf(c, "%x\n", h.Sum(nil))
			c.Close()
		}
	}()
	stream := func() io.Reader { return io.LimitReader(rand.NewChaCha8([32]byte{42}), size) }
	go func() {
		for {
			c, err := down.Accept()
			if err != nil {
				return
			}
			io.Copy(c, stream())
			c.Close()
		}
	}()

	dir := publicTempDir(t)
	cfg := filepath.Join(dir, "cfg.yaml")
	writeFile(t, cfg, `log: {level: info}
admin: {listen: "127.0.0.1:9090"}
underlay: {type: hostudp, offload: true}
interfaces:
  - {type: vxlan, id: 42, remote: 10.201.0.2, addresses: [192.168.42.1/24], vxlan: {learning: true}}
forwards:
  - {proto: tcp, listen: "127.0.0.1:8081", target: "192.168.42.2:7000"}
  - {proto: tcp, listen: "127.0.0.1:8082", target: "192.168.42.2:7001"}
shutdown_timeout: 2s
`)
	c := startClient(t, l.a, bin, cfg, true)
	c.waitHealthy(t, "127.0.0.1:9090")
	if !strings.Contains(c.stderr.String(), "offload=true") {
		t.Fatalf("the underlay did not come up in the inner-offload mode:\n%s", c.stderr.String())
	}
	dial := func(addr string) net.Conn {
		var conn net.Conn
		if err := l.a.Do(func() (err error) { conn, err = net.DialTimeout("tcp4", addr, 5*time.Second); return err }); err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(60 * time.Second))
		return conn
	}

	// Up: A's host -> forward -> our stack -> 64 KiB segments -> GSO trains -> the kernel.
	conn := dial("127.0.0.1:8081")
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(conn, h), stream()); err != nil {
		t.Fatalf("upload: %v", err)
	}
	conn.(*net.TCPConn).CloseWrite()
	got, err := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if want := fmt.Sprintf("%x\n", h.Sum(nil)); err != nil || got != want {
		t.Fatalf("upload through the inner-offload mode: the kernel's side hashed %q (%v), want %q", got, err, want)
	}
	// Down: the kernel -> datagrams merged into runs -> our stack -> A's host.
	conn = dial("127.0.0.1:8082")
	h.Reset()
	n, err := io.Copy(h, conn)
	conn.Close()
	want := sha256.New()
	io.Copy(want, stream())
	if err != nil || n != size || !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
		t.Fatalf("download through the inner-offload mode: %d bytes, %v, hash match %v", n, err, bytes.Equal(h.Sum(nil), want.Sum(nil)))
	}
	t.Logf("inner-offload mode: %d MiB each way through the forwards, hashes match", size>>20)
	// The kernel peer keeps its offloads: the endpoint completed its
	// partial inner checksums, and dropped nothing.
	m := metrics(t, l.a, "127.0.0.1:9090")
	if v := m["udptunnel_underlay_checksums_completed_total"]; v == 0 {
		t.Errorf("/metrics: udptunnel_underlay_checksums_completed_total = 0, want the kernel's partial checksums counted")
	}
	for k, v := range m {
		if strings.HasPrefix(k, "udptunnel_underlay_drops_total{") && v != 0 && !strings.Contains(k, `reason="not_udp"`) {
			t.Errorf("/metrics: %s = %v", k, v)
		}
	}
	t.Logf("underlay: %v datagrams in, %v out, %v checksums completed", m["udptunnel_underlay_rx_packets_total"],
		m["udptunnel_underlay_tx_packets_total"], m["udptunnel_underlay_checksums_completed_total"])
	c.cmd.Process.Signal(syscall.SIGTERM)
	if code := c.exited(10 * time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}
