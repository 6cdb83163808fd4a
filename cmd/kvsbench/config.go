package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/kvsdb/kvs/client"
)

// usageError is a bad command line; main exits with status 2. An empty msg
// means the usage text was printed already (-h).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// errFailed is returned after the results were printed when the run saw
// errors or, in watch mode, a wrong feed.
var errFailed = errors.New("kvsbench: the run saw errors")

// config is kvsbench's command line.
type config struct {
	mode        string
	base        string // http(s)://host:port[/path], no trailing slash
	token       string
	roots       *x509.CertPool // CAs trusted for https (-cacert); nil: the system's
	connections int
	duration    time.Duration // 0: until total
	total       int64         // 0: until duration
	keys        int
	keySize     int
	prefix      string
	valueSize   int
	readRatio   float64
	local       bool // -consistency local: gets send ?consistency=local
	rate        float64
	preload     int
	timeout     time.Duration
	progress    time.Duration
	json        bool
	cpuProfile  string

	subscribers int
	from        bool
	resume      bool
	drain       time.Duration
	sweep       []float64
	sweepP99    time.Duration

	leases    int
	ttl       time.Duration
	batch     int
	serverPID int
}

const usageHead = `usage: kvsbench [flags] MODE [flags]

Modes:
  set    POST /set {"Key":"k<i>","Value":"<random string>"}, i uniform in [0, -keys)
  get    POST /get {"Key":"k<i>"}; the key space is written first (-preload)
  mixed  gets and sets; -read-ratio of them are gets
  txn    POST /txn moving a value between two keys: both must exist, both are set at one
         revision; the key space is written first (-preload)
  fill   write k0 .. k(keys-1) once each, in order (fills the store; e.g. for memory per key)
  watch  -subscribers WebSocket subscribers on /subscribe under a fresh key prefix, and sets
         at -rate per second; reports the latency from each set's acknowledgement (its HTTP
         answer) to each delivery, and checks that every subscriber got every acknowledged
         set exactly once and in revision order
  lease  grants -leases leases of -ttl, a key in each (under a fresh prefix), keeps them
         alive every third of the TTL for -duration with -batch leases per POST
         /lease/keepalive, then lets them expire; reports the keep-alives (with -server-pid,
         kvsd's CPU per renewal) and how late each key's delete comes after its lease's TTL
         since the last acknowledged keep-alive; a lease lost while kept alive, or a key
         deleted before its TTL, is an error

Each connection is one goroutine sending one request at a time over a keep-alive HTTP/1.1
connection. Without -rate, each sends the next request as soon as the answer arrives. With
-rate, requests are scheduled at that rate over all connections, and a request sent late
because earlier answers were slow counts its latency from its scheduled time, so a stalled
server is not hidden by the requests it kept from being sent (coordinated omission).
Latency percentiles come from a log-linear histogram: each is at most 1.6% above the exact
value.

Watch mode: an event can reach a subscriber before the setter has read the set's HTTP
answer; its latency would be negative and is counted as 0 (the report says how many). A
subscriber the server closes as too slow (4408) is an error; with -resume it reconnects
from the revision after the last one it got and its verification continues. 1000
subscribers need 1000 file descriptors here and in kvsd: kvsbench raises its own soft limit
to the hard limit and says so if that is not enough (ulimit -Hn).

Exit status: 0 no errors (watch: nothing lost, duplicated, out of order or unexpected);
1 errors or a wrong feed, or the run could not start; 2 usage.

Flags (KVS_ADDRESS, KVS_TOKEN and KVS_CACERT set the defaults of -server-address, -token
and -cacert):
`

// rawFlags are the flags that parseConfig turns into config fields.
type rawFlags struct {
	addr, cacert, consistency, sweep string
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	c := config{}
	raw := rawFlags{addr: "127.0.0.1:23333"}
	if v := getenv("KVS_ADDRESS"); v != "" {
		raw.addr = v
	}
	fs := flag.NewFlagSet("kvsbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.define(fs, &raw, getenv)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	parse := func(a []string) error {
		if err := fs.Parse(a); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return usageError{}
			}
			return usageError{err.Error()}
		}
		return nil
	}
	if err := parse(args); err != nil {
		return c, err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return c, usageError{"no mode given: set, get, mixed, txn, fill, watch or lease"}
	}
	c.mode = fs.Arg(0)
	if err := parse(fs.Args()[1:]); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, usageError{fmt.Sprintf("unexpected argument %q after the mode", fs.Arg(0))}
	}
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if err := c.resolve(raw); err != nil {
		return c, usageError{err.Error()}
	}
	if err := c.modeDefaults(given); err != nil {
		return c, usageError{err.Error()}
	}
	if err := c.parseSweep(raw.sweep); err != nil {
		return c, usageError{err.Error()}
	}
	if err := c.check(); err != nil {
		return c, usageError{err.Error()}
	}
	return c, nil
}

