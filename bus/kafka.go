package bus

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"

	"github.com/kvsdb/kvs/kv"
)

// The record headers of the Kafka log. The Kafka key of a record is the
// store key and its value the JSON value (nil, a tombstone, for a delete),
// so that any Kafka consumer can read the topic as a changelog; the
// headers carry what kvs needs besides. Numbers are decimal text.
const (
	// HeaderOrigin is the id of the kvsd instance that wrote the record.
	HeaderOrigin = "kvs-origin"
	// HeaderRequest is the request id, at that instance, of the change.
	HeaderRequest = "kvs-request"
	// HeaderIfRevision is the change's condition, on a conditional change.
	HeaderIfRevision = "kvs-if-revision"
	// HeaderVersion and HeaderCreateRevision are a set's claim: the
	// entry's Version and CreateRevision after the set, as its writer
	// expected them (CreateRevision absent: the set creates the key). On a
	// restore they describe the restored entry.
	HeaderVersion        = "kvs-version"
	HeaderCreateRevision = "kvs-create-revision"
	// HeaderRestores makes the record a restore of the key's entry right
	// after the record at that revision (see kv.Record); HeaderRevision is
	// then the restored entry's revision.
	HeaderRestores = "kvs-restores"
	HeaderRevision = "kvs-revision"
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
	ctx       context.Context
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

type pendingRestore struct {
	r   kv.Restore
	due time.Time
}

// proposal is a record on its way to the broker. done receives the
// produce's outcome; it is nil for a restore, whose failure is retried.
type proposal struct {
	rec  kafka.Record
	size int
	done chan error
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
	k.ctx, k.cancel = context.WithCancel(context.Background())
	k.ri = newReadIndex(func(ctx context.Context) (int64, error) { return k.offset(ctx, kafka.LastOffset) }, opts.ReadTimeout)
	return k, nil
}

// Origin returns the id this instance writes in the kvs-origin header.
func (k *Kafka) Origin() string { return k.origin }

// Start starts connecting, replaying and producing. kv.New calls it.
func (k *Kafka) Start(apply func([]kv.Record) []kv.Restore) {
	k.apply = apply
	k.wg.Add(4)
	go k.produceLoop()
	go k.fetchLoop()
	go k.restoreLoop()
	go func() {
		defer k.wg.Done()
		k.ri.loop(k.ctx)
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

// Append is not used: a Store proposes changes to a kv.Replicated log.
func (k *Kafka) Append([]kv.Change) error {
	return errors.New("bus: kafka: Append is not used, the store proposes")
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

// Propose produces r and returns once the brokers acknowledged it
// (acks=all), or why not.
func (k *Kafka) Propose(ctx context.Context, r kv.Record) error {
	k.mu.Lock()
	err := k.lost
	if err == nil && !k.connected {
		err = fmt.Errorf("bus: kafka: not connected to %v", k.opts.Brokers)
		if k.fetchErr != nil {
			err = fmt.Errorf("bus: kafka: not connected: %v", k.fetchErr)
		}
	}
	if err == nil && !k.caughtUp {
		// A write proposed now would wait for the whole replay, and its
		// claim would be made against a state that is not current.
		err = fmt.Errorf("bus: kafka: replaying topic %s: not taking writes until caught up", k.opts.Topic)
	}
	k.mu.Unlock()
	if err != nil {
		return err
	}
	p := k.newProposal(r, make(chan error, 1))
	select {
	case k.proposals <- p:
	case <-ctx.Done():
		return fmt.Errorf("bus: kafka: write queue full: %w", ctx.Err())
	case <-k.ctx.Done():
		return errors.New("bus: kafka: log closed")
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("bus: kafka: no acknowledgement in time: %w", ctx.Err())
	}
}

// Close stops the log: it writes this instance's pending restores (for a
// short while at most), then stops fetching and producing. Proposals not
// yet acknowledged fail.
func (k *Kafka) Close() error {
	k.closeOnce.Do(func() {
		if k.apply != nil {
			k.flushRestores()
		}
		k.cancel()
		k.wg.Wait()
		for _, c := range []*kafka.Client{k.admin, k.fetcher} {
			if t, ok := c.Transport.(*kafka.Transport); ok {
				t.CloseIdleConnections()
			}
		}
	})
	return nil
}

func (k *Kafka) newProposal(r kv.Record, done chan error) *proposal {
	rec := k.encode(r)
	size := len(r.Key) + len(r.Value) + 128
	if r.Txn != nil || r.LeaseOp != nil {
		size = 128
		if rec.Value != nil {
			size += rec.Value.Len()
		}
	}
	return &proposal{rec: rec, size: size, done: done}
}

// encode returns the Kafka record of r.
func (k *Kafka) encode(r kv.Record) kafka.Record {
	if r.Txn != nil {
		return k.encodeTxnRecord(r.Txn, r.Request)
	}
	if r.LeaseOp != nil {
		return k.encodeLeaseRecord(r.LeaseOp, r.Request)
	}
	h := make([]kafka.Header, 0, 6)
	num := func(key string, n int64) {
		h = append(h, kafka.Header{Key: key, Value: strconv.AppendInt(nil, n, 10)})
	}
	h = append(h, kafka.Header{Key: HeaderOrigin, Value: []byte(k.origin)})
	if r.IsRestore {
		num(HeaderRestores, r.Restores)
	} else {
		num(HeaderRequest, int64(r.Request))
		if r.Cond {
			num(HeaderIfRevision, r.IfRevision)
		}
	}
	var value []byte
	if r.Op == kv.OpSet {
		value = r.Value
		if r.IsRestore {
			num(HeaderRevision, r.EntryRevision)
		}
		if r.CreateRevision != 0 {
			num(HeaderCreateRevision, r.CreateRevision)
		}
		num(HeaderVersion, r.Version)
		if r.Change.Lease != 0 {
			num(HeaderLease, r.Change.Lease)
		}
	}
	return kafka.Record{Key: kafka.NewBytes([]byte(r.Key)), Value: kafka.NewBytes(value), Headers: h}
}

// errSkip marks a record that is not a change kvs can apply.
var errSkip = errors.New("not a kvs change")

// The kvs headers, as bits of a set.
var headerBits = map[string]uint{
	HeaderOrigin:         1 << 0,
	HeaderRequest:        1 << 1,
	HeaderIfRevision:     1 << 2,
	HeaderVersion:        1 << 3,
	HeaderCreateRevision: 1 << 4,
	HeaderRestores:       1 << 5,
	HeaderRevision:       1 << 6,
	HeaderTxn:            1 << 7,
	HeaderLease:          1 << 8,
	HeaderLeaseOp:        1 << 9,
	HeaderLeaseRenewed:   1 << 10,
}

// decode returns the change of a fetched record, or why it is skipped,
// counting the skipped records (Skipped).
func (k *Kafka) decode(m *kafka.Record) (kv.Record, error) {
	r, err := k.decodeRecord(m)
	if err != nil {
		k.skipped.Add(1)
	}
	return r, err
}

// decodeRecord returns the change of a fetched record. A record that breaks
// a rule that a write over HTTP is held to (the key, the value: JSON other
// than null, valid UTF-8, at most KafkaOptions.MaxValueBytes once compact),
// or carries kvs headers that kvs does not write that way (a number that
// does not parse or is out of range, a header twice, one it does not know,
// one that does not belong on that record), is refused as a whole: it is
// never applied in part. The verdict depends on the record alone (and on
// MaxValueBytes, which every instance of a cluster must share), so every
// instance skips the same records. A record written by another program
// (no kvs-origin) may carry kvs-if-revision, to be applied conditionally,
// and no other kvs header. A transaction record (key TxnKey) carries
// kvs-txn and may carry kvs-origin and kvs-request (the latter only with
// the former), and no other; its keys and values keep the same rules.
func (k *Kafka) decodeRecord(m *kafka.Record) (kv.Record, error) {
	var r kv.Record
	key, err := kafka.ReadAll(m.Key)
	if err != nil {
		return r, err
	}
	value, err := kafka.ReadAll(m.Value)
	if err != nil {
		return r, err
	}
	txn := string(key) == TxnKey // a transaction (see TxnKey)
	lease := isLeaseKey(string(key))
	r.Key = string(key)
	if !txn && !lease && !kv.ValidKey(r.Key) {
		return r, fmt.Errorf("%w: invalid key %.80q", errSkip, key)
	}
	skip := func(format string, args ...any) (kv.Record, error) {
		return kv.Record{}, fmt.Errorf("%w: key %.80q: %s", errSkip, key, fmt.Sprintf(format, args...))
	}
	r.Op = kv.OpDelete
	if value != nil {
		r.Op, r.Value = kv.OpSet, value
	}
	var (
		seen    uint
		leaseOp string
		renewed int64
	)
	for _, h := range m.Headers {
		if !strings.HasPrefix(h.Key, "kvs-") {
			continue // another program's header
		}
		bit, ok := headerBits[h.Key]
		switch {
		case !ok:
			return skip("unknown header %.40q (written by a newer kvs?)", h.Key)
		case seen&bit != 0:
			return skip("header %s given twice", h.Key)
		}
		seen |= bit
		if h.Key == HeaderOrigin {
			r.Ours = string(h.Value) == k.origin
			continue
		}
		if h.Key == HeaderRequest {
			if r.Request, err = strconv.ParseUint(string(h.Value), 10, 64); err != nil {
				return skip("header %s %.40q is not a request id", h.Key, h.Value)
			}
			continue
		}
		if h.Key == HeaderTxn {
			if string(h.Value) != "1" {
				return skip("header %s %.40q: a transaction format this kvs does not know (written by a newer kvs?)", h.Key, h.Value)
			}
			continue
		}
		if h.Key == HeaderLeaseOp {
			leaseOp = string(h.Value)
			continue
		}
		n, err := strconv.ParseInt(string(h.Value), 10, 64)
		low := int64(1) // versions and revisions start at 1
		if h.Key == HeaderIfRevision || h.Key == HeaderRestores {
			low = 0 // 0: the key absent
		}
		if err != nil || n < low {
			return skip("header %s %.40q is not a number from %d", h.Key, h.Value, low)
		}
		switch h.Key {
		case HeaderIfRevision:
			r.Cond, r.IfRevision = true, n
		case HeaderVersion:
			r.Version = n
		case HeaderCreateRevision:
			r.CreateRevision = n
		case HeaderRestores:
			r.IsRestore, r.Restores = true, n
		case HeaderRevision:
			r.EntryRevision = n
		case HeaderLease:
			if n > kv.MaxLeaseID {
				return skip("header %s %d is not a lease ID", h.Key, n)
			}
			r.Change.Lease = n
		case HeaderLeaseRenewed:
			renewed = n
		}
	}
	kvs := seen&headerBits[HeaderOrigin] != 0
	if lease {
		leaseHeaders := headerBits[HeaderOrigin] | headerBits[HeaderRequest] | headerBits[HeaderLeaseOp] | headerBits[HeaderLeaseRenewed]
		switch {
		case seen&headerBits[HeaderLeaseOp] == 0:
			return skip("a lease record without %s", HeaderLeaseOp)
		case seen&^leaseHeaders != 0:
			return skip("kvs headers other than %s, %s, %s and %s on a lease record", HeaderOrigin, HeaderRequest, HeaderLeaseOp, HeaderLeaseRenewed)
		case !kvs && seen&headerBits[HeaderRequest] != 0:
			return skip("%s without %s", HeaderRequest, HeaderOrigin)
		}
		op, err := decodeLeaseRecord(string(key), leaseOp, renewed, value)
		if err != nil {
			return skip("%v", err)
		}
		rec := kv.Record{LeaseOp: op, Ours: r.Ours}
		if r.Ours {
			rec.Request = r.Request
		}
		return rec, nil
	}
	if txn {
		txnHeaders := headerBits[HeaderOrigin] | headerBits[HeaderRequest] | headerBits[HeaderTxn] // no lease headers
		switch {
		case seen&headerBits[HeaderTxn] == 0:
			return skip("a transaction record without %s", HeaderTxn)
		case seen&^txnHeaders != 0:
			return skip("kvs headers other than %s, %s and %s on a transaction", HeaderOrigin, HeaderRequest, HeaderTxn)
		case !kvs && seen&headerBits[HeaderRequest] != 0:
			return skip("%s without %s", HeaderRequest, HeaderOrigin)
		}
		return k.decodeTxnRecord(r, value)
	}
	entry := headerBits[HeaderVersion] | headerBits[HeaderCreateRevision] | headerBits[HeaderRevision]
	switch {
	case seen&headerBits[HeaderTxn] != 0:
		return skip("header %s outside a transaction", HeaderTxn)
	case seen&(headerBits[HeaderLeaseOp]|headerBits[HeaderLeaseRenewed]) != 0:
		return skip("headers of a lease record on a record of key %.80q", key)
	case r.Op == kv.OpDelete && seen&headerBits[HeaderLease] != 0:
		return skip("a delete with header %s", HeaderLease)
	case !kvs && seen&^headerBits[HeaderIfRevision] != 0:
		return skip("kvs headers other than %s without %s", HeaderIfRevision, HeaderOrigin)
	case r.IsRestore && seen&(headerBits[HeaderRequest]|headerBits[HeaderIfRevision]) != 0:
		return skip("a restore with a request or a condition")
	case !r.IsRestore && seen&headerBits[HeaderRevision] != 0:
		return skip("header %s outside a restore", HeaderRevision)
	case r.Op == kv.OpDelete && seen&entry != 0:
		return skip("a delete with the headers of an entry")
	case r.IsRestore && r.Op == kv.OpSet && (r.EntryRevision == 0 || r.Version == 0):
		return skip("restore without its entry")
	}
	if !r.Ours {
		r.Request = 0
	}
	if r.Op == kv.OpSet {
		if r.Value, err = k.checkValue(value, !kvs); err != nil {
			return skip("%v", err)
		}
	}
	return r, nil
}

// checkValue returns value, a value that a record sets, stored compact
// when compact (written by another program), or why it breaks the rules of
// a value: JSON other than null, valid UTF-8, at most
// KafkaOptions.MaxValueBytes once compact.
func (k *Kafka) checkValue(value []byte, compact bool) ([]byte, error) {
	switch {
	case !utf8.Valid(value):
		return nil, errors.New("value is not valid UTF-8")
	case !json.Valid(value) || string(value) == "null":
		return nil, errors.New("value is not a JSON value other than null")
	}
	if compact {
		var b bytes.Buffer
		json.Compact(&b, value)
		value = b.Bytes()
	}
	if k.maxValue > 0 && len(value) > k.maxValue {
		return nil, fmt.Errorf("value of %d bytes is over the limit of %d (-max-value-bytes)", len(value), k.maxValue)
	}
	return value, nil
}

// Skipped returns how many records the log skipped because they were not
// changes it could apply (see decodeRecord).
func (k *Kafka) Skipped() int64 { return k.skipped.Load() }

// produceLoop sends queued proposals to the broker, as many as are queued
// (up to MaxBatchBytes) in each produce request, one request at a time.
func (k *Kafka) produceLoop() {
	defer k.wg.Done()
	var (
		batch []*proposal
		recs  []kafka.Record
	)
	for {
		batch, recs = batch[:0], recs[:0]
		select {
		case <-k.ctx.Done():
			for {
				select {
				case p := <-k.proposals:
					if p.done != nil {
						p.done <- errors.New("bus: kafka: log closed")
					}
				default:
					return
				}
			}
		case p := <-k.proposals:
			batch = append(batch, p)
		}
		size := batch[0].size
	more:
		for size < k.opts.MaxBatchBytes {
			select {
			case p := <-k.proposals:
				if size+p.size > k.opts.MaxBatchBytes {
					// Too big for this batch: send it first in the next.
					k.produce(batch, recs)
					batch, recs, size = append(batch[:0], p), recs[:0], 0
				} else {
					batch = append(batch, p)
				}
				size += p.size
			default:
				break more
			}
		}
		k.produce(batch, recs)
	}
}

// produce sends one produce request with the records of batch and answers
// each proposal.
func (k *Kafka) produce(batch []*proposal, recs []kafka.Record) {
	for _, p := range batch {
		recs = append(recs, p.rec)
	}
	ctx, cancel := context.WithTimeout(k.ctx, k.opts.WriteTimeout)
	res, err := k.admin.Produce(ctx, &kafka.ProduceRequest{
		Topic:        k.opts.Topic,
		Partition:    0,
		RequiredAcks: kafka.RequireAll,
		Records:      kafka.NewRecordReader(recs...),
	})
	cancel()
	if err == nil && res.Error != nil {
		err = res.Error
	}
	if err != nil {
		err = fmt.Errorf("bus: kafka: produce to %s: %w", k.opts.Topic, err)
	}
	for _, p := range batch {
		if p.done != nil {
			p.done <- err
		} else if err != nil {
			k.log.Warn("kafka: writing a restore record failed; will retry", "err", err)
		}
	}
}

// connect creates the topic if missing and lists its offsets.
func (k *Kafka) connect() error {
	ctx, cancel := context.WithTimeout(k.ctx, k.opts.WriteTimeout)
	defer cancel()
	if err := k.createTopic(ctx); err != nil {
		return err
	}
	first, err := k.offset(ctx, kafka.FirstOffset)
	if err != nil {
		return err
	}
	last, err := k.offset(ctx, kafka.LastOffset)
	if err != nil {
		return err
	}

	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.started {
		k.started, k.startHWM, k.next = true, last, first
		k.caughtUp = first >= last
		if k.caughtUp {
			k.seen = nil
		}
		if first > 0 {
			k.sawGap = true
			if k.opts.OnGap != nil {
				k.opts.OnGap(first)
			}
		}
		k.log.Info("kafka: replaying", "topic", k.opts.Topic, "from", first, "to", last)
	} else if last < k.next {
		k.loseLocked(fmt.Errorf("%w: topic %s now ends at offset %d, but offsets up to %d were read", ErrDataLost, k.opts.Topic, last, k.next))
		return k.lost
	}
	k.connected, k.fetchErr = true, nil
	return nil
}

// createTopic creates the topic if it is missing.
func (k *Kafka) createTopic(ctx context.Context) error {
	rf := k.opts.ReplicationFactor
	if rf <= 0 {
		rf = -1
	}
	res, err := k.admin.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic:             k.opts.Topic,
		NumPartitions:     1,
		ReplicationFactor: rf,
		ConfigEntries: []kafka.ConfigEntry{
			{ConfigName: "cleanup.policy", ConfigValue: "compact"},
			// Leave records alone for an hour before compacting them, so
			// that a restore record always lands first (see kv.Record).
			{ConfigName: "min.compaction.lag.ms", ConfigValue: "3600000"},
			{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(k.opts.MaxBatchBytes + 64<<10)},
		},
	}}})
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", k.opts.Topic, err)
	}
	if err := res.Errors[k.opts.Topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("creating topic %s: %w", k.opts.Topic, err)
	} else if err == nil {
		k.log.Info("kafka: created topic", "topic", k.opts.Topic, "replication_factor", k.opts.ReplicationFactor)
	}
	return nil
}

