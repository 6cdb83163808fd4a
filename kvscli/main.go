// Command kvscli is the command-line client of kvs: it gets, sets and
// deletes keys on a kvsd server, and watches its change feed.
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
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
