// Package e2e is udptunnel's end-to-end harness: it builds topologies of
// in-process hosts (userspace stacks) joined by in-memory wires and tunnels
// (NewOverlay), and kernel hosts in network namespaces it creates and
// always removes (NewNetns, with Do to run Go code inside one), and runs
// traffic through them that checks itself — ping with loss and RTT, TCP
// transfers with a hash check and throughput. Its tests include interop
// with the Linux kernel's own VXLAN over a TUN underlay, cross-checked by
// Wireshark's dissector.
//
// It is a library, not only a test suite: the CLI's demo runs on it, the
// benchmarks measure through it, and other projects can import it to test
// their network code over real tunnels. The kernel analog is the selftests
// in tools/testing/selftests/net. Addresses it assigns live only inside the
// stacks it creates.
package e2e
