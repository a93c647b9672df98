package e2e

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/udptunnel/udptunnel/endpoints/capture"
	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/stack"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Topology declares a network of in-process nodes and builds it in Start:
//
//	t := e2e.NewTopology()
//	a, r, b := t.Host("a"), t.Router("r"), t.Host("b")
//	ar := t.Wire(a, r, e2e.WireOptions{MTU: 1500})
//	rb := t.Wire(r, b, e2e.WireOptions{MTU: 1400})
//	t.Address(a, ar, netip.MustParsePrefix("10.1.0.1/24"))
//	...
//	t.Route(a, netip.MustParsePrefix("10.2.0.0/24"), netip.MustParseAddr("10.1.0.254"))
//	tun := t.Tunnel(a, b, e2e.VXLAN, e2e.TunnelOptions{...})
//	err := t.Start()
//	defer t.Close()
//
// Hosts and routers are stacks (stack.New); a router forwards IPv4 and IPv6
// between its wires and answers what it cannot forward with ICMP errors
// (gVisor's forwarding path: "fragmentation needed" for an IPv4 packet with
// DF over the next wire's MTU, "packet too big" for IPv6, "time exceeded").
// Each router NIC works around two faults of gVisor's forwarding: see
// routerPort.
// Wires are memlink pairs, or a memlink Hub with Ethernet and ARP for a LAN
// of more nodes. Tunnels are built by a TunnelFunc, the same one NewOverlay
// uses, on any two nodes with the outer addresses given.
//
// Declarations only record; Start builds everything in order (stacks, wires,
// addresses, routes, tunnels) and fails on the first error, naming what it
// was building. The fields a declaration returns that hold built things
// (Node.Stack, Wire endpoints, Tunnel.A and B) are valid after Start. The
// kernel analog is a selftest script's `ip netns add`, `ip link add type
// veth`, `ip addr add` and `ip route add` lines.
//
// A topology made with NewTopologyT may also hold kernel nodes (KernelHost,
// KernelRouter): network namespaces that Start creates and that Close, or
// the test's cleanup after a failure, removes. See KernelHost for what
// wires, addresses, routes and tunnels mean on them.
type Topology struct {
	nodes   []*Node
	wires   []*Wire
	addrs   []addressDecl
	routes  []routeDecl
	tunnels []*Tunnel
	started bool
	closed  bool

	// tb is the test of NewTopologyT: kernel nodes need it to skip
	// without root and to remove their namespaces after a failure.
	tb testing.TB
}

type addressDecl struct {
	node *Node
	wire *Wire
	p    netip.Prefix
}

type routeDecl struct {
	node *Node
	dst  netip.Prefix
	via  netip.Addr
}

// NewTopology returns an empty topology of in-process nodes. A topology
// with kernel nodes needs NewTopologyT.
func NewTopology() *Topology { return &Topology{} }

// NewTopologyT returns an empty topology that belongs to the test tb, as
// kernel nodes need: Start skips tb when something they need is missing
// (root, the ip command, ...), saying what, and tb's cleanup closes the
// topology, so that its namespaces are removed even when the test fails
// before it calls Close. Call Start on tb's goroutine (tb.Skip ends it).
// In-process nodes behave as with NewTopology.
func NewTopologyT(tb testing.TB) *Topology { return &Topology{tb: tb} }

// Node is a host or router of a Topology.
type Node struct {
	// Name names the node in errors and its NICs' names.
	Name string
	// Router says the node forwards between its NICs.
	Router bool
	// Stack is the node's stack, made by Start.
	Stack *stack.Stack
	// StackOptions configure the stack (zero = defaults).
	StackOptions stack.Options
	// Kernel says the node is a kernel host: a network namespace, not a
	// stack (Stack stays nil). See KernelHost.
	Kernel bool

	kernel  *kernelNode // a kernel node's namespace, after Start
	portsMu sync.RWMutex
	ports   map[stack.NICID]*routerPort // a router's NICs
}

// Host declares an in-process host: a stack that does not forward.
func (t *Topology) Host(name string) *Node { return t.node(name, false) }

// Router declares an in-process router: a stack with IPv4 and IPv6
// forwarding on for every NIC, which sends ICMP errors for what it cannot
// forward, as a Linux router with net.ipv4.ip_forward=1 does.
func (t *Topology) Router(name string) *Node { return t.node(name, true) }

