package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kvsdb/kvs/client"
)

// Exit codes, as in DESIGN.md.
const (
	exitOK     = 0
	exitFailed = 1 // not found, condition failed, history compacted
	exitUsage  = 2 // bad flags or arguments, or a request the server rejected as malformed
	exitServer = 3 // unreachable, timed out, refused (401) or failed (5xx)
)

// exitError is an error that ends kvscli with code. An empty msg means
// the problem was already reported.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &exitError{exitUsage, fmt.Sprintf(format, args...)}
}

// cli is one invocation of kvscli.
type cli struct {
	stdout, stderr io.Writer
	stdin          io.Reader // for txn -file -; nil: none
	getenv         func(string) string

	// Set from the global flags before a command runs.
	args    []string // the command's arguments, for a command that takes some
	addr    string   // the server address as the user gave it, for messages
	timeout time.Duration
	kvs     *client.Client

	// httpClient, when not nil, sends every request (tests).
	httpClient *http.Client
	// tuning of watch; zero values mean the defaults.
	tune watchTuning
	// interruptCode is the exit code when Ctrl-C ends the command: 0 for
	// watch, whose normal end it is, exitServer for the others.
	interruptCode atomic.Int32
}

// newCLI returns an invocation of kvscli that reads the environment
// (KVS_ADDRESS, KVS_TOKEN, KVS_CACERT) with getenv. Its run runs kvscli
// with the arguments (without the program name) and returns the exit code.
func newCLI(getenv func(string) string, stdout, stderr io.Writer) *cli {
	c := &cli{stdout: stdout, stderr: stderr, getenv: getenv}
	c.interruptCode.Store(exitServer)
	return c
}

func (c *cli) run(ctx context.Context, args []string) int {
	err := c.main(ctx, args)
	var ee *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		if ee.msg != "" {
			fmt.Fprintf(c.stderr, "kvscli: %s\n", ee.msg)
		}
		return ee.code
	default:
		fmt.Fprintf(c.stderr, "kvscli: %v\n", err)
		return exitFailed
	}
}

// globalFlags are the flags accepted before the command, and after it too.
type globalFlags struct {
	addr, token, cacert string
	timeout             time.Duration
}

func (g *globalFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&g.addr, "server-address", "", "kvsd address: `host:port`, or an http:// or https:// URL (default $KVS_ADDRESS, else "+client.DefaultAddress+")")
	fs.StringVar(&g.token, "token", "", "send `T` as a bearer token (default $KVS_TOKEN)")
	fs.DurationVar(&g.timeout, "timeout", 5*time.Second, "limit on each request, and on each connection attempt of watch; 0 means none")
	fs.StringVar(&g.cacert, "cacert", "", "trust the CA certificates in `FILE` (PEM) for https:// addresses, besides the system's (default $KVS_CACERT)")
}

// command is a kvscli command. define registers its flags on fs and
// returns the function that runs it once fs is parsed.
type command struct {
	name     string
	synopsis string // the flags, as in the usage line
	doc      string
	define   func(fs *flag.FlagSet) func(ctx context.Context, c *cli) error
	// args is set for a command that takes arguments besides its flags
	// (cli.args); flags may come before, between and after them.
	args bool
}

// line is the command's usage line: its name and flags.
func (cmd command) line() string { return strings.TrimSpace(cmd.name + " " + cmd.synopsis) }