// offset returns the partition's first offset or high-water mark.
func (k *Kafka) offset(ctx context.Context, which int64) (int64, error) {
	res, err := k.admin.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		k.opts.Topic: {{Partition: 0, Timestamp: which}},
	}})
	if err != nil {
		return 0, fmt.Errorf("listing offsets of %s: %w", k.opts.Topic, err)
	}
	for _, p := range res.Topics[k.opts.Topic] {
		if p.Partition != 0 {
			continue
		}
		if p.Error != nil {
			return 0, fmt.Errorf("listing offsets of %s: %w", k.opts.Topic, p.Error)
		}
		if which == kafka.FirstOffset {
			return p.FirstOffset, nil
		}
		return p.LastOffset, nil
	}
	return 0, fmt.Errorf("listing offsets of %s: no partition 0", k.opts.Topic)
}

// loseLocked stops the log for good: the broker lost records.
func (k *Kafka) loseLocked(err error) {
	if k.lost != nil {
		return
	}
	k.lost = err
	k.ri.fail(err)
	k.log.Error("kafka: THE BROKER LOST DATA: this instance stops applying changes and refuses writes; "+
		"restart it once the topic is repaired (it replays the topic from its start)", "topic", k.opts.Topic, "err", err)
}

// fetchLoop reads the partition from the first offset, in order, and
// applies what it reads.
func (k *Kafka) fetchLoop() {
	defer k.wg.Done()
	backoff := func(d *time.Duration) {
		select {
		case <-time.After(*d):
		case <-k.ctx.Done():
		}
		*d = min(*d*2, 2*time.Second)
	}
	wait := 50 * time.Millisecond
	maxBytes := max(4<<20, 2*k.opts.MaxBatchBytes)
	var recs []kv.Record
	for k.ctx.Err() == nil {
		k.mu.Lock()
		connected, next, lost := k.connected, k.next, k.lost != nil
		k.mu.Unlock()
		if lost {
			return
		}
		if !connected {
			if err := k.connect(); err != nil {
				if k.ctx.Err() == nil {
					k.setFetchErr(err)
					backoff(&wait)
				}
				continue
			}
			k.mu.Lock()
			next = k.next
			k.mu.Unlock()
		}
		res, err := k.fetcher.Fetch(k.ctx, &kafka.FetchRequest{
			Topic: k.opts.Topic, Partition: 0, Offset: next,
			MinBytes: 1, MaxBytes: int64(maxBytes), MaxWait: k.opts.FetchWait,
		})
		if err == nil && res.Error != nil {
			err = res.Error
		}
		if err != nil {
			if k.ctx.Err() != nil {
				return
			}
			switch {
			case errors.Is(err, kafka.OffsetOutOfRange):
				k.mu.Lock()
				k.loseLocked(fmt.Errorf("%w: topic %s no longer has offset %d (%v)", ErrDataLost, k.opts.Topic, next, err))
				k.mu.Unlock()
				return
			case errors.Is(err, kafka.UnknownTopicOrPartition):
				k.mu.Lock()
				k.connected = false
				k.mu.Unlock()
			}
			k.setFetchErr(err)
			backoff(&wait)
			continue
		}
		wait = 50 * time.Millisecond
		k.mu.Lock()
		k.hwm = max(k.hwm, res.HighWatermark)
		k.mu.Unlock()
		recs = recs[:0]
		for {
			m, err := res.Records.ReadRecord()
			if err == io.EOF {
				break
			}
			if err != nil {
				k.setFetchErr(err)
				break
			}
			if m.Offset < next {
				continue
			}
			if m.Offset > next {
				// Records next..m.Offset-1 were compacted away.
				recs = k.flushApply(recs)
				k.noteGap(next, m.Offset)
				if k.opts.OnGap != nil {
					k.opts.OnGap(m.Offset + k.base)
				}
			}
			next = m.Offset + 1
			if rev, n, ok := seedRecord(m); ok && m.Offset == 0 {
				k.seeded(rev, n)
				// The store takes the seed record as the restore of the
				// absence of a key that cannot exist: it changes nothing,
				// and the store's revision is the seed's until the next
				// record, also when the backup was empty.
				recs = append(recs, kv.Record{Change: kv.Change{Op: kv.OpDelete, Key: seedKey, Revision: rev}, IsRestore: true})
				continue
			}
			r, err := k.decode(m)
			if err != nil {
				k.log.Warn("kafka: skipping a record", "offset", m.Offset, "err", err)
				recs = k.flushApply(recs)
				k.advance(next)
				continue
			}
			r.Revision = m.Offset + 1 + k.base
			k.mu.Lock()
			replaying, seed := !k.caughtUp, m.Offset < k.seedEnd
			k.mu.Unlock()
			switch {
			case seed && r.IsRestore && r.Restores == 0:
				// A key's entry from the backup: taken as it is, and
				// known from then on like a key whose records all came.
				r.Isolated = true
				if replaying && k.seen != nil {
					k.seen[r.Key] = struct{}{}
				}
			case replaying && r.Txn != nil:
				r.Isolated = k.sawGap && !k.sawAll(txnKeys(r.Txn))
			case replaying && r.LeaseOp != nil:
				if r.LeaseOp.Kind != kv.LeaseKeepAlive {
					lk := leaseKey(r.LeaseOp.ID)
					if _, ok := k.seen[lk]; !ok {
						r.Isolated = k.sawGap
						k.seen[lk] = struct{}{}
					}
				}
			case replaying:
				if _, ok := k.seen[r.Key]; !ok {
					r.Isolated = k.sawGap
					k.seen[r.Key] = struct{}{}
				}
				if r.Op == kv.OpSet && r.Change.Lease != 0 && !r.IsRestore {
					// A set into a lease whose records this replica has
					// not seen since the gap cannot be decided here: it
					// takes the set's claim.
					if _, ok := k.seen[leaseKey(r.Change.Lease)]; !ok && k.sawGap {
						r.Isolated = true
					}
				}
			}
			recs = append(recs, r)
			if (r.Txn != nil || r.LeaseOp != nil && r.LeaseOp.Kind != kv.LeaseGrant && r.LeaseOp.Kind != kv.LeaseRestore) && r.Isolated {
				// Decided against keys whose records compaction may have
				// removed: this instance may decide it otherwise than
				// those that applied every record. Its restores repair
				// the state; the feed cannot vouch for its revision.
				recs = k.flushApply(recs)
				if k.opts.OnGap != nil {
					k.opts.OnGap(r.Revision)
				}
			}
		}
		recs = k.flushApply(recs)
		k.advance(next)
	}
}