// KernelHost declares a kernel host: a Linux network namespace that Start
// creates (`ip netns add`, named after name, the process and a counter;
// its loopback up) and Close removes, as does the cleanup of the test that
// made the topology (NewTopologyT), pass or fail. On kernel nodes:
//
//   - A Wire to another kernel node is a veth pair; to an in-process node
//     a TUN device in the namespace whose link endpoint is the in-process
//     node's NIC, or with WireOptions.Kind WireHostUDP a hostudp bridge
//     (see WireHostUDP). The kernel side's interface is named after the
//     wire (Wire.Interface). LAN and Capture are in-process only.
//   - Address runs `ip addr add` on the wire's interface, Route `ip route
//     add`.
//   - Tunnel supports VXLAN on a kernel end (the kernel's own VXLAN
//     device, Tunnel.Interface); other protocols are refused.
//
// Everything the harness does to a kernel node stays inside its namespace.
// It needs root and the ip command (iproute2); Start skips the test,
// naming what is missing, otherwise.
func (t *Topology) KernelHost(name string) *Node {
	n := t.node(name, false)
	n.Kernel = true
	return n
}

// KernelRouter declares a kernel host that forwards: KernelHost with
// net.ipv4.ip_forward and net.ipv6.conf.all.forwarding set in its
// namespace.
func (t *Topology) KernelRouter(name string) *Node {
	n := t.node(name, true)
	n.Kernel = true
	return n
}

func (t *Topology) node(name string, router bool) *Node {
	n := &Node{Name: name, Router: router, ports: map[stack.NICID]*routerPort{}}
	t.nodes = append(t.nodes, n)
	return n
}

// WireOptions configure a Wire.
type WireOptions struct {
	// MTU is the wire's network-layer MTU (0 = 1500).
	MTU uint32
	// Impairment degrades the wire in both directions (loss, duplication,
	// reordering, delay).
	Impairment memlink.Impairment
	// QueueLen is each end's receive queue, in packets (0 = 4096, deep
	// enough for a 4 MiB TCP window of 1500-byte packets, so that a
	// transfer measures the path, not tail drops).
	QueueLen int
	// Sync delivers on the sender's goroutine (memlink.Options.Sync).
	Sync bool
	// ChecksumOffload and GSO are memlink's offloads (memlink.Options).
	ChecksumOffload, GSO bool
	// Kind chooses what joins an in-process node to a kernel node (0 =
	// WireAuto).
	Kind WireKind
	// HostUDPPorts are the UDP ports a WireHostUDP wire's sockets serve
	// (nil = VXLAN's 4789): those of the tunnels over it.
	HostUDPPorts []uint16
}

// WireKind says what a Wire is made of.
type WireKind int

const (
	// WireAuto is a memlink pair (or Hub) between in-process nodes, a
	// veth pair between kernel nodes, and a TUN device between an
	// in-process node and a kernel node. Impairment works on memlink
	// wires and, with `tc qdisc netem`, on veth pairs; MTU on all.
	// QueueLen, Sync, ChecksumOffload and GSO are memlink's alone.
	WireAuto WireKind = iota
	// WireHostUDP joins an in-process node to a kernel node with a
	// hostudp endpoint (endpoints/hostudp) as the in-process node's NIC,
	// its host UDP sockets opened in the kernel node's namespace. The
	// wire has no interface in the namespace: the in-process node's
	// address on it (Address, one per family) is both its stack's
	// address and the address its sockets bind in the kernel node,
	// where Start adds it to the loopback device as a host address
	// (/32, /128) unless another of the kernel node's wires already has
	// it. The in-process node so shares the kernel node's routing: its
	// outer packets leave by the kernel node's routes, and other kernel
	// nodes reach it through the kernel node (a route to that address).
	// The sockets serve the ports of the tunnels whose outer address it
	// is (4789 for VXLAN). The kernel node gets no address on the wire.
	//
	// A tunnel between the two ends of a hostudp wire cannot use the
	// kernel node's VXLAN: the kernel's VXLAN socket holds port 4789 on
	// every address of the namespace, and it hands packets for a local
	// address straight to a local VXLAN device (localbypass) rather
	// than to a socket; put the kernel VXLAN on a node behind it.
	WireHostUDP
)

// Wire is a link between nodes: a memlink pair between two, a memlink Hub
// (a learning switch, Ethernet with ARP and NDP) for a LAN.
type Wire struct {
	// Name is the NIC name the wire's ends get ("a-r": the node names).
	Name  string
	Nodes []*Node
	opts  WireOptions
	lan   bool

	ends     []*memlink.Endpoint // per node, after Start
	nics     []stack.NICID
	captures []*Capture // per node, nil when not captured
	hub      *memlink.Hub

	kind   wireKind
	ifname []string   // per kernel node: its interface's name
	kw     kernelWire // what a wire with kernel ends opened
}

// Wire declares a point-to-point wire between a and b: a memlink pair, the
// analog of a veth pair. The NIC on each end is named after both nodes.
func (t *Topology) Wire(a, b *Node, opts WireOptions) *Wire {
	return t.wire([]*Node{a, b}, opts, false)
}

