package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kvsdb/kvs/kv"
)

// ErrDataLost is the error of a Kafka log whose broker no longer has
// records it had delivered: the log stops, and refuses writes.
var ErrDataLost = errors.New("bus: kafka lost data")

// KafkaOptions configures a Kafka log. The zero value of every field but
// Brokers means its default.
type KafkaOptions struct {
	// Brokers are the bootstrap brokers, host:port. Required.
	Brokers []string
	// Topic is the topic that holds the log. Zero means "kvs-changes". It
	// is created if missing: one partition, cleanup.policy=compact.
	Topic string
	// ReplicationFactor is the new topic's replication factor. Zero means
	// the brokers' default.
	ReplicationFactor int
	// WriteTimeout bounds each produce request and each connection
	// attempt. Zero means 5s.
	WriteTimeout time.Duration
	// MaxValueBytes is the largest value a record may hold, in bytes of
	// compact JSON; a record with a larger one is skipped. Every instance
	// of a cluster must use the same. Zero means 1 MiB.
	MaxValueBytes int
	// MaxBatchBytes is the most record bytes sent in one produce request
	// (a single larger record is sent alone). The topic is created with a
	// max.message.bytes that fits it. Zero means 1 MiB.
	MaxBatchBytes int
	// RestoreAfter is how long an instance waits for the restore record of
	// another instance's record (see kv.Record) before writing it itself.
	// Zero means 10s.
	RestoreAfter time.Duration
	// FetchWait is the longest a fetch waits at the broker for new
	// records. Zero means 250ms.
	FetchWait time.Duration
	// ReadTimeout bounds ReadBarrier: the broker's answer and the wait
	// until this instance has applied the records it reported. Zero means
	// 5s.
	ReadTimeout time.Duration
	// OnGap is called, from the goroutine that applies records, when
	// records before the next one were removed from the topic (by
	// compaction): rev is the revision of the last missing one. The change
	// feed can no longer deliver revisions up to rev (see Hub.Forget).
	OnGap func(rev int64)
	// Logger receives what goes wrong. Nil means discard.
	Logger *slog.Logger
}

// Kafka is a kv.Replicated log kept in one partition of a Kafka topic that
// several kvsd instances share. Each instance proposes its changes by
// producing them (acks=all), and applies every record of the partition in
// offset order, from the first: a record's revision is its offset + 1, or
// in a topic seeded from a backup (see Seed) its offset + the revision of
// the seed record.
//
// Kafka is safe for concurrent use. Err reports why the log cannot serve
// current data: connecting, replaying, a broker that cannot be reached, or
// lost data.
type Kafka struct {
	opts     KafkaOptions
	origin   string
	log      *slog.Logger
	maxValue int          // KafkaOptions.MaxValueBytes; 0: no limit
	skipped  atomic.Int64 // records not applied (Skipped)
	// admin produces and manages the topic; fetcher only fetches, on
	// connections of its own so that a produce never queues behind a
	// waiting fetch.
	admin, fetcher *kafka.Client

	apply     func([]kv.Record) []kv.Restore
	proposals chan *proposal
	kick      chan struct{} // wakes the restorer
	// stop is closed by Close, and cancel (set by Start) cancels the
	// context that the loops run under: the loops end, Propose fails.
	stop      chan struct{}
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	ri        *readIndex // ReadBarrier's batches

	// Owned by the fetch loop.
	sawGap bool
	seen   map[string]struct{} // keys delivered while replaying
	// base is what a record's revision adds to its offset + 1: 0, or for
	// a topic seeded from a backup (see Seed) its seed record's revision
	// - 1.
	base int64

	// mu guards the state below, which Err reports. It is taken before
	// ri's lock, never after.
	mu        sync.Mutex
	connected bool  // the topic exists and its offsets are known
	started   bool  // offsets were listed once
	next      int64 // offset of the next record to apply
	startHWM  int64 // high-water mark when the log started
	hwm       int64 // the latest high-water mark a fetch reported
	caughtUp  bool
	seedEnd   int64 // the offset after the records of a seed, 0 if none
	fetchErr  error
	lost      error

	// pmu guards pending: restores to write, by key.
	pmu     sync.Mutex
	pending map[string]*pendingRestore
}

var _ kv.Replicated = (*Kafka)(nil)

