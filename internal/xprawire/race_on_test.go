//go:build race

package xprawire

// raceEnabled: under the race detector sync.Pool drops a quarter of what it
// is given back, so allocation counts of pooled paths are not the product's.
const raceEnabled = true
