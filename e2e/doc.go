// Package e2e is udptunnel's end-to-end harness: it builds topologies of
// in-process hosts (userspace stacks) joined by in-memory wires and tunnels,
// and runs traffic through them that checks itself — ping with loss and
// RTT, TCP transfers with a SHA-256 check and throughput.
//
// It is a library, not only a test suite: the CLI's demo runs on it, the
// benchmarks measure through it, and other projects can import it to test
// their network code over real tunnels. The kernel analog is the selftests
// in tools/testing/selftests/net. Addresses it assigns live only inside the
// stacks it creates.
package e2e
