//go:build !race

package bareudp

const raceEnabled = false
