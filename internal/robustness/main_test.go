package robustness

import (
	"flag"
	"os"
	"testing"
)

// TestMain lets the scenarios run side by side: they spend their time
// waiting on kvsd processes, and go test's default of GOMAXPROCS parallel
// tests (2 on the build machines) would run them two at a time. An
// explicit -test.parallel wins.
func TestMain(m *testing.M) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		flag.Set("test.parallel", "16")
	}
	os.Exit(m.Run())
}
