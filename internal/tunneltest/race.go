package tunneltest

import "testing"

// RaceEnabled reports whether the binary was built with the race detector.
const RaceEnabled = raceEnabled

// SkipIfRace skips t when the race detector is on: it makes sync.Pool drop
// items, so pooled packet buffers allocate and allocation counts mean
// nothing. Allocation guards call it before testing.AllocsPerRun.
func SkipIfRace(t testing.TB) {
	t.Helper()
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items)")
	}
}