// flushApply applies recs, handles their restores and returns recs
// emptied.
func (k *Kafka) flushApply(recs []kv.Record) []kv.Record {
	if len(recs) == 0 {
		return recs
	}
	restores := k.apply(recs)
	now := time.Now()
	// A record supersedes the restore owed for an earlier record of its
	// key, and only the last record of a key in recs may owe one.
	last := make(map[string]int64, len(recs))
	k.pmu.Lock()
	for i := range recs {
		for _, key := range recordKeys(&recs[i]) {
			delete(k.pending, key)
			last[key] = recs[i].Revision
		}
	}
	kicked := false
	for _, r := range restores {
		key := restoreKey(&r)
		switch {
		case last[key] > r.After:
			// A later record of the key makes it unnecessary. (The keys
			// that a lease's end deletes have no record of their own in
			// recs: their restores are always owed.)
		case r.Ours:
			k.pending[key] = &pendingRestore{r: r, due: now}
			kicked = true
		case !k.sawGap:
			// Written by the record's writer unless it died: then by
			// whoever notices first.
			k.pending[key] = &pendingRestore{r: r, due: now.Add(k.opts.RestoreAfter)}
		}
	}
	k.pmu.Unlock()
	if kicked {
		select {
		case k.kick <- struct{}{}:
		default:
		}
	}
	clear(recs)
	return recs[:0]
}

