// Package tunneltest holds the test support the tunnel packages share: a
// host whose underlay leads nowhere (for benchmarks and allocation guards),
// raw received datagrams fed straight to a tunnel socket, gVisor's bare
// outer write as a baseline, counter deltas, waiting for a condition and
// the race-detector skip of the allocation guards.
//
// It is imported from _test.go files only.
package tunneltest
