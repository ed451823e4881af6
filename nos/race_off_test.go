//go:build !race

package nos

// raceDetector: see race_on_test.go.
const raceDetector = false