// define defines the flags on fs: into c, or into raw for those that
// resolve turns into c's fields.
func (c *config) define(fs *flag.FlagSet, raw *rawFlags, getenv func(string) string) {
	fs.StringVar(&raw.addr, "server-address", raw.addr, "kvsd address: host:port or http(s)://host:port")
	fs.StringVar(&c.token, "token", getenv("KVS_TOKEN"), "bearer token sent with every request")
	fs.StringVar(&raw.cacert, "cacert", getenv("KVS_CACERT"), "trust the CA certificates in this PEM file for https://, besides the system's")
	fs.IntVar(&c.connections, "connections", 64, "HTTP connections, one goroutine each (watch: connections of the setter; default 4 there)")
	fs.IntVar(&c.connections, "c", 64, "short for -connections")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to run (with -total alone: no limit)")
	fs.DurationVar(&c.duration, "d", 10*time.Second, "short for -duration")
	fs.Int64Var(&c.total, "total", 0, "stop after this many requests (watch: sets); 0 = no limit")
	fs.Int64Var(&c.total, "n", 0, "short for -total")
	fs.IntVar(&c.keys, "keys", 10000, "key space: keys k0 .. k(keys-1)")
	fs.IntVar(&c.keySize, "key-size", 0, "pad key numbers with zeros to make keys this many bytes, prefix included (0 = no padding)")
	fs.StringVar(&c.prefix, "key-prefix", "", "prefix of every key (watch: default kvsbench-<random>/, so that only this run's sets match)")
	fs.IntVar(&c.valueSize, "value-size", 16, "length of each value, a JSON string of random letters (stored as value-size+2 bytes)")
	fs.Float64Var(&c.readRatio, "read-ratio", 0.9, "mixed: fraction of requests that are gets")
	fs.StringVar(&raw.consistency, "consistency", "linearizable", "get and mixed: linearizable (the server's default) or local (each get sends ?consistency=local: in Kafka mode it skips the read barrier)")
	fs.Float64Var(&c.rate, "rate", 0, "requests (watch: sets) per second over all connections; 0 = as fast as answers come (watch default 200)")
	fs.IntVar(&c.preload, "preload", -1, "write k0 .. k(N-1) once before measuring (-1 = the whole key space for get, mixed and txn, none otherwise)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "timeout of each request")
	fs.DurationVar(&c.progress, "progress", time.Second, "interval of the progress line on stderr; 0 = none")
	fs.BoolVar(&c.json, "json", false, "print the results as one JSON object")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write kvsbench's own CPU profile to this file (to check that the loader is not the bottleneck)")
	fs.IntVar(&c.subscribers, "subscribers", 100, "watch: number of WebSocket subscribers")
	fs.BoolVar(&c.from, "from", false, "watch: subscribe with from=<revision before the first set>+1 and start setting at once, while subscribers still connect (early events come from the history replay)")
	fs.BoolVar(&c.resume, "resume", false, "watch: a subscriber closed as too slow (4408) reconnects from its last revision + 1 and its verification continues")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "watch: after the last set, how long to wait for subscribers to receive every event")
	fs.StringVar(&raw.sweep, "sweep", "", "watch: comma-separated set rates (e.g. 100,200,400,800) run one after another, each for -duration, stopping at the first that fails -sweep-p99 or sees an error; reports the highest rate that passed")
	fs.DurationVar(&c.sweepP99, "sweep-p99", 50*time.Millisecond, "watch -sweep: the p99 delivery latency a rate must stay within")
	fs.IntVar(&c.leases, "leases", 10000, "lease: number of leases")
	fs.DurationVar(&c.ttl, "ttl", 10*time.Second, "lease: their TTL")
	fs.IntVar(&c.batch, "batch", 1000, "lease: leases renewed by one keep-alive request")
	fs.IntVar(&c.serverPID, "server-pid", 0, "lease: kvsd's process id, to report its CPU time during the keep-alives (Linux)")
}

// resolve sets c's fields that come from raw: the consistency, the
// server's address and the CA certificates.
func (c *config) resolve(raw rawFlags) error {
	switch raw.consistency {
	case "linearizable":
	case "local":
		c.local = true
	default:
		return fmt.Errorf("-consistency %q: want linearizable or local", raw.consistency)
	}
	u, err := client.ParseAddress(raw.addr)
	if err != nil {
		return fmt.Errorf("-server-address %q: %v", raw.addr, err)
	}
	c.base = u.String()
	if raw.cacert != "" {
		if c.roots, err = loadRoots(raw.cacert); err != nil {
			return errors.New("-cacert: " + err.Error())
		}
	}
	return nil
}