func commands() []command {
	return []command{
		{"get", "-key K | -all [-prefix P] [-json]",
			"Print the value of key K: a string without quotes, any other JSON value as\n" +
				"stored. With -all, print every key (or every key starting with P) and its\n" +
				"value as key<TAB>value lines sorted by key; a string that holds a control\n" +
				"character (a tab, a newline) is printed as JSON there, so that each key\n" +
				"takes one line. With -json, print the server's JSON answer.",
			defineGet, false},
		{"set", "-key K -value V [-json-value] [-if-revision R] [-lease ID | -ttl D]",
			"Set key K to the string V (-value 42 stores \"42\"), or with -json-value to V\n" +
				"parsed as JSON (42, true, {\"a\":1}). With -if-revision R, set it only if\n" +
				"the key's revision is R (0: only if it does not exist). With -lease ID, attach\n" +
				"the key to that lease (see lease); with -ttl D, give it a lease of its own\n" +
				"of D: either way it is deleted when the lease expires or is revoked. Print\n" +
				"the revision of the change.",
			defineSet, false},
		{"del", "-key K [-if-revision R]",
			"Delete key K; with -if-revision R, only if its revision is R. Print the\n" +
				"revision of the change.",
			defineDel, false},
		{"watch", "[-key K | -prefix P] [-from R] [-json] [-relist]",
			"Print every change to key K, to the keys starting with P, or to every key, as\n" +
				"it happens: one line per change, REVISION<TAB>set<TAB>KEY<TAB>VALUE or\n" +
				"REVISION<TAB>delete<TAB>KEY (values as in get -all), or with -json the\n" +
				"server's JSON event. Without -from, start after the current revision; with\n" +
				"-from R, start at revision R if the server still has it.\n\n" +
				"When the connection drops, the server restarts or it closes a watch that\n" +
				"reads too slowly, watch reconnects with backoff and resumes after the last\n" +
				"revision it printed: no change is lost or printed twice. If the server no\n" +
				"longer has that revision, watch exits with code 1, or with -relist prints a\n" +
				"REVISION<TAB>relist line ({\"Type\":\"relist\",...} with -json) followed by\n" +
				"every current key as a set line at that revision, and continues. Ctrl-C\n" +
				"stops it with exit code 0.",
			defineWatch, false},
		{"txn", strings.TrimPrefix(txnUsage, "txn "), txnDoc, defineTxn, false},
		{"health", "",
			"Check that kvsd is ready to serve current data (its /readyz): print \"ready\"\n" +
				"and exit 0 if it is, else say why not and exit 3. For health checks, such as\n" +
				"the one of compose.yaml.",
			defineHealth, false},
		{"snapshot", "save FILE | status FILE",
			"save FILE: write a backup of kvsd to FILE and print its revision. The backup\n" +
				"holds every key with its value, revision, create revision and version, exactly\n" +
				"as they were at that revision; kvsd takes it without stopping writes. It is\n" +
				"checked as it arrives, written to a temporary file in FILE's directory,\n" +
				"fsynced, and renamed to FILE only when whole: a failed save leaves nothing, and\n" +
				"an existing FILE as it was. -timeout bounds each wait for more of the backup,\n" +
				"not the whole transfer. Restore it with kvsd -restore FILE.\n\n" +
				"status FILE: check the backup in FILE, all of it (every checksum, every entry),\n" +
				"and print its revision, number of keys and leases, size in bytes, when it was\n" +
				"taken and its checksum, as NAME<TAB>VALUE lines. A damaged or cut short file\n" +
				"exits 1.",
			defineSnapshot, true},
		{"lease", "grant TTL [-id N] | keepalive ID... [-once] | revoke ID | ttl ID [-keys] [-json] | list [-json]",
			leaseDoc, defineLease, true},
	}
}

func lookup(name string) (command, bool) {
	for _, cmd := range commands() {
		if cmd.name == name {
			return cmd, true
		}
	}
	return command{}, false
}

// main parses args and runs the command. It returns nil, or an
// *exitError.
func (c *cli) main(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("kvscli", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var g globalFlags
	g.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.usage(c.stdout)
			return nil
		}
		return usageErrorf("%v\nrun kvscli -h for usage", err)
	}
	if fs.NArg() == 0 {
		c.usage(c.stderr)
		return &exitError{code: exitUsage}
	}
	name, rest := fs.Arg(0), fs.Args()[1:]
	if name == "help" {
		if len(rest) == 0 {
			c.usage(c.stdout)
			return nil
		}
		cmd, ok := lookup(rest[0])
		if !ok {
			return usageErrorf("help: unknown command %q; the commands are get, set, del, txn, watch, health, snapshot and lease", rest[0])
		}
		c.commandUsage(c.stdout, cmd)
		return nil
	}
	cmd, ok := lookup(name)
	if !ok {
		return usageErrorf("unknown command %q; the commands are get, set, del, txn, watch, health, snapshot and lease (run kvscli -h)", name)
	}

	cfs := flag.NewFlagSet("kvscli "+name, flag.ContinueOnError)
	cfs.SetOutput(io.Discard)
	runCmd := cmd.define(cfs)
	var g2 globalFlags
	g2.register(cfs)
	for {
		if err := cfs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.commandUsage(c.stdout, cmd)
				return nil
			}
			return usageErrorf("%s: %v\nusage: kvscli [global flags] %s\nrun kvscli %s -h for details", name, err, cmd.line(), name)
		}
		if !cmd.args || cfs.NArg() == 0 {
			break
		}
		c.args = append(c.args, cfs.Arg(0))
		rest = cfs.Args()[1:]
	}
	if cfs.NArg() > 0 {
		hint := ""
		if !strings.HasPrefix(cfs.Arg(0), "-") && name != "watch" && name != "health" && name != "txn" {
			hint = fmt.Sprintf(" (did you mean -key %s?)", cfs.Arg(0))
		}
		return usageErrorf("%s: unexpected argument %q%s\nusage: kvscli [global flags] %s", name, cfs.Arg(0), hint, cmd.line())
	}
	// A global flag given after the command wins over the same flag before it.
	cfs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "server-address":
			g.addr = g2.addr
		case "token":
			g.token = g2.token
		case "timeout":
			g.timeout = g2.timeout
		case "cacert":
			g.cacert = g2.cacert
		}
	})
	if err := c.configure(g); err != nil {
		return err
	}
	return runCmd(ctx, c)
}

