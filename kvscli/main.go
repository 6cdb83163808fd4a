// Command kvscli is the command-line client of kvs: it gets, sets and
// deletes keys on a kvsd server, watches its change feed, checks its
// health, and saves and checks backups. It is built on the Go client, package
// github.com/kvsdb/kvs/client.
//
//	kvscli [-server-address host:port] [-token T] [-timeout 5s] COMMAND [flags]
//
// Run kvscli -h for the commands and exit codes, and kvscli COMMAND -h for a
// command's flags. Output goes to stdout and is meant for scripts; messages
// go to stderr.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	c := newCLI(os.Getenv, os.Stdout, os.Stderr)
	c.stdin = os.Stdin
	stop := onInterrupt(cancel, interruptGrace, func() { os.Exit(int(c.interruptCode.Load())) })
	code := c.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// interruptGrace is how long kvscli lets a command end after Ctrl-C before
// it exits anyway.
const interruptGrace = 500 * time.Millisecond

// onInterrupt calls cancel at the first SIGINT or SIGTERM, and exit if the
// command has not ended grace later: a command blocked where the context
// does not reach (a write to a stdout that nobody reads, as in
// `kvscli watch | less`) still ends. After the first signal the default
// action is back, so a second Ctrl-C ends kvscli at once. stop undoes it.
func onInterrupt(cancel context.CancelFunc, grace time.Duration, exit func()) (stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sig:
		case <-done:
			return
		}
		signal.Stop(sig)
		cancel()
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			exit()
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
	}
}
