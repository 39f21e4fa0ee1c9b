//go:build race

package server_test

// hostileRace: under the race detector, which slows every request about ten times and gains
// nothing from volume, TestHostileRequests sends its catalogue once per engine.
const hostileRace = true
