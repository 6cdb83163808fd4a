//go:build !race

package kvstest

const raceEnabled = false
