// Command kvsd is the kvs server: a key-value store over HTTP with a live
// change feed over WebSocket.
//
// Every flag has an environment twin: -max-value-bytes is KVS_MAX_VALUE_BYTES.
// A flag given on the command line wins over its twin.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/internal/hubfeed"
	"github.com/kvsdb/kvs/kv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h: the usage went to stdout
		}
		fmt.Fprintln(os.Stderr, "kvsd:", err)
		os.Exit(1)
	}
}

// config is kvsd's configuration, from flags and their environment twins.
type config struct {
	addr            string
	backend         string
	data            string
	fsync           string
	snapshotBytes   int64
	shards          int
	history         int
	historyBytes    int64
	subBuffer       int
	subBytes        int64
	feedBytes       int64
	maxValueBytes   int
	logFormat       string
	logLevel        slog.Level
	shutdownTimeout time.Duration
	ui              bool
	gcHeadroom      int
	kafka           kafkaConfig
	restore         restoreConfig

	token             string
	tokenFile         string
	sessionTTL        time.Duration
	tlsCert, tlsKey   string
	allowedOrigins    []string
	allowedHosts      []string // nil: the default for the listener
	maxSubscribers    int
	maxSnapshots      int
	maxBodyBytes      int
	maxTxnOps         int
	maxLeaseTTL       time.Duration
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
	pprof             bool
}

// parseConfig reads flags from args, and for each flag not given there,
// its environment twin from getenv. Asked for help (-h), it writes the
// usage to stdout and returns flag.ErrHelp.
func parseConfig(args []string, getenv func(string) string, stdout io.Writer) (config, error) {
	var c config
	var raw rawFlags
	fs := flag.NewFlagSet("kvsd", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, the usage printed below
	c.define(fs, &raw)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: kvsd [flags]\n\nEvery flag has an environment twin, e.g. -addr and KVS_ADDR; the flag wins.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return c, err
		}
		return c, fmt.Errorf("%v (run kvsd -h for the flags)", err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q: kvsd takes flags only (run kvsd -h for them)", fs.Arg(0))
	}
	if err := envTwins(fs, getenv); err != nil {
		return c, err
	}
	for o := range strings.SplitSeq(raw.origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.allowedOrigins = append(c.allowedOrigins, o)
		}
	}
	for h := range strings.SplitSeq(raw.hosts, ",") {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			c.allowedHosts = append(c.allowedHosts, h)
		}
	}
	if err := c.checkSecurity(); err != nil {
		return c, err
	}
	return c, c.check()
}

// rawFlags are the flags that parseConfig turns into config fields.
type rawFlags struct {
	origins, hosts string // comma-separated lists
}

