//go:build race

package mqtt

// raceDetector: the race detector's instrumented frames and its own
// goroutines make goroutine stacks too uneven for a bound on their size.
const raceDetector = true
