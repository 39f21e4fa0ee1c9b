//go:build !race

package server_test

// hostileRace: see hostile_race_test.go.
const hostileRace = false