// LAN declares a switched Ethernet segment joining nodes: a memlink Hub
// with a port for each node, wrapped in gVisor's Ethernet endpoint so that
// ARP and NDP resolve neighbours, the analog of a Linux bridge with a veth to
// every host.
func (t *Topology) LAN(opts WireOptions, nodes ...*Node) *Wire {
	return t.wire(nodes, opts, true)
}

func (t *Topology) wire(nodes []*Node, opts WireOptions, lan bool) *Wire {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	w := &Wire{Name: strings.Join(names, "-"), Nodes: nodes, opts: opts, lan: lan,
		ends: make([]*memlink.Endpoint, len(nodes)), nics: make([]stack.NICID, len(nodes)), captures: make([]*Capture, len(nodes)),
		ifname: make([]string, len(nodes))}
	t.wires = append(t.wires, w)
	return w
}

func (w *Wire) index(n *Node) int {
	for i, m := range w.Nodes {
		if m == n {
			return i
		}
	}
	return -1
}

// Endpoint returns n's end of the wire (after Start), or nil if n is not on
// it or the wire is not a memlink. Its Stats count what the wire carried
// and dropped.
func (w *Wire) Endpoint(n *Node) *memlink.Endpoint {
	if i := w.index(n); i >= 0 {
		return w.ends[i]
	}
	return nil
}

// NIC returns the ID of n's NIC on the wire (after Start), 0 for a kernel
// node.
func (w *Wire) NIC(n *Node) stack.NICID {
	if i := w.index(n); i >= 0 {
		return w.nics[i]
	}
	return 0
}

// SetLinkUp takes every end of the wire down or up (memlink SetLinkUp):
// while down, the wire drops whatever is sent over it, as if it had been
// unplugged. On a kernel node it runs `ip link set IFACE down` (or up);
// a hostudp wire has no link to take down and is left as it is.
func (w *Wire) SetLinkUp(up bool) {
	for _, e := range w.ends {
		if e != nil {
			e.SetLinkUp(up)
		}
	}
	w.setKernelLinkUp(up)
}

// Capture declares a capture of what n sends and receives on w: the wire's
// pcap as n sees it, like tcpdump on n's interface. The packets are raw IP
// on a pair and Ethernet frames on a LAN.
func (t *Topology) Capture(n *Node, w *Wire) *Capture {
	i := w.index(n)
	if i < 0 {
		panic(fmt.Sprintf("e2e: capture: node %s is not on wire %s", n.Name, w.Name))
	}
	if w.captures[i] == nil {
		w.captures[i] = &Capture{}
	}
	return w.captures[i]
}

// Address declares address p on n's end of w, with the connected route to
// p's subnet.
func (t *Topology) Address(n *Node, w *Wire, p netip.Prefix) {
	t.addrs = append(t.addrs, addressDecl{node: n, wire: w, p: p})
}

// Route declares a route on n to dst via gateway via, which must be inside
// the subnet of one of n's addresses (on a wire or a tunnel).
func (t *Topology) Route(n *Node, dst netip.Prefix, via netip.Addr) {
	t.routes = append(t.routes, routeDecl{node: n, dst: dst, via: via})
}

// TunnelOptions configure a Tunnel.
type TunnelOptions struct {
	// OuterA and OuterB are the two ends' outer (underlay) addresses: each
	// must be an address of its node (Address), and they must be of one
	// family.
	OuterA, OuterB netip.Addr
	// InnerA and InnerB are the addresses each end's tunnel device gets.
	// The first IPv4 and the first IPv6 of each are the ends' Inner4 and
	// Inner6, which some TunnelFuncs route by (GTP-U's sessions).
	InnerA, InnerB []netip.Prefix
	// Config is handed to the TunnelFunc. Its defaults are NewOverlay's
	// (VNI 42), except that UnderlayMTU 0 is the MTU of the wire carrying
	// each end's outer address, as the kernel derives a tunnel's MTU from
	// its lower device; IPv6Underlay is set from the outer addresses.
	Config OverlayConfig
}

// Tunnel is a tunnel between two nodes of a Topology.
type Tunnel struct {
	// A and B are the two ends, on the first and the second node (after
	// Start). They are named "a" and "b" whatever the nodes' names: a
	// TunnelFunc tells the ends apart by Host.Name.
	// The end on a kernel node has no Stack, Tunnel or sockets: only its
	// Name, Outer, Inner4 and Inner6 (its device is Interface).
	A, B *Host

	proto       TunnelFunc
	opts        TunnelOptions
	nodeA       *Node
	nodeB       *Node
	cfgA, cfgB  OverlayConfig
	t           *Topology
	description string
	ifname      [2]string // a kernel end's VXLAN device, by end
}

