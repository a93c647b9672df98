//go:build !race

package fou

const raceEnabled = false