// define defines kvsd's flags on fs: into c, or into raw for those that
// parseConfig turns into c's fields.
func (c *config) define(fs *flag.FlagSet, raw *rawFlags) {
	fs.StringVar(&c.addr, "addr", ":23333", "listen address, host:port")
	fs.StringVar(&c.backend, "backend", "file", "the log behind the store: file (durable, in -data), memory (nothing is written to disk) or kafka (a topic shared by several kvsd, see -kafka-brokers)")
	fs.StringVar(&c.data, "data", "./kvs-data", "the file backend's data directory (created if missing)")
	fs.StringVar(&c.fsync, "fsync", "always", "file backend: always (fsync each batch of writes before acknowledging it) or never (unsafe: a machine crash can lose acknowledged writes)")
	fs.Int64Var(&c.snapshotBytes, "snapshot-bytes", 64<<20, "file backend: how far the log may grow, in bytes, before a snapshot is written")
	fs.IntVar(&c.shards, "shards", 32, "number of map shards (rounded up to a power of two)")
	fs.IntVar(&c.history, "history", 100000, "changes kept in memory for subscribers resuming with ?from=")
	fs.Int64Var(&c.historyBytes, "history-bytes", 64<<20, "the most memory, in bytes, the changes kept for resuming subscribers may take (the oldest go first)")
	fs.IntVar(&c.subBuffer, "subscriber-buffer", 1024, "events queued per subscriber: one that falls further behind is closed with 4408 and resumes")
	fs.Int64Var(&c.subBytes, "subscriber-buffer-bytes", 16<<20, "the most memory, in bytes, the events queued to one subscriber and being written to it may take; one that would take more is closed with 4408 and resumes")
	fs.Int64Var(&c.feedBytes, "feed-buffer-bytes", 256<<20, "the most memory, in bytes, the events held for all subscribers together may take (an event held for many counts once); the subscriber an event would take past it is closed with 4408")
	fs.IntVar(&c.maxValueBytes, "max-value-bytes", httpapi.DefaultMaxValueBytes, "largest value accepted, in bytes of compact JSON")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.TextVar(&c.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a graceful shutdown may take")
	fs.StringVar(&c.token, "token", "", "require this token (Authorization: Bearer <token>) on every route but /healthz, /login, /logout and the console page; prefer KVS_TOKEN or -token-file, since command lines are visible to every user of the machine")
	fs.StringVar(&c.tokenFile, "token-file", "", "read the token from this file (its first line)")
	fs.DurationVar(&c.sessionTTL, "session-ttl", httpapi.DefaultSessionTTL, "how long a browser session of POST /login lasts before the token must be entered again")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "serve HTTPS and WSS with this certificate (PEM; with -tls-key)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "the private key of -tls-cert (PEM)")
	fs.StringVar(&raw.origins, "allowed-origins", "", "comma-separated origins whose web pages may open /subscribe besides kvsd's own: host patterns (*.example.com) or scheme://host patterns")
	fs.StringVar(&raw.hosts, "allowed-hosts", "", "comma-separated host patterns (*.example.com) that requests may name in their Host header, against DNS rebinding; IP addresses are always allowed; * allows every host (default: localhost and *.localhost when listening on a loopback address only, else every host)")
	fs.IntVar(&c.maxSubscribers, "max-subscribers", httpapi.DefaultMaxSubscribers, "open /subscribe connections at most; more get 429")
	fs.IntVar(&c.maxSnapshots, "max-snapshots", httpapi.DefaultMaxSnapshots, "backups (GET /snapshot) streamed at once at most; more get 429")
	fs.IntVar(&c.maxBodyBytes, "max-body-bytes", 0, "largest request body, in bytes (0: -max-value-bytes + 65536)")
	fs.DurationVar(&c.maxLeaseTTL, "max-lease-ttl", httpapi.DefaultMaxLeaseTTL, "the longest TTL a lease may be granted (POST /lease/grant, a /set with a TTL)")
	fs.IntVar(&c.maxTxnOps, "max-txn-ops", httpapi.DefaultMaxTxnOps, "most conditions of a transaction (POST /txn), and most operations in each of its Then and Else")
	fs.DurationVar(&c.readHeaderTimeout, "read-header-timeout", 10*time.Second, "how long a client may take to send a request's headers; slower connections are closed")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 120*time.Second, "how long an idle keep-alive connection stays open")
	fs.BoolVar(&c.pprof, "pprof", false, "serve net/http/pprof under /debug/pprof/ (behind the token)")
	fs.BoolVar(&c.ui, "ui", true, "serve the web console at /")
	fs.IntVar(&c.gcHeadroom, "gc-headroom", 10, "how far, in percent of the live heap, Go's heap may grow before the garbage collector runs again (GOGC; at least 16 MiB, at most 100%, Go's default): less memory for more collections; 0 = Go's default; ignored when GOGC is set")
	c.kafka.flags(fs)
	c.restore.flags(fs)
}

// envTwins sets each flag of fs that was not given from its environment
// twin (-addr: KVS_ADDR), when getenv has it.
func envTwins(fs *flag.FlagSet, getenv func(string) string) error {
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := "KVS_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" && !given[f.Name] && err == nil {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s=%q: %v", env, v, e)
			}
		}
	})
	return err
}

