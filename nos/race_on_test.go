//go:build race

package nos

// raceDetector tells the allocation tests that sync.Pool drops a share
// of what is put back and the detector adds its own allocations, so a
// Set's byte count varies by tens of kilobytes between rounds.
const raceDetector = true
