//go:build !race

package gtpu

const raceEnabled = false
