//go:build race

package kvstest

const raceEnabled = true