// check checks the flags of the store, the feed and the backends.
func (c *config) check() error {
	switch {
	case c.backend != "file" && c.backend != "memory" && c.backend != "kafka":
		return fmt.Errorf("-backend %q: want file, memory or kafka", c.backend)
	case c.fsync != "always" && c.fsync != "never":
		return fmt.Errorf("-fsync %q: want always or never", c.fsync)
	case c.snapshotBytes <= 0:
		return fmt.Errorf("-snapshot-bytes %d: must be positive", c.snapshotBytes)
	case c.logFormat != "text" && c.logFormat != "json":
		return fmt.Errorf("-log-format %q: want text or json", c.logFormat)
	case c.history <= 0:
		return fmt.Errorf("-history %d: must be positive", c.history)
	case c.historyBytes <= 0:
		return fmt.Errorf("-history-bytes %d: must be positive", c.historyBytes)
	case c.subBuffer <= 0:
		return fmt.Errorf("-subscriber-buffer %d: must be positive", c.subBuffer)
	case c.subBytes <= 0:
		return fmt.Errorf("-subscriber-buffer-bytes %d: must be positive", c.subBytes)
	case c.feedBytes < 2*int64(c.maxValueBytes)+65536:
		return fmt.Errorf("-feed-buffer-bytes %d: must hold the largest event, at least 2 × -max-value-bytes + 65536 = %d", c.feedBytes, 2*int64(c.maxValueBytes)+65536)
	case c.maxValueBytes <= 0:
		return fmt.Errorf("-max-value-bytes %d: must be positive", c.maxValueBytes)
	case c.gcHeadroom < 0 || c.gcHeadroom > 100:
		return fmt.Errorf("-gc-headroom %d: must be between 0 and 100", c.gcHeadroom)
	case c.shards <= 0 || c.shards > 1<<16:
		return fmt.Errorf("-shards %d: must be between 1 and 65536", c.shards)
	}
	if err := c.restore.check(); err != nil {
		return err
	}
	if c.backend == "kafka" {
		return c.kafka.check()
	}
	return nil
}

// checkSecurity checks the flags of security and limits, and reads the
// token file.
func (c *config) checkSecurity() error {
	if c.tokenFile != "" {
		if c.token != "" {
			return errors.New("-token and -token-file: give one of them")
		}
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return fmt.Errorf("-token-file: %v", err)
		}
		c.token, _, _ = strings.Cut(string(b), "\n")
		c.token = strings.TrimSuffix(c.token, "\r")
		if c.token == "" {
			return fmt.Errorf("-token-file %s: the first line is empty", c.tokenFile)
		}
	}
	for _, r := range c.token {
		if r < 0x21 || r > 0x7e {
			return errors.New("-token: a token is printable ASCII without spaces (it travels in an HTTP header)")
		}
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return errors.New("-tls-cert and -tls-key: give both or neither")
	}
	for _, o := range c.allowedOrigins {
		if !httpapi.ValidOriginPattern(o) {
			return fmt.Errorf("-allowed-origins: bad pattern %q", o)
		}
	}
	for _, h := range c.allowedHosts {
		if !httpapi.ValidHostPattern(h) {
			return fmt.Errorf("-allowed-hosts: bad pattern %q: a host name pattern, without scheme or port", h)
		}
	}
	switch {
	case c.maxSubscribers <= 0:
		return fmt.Errorf("-max-subscribers %d: must be positive", c.maxSubscribers)
	case c.maxSnapshots <= 0:
		return fmt.Errorf("-max-snapshots %d: must be positive", c.maxSnapshots)
	case c.maxBodyBytes < 0:
		return fmt.Errorf("-max-body-bytes %d: must not be negative", c.maxBodyBytes)
	case c.maxTxnOps <= 0:
		return fmt.Errorf("-max-txn-ops %d: must be positive", c.maxTxnOps)
	case c.maxLeaseTTL < time.Millisecond:
		return fmt.Errorf("-max-lease-ttl %v: must be a millisecond or more", c.maxLeaseTTL)
	case c.readHeaderTimeout <= 0:
		return fmt.Errorf("-read-header-timeout %v: must be positive", c.readHeaderTimeout)
	case c.idleTimeout <= 0:
		return fmt.Errorf("-idle-timeout %v: must be positive", c.idleTimeout)
	case c.sessionTTL < time.Second:
		return fmt.Errorf("-session-ttl %v: must be a second or more", c.sessionTTL)
	}
	return nil
}

