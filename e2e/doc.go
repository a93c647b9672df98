// Package e2e is udptunnel's end-to-end harness.
//
// Topologies are declared in Go and built by Start (NewTopology, or
// NewTopologyT inside a test): in-process hosts and routers (gVisor stacks,
// routers forwarding with ICMP errors) and kernel hosts and routers in
// network namespaces it creates and always removes, also after a failed
// test; wires between them — memlink pairs and LANs with impairment between
// stacks, veth pairs (netem impairment) between kernel hosts, a TUN or a
// hostudp bridge between a stack and a kernel host; addresses, routes and
// tunnels of any protocol between any two nodes (VXLAN on kernel ends, the
// only UDP tunnel this machine's kernel has). NewOverlay builds the common
// two-host overlay in one call, Nested stacks one protocol over another,
// NewNetns and NewOVS give a bare namespace and a private Open vSwitch.
//
// For control planes: InNetns re-runs a test in a child process inside a
// fresh namespace, so that the sockets a library opens on its own
// goroutines (a BGP speaker's) live there; StartFRR runs a private FRR
// (zebra and bgpd, EVPN with advertise-all-vni) in a namespace, over
// kernel VTEPs that NewKernelVTEP builds (a bridge with a VXLAN port and
// hosts), with Veth to link namespaces. TestFRRHarness shows what FRR
// advertises and installs.
//
// Traffic helpers check themselves: Ping (loss and RTT), TransferTCP and
// Transfer (a hashed transfer with throughput, between any two ends, kernel
// sockets too), RequestResponse and UDPEcho (UDP), and captures that hand
// back decoded packets.
//
// It is a library, not only a test suite: the CLI's demo runs on it, the
// benchmarks measure through it, and other projects can import it to test
// their network code over real tunnels. Its tests are the interop matrix
// (README.md). The kernel analog is the selftests in
// tools/testing/selftests/net. Addresses it assigns live only inside the
// stacks and namespaces it creates.
package e2e
