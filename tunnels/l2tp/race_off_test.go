//go:build !race

package l2tp

const raceEnabled = false