// Interface returns the name of the kernel's VXLAN device that is the
// tunnel's end on kernel node n (after Start); "" for an in-process end.
func (tu *Tunnel) Interface(n *Node) string {
	switch n {
	case tu.nodeA:
		return tu.ifname[0]
	case tu.nodeB:
		return tu.ifname[1]
	}
	return ""
}

// Tunnel declares a tunnel between a and b built by proto (nil = VXLAN),
// such as one of Protocol's.
func (t *Topology) Tunnel(a, b *Node, proto TunnelFunc, opts TunnelOptions) *Tunnel {
	if proto == nil {
		proto = VXLAN
	}
	tu := &Tunnel{proto: proto, opts: opts, nodeA: a, nodeB: b, t: t,
		description: fmt.Sprintf("tunnel %s-%s (%v-%v)", a.Name, b.Name, opts.OuterA, opts.OuterB)}
	t.tunnels = append(t.tunnels, tu)
	return tu
}

// wireKind is what Start builds a Wire of.
type wireKind int

const (
	wireMemlink wireKind = iota
	wireVeth
	wireTUN
	wireHostUDP
)

// Interface returns the name of kernel node n's interface on the wire
// (after Start): the veth or TUN device in n's namespace; "" for an
// in-process node or a hostudp wire.
func (w *Wire) Interface(n *Node) string {
	if i := w.index(n); i >= 0 {
		return w.ifname[i]
	}
	return ""
}

// checkKernel resolves what each wire is made of and, if there are kernel
// nodes, checks what they need, skipping the test when it is missing.
func (t *Topology) checkKernel() error {
	var kernel []string
	for _, n := range t.nodes {
		if n.Kernel {
			kernel = append(kernel, n.Name)
		}
	}
	for _, w := range t.wires {
		var k []int // the kernel nodes' indexes
		for i, n := range w.Nodes {
			if n.Kernel {
				k = append(k, i)
			}
		}
		switch {
		case w.opts.Kind == WireHostUDP && (len(w.Nodes) != 2 || len(k) != 1 || w.lan):
			return fmt.Errorf("wire %s: a hostudp wire joins an in-process node to a kernel node", w.Name)
		case len(k) == 0:
			w.kind = wireMemlink
		case w.lan:
			return fmt.Errorf("wire %s: a LAN joins in-process nodes only", w.Name)
		case len(w.Nodes) != 2:
			return fmt.Errorf("wire %s: a wire joins 2 nodes, not %d", w.Name, len(w.Nodes))
		case len(k) == 2:
			w.kind = wireVeth
		case w.opts.Kind == WireHostUDP:
			w.kind = wireHostUDP
		default:
			w.kind = wireTUN
		}
		for _, i := range k {
			if w.captures[i] != nil {
				return fmt.Errorf("wire %s: capture on kernel node %s: run tshark or tcpdump in its namespace instead", w.Name, w.Nodes[i].Name)
			}
		}
	}
	if len(kernel) == 0 {
		return nil
	}
	if t.tb == nil {
		return fmt.Errorf("kernel nodes %s: need a test to skip and to clean up after: make the topology with NewTopologyT", strings.Join(kernel, ", "))
	}
	t.tb.Helper()
	return t.kernelPrereqs(kernel)
}

