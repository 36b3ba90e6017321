//go:build race

package server

// raceSlowdown scales the few time bounds that tests assert: the race
// detector makes TLS and the rest several times slower.
const raceSlowdown = 3
