//go:build !race

package server

// raceSlowdown scales the few time bounds that tests assert; see race_test.go.
const raceSlowdown = 1