// Start builds the topology. On error, what was built is torn down. Close
// the topology when done (a topology of NewTopologyT is also closed by its
// test's cleanup).
func (t *Topology) Start() (err error) {
	if t.started {
		return errors.New("e2e: topology started twice")
	}
	t.started = true
	if t.tb != nil {
		t.tb.Helper()
		t.tb.Cleanup(func() {
			if err := t.Close(); err != nil {
				t.tb.Errorf("e2e: closing the topology: %v", err)
			}
		})
	}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	if err := t.checkKernel(); err != nil {
		return err
	}
	for _, n := range t.nodes {
		if n.Kernel {
			if err := t.startKernelNode(n); err != nil {
				return fmt.Errorf("node %s: %w", n.Name, err)
			}
			continue
		}
		if n.Stack, err = newNodeStack(n); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	for _, w := range t.wires {
		start := w.start
		switch w.kind {
		case wireHostUDP:
			continue // after the addresses: its sockets bind one
		case wireVeth, wireTUN:
			start = func() error { return t.startKernelWire(w) }
		}
		if err := start(); err != nil {
			return fmt.Errorf("wire %s: %w", w.Name, err)
		}
	}
	for _, a := range t.addrs {
		if a.wire.index(a.node) >= 0 && a.wire.kind == wireHostUDP {
			if a.node.Kernel {
				return fmt.Errorf("node %s: address %v: a hostudp wire has no interface on the kernel node (see WireHostUDP)", a.node.Name, a.p)
			}
			continue // the wire's start gives it
		}
		if a.node.Kernel && a.wire.index(a.node) >= 0 {
			if err := t.addKernelAddress(a); err != nil {
				return fmt.Errorf("node %s: address %v: %w", a.node.Name, a.p, err)
			}
			continue
		}
		nic := a.wire.NIC(a.node)
		if nic == 0 {
			return fmt.Errorf("address %v: node %s is not on wire %s", a.p, a.node.Name, a.wire.Name)
		}
		if err := a.node.Stack.AddAddress(nic, a.p); err != nil {
			return fmt.Errorf("node %s: address %v: %w", a.node.Name, a.p, err)
		}
	}
	for _, w := range t.wires {
		if w.kind == wireHostUDP {
			if err := t.startKernelWire(w); err != nil {
				return fmt.Errorf("wire %s: %w", w.Name, err)
			}
		}
	}
	// Routes over wires first (tunnels need them for their outer
	// packets), then those whose gateway is across a tunnel.
	later, err := t.addRoutes(t.routes, false)
	if err != nil {
		return err
	}
	for _, tu := range t.tunnels {
		if err := tu.start(); err != nil {
			return fmt.Errorf("%s: %w", tu.description, err)
		}
	}
	_, err = t.addRoutes(later, true)
	return err
}

func newNodeStack(n *Node) (*stack.Stack, error) {
	st := stack.New(n.StackOptions)
	if n.Router {
		for _, proto := range []tcpip.NetworkProtocolNumber{ipv4.ProtocolNumber, ipv6.ProtocolNumber} {
			if err := st.GVisor().SetForwardingDefaultAndAllNICs(proto, true); err != nil {
				st.Close()
				return nil, fmt.Errorf("forwarding: %s", err)
			}
		}
	}
	return st, nil
}

func (w *Wire) start() error {
	opts := memlink.Options{MTU: w.opts.MTU, QueueLen: w.opts.QueueLen, Sync: w.opts.Sync,
		ChecksumOffload: w.opts.ChecksumOffload || w.opts.GSO, GSO: w.opts.GSO, Impairment: w.opts.Impairment}
	if opts.QueueLen == 0 {
		opts.QueueLen = 4096
	}
	if w.lan {
		hub, err := memlink.NewHub(opts)
		if err != nil {
			return err
		}
		w.hub = hub
		for i := range w.Nodes {
			w.ends[i] = hub.NewPort("")
		}
	} else {
		if len(w.Nodes) != 2 {
			return fmt.Errorf("a wire joins 2 nodes, not %d", len(w.Nodes))
		}
		a, b, err := memlink.NewPair(opts)
		if err != nil {
			return err
		}
		w.ends[0], w.ends[1] = a, b
	}
	for i := range w.Nodes {
		if err := w.addNIC(i, w.ends[i]); err != nil {
			return err
		}
	}
	return nil
}

// addNIC gives node i of the wire its NIC on ep, through its capture and
// router port if it has them.
func (w *Wire) addNIC(i int, ep stack.LinkEndpoint) error {
	linkType := capture.LinkRaw
	if w.lan {
		linkType = capture.LinkEthernet
	}
	n := w.Nodes[i]
	if c := w.captures[i]; c != nil {
		c.linkType = linkType
		cep, err := capture.New(ep, &c.buf, capture.Options{LinkType: linkType})
		if err != nil {
			return err
		}
		c.ep, ep = cep, cep
	}
	var port *routerPort
	if n.Router {
		port = newRouterPort(n, ep, w.lan)
		ep = port
	}
	if w.lan {
		ep = ethernet.New(ep)
	}
	name := w.Name
	for k := 2; ; k++ {
		if _, dup := n.Stack.NICByName(name); !dup {
			break
		}
		name = fmt.Sprintf("%s-%d", w.Name, k)
	}
	nic, err := n.Stack.AddNIC(ep, stack.NICOptions{Name: name})
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	w.nics[i] = nic
	if port != nil {
		n.portsMu.Lock()
		n.ports[nic] = port
		n.portsMu.Unlock()
	}
	return nil
}

// addRoutes adds the routes whose gateway is on a subnet of the node's
// wires, or also of its tunnels when tunnels is set, and returns the rest.
func (t *Topology) addRoutes(routes []routeDecl, tunnels bool) (later []routeDecl, err error) {
	for _, r := range routes {
		if r.node.Kernel {
			if _, ok := t.nicFor(r.node, r.via, false); !ok && !tunnels {
				later = append(later, r)
				continue
			}
			if err := t.addKernelRoute(r); err != nil {
				return nil, fmt.Errorf("node %s: route %v via %v: %w", r.node.Name, r.dst, r.via, err)
			}
			continue
		}
		nic, ok := t.nicFor(r.node, r.via, tunnels)
		if !ok {
			if !tunnels {
				later = append(later, r)
				continue
			}
			return nil, fmt.Errorf("node %s: route %v via %v: the gateway is on none of the node's subnets", r.node.Name, r.dst, r.via)
		}
		if err := r.node.Stack.AddRoute(r.dst, r.via, nic); err != nil {
			return nil, fmt.Errorf("node %s: route %v via %v: %w", r.node.Name, r.dst, r.via, err)
		}
	}
	return later, nil
}

// nicFor returns the NIC of n whose subnet holds addr.
func (t *Topology) nicFor(n *Node, addr netip.Addr, tunnels bool) (stack.NICID, bool) {
	for _, a := range t.addrs {
		if a.node == n && a.p.Masked().Contains(addr) {
			return a.wire.NIC(n), true
		}
	}
	if !tunnels {
		return 0, false
	}
	for _, tu := range t.tunnels {
		for _, end := range []struct {
			node  *Node
			h     *Host
			inner []netip.Prefix
		}{{tu.nodeA, tu.A, tu.opts.InnerA}, {tu.nodeB, tu.B, tu.opts.InnerB}} {
			if end.node != n || end.h == nil || end.h.Tunnel == nil {
				continue
			}
			for _, p := range end.inner {
				if p.Masked().Contains(addr) {
					return end.h.Tunnel.NIC(), true
				}
			}
		}
	}
	return 0, false
}

// underlayOf finds the wire carrying n's address addr.
func (t *Topology) underlayOf(n *Node, addr netip.Addr) (*Wire, bool) {
	for _, a := range t.addrs {
		if a.node == n && a.p.Addr() == addr {
			return a.wire, true
		}
	}
	return nil, false
}

func (tu *Tunnel) start() error {
	o := tu.opts
	if !o.OuterA.IsValid() || !o.OuterB.IsValid() || o.OuterA.Is4() != o.OuterB.Is4() {
		return fmt.Errorf("outer addresses %v and %v: need two of one family", o.OuterA, o.OuterB)
	}
	if tu.nodeA.Kernel || tu.nodeB.Kernel {
		return tu.startKernel()
	}
	tu.A = &Host{Name: "a", Stack: tu.nodeA.Stack, Outer: o.OuterA}
	tu.B = &Host{Name: "b", Stack: tu.nodeB.Stack, Outer: o.OuterB}
	tu.A.peer, tu.B.peer = tu.B, tu.A
	for _, end := range []struct {
		h     *Host
		node  *Node
		inner []netip.Prefix
		cfg   *OverlayConfig
	}{{tu.A, tu.nodeA, o.InnerA, &tu.cfgA}, {tu.B, tu.nodeB, o.InnerB, &tu.cfgB}} {
		w, ok := tu.t.underlayOf(end.node, end.h.Outer)
		if !ok {
			return fmt.Errorf("outer address %v is not an address of node %s", end.h.Outer, end.node.Name)
		}
		end.h.Underlay, end.h.Wire = w.NIC(end.node), w.Endpoint(end.node)
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
		if cfg.UnderlayMTU == 0 {
			cfg.UnderlayMTU = w.opts.MTU
			if cfg.UnderlayMTU == 0 {
				cfg.UnderlayMTU = memlink.DefaultMTU
			}
		}
		if cfg.GSO {
			cfg.ChecksumOffload = true
		}
		cfg.IPv6Underlay = end.h.Outer.Is6()
		*end.cfg = cfg
	}
	for _, h := range []*Host{tu.A, tu.B} {
		if err := tu.open(h); err != nil {
			return err
		}
	}
	return nil
}

// open builds end h of the tunnel and gives its device its addresses.
func (tu *Tunnel) open(h *Host) error {
	cfg, inner := tu.cfgA, tu.opts.InnerA
	if h == tu.B {
		cfg, inner = tu.cfgB, tu.opts.InnerB
	}
	end, err := tu.proto(h, cfg)
	if err != nil {
		return fmt.Errorf("end %s: %w", h.Name, err)
	}
	if end.Device == nil || end.Socket == nil {
		return fmt.Errorf("end %s: tunnel function returned no device or socket", h.Name)
	}
	h.Tunnel, h.TunnelSocket = end.Device, end.Socket
	for _, p := range inner {
		if err := h.Stack.AddAddress(h.Tunnel.NIC(), p); err != nil {
			return fmt.Errorf("end %s: inner address %v: %w", h.Name, p, err)
		}
	}
	return nil
}

// Stop closes end h (Tunnel.A or Tunnel.B) of the tunnel: its sockets and
// devices, of every layer of a Nested tunnel, with the addresses on them.
// The other end keeps sending into the void, as to a crashed peer.
func (tu *Tunnel) Stop(h *Host) error {
	if h != tu.A && h != tu.B {
		return errors.New("e2e: not an end of this tunnel")
	}
	if h.Stack == nil {
		return fmt.Errorf("e2e: end %s of %s is a kernel node's device: stop it with ip link in its namespace", h.Name, tu.description)
	}
	var errs []error
	// Closing a tunnel socket closes its devices (encap_destroy).
	if h.TunnelSocket != nil {
		errs = append(errs, h.TunnelSocket.Close())
	}
	if h.Tunnel != nil {
		errs = append(errs, h.Tunnel.Close())
	}
	for _, l := range h.Lower {
		errs = append(errs, l.Socket.Close(), l.Device.Close())
	}
	h.Tunnel, h.TunnelSocket, h.Lower, h.Socket, h.Device = nil, nil, nil, nil, nil
	return errors.Join(errs...)
}

// Restart stops end h of the tunnel and builds it again with the same
// configuration: a peer restarting. Connections of h's stack that used the
// old device keep their cached routes to it. An L2 device comes back with
// a new MAC address, which the other end learns when h speaks first.
//
// Keep datagrams from arriving while h re-opens (take its wire down for a
// moment, as TestFaultPeerRestart does): every protocol's OpenSocket
// registers its port before it records the socket its receive path reads,
// so a datagram in between is a data race.
func (tu *Tunnel) Restart(h *Host) error {
	if err := tu.Stop(h); err != nil {
		return err
	}
	return tu.open(h)
}

// Close tears the topology down: wires first, so that no packet is in
// flight, then every stack with its tunnels, then the kernel nodes'
// namespaces with everything in them. Closing twice does nothing.
func (t *Topology) Close() error {
	if t.closed {
		return nil
	}
	t.closed = true
	var errs []error
	for _, w := range t.wires {
		errs = append(errs, w.closeKernel()...)
		if w.hub != nil {
			w.hub.Close()
		}
		for _, e := range w.ends {
			if e != nil {
				e.Close()
			}
		}
		for _, c := range w.captures {
			if c != nil {
				if err := c.Err(); err != nil {
					errs = append(errs, fmt.Errorf("capture on %s: %w", w.Name, err))
				}
			}
		}
	}
	for _, n := range t.nodes {
		if n.Stack != nil {
			n.Stack.Close()
		}
	}
	for _, n := range t.nodes {
		if n.kernel != nil {
			errs = append(errs, n.kernel.remove())
		}
	}
	return errors.Join(errs...)
}

// routerPort is a router's NIC. It works around two faults of gVisor's
// forwarding (in the pinned version) so that routers are sound under the
// race detector and useful for path MTU discovery:
//
//   - A use after free in IPv4's forwardPacketWithRoute: it takes the IPv4
//     header as a slice, then DeepCopyForForwarding pulls the header up
//     again, which moves it to a new chunk and lets the old one go back to
//     the chunk pool when the copy's temporary buffer is released, and then
//     it reads the TTL through the stale slice. The race detector reports
//     that as soon as another goroutine takes the chunk from the pool, which
//     a TCP transfer through an IPv4 router makes likely. So routerPort
//     forwards the common IPv4 case itself (unicast, not for the router, TTL
//     left, fits the next wire, raw-IP wires both ways) and hands gVisor the
//     rest (what needs an ICMP error or fragmentation) in a chunk larger than
//     gVisor pools, which the stale slice can read safely: the garbage
//     collector frees it, nothing reuses it. IPv6 forwarding reads the hop
//     limit before the copy and is left alone.
//   - IPv6 "packet too big" messages sent with an MTU of 0: gVisor's
//     returnError has no MTU for icmpReasonPacketTooBig. routerPort fills in
//     the MTU of the route to the quoted packet's destination, as RFC 4443
//     section 3.2 asks, and fixes the checksum.
//
// Routers on a LAN (Hub) ports are not covered: their frames reach gVisor
// as they came.
type routerPort struct {
	nested.Endpoint
	lower stack.LinkEndpoint
	node  *Node
	lan   bool
}

func newRouterPort(n *Node, lower stack.LinkEndpoint, lan bool) *routerPort {
	p := &routerPort{lower: lower, node: n, lan: lan}
	p.Endpoint.Init(lower, p)
	return p
}

// DeliverNetworkPacket implements stack.NetworkDispatcher.
func (p *routerPort) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	if proto != ipv4.ProtocolNumber || p.lan {
		p.Endpoint.DeliverNetworkPacket(proto, pkt)
		return
	}
	if p.forward(pkt) {
		return
	}
	v := buffer.NewView(buffer.MaxChunkSize + 1) // not pooled: see above
	for _, s := range pkt.AsSlices() {
		v.Write(s)
	}
	own := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithView(v)})
	own.NetworkProtocolNumber = proto
	p.Endpoint.DeliverNetworkPacket(proto, own)
	own.DecRef()
}

