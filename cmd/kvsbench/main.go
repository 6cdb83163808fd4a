// Command kvsbench is the load and feed-correctness tool for kvs, in the
// manner of redis-benchmark: it drives a running kvsd over keep-alive HTTP
// connections and WebSocket subscriptions, and prints throughput, a latency
// histogram's percentiles and the errors it saw.
//
//	kvsbench [flags] set|get|mixed|fill|watch [flags]
//
// Modes:
//   - set: POST /set {"Key":"k<i>","Value":"<random string>"}, i uniform in
//     the key space.
//   - get: POST /get {"Key":"k<i>"}; the key space is written first (see
//     -preload), so every get finds its key.
//   - mixed: gets and sets, -read-ratio of them gets.
//   - fill: writes k0 .. k(keys-1) once each, in order: to fill the store.
//   - watch: -subscribers WebSocket subscribers on /subscribe, a setter at
//     -rate sets per second; reports the latency from each set's
//     acknowledgement to each delivery, and checks that every subscriber got
//     every acknowledged set exactly once and in revision order.
//
// kvsbench exits with status 0 when the run saw no error (and, in watch
// mode, no lost, duplicated, out-of-order or unexpected event), 1 when it
// did or could not run, and 2 on a usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	var ue usageError
	switch {
	case err == nil:
	case errors.As(err, &ue):
		if ue.msg != "" {
			fmt.Fprintln(os.Stderr, "kvsbench:", ue.msg)
		}
		os.Exit(2)
	case errors.Is(err, errFailed):
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "kvsbench:", err)
		os.Exit(1)
	}
}
