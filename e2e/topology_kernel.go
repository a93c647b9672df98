//go:build linux

package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/udptunnel/udptunnel/endpoints/hostudp"
	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/endpoints/tun"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// kernelNode is a kernel node's namespace, made by Start. The namespace is
// removed once, by Close or by the test's cleanup, whichever comes first.
type kernelNode struct {
	ns      *Netns
	ifnames map[string]bool // interface names taken in the namespace
	once    sync.Once
	err     error
}

// Netns returns kernel node n's network namespace (after Start), nil for
// an in-process node: run commands in it (Run, Command) or open sockets in
// it (Do).
func (n *Node) Netns() *Netns {
	if n.kernel == nil {
		return nil
	}
	return n.kernel.ns
}

func (k *kernelNode) remove() error {
	k.once.Do(func() {
		if out, err := exec.Command("ip", "netns", "del", k.ns.name).CombinedOutput(); err != nil {
			k.err = fmt.Errorf("ip netns del %s: %v: %s", k.ns.name, err, strings.TrimSpace(string(out)))
		}
	})
	return k.err
}

// run runs args in the namespace (ip netns exec) and returns an error that
// quotes the command and its output when it fails.
func (k *kernelNode) run(args ...string) error {
	if out, err := k.ns.Command(args...).CombinedOutput(); err != nil {
		return fmt.Errorf("in netns %s: %s: %v: %s", k.ns.name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ifname returns a free interface name in the namespace made from base:
// at most 15 bytes (IFNAMSIZ - 1), with a counter when taken.
func (k *kernelNode) ifname(base string) string {
	trim := func(s string, n int) string {
		if len(s) > n {
			return s[:n]
		}
		return s
	}
	name := trim(base, 15)
	for i := 2; k.ifnames[name]; i++ {
		suffix := "-" + strconv.Itoa(i)
		name = trim(base, 15-len(suffix)) + suffix
	}
	k.ifnames[name] = true
	return name
}

// kernelWire is what a wire with a kernel end opened in the process.
type kernelWire struct {
	tun     *tun.Device       // a TUN wire's device
	hostudp *hostudp.Endpoint // a hostudp wire's endpoint
}

// kernelPrereqs skips the test unless it can make kernel nodes, saying
// what is missing, and checks the tools that the declarations need.
func (t *Topology) kernelPrereqs(kernel []string) error {
	t.tb.Helper()
	what := "e2e topology with kernel nodes " + strings.Join(kernel, ", ")
	if os.Geteuid() != 0 {
		t.tb.Skip(what + ": needs root (ip netns add)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.tb.Skip(what + ": needs the ip command (iproute2), not found in PATH")
	}
	for _, n := range t.nodes {
		if n.Kernel && n.Router {
			if _, err := exec.LookPath("sysctl"); err != nil {
				t.tb.Skipf("%s: kernel router %s needs the sysctl command (procps), not found in PATH", what, n.Name)
			}
		}
	}
	for _, w := range t.wires {
		switch w.kind {
		case wireTUN:
			if _, err := os.Stat("/dev/net/tun"); err != nil {
				t.tb.Skipf("%s: wire %s (a TUN device) needs /dev/net/tun: %v", what, w.Name, err)
			}
			if w.opts.Impairment != (memlink.Impairment{}) {
				return fmt.Errorf("wire %s: impairment on a TUN wire is not supported (impair a memlink wire or a veth pair)", w.Name)
			}
		case wireHostUDP:
			if w.opts.Impairment != (memlink.Impairment{}) {
				return fmt.Errorf("wire %s: impairment on a hostudp wire is not supported (impair a memlink wire or a veth pair)", w.Name)
			}
		case wireVeth:
			if w.opts.Impairment != (memlink.Impairment{}) {
				if _, err := exec.LookPath("tc"); err != nil {
					return fmt.Errorf("wire %s: impairment on a veth pair needs the tc command (iproute2) and the kernel's sch_netem; tc is not in PATH", w.Name)
				}
			}
		}
	}
	for _, tu := range t.tunnels {
		if tu.kernelTxOff() {
			if _, err := exec.LookPath("ethtool"); err != nil {
				t.tb.Skipf("%s: %s needs the ethtool command (ethtool -K tx off on the kernel's VXLAN device), not found in PATH", what, tu.description)
			}
		}
	}
	return nil
}

// startKernelNode creates kernel node n's namespace (see KernelHost).
func (t *Topology) startKernelNode(n *Node) error {
	name := fmt.Sprintf("ut-%s-%d-%d", n.Name, os.Getpid(), netnsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	k := &kernelNode{ns: &Netns{name: name}, ifnames: map[string]bool{"lo": true}}
	n.kernel = k // removed by Close, which the test's cleanup calls
	if err := k.run("ip", "link", "set", "lo", "up"); err != nil {
		return err
	}
	if n.Router {
		return k.run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	}
	return nil
}

// startKernelWire builds a wire with a kernel end: a veth pair, a TUN
// device or a hostudp bridge (see WireKind).
func (t *Topology) startKernelWire(w *Wire) error {
	mtu := w.opts.MTU
	if mtu == 0 {
		mtu = tun.DefaultMTU
	}
	for i, n := range w.Nodes {
		if n.Kernel && w.kind != wireHostUDP {
			w.ifname[i] = n.kernel.ifname(w.Name)
		}
	}
	switch w.kind {
	case wireVeth:
		a, b := w.Nodes[0].kernel, w.Nodes[1].kernel
		m := strconv.Itoa(int(mtu))
		if err := a.run("ip", "link", "add", w.ifname[0], "mtu", m, "type", "veth",
			"peer", "name", w.ifname[1], "mtu", m, "netns", b.ns.name); err != nil {
			return err
		}
		for i, k := range []*kernelNode{a, b} {
			if err := k.run("ip", "link", "set", w.ifname[i], "up"); err != nil {
				return err
			}
			if err := w.netem(k, w.ifname[i]); err != nil {
				return err
			}
		}
		return nil
	case wireTUN:
		k, u := 0, 1
		if !w.Nodes[0].Kernel {
			k, u = 1, 0
		}
		d, err := tun.OpenIn(w.Nodes[k].kernel.ns.Path(), tun.Config{Name: w.ifname[k], MTU: mtu})
		if err != nil {
			return fmt.Errorf("node %s: %w", w.Nodes[k].Name, err)
		}
		w.kw.tun = d
		return w.addNIC(u, d.LinkEndpoint())
	case wireHostUDP:
		return t.startHostUDP(w)
	}
	return fmt.Errorf("not a wire with a kernel end")
}

// netem puts w's impairment on iface as a `tc qdisc netem` (its egress:
// with both ends impaired, both directions are).
func (w *Wire) netem(k *kernelNode, iface string) error {
	imp := w.opts.Impairment
	if imp == (memlink.Impairment{}) {
		return nil
	}
	pct := func(p float64) string { return strconv.FormatFloat(100*p, 'f', -1, 64) + "%" }
	args := []string{"tc", "qdisc", "add", "dev", iface, "root", "netem"}
	delay := imp.Delay
	if imp.Reorder > 0 && delay == 0 {
		delay = 1e6 // netem reorders by sending some packets without the delay
	}
	if delay > 0 {
		args = append(args, "delay", fmt.Sprintf("%dus", delay.Microseconds()))
		if imp.Jitter > 0 {
			args = append(args, fmt.Sprintf("%dus", imp.Jitter.Microseconds()))
		}
	}
	if imp.Loss > 0 {
		args = append(args, "loss", pct(imp.Loss))
	}
	if imp.Duplicate > 0 {
		args = append(args, "duplicate", pct(imp.Duplicate))
	}
	if imp.Reorder > 0 {
		args = append(args, "reorder", pct(imp.Reorder))
	}
	out, err := k.ns.Command(args...).CombinedOutput()
	if err == nil {
		return nil
	}
	if strings.Contains(string(out), "qdisc kind is unknown") {
		return fmt.Errorf("impairment on veth %s: the kernel has no sch_netem (tc qdisc netem: %s)", iface, strings.TrimSpace(string(out)))
	}
	return fmt.Errorf("impairment on veth %s: %s: %v: %s", iface, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
}

// startHostUDP builds a hostudp wire (see WireHostUDP): the in-process
// node's addresses on it go on the kernel node's loopback unless the
// kernel node already has them, then the endpoint opens its sockets in the
// namespace and becomes the in-process node's NIC with those addresses.
func (t *Topology) startHostUDP(w *Wire) error {
	k, u := 0, 1
	if !w.Nodes[0].Kernel {
		k, u = 1, 0
	}
	kn, un := w.Nodes[k], w.Nodes[u]
	var addrs []netip.Prefix
	for _, a := range t.addrs {
		if a.node == un && a.wire == w {
			addrs = append(addrs, a.p)
		}
	}
	if len(addrs) == 0 {
		return fmt.Errorf("node %s has no address on the wire (its sockets bind it)", un.Name)
	}
	cfg := hostudp.Config{Ports: w.opts.HostUDPPorts}
	if len(cfg.Ports) == 0 {
		cfg.Ports = []uint16{vxlan.DefaultPort}
	}
	for _, p := range addrs {
		cfg.Addrs = append(cfg.Addrs, p.Addr())
		if t.kernelHasAddress(kn, p.Addr()) {
			continue
		}
		host := netip.PrefixFrom(p.Addr(), p.Addr().BitLen())
		args := []string{"ip", "addr", "add", host.String(), "dev", "lo"}
		if p.Addr().Is6() {
			args = append(args, "nodad")
		}
		if err := kn.kernel.run(args...); err != nil {
			return err
		}
	}
	var ep *hostudp.Endpoint
	if err := kn.kernel.ns.Do(func() (err error) {
		ep, err = hostudp.New(cfg)
		return err
	}); err != nil {
		return fmt.Errorf("node %s: hostudp in namespace %s: %w", un.Name, kn.kernel.ns.name, err)
	}
	w.kw.hostudp = ep
	if err := w.addNIC(u, ep); err != nil {
		return err
	}
	for _, p := range addrs {
		if err := un.Stack.AddAddress(w.nics[u], p); err != nil {
			return fmt.Errorf("node %s: address %v: %w", un.Name, p, err)
		}
	}
	return nil
}

// kernelHasAddress reports whether kernel node n has addr on a veth or TUN
// wire.
func (t *Topology) kernelHasAddress(n *Node, addr netip.Addr) bool {
	for _, a := range t.addrs {
		if a.node == n && a.p.Addr() == addr && a.wire.kind != wireHostUDP {
			return true
		}
	}
	return false
}

// addKernelAddress runs `ip addr add` for a kernel node's address on a
// veth or TUN wire.
func (t *Topology) addKernelAddress(a addressDecl) error {
	i := a.wire.index(a.node)
	args := []string{"ip", "addr", "add", a.p.String(), "dev", a.wire.ifname[i]}
	if a.p.Addr().Is6() {
		args = append(args, "nodad") // usable now, not after duplicate address detection
	}
	return a.node.kernel.run(args...)
}

// addKernelRoute runs `ip route add` on a kernel node.
func (t *Topology) addKernelRoute(r routeDecl) error {
	return r.node.kernel.run("ip", "route", "add", r.dst.String(), "via", r.via.String())
}

// setKernelLinkUp takes the wire's kernel interfaces down or up.
func (w *Wire) setKernelLinkUp(up bool) {
	state := map[bool]string{false: "down", true: "up"}[up]
	for i, n := range w.Nodes {
		if n.kernel != nil && w.ifname[i] != "" {
			n.kernel.run("ip", "link", "set", w.ifname[i], state)
		}
	}
}

// closeKernel closes what the wire opened in the process; its interfaces
// go with their namespaces.
func (w *Wire) closeKernel() []error {
	var errs []error
	// The hostudp endpoint before its stack: Close waits for its
	// goroutines outside the stack's locks.
	if w.kw.hostudp != nil {
		w.kw.hostudp.Close()
	}
	if w.kw.tun != nil {
		errs = append(errs, w.kw.tun.Close())
	}
	return errs
}

// kernelCounters describes a hostudp wire's endpoint counters.
func (w *Wire) kernelCounters(b *strings.Builder) {
	if w.kw.hostudp != nil {
		fmt.Fprintf(b, "wire %s (hostudp): %v\n", w.Name, w.kw.hostudp.Stats())
	}
}

// protocolName returns the name proto is registered under, "" if none.
func protocolName(proto TunnelFunc) string {
	p := reflect.ValueOf(proto).Pointer()
	for name, f := range protocols {
		if reflect.ValueOf(f).Pointer() == p {
			return name
		}
	}
	return ""
}

// underlayKind returns the kind of the wire carrying n's address addr.
func (t *Topology) underlayKind(n *Node, addr netip.Addr) (wireKind, bool) {
	w, ok := t.underlayOf(n, addr)
	if !ok {
		return 0, false
	}
	return w.kind, true
}

// kernelTxOff reports whether the tunnel's kernel end must finish inner
// checksums in software (`ethtool -K NAME tx off`): when its other end is
// in-process and the kernel's packets cross a veth or end in a hostudp
// socket. The kernel's VXLAN leaves inner checksums unfinished
// (CHECKSUM_PARTIAL) for an offload, and a veth passes such packets on
// unfinished, as does loopback into a UDP socket: the kernel would finish
// them only on a device without checksum offload, such as a TUN, and a
// userspace receiver reading the bytes from a socket gets them unfinished.
// Our stack then drops the inner TCP segments as corrupt. A kernel-to-
// kernel tunnel keeps its offloads: the receiving kernel knows.
func (tu *Tunnel) kernelTxOff() bool {
	if tu.nodeA.Kernel == tu.nodeB.Kernel {
		return false
	}
	k, u := tu.nodeA, tu.nodeB
	kOuter, uOuter := tu.opts.OuterA, tu.opts.OuterB
	if u.Kernel {
		k, u, kOuter, uOuter = u, k, uOuter, kOuter
	}
	kk, _ := tu.t.underlayKind(k, kOuter)
	uk, _ := tu.t.underlayKind(u, uOuter)
	return kk == wireVeth || uk == wireHostUDP
}

// startKernel builds a tunnel with at least one end on a kernel node: the
// kernel's VXLAN device there, ours on an in-process end.
func (tu *Tunnel) startKernel() error {
	o := tu.opts
	if name := protocolName(tu.proto); name != "vxlan" {
		if name == "" {
			name = "of this TunnelFunc"
		}
		return fmt.Errorf("protocol %s on a kernel node: only vxlan is supported on a kernel end (the kernel's UDP tunnel the harness drives; this machine's kernel has no other)", name)
	}
	tu.A = &Host{Name: "a", Outer: o.OuterA}
	tu.B = &Host{Name: "b", Outer: o.OuterB}
	tu.A.peer, tu.B.peer = tu.B, tu.A
	ends := []struct {
		h     *Host
		node  *Node
		inner []netip.Prefix
		cfg   *OverlayConfig
	}{{tu.A, tu.nodeA, o.InnerA, &tu.cfgA}, {tu.B, tu.nodeB, o.InnerB, &tu.cfgB}}
	for i, end := range ends {
		w, ok := tu.t.underlayOf(end.node, end.h.Outer)
		if !ok {
			return fmt.Errorf("outer address %v is not an address of node %s", end.h.Outer, end.node.Name)
		}
		other := ends[1-i]
		if ow, ok := tu.t.underlayOf(other.node, other.h.Outer); end.node.Kernel && ok && ow.kind == wireHostUDP && ow.index(end.node) >= 0 {
			return fmt.Errorf("node %s's VXLAN cannot reach node %s over their hostudp wire: the kernel's VXLAN socket holds port %d on every address of the namespace and sends to a local address straight to a local VXLAN device (localbypass); put the kernel end on a node behind %s",
				end.node.Name, other.node.Name, vxlan.DefaultPort, end.node.Name)
		}
		for _, p := range end.inner {
			if p.Addr().Is4() && !end.h.Inner4.IsValid() {
				end.h.Inner4 = p.Addr()
			}
			if p.Addr().Is6() && !end.h.Inner6.IsValid() {
				end.h.Inner6 = p.Addr()
			}
		}
		cfg := o.Config
		if cfg.VNI == 0 {
			cfg.VNI = 42
		}
		cfg.IPv6Underlay = end.h.Outer.Is6()
		if !end.node.Kernel {
			end.h.Stack = end.node.Stack
			end.h.Underlay, end.h.Wire = w.NIC(end.node), w.Endpoint(end.node)
			if cfg.UnderlayMTU == 0 {
				cfg.UnderlayMTU = w.opts.MTU
				if cfg.UnderlayMTU == 0 {
					cfg.UnderlayMTU = tun.DefaultMTU
				}
			}
			if cfg.GSO {
				cfg.ChecksumOffload = true
			}
		}
		*end.cfg = cfg
	}
	for i, end := range ends {
		if end.node.Kernel {
			name, err := tu.kernelVXLAN(end.node, end.h, *end.cfg, end.inner)
			if err != nil {
				return fmt.Errorf("end %s: %w", end.h.Name, err)
			}
			tu.ifname[i] = name
			continue
		}
		if err := tu.open(end.h); err != nil {
			return err
		}
	}
	return nil
}

// kernelVXLAN creates end h's VXLAN device on kernel node n:
//
//	ip link add vxVNI type vxlan id VNI local L remote R dstport 4789 dev UNDERLAY
//	ethtool -K vxVNI tx off   (see kernelTxOff)
//	ip addr add INNER dev vxVNI; ip link set vxVNI up
//
// With "dev" the kernel derives the device's MTU from its underlay's, as
// our end does from its wire's; an explicit Config.UnderlayMTU sets it.
func (tu *Tunnel) kernelVXLAN(n *Node, h *Host, cfg OverlayConfig, inner []netip.Prefix) (string, error) {
	k := n.kernel
	w, _ := tu.t.underlayOf(n, h.Outer)
	name := k.ifname("vx" + strconv.Itoa(int(cfg.VNI)))
	args := []string{"ip", "link", "add", name}
	if cfg.UnderlayMTU != 0 {
		overhead := uint32(50) // outer IPv4, UDP, VXLAN, inner Ethernet
		if cfg.IPv6Underlay {
			overhead = 70
		}
		args = append(args, "mtu", strconv.Itoa(int(cfg.UnderlayMTU-overhead)))
	}
	args = append(args, "type", "vxlan", "id", strconv.Itoa(int(cfg.VNI)), "local", h.Outer.String(),
		"remote", h.Peer().Outer.String(), "dstport", strconv.Itoa(vxlan.DefaultPort))
	if iface := w.ifname[w.index(n)]; iface != "" {
		args = append(args, "dev", iface)
	}
	if err := k.run(args...); err != nil {
		return "", err
	}
	if tu.kernelTxOff() {
		if err := k.run("ethtool", "-K", name, "tx", "off"); err != nil {
			return "", err
		}
	}
	for _, p := range inner {
		args := []string{"ip", "addr", "add", p.String(), "dev", name}
		if p.Addr().Is6() {
			args = append(args, "nodad")
		}
		if err := k.run(args...); err != nil {
			return "", err
		}
	}
	if err := k.run("ip", "link", "set", name, "up"); err != nil {
		return "", err
	}
	return name, nil
}