// configure applies the global flags, with the environment for those not
// given, and makes the client.
func (c *cli) configure(g globalFlags) error {
	addr, opts := client.Environment(c.getenv)
	c.addr = addr
	if g.addr != "" {
		c.addr = g.addr
	}
	if _, err := client.ParseAddress(c.addr); err != nil {
		return usageErrorf("-server-address %q: %v", c.addr, err)
	}
	if g.token != "" {
		opts.Token = g.token
	}
	for _, r := range opts.Token {
		if r < 0x21 || r > 0x7e {
			return usageErrorf("-token (or KVS_TOKEN): a token is printable ASCII without spaces")
		}
	}
	if g.timeout < 0 {
		return usageErrorf("-timeout %v: must not be negative", g.timeout)
	}
	c.timeout = g.timeout
	opts.Timeout = g.timeout
	if g.cacert != "" {
		opts.CAFile = g.cacert
	}
	opts.UserAgent = "kvscli"
	if c.httpClient != nil {
		opts.HTTPClient, opts.CAFile = c.httpClient, ""
	}
	kvs, err := client.New(c.addr, opts)
	if err != nil {
		return usageErrorf("-cacert (or KVS_CACERT): %v", strings.TrimPrefix(err.Error(), "client: "))
	}
	c.kvs = kvs
	return nil
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprint(w, `kvscli is the command-line client of kvs: get, set and delete keys on a kvsd
server, change several at once (txn), watch its changes, check its health, back
it up, and hold leases that keys expire with.

usage:
  kvscli [-server-address host:port] [-token T] [-timeout 5s] COMMAND [flags]

commands:
`)
	for _, cmd := range commands() {
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("  %-8s %s", cmd.name, cmd.synopsis), " "))
	}
	fmt.Fprint(w, `
global flags (before or after the command):
`)
	fs := flag.NewFlagSet("kvscli", flag.ContinueOnError)
	fs.SetOutput(w)
	new(globalFlags).register(fs)
	fs.PrintDefaults()
	fmt.Fprint(w, `
Flags take one or two dashes: --server-address works as -server-address.

environment:
  KVS_ADDRESS   the server address when -server-address is not given
  KVS_TOKEN     the token when -token is not given
  KVS_CACERT    the CA file when -cacert is not given

exit codes:
  0  ok
  1  key not found, condition (-if-revision) failed, a txn ran -else, watch
     history compacted, a backup file that is damaged or cannot be read or
     written, or a lease not found (or lost while kept alive)
  2  usage: bad flags or arguments, or a request the server rejected as malformed
  3  server unreachable, too slow (-timeout), refused the request (401) or failed

Run kvscli COMMAND -h for a command's flags.
`)
}

func (c *cli) commandUsage(w io.Writer, cmd command) {
	fmt.Fprintf(w, "usage: kvscli [global flags] %s\n\n%s\n\nflags:\n", cmd.line(), cmd.doc)
	fs := flag.NewFlagSet("kvscli "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(w)
	cmd.define(fs)
	fs.PrintDefaults()
	fmt.Fprint(w, "\nThe global flags (-server-address, -token, -timeout, -cacert) may come before or\nafter the command; run kvscli -h for them and for the exit codes.\n")
}

// given returns the names of the flags set on the command line.
func given(fs *flag.FlagSet) map[string]bool {
	m := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { m[f.Name] = true })
	return m
}