// forward forwards pkt, an IPv4 packet, if it is the common case, and
// reports whether it did.
func (p *routerPort) forward(pkt *stack.PacketBuffer) bool {
	b := pkt.ToView().AsSlice() // a copy: the packet to send
	h := header.IPv4(b)
	if !h.IsValid(len(b)) || h.TTL() <= 1 || h.HeaderLength() > header.IPv4MinimumSize {
		return false
	}
	gs := p.node.Stack.GVisor()
	dst := h.DestinationAddress()
	if gs.CheckLocalAddress(0, ipv4.ProtocolNumber, dst) != 0 || dst == header.IPv4Broadcast || header.IsV4MulticastAddress(dst) {
		return false
	}
	r, err := gs.FindRoute(0, tcpip.Address{}, dst, ipv4.ProtocolNumber, false)
	if err != nil {
		return false
	}
	out, mtu := r.NICID(), r.MTU()
	r.Release()
	p.node.portsMu.RLock()
	port := p.node.ports[out]
	p.node.portsMu.RUnlock()
	if port == nil || port.lan || len(b) > int(mtu) {
		return false
	}
	h.SetTTL(h.TTL() - 1)
	h.SetChecksum(0)
	h.SetChecksum(^h.CalculateChecksum())
	port.write(b)
	return true
}

