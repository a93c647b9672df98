//go:build race

package tunneltest

// raceEnabled: the race detector makes sync.Pool drop items, so pooled
// packet buffers allocate and allocation counts mean nothing.
const raceEnabled = true