// seeded takes the seed record, the topic's first, of revision rev and
// followed by n records of a backup (see Seed): the revisions count on
// from rev, the change feed starts after the seed, and writes wait until
// it is applied. (A seed record at another offset is skipped like any
// record with an invalid key.)
func (k *Kafka) seeded(rev, n int64) {
	k.base = rev - 1
	k.mu.Lock()
	k.seedEnd = 1 + n
	if k.seedEnd > k.startHWM {
		k.startHWM = k.seedEnd
		if k.caughtUp {
			k.caughtUp = false
			k.seen = make(map[string]struct{})
		}
	}
	k.mu.Unlock()
	k.log.Info("kafka: the topic was seeded from a backup", "topic", k.opts.Topic, "rev", rev, "records", n)
	if k.opts.OnGap != nil {
		k.opts.OnGap(rev + n)
	}
}

// noteGap records that the offsets from..to-1 are missing from the topic.
func (k *Kafka) noteGap(from, to int64) {
	k.mu.Lock()
	caughtUp := k.caughtUp
	k.mu.Unlock()
	switch {
	case caughtUp:
		k.log.Warn("kafka: records were compacted away before this instance read them; "+
			"the change feed cannot deliver their revisions", "topic", k.opts.Topic, "from", from, "to", to)
	case !k.sawGap:
		k.log.Info("kafka: the topic was compacted: the change feed starts after the records it lost",
			"topic", k.opts.Topic, "from", from, "to", to)
	}
	k.sawGap = true
}