// write sends one packet, b, on the port's wire.
func (p *routerPort) write(b []byte) {
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	if header.IPVersion(b) == header.IPv6Version {
		pkt.NetworkProtocolNumber = header.IPv6ProtocolNumber
	}
	var pkts gstack.PacketBufferList
	pkts.PushBack(pkt)
	p.lower.WritePackets(pkts)
	pkts.DecRef()
}

// WritePackets implements stack.LinkWriter: it fills in the MTU of the
// router's ICMPv6 "packet too big" messages.
func (p *routerPort) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	var rest gstack.PacketBufferList
	n := 0
	for _, pkt := range pkts.AsSlice() {
		if b, ok := p.fixPacketTooBig(pkt); ok {
			p.write(b)
			n++
			continue
		}
		rest.PushBack(pkt)
	}
	if rest.Len() == 0 {
		return n, nil
	}
	m, err := p.Endpoint.WritePackets(rest)
	return n + m, err
}

// fixPacketTooBig returns a copy of pkt with the MTU set if pkt is an
// ICMPv6 "packet too big" message with an MTU of 0.
func (p *routerPort) fixPacketTooBig(pkt *stack.PacketBuffer) ([]byte, bool) {
	if pkt.NetworkProtocolNumber != header.IPv6ProtocolNumber || p.lan {
		return nil, false
	}
	if nh := header.IPv6(pkt.NetworkHeader().Slice()); len(nh) < header.IPv6MinimumSize || nh.TransportProtocol() != header.ICMPv6ProtocolNumber {
		return nil, false // the cheap test first: forwarded packets go by here
	}
	b := pkt.ToView().AsSlice()
	ip := header.IPv6(b)
	if !ip.IsValid(len(b)) || ip.TransportProtocol() != header.ICMPv6ProtocolNumber {
		return nil, false
	}
	icmp := header.ICMPv6(ip.Payload())
	if len(icmp) < header.ICMPv6PacketTooBigMinimumSize+header.IPv6MinimumSize || icmp.Type() != header.ICMPv6PacketTooBig || icmp.MTU() != 0 {
		return nil, false
	}
	quoted := header.IPv6(icmp.Payload())
	r, err := p.node.Stack.GVisor().FindRoute(0, tcpip.Address{}, quoted.DestinationAddress(), ipv6.ProtocolNumber, false)
	if err != nil {
		return nil, false
	}
	icmp.SetMTU(r.MTU())
	r.Release()
	icmp.SetChecksum(0)
	icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header: icmp, Src: ip.SourceAddress(), Dst: ip.DestinationAddress(),
	}))
	return b, true
}

// Counters describes what every wire end carried and dropped and what every
// tunnel end's device and socket counted, one line each: the first thing to
// read when a test over the topology fails.
func (t *Topology) Counters() string {
	var b strings.Builder
	for _, w := range t.wires {
		for i, e := range w.ends {
			if e != nil {
				fmt.Fprintf(&b, "wire %s at %s: %+v\n", w.Name, w.Nodes[i].Name, e.Stats())
			}
		}
	}
	for _, w := range t.wires {
		w.kernelCounters(&b)
	}
	for _, tu := range t.tunnels {
		for _, h := range []*Host{tu.A, tu.B} {
			if h == nil || h.Tunnel == nil {
				continue
			}
			fmt.Fprintf(&b, "%s end %s: device mtu %d %v; socket %v, %d ICMP errors\n", tu.description, h.Name,
				h.Tunnel.InnerMTU(), h.Tunnel.Counters().Stats(), h.TunnelSocket.Counters().Stats(), h.TunnelSocket.ICMPErrors())
		}
	}
	return b.String()
}