// deadlineTick is how late a connection's read or write deadline may fire
// (see sweepListener).
const deadlineTick = 100 * time.Millisecond

// run serves until ctx is done, then shuts down gracefully.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stdout)
	if err != nil {
		return err
	}
	lh := logHandler(&cfg, stderr)
	log := slog.New(lh)
	defer startGCTuner(cfg.gcHeadroom, getenv, log)()
	tlsConfig, err := loadTLS(&cfg)
	if err != nil {
		return err
	}
	if cfg.token != "" && len(cfg.token) < 16 {
		log.Warn("the token is short: use at least 16 random characters, e.g. openssl rand -hex 32")
	}

	hub := bus.New(bus.Options{
		History:          cfg.history,
		HistoryBytes:     cfg.historyBytes,
		Buffer:           cfg.subBuffer,
		BufferBytes:      cfg.subBytes,
		TotalBufferBytes: cfg.feedBytes,
		Encode:           httpapi.AppendEvent,
	})
	began := time.Now()
	be, err := openBackend(ctx, &cfg, hub, getenv, log)
	if err != nil {
		return err
	}
	store := kv.New(kv.Options{Shards: cfg.shards, Log: be.log, Replicated: be.repl, Publisher: hub, WriteTimeout: cfg.kafka.writeTimeout,
		LeaseTakeover: cfg.kafka.leaseTakeover})
	if be.file != nil {
		log.Info("recovered", "data", cfg.data, "rev", store.Rev(), "keys", store.Len(),
			"snapshot_rev", be.file.SnapshotRev(), "took", time.Since(began).Round(time.Millisecond))
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		store.Close()
		return err
	}
	loopback := net.ParseIP(hostOf(ln.Addr())).IsLoopback()
	ln = newSweepListener(ln, deadlineTick)
	api := newAPI(&cfg, store, hub, be, loopback, log)
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: cfg.readHeaderTimeout,
		ReadTimeout:       max(30*time.Second, cfg.readHeaderTimeout),
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       cfg.idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(lh, slog.LevelWarn),
		TLSConfig:         tlsConfig,
	}
	if cfg.token == "" && !loopback {
		log.Warn("no -token: anyone who can reach this address can read and change every key")
	}
	log.Info("listening", "addr", ln.Addr().String(), "backend", cfg.backend, "tls", tlsConfig != nil, "token", cfg.token != "")
	served := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			served <- srv.ServeTLS(ln, "", "")
		} else {
			served <- srv.Serve(ln)
		}
	}()
	select {
	case err = <-served:
		log.Error("server failed", "err", err)
	case <-ctx.Done():
	}
	if e := shutdown(srv, api, hub, store, cfg.shutdownTimeout, log); e != nil && err == nil {
		err = e
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// logHandler returns the handler of kvsd's log on stderr, in -log-format.
func logHandler(cfg *config, stderr io.Writer) slog.Handler {
	opts := &slog.HandlerOptions{Level: cfg.logLevel}
	if cfg.logFormat == "json" {
		return slog.NewJSONHandler(stderr, opts)
	}
	return slog.NewTextHandler(stderr, opts)
}

// loadTLS returns the TLS configuration of -tls-cert and -tls-key, or nil
// without them.
func loadTLS(cfg *config) (*tls.Config, error) {
	if cfg.tlsCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("-tls-cert %s, -tls-key %s: %v", cfg.tlsCert, cfg.tlsKey, err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// newAPI returns the HTTP API of store and hub. loopback says whether kvsd
// listens on a loopback address only, which sets the default
// -allowed-hosts.
func newAPI(cfg *config, store *kv.Store, hub *bus.Hub, be backend, loopback bool, log *slog.Logger) *httpapi.Handler {
	hosts := cfg.allowedHosts
	switch {
	case slices.Contains(hosts, "*"):
		hosts = nil
	case hosts == nil && loopback:
		hosts = httpapi.LoopbackHosts
	}
	return httpapi.New(httpapi.Options{
		Store:          store,
		Feed:           hubfeed.Feed{Hub: hub},
		MaxValueBytes:  cfg.maxValueBytes,
		MaxBodyBytes:   cfg.maxBodyBytes,
		MaxTxnOps:      cfg.maxTxnOps,
		MaxLeaseTTL:    cfg.maxLeaseTTL,
		Ready:          be.ready,
		ReadBarrier:    be.barrier,
		Logger:         log,
		Token:          cfg.token,
		SessionTTL:     cfg.sessionTTL,
		Pprof:          cfg.pprof,
		LogStats:       be.logStats,
		ExtraMetrics:   feedMetrics(hub, store, memoryMetrics(store, be.extra)),
		OriginPatterns: cfg.allowedOrigins,
		AllowedHosts:   hosts,
		MaxSubscribers: cfg.maxSubscribers,
		MaxSnapshots:   cfg.maxSnapshots,
		DisableUI:      !cfg.ui,
	})
}

// backend is the log behind the store and what kvsd serves of it.
type backend struct {
	log      kv.Log        // nil: the memory log
	repl     kv.Replicated // the Kafka log, instead of log
	file     *kv.FileLog   // the file backend's log, or nil
	ready    func() error
	barrier  func(context.Context) error // nil: reads are linearizable as they are
	logStats func() kv.LogStats
	extra    func() []httpapi.Sample
}

// openBackend opens the log of cfg.backend, first restoring a backup into
// it when -restore asks, and starts hub's history where the store's
// changes will start.
func openBackend(ctx context.Context, cfg *config, hub *bus.Hub, getenv func(string) string, log *slog.Logger) (backend, error) {
	var be backend
	if cfg.restore.file != "" {
		rl, rev, err := restore(ctx, cfg, log)
		if err != nil {
			return be, err
		}
		if rl != nil { // the memory backend
			be.log = rl
			hub.StartAfter(rev)
		}
	}
	switch cfg.backend {
	case "file":
		fl, err := kv.Open(cfg.data, kv.FileOptions{
			NoSync:        cfg.fsync == "never",
			SnapshotBytes: cfg.snapshotBytes,
			Logger:        log,
		})
		if err != nil {
			return be, err
		}
		if cfg.fsync == "never" {
			log.Warn("-fsync never: a machine crash or power loss can lose acknowledged writes")
		} else if n, ok := procForSync(getenv); ok {
			log.Info("one more P for the committer's fdatasync", "gomaxprocs", n)
		}
		// The feed's history starts after the snapshot: kv.New publishes
		// the changes logged after it.
		hub.StartAfter(fl.SnapshotRev())
		be.log, be.file, be.ready, be.logStats = fl, fl, fl.Err, fl.Stats
	case "kafka":
		// A record holds a value, or a transaction of at most a body.
		kl, err := cfg.kafka.open(hub, max(cfg.maxValueBytes, cfg.maxBodyBytes), log)
		if err != nil {
			return be, err
		}
		be.repl, be.ready, be.barrier, be.extra = kl, kl.Err, kl.ReadBarrier, kafkaMetrics(kl)
	}
	return be, nil
}

// kafkaMetrics returns the samples of the Kafka log's metrics.
func kafkaMetrics(kl *bus.Kafka) func() []httpapi.Sample {
	return func() []httpapi.Sample {
		next, hwm := kl.Lag()
		reads, requests := kl.ReadBarrierStats()
		return []httpapi.Sample{
			{Name: "kvs_kafka_lag_records", Help: "Records of the Kafka topic not yet applied here (high-water mark - next offset).", Value: float64(hwm - next)},
			{Name: "kvs_kafka_high_watermark", Help: "The Kafka topic's high-water mark as last fetched.", Value: float64(hwm)},
			{Name: "kvs_kafka_next_offset", Help: "The offset of the next Kafka record to apply here.", Value: float64(next)},
			{Name: "kvs_kafka_read_barriers_total", Help: "Linearizable reads that asked the broker for the topic's end offset.", Type: "counter", Value: float64(reads)},
			{Name: "kvs_kafka_read_barrier_requests_total", Help: "End offset requests to the broker that those reads shared.", Type: "counter", Value: float64(requests)},
			{Name: "kvs_kafka_skipped_records_total", Help: "Kafka records skipped because they break the rules of a change (key, value, kvs headers); each is logged.", Type: "counter", Value: float64(kl.Skipped())},
		}
	}
}

// shutdown stops srv gracefully within timeout: it stops accepting and
// waits for the requests in flight (their writes finish) while the
// subscribers are closed with 1001, then closes the hub and the store. It
// returns the store's error on closing.
func shutdown(srv *http.Server, api *httpapi.Handler, hub *bus.Hub, store *kv.Store, timeout time.Duration, log *slog.Logger) error {
	log.Info("shutting down")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	if e := api.Shutdown(ctx); e != nil {
		log.Warn("subscribers did not all close in time", "err", e)
	}
	if e := <-shut; e != nil {
		log.Warn("requests did not all finish in time", "err", e)
		srv.Close()
	}
	hub.Close()
	err := store.Close()
	log.Info("stopped", "rev", store.Rev())
	return err
}

// hostOf returns the host of a listener's address.
func hostOf(a net.Addr) string {
	host, _, _ := net.SplitHostPort(a.String())
	return host
}

// feedMetrics returns the samples of extra, those of the hub's memory and
// the number of leases.
func feedMetrics(hub *bus.Hub, store *kv.Store, extra func() []httpapi.Sample) func() []httpapi.Sample {
	return func() []httpapi.Sample {
		now, peak := hub.Buffered()
		samples := []httpapi.Sample{
			{Name: "kvs_leases", Help: "Leases held (one that expired, until its end is applied).", Value: float64(store.LeaseCount())},
			{Name: "kvs_feed_buffered_bytes", Help: "Memory the events held for subscribers take (queued, or being written; an event held for many counts once), bounded by -feed-buffer-bytes.", Value: float64(now)},
			{Name: "kvs_feed_buffered_bytes_peak", Help: "The most memory the events held for subscribers took since kvsd started.", Value: float64(peak)},
			{Name: "kvs_feed_slow_consumers_total", Type: "counter", Help: "Subscribers dropped from the feed for falling behind, counted when dropped: each is closed with 4408 once it reads again, or cut off by the write timeout if it never does.", Value: float64(hub.SlowConsumers())},
		}
		if extra != nil {
			samples = append(samples, extra()...)
		}
		return samples
	}
}

// procForSync raises GOMAXPROCS by one, unless the environment sets it (to
// a value the runtime takes: a positive number). The
// file log's committer spends much of its time in fdatasync, and a thread
// in a system call keeps its P until the runtime's monitor takes it back,
// one or two of its ticks (of 20 µs or more) later: until then, one CPU's
// worth of goroutines waits. The extra P lets them run on the CPU the
// waiting thread does not use. It reports the new GOMAXPROCS.
func procForSync(getenv func(string) string) (int, bool) {
	if n, err := strconv.Atoi(getenv("GOMAXPROCS")); err == nil && n > 0 {
		return 0, false
	}
	n := runtime.GOMAXPROCS(0) + 1
	runtime.GOMAXPROCS(n)
	return n, true
}