// modeDefaults sets the defaults that depend on the mode, for the flags
// not given.
func (c *config) modeDefaults(given map[string]bool) error {
	if c.total > 0 && !given["duration"] && !given["d"] {
		c.duration = 0
	}
	switch c.mode {
	case "set", "get", "mixed", "txn", "fill":
		if c.mode == "fill" && !given["duration"] && !given["d"] {
			c.duration = 0 // until every key is written
		}
		if c.preload < 0 {
			c.preload = 0
			if c.mode == "get" || c.mode == "mixed" || c.mode == "txn" {
				c.preload = c.keys
			}
		}
	case "watch":
		if !given["connections"] && !given["c"] {
			c.connections = 4
		}
		if !given["rate"] {
			c.rate = 200
		}
		if !given["key-prefix"] {
			c.prefix = randomPrefix("kvsbench-")
		}
		c.preload = max(c.preload, 0)
	case "lease":
		if !given["key-prefix"] {
			c.prefix = randomPrefix("kvsbench-lease-")
		}
		c.preload = max(c.preload, 0)
	default:
		return fmt.Errorf("unknown mode %q: want set, get, mixed, txn, fill, watch or lease", c.mode)
	}
	return nil
}

// parseSweep sets the rates of watch -sweep from its flag's value.
func (c *config) parseSweep(sweep string) error {
	if sweep != "" {
		if c.mode != "watch" {
			return errors.New("-sweep is for watch mode")
		}
		for s := range strings.SplitSeq(sweep, ",") {
			r, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || r <= 0 {
				return fmt.Errorf("-sweep %q: want positive rates separated by commas", sweep)
			}
			c.sweep = append(c.sweep, r)
		}
	}
	return nil
}

// randomPrefix returns a key prefix that starts with p and that no other
// run uses.
func randomPrefix(p string) string {
	var b [4]byte
	rand.Read(b[:])
	return p + hex.EncodeToString(b[:]) + "/"
}

// loadRoots returns the system's CA certificates and those in the PEM file
// path.
func loadRoots(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// tlsConfig returns the TLS configuration of kvsbench's connections. It is
// never nil: a transport with its own TLS configuration speaks HTTP/1.1
// only, so that each connection stays one connection over https too.
func (c *config) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: c.roots}
}

// check validates the numbers of c.
func (c *config) check() error {
	switch {
	case c.connections < 1:
		return fmt.Errorf("-connections %d: want at least 1", c.connections)
	case c.duration < 0 || c.total < 0:
		return errors.New("-duration and -total must not be negative")
	case c.duration == 0 && c.total == 0 && c.mode != "fill":
		return errors.New("give -duration or -total (or both)")
	case c.keys < 1:
		return fmt.Errorf("-keys %d: want at least 1", c.keys)
	case c.valueSize < 0:
		return fmt.Errorf("-value-size %d: must not be negative", c.valueSize)
	case c.readRatio < 0 || c.readRatio > 1:
		return fmt.Errorf("-read-ratio %v: want 0 to 1", c.readRatio)
	case c.rate < 0:
		return fmt.Errorf("-rate %v: must not be negative", c.rate)
	case c.timeout <= 0:
		return fmt.Errorf("-timeout %v: must be positive", c.timeout)
	case c.mode == "watch" && c.subscribers < 1:
		return fmt.Errorf("-subscribers %d: want at least 1", c.subscribers)
	case c.drain < 0 || c.progress < 0:
		return errors.New("-drain and -progress must not be negative")
	case c.mode == "lease" && (c.leases < 1 || c.batch < 1 || c.ttl < 3*time.Millisecond || c.serverPID < 0 || c.duration == 0):
		return errors.New("lease: -leases, -batch and -duration must be positive, -ttl at least 3ms")
	}
	for _, r := range c.prefix {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return fmt.Errorf("-key-prefix %q: no quotes, backslashes or control characters", c.prefix)
		}
	}
	longest := keyLen(c.prefix, c.keys-1, 0)
	if c.keySize > 0 && longest > c.keySize {
		return fmt.Errorf("-key-size %d: too small for %d keys with prefix %q (need %d)", c.keySize, c.keys, c.prefix, longest)
	}
	if max(c.keySize, longest) > 1024 {
		return errors.New("keys would be longer than 1024 bytes")
	}
	return nil
}

// run runs the benchmark that args describe, printing the results to
// stdout and progress to stderr.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.mode == "watch" {
		need := cfg.subscribers + cfg.connections + 64
		if err := raiseFileLimit(need); err != nil {
			return err
		}
	}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	b, err := newBench(cfg, stderr)
	if err != nil {
		return err
	}
	defer b.close()
	var res results
	switch {
	case cfg.mode == "watch" && len(cfg.sweep) > 0:
		res, err = b.sweep(ctx)
	case cfg.mode == "watch":
		res, err = b.watch(ctx, cfg.rate)
	case cfg.mode == "lease":
		res, err = b.leases(ctx)
	default:
		res, err = b.load(ctx)
	}
	if err != nil {
		if ctx.Err() != nil {
			return errors.New("interrupted")
		}
		return err
	}
	if cfg.json {
		err = writeJSON(stdout, res)
	} else {
		err = res.writeText(stdout)
	}
	if err != nil {
		return err
	}
	if !res.ok() {
		return errFailed
	}
	return nil
}