// NewKafka returns a Kafka log for opts. It does not connect: the log
// connects, creates the topic if missing and replays it once a Store is
// created with it (kv.New calls Start), and retries until the brokers
// answer.
func NewKafka(opts KafkaOptions) (*Kafka, error) {
	if len(opts.Brokers) == 0 {
		return nil, errors.New("bus: kafka: no brokers")
	}
	if opts.Topic == "" {
		opts.Topic = "kvs-changes"
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 5 * time.Second
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = 1 << 20
	}
	if opts.MaxValueBytes <= 0 {
		opts.MaxValueBytes = 1 << 20
	}
	if opts.RestoreAfter <= 0 {
		opts.RestoreAfter = 10 * time.Second
	}
	if opts.FetchWait <= 0 {
		opts.FetchWait = 250 * time.Millisecond
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = 5 * time.Second
	}
	var id [8]byte
	rand.Read(id[:])
	k := &Kafka{
		opts:      opts,
		maxValue:  opts.MaxValueBytes,
		origin:    hex.EncodeToString(id[:]),
		log:       opts.Logger,
		proposals: make(chan *proposal, 4096),
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		seen:      make(map[string]struct{}),
		pending:   make(map[string]*pendingRestore),
	}
	if k.log == nil {
		k.log = slog.New(slog.DiscardHandler)
	}
	addr := kafka.TCP(opts.Brokers...)
	dial := (&net.Dialer{Timeout: 3 * time.Second}).DialContext
	// A short metadata TTL: a new partition leader is found within a
	// second (kafka-go's default is 6s).
	k.admin = &kafka.Client{Addr: addr, Transport: &kafka.Transport{Dial: dial, ClientID: "kvsd", MetadataTTL: time.Second}}
	k.fetcher = &kafka.Client{Addr: addr, Transport: &kafka.Transport{Dial: dial, ClientID: "kvsd", MetadataTTL: time.Second}}
	k.ri = newReadIndex(func(ctx context.Context) (int64, error) { return k.offset(ctx, kafka.LastOffset) }, opts.ReadTimeout)
	return k, nil
}

// Origin returns the id this instance writes in the kvs-origin header.
func (k *Kafka) Origin() string { return k.origin }

// Start starts connecting, replaying and producing. kv.New calls it.
func (k *Kafka) Start(apply func([]kv.Record) []kv.Restore) {
	k.apply = apply
	ctx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	k.wg.Add(4)
	go k.produceLoop(ctx)
	go k.fetchLoop(ctx)
	go k.restoreLoop(ctx)
	go func() {
		defer k.wg.Done()
		k.ri.loop(ctx)
	}()
}

// ReadBarrier returns once this instance has applied every record that the
// topic held when the call began, so that a read made afterwards sees every
// write acknowledged before the call, by any instance: it asks the broker
// for the partition's high-water mark (every acknowledged record lies
// below it) and waits until this instance has applied every offset below
// that. Concurrent calls share one request to the broker; a call never
// uses the answer to a request sent before it began. It gives up with an
// error after KafkaOptions.ReadTimeout, when ctx is done, or at once when
// the log lost data or is closed.
func (k *Kafka) ReadBarrier(ctx context.Context) error { return k.ri.wait(ctx) }

// ReadBarrierStats returns how many ReadBarrier calls were made and how
// many requests to the broker they shared.
func (k *Kafka) ReadBarrierStats() (reads, requests int64) {
	return k.ri.reads.Load(), k.ri.requests.Load()
}

// Err returns why the log cannot serve current data, or nil.
func (k *Kafka) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case k.lost != nil:
		return k.lost
	case k.fetchErr != nil:
		return fmt.Errorf("bus: kafka: cannot read topic %s: %v", k.opts.Topic, k.fetchErr)
	case !k.connected:
		return fmt.Errorf("bus: kafka: connecting to %v", k.opts.Brokers)
	case !k.caughtUp && k.next < k.seedEnd:
		return fmt.Errorf("bus: kafka: topic %s is being seeded from a backup: at offset %d of %d "+
			"(if the kvsd seeding it stopped, seed another topic)", k.opts.Topic, k.next, k.seedEnd)
	case !k.caughtUp:
		return fmt.Errorf("bus: kafka: replaying topic %s: at offset %d of %d", k.opts.Topic, k.next, k.startHWM)
	}
	return nil
}

// Lag returns the offset of the next record to apply and the topic's
// high-water mark as last fetched: hwm - next records are still to apply.
func (k *Kafka) Lag() (next, hwm int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.next, max(k.hwm, k.startHWM, k.next)
}

// Close stops the log: it writes this instance's pending restores (for a
// short while at most), then stops fetching and producing. Proposals not
// yet acknowledged fail.
func (k *Kafka) Close() error {
	k.closeOnce.Do(func() {
		if k.apply != nil {
			k.flushRestores()
		}
		close(k.stop)
		if k.cancel != nil {
			k.cancel()
		}
		k.wg.Wait()
		for _, c := range []*kafka.Client{k.admin, k.fetcher} {
			if t, ok := c.Transport.(*kafka.Transport); ok {
				t.CloseIdleConnections()
			}
		}
	})
	return nil
}

// Skipped returns how many records the log skipped because they were not
// changes it could apply (see decodeRecord).
func (k *Kafka) Skipped() int64 { return k.skipped.Load() }