// advance records that every offset before next was applied.
func (k *Kafka) advance(next int64) {
	defer k.ri.advance(next)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fetchErr != nil {
		k.log.Info("kafka: reading the topic again", "topic", k.opts.Topic, "offset", next)
	}
	k.next, k.fetchErr = next, nil
	if !k.caughtUp && next >= k.startHWM {
		k.caughtUp = true
		k.seen = nil
		k.log.Info("kafka: caught up", "topic", k.opts.Topic, "offset", next)
	}
}

func (k *Kafka) setFetchErr(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fetchErr == nil {
		k.log.Warn("kafka: cannot read the topic; retrying", "topic", k.opts.Topic, "err", err)
	}
	k.fetchErr = err
}

// restoreLoop writes due restores: this instance's at once, other
// instances' when their writer did not.
func (k *Kafka) restoreLoop() {
	defer k.wg.Done()
	tick := time.NewTicker(min(k.opts.RestoreAfter/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-k.ctx.Done():
			return
		case <-tick.C:
		case <-k.kick:
		}
		now := time.Now()
		var due []kv.Restore
		k.pmu.Lock()
		for _, p := range k.pending {
			if !p.due.After(now) {
				due = append(due, p.r)
				p.due = now.Add(k.opts.RestoreAfter) // again, unless it lands
			}
		}
		k.pmu.Unlock()
		for _, r := range due {
			select {
			case k.proposals <- k.newProposal(r.Record(), nil):
			default: // the queue is full: next tick
			}
		}
	}
}

// flushRestores writes this instance's pending restores before Close.
func (k *Kafka) flushRestores() {
	var recs []kafka.Record
	k.pmu.Lock()
	for _, p := range k.pending {
		if p.r.Ours {
			recs = append(recs, k.encode(p.r.Record()))
		}
	}
	k.pmu.Unlock()
	if len(recs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(k.ctx, min(k.opts.WriteTimeout, 2*time.Second))
	defer cancel()
	res, err := k.admin.Produce(ctx, &kafka.ProduceRequest{
		Topic: k.opts.Topic, Partition: 0, RequiredAcks: kafka.RequireAll,
		Records: kafka.NewRecordReader(recs...),
	})
	if err == nil {
		err = res.Error
	}
	if err != nil {
		k.log.Warn("kafka: writing restore records at close failed; another instance will write them", "err", err)
	}
}
