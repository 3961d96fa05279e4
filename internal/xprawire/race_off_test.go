//go:build !race

package xprawire

const raceEnabled = false
