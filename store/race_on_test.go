//go:build race

package store

// raceSlowdown scales timing bounds: the race detector instruments the
// transpiled SQLite too, which makes it some 20 to 50 times slower.
const raceSlowdown = 20
