package bus

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"

	"github.com/segmentio/kafka-go"

	"github.com/kvsdb/kvs/kv"
)

// The records of a topic seeded from a backup (see Seed).
const (
	// HeaderSeed marks the seed record, the first of a seeded topic: its
	// value is the record's revision, from which the revisions of the
	// topic count on (a record's revision is its offset + 1 + that
	// revision - 1 then). HeaderSeedRecords is the number of records of
	// the backup that follow it.
	HeaderSeed        = "kvs-seed"
	HeaderSeedRecords = "kvs-seed-records"
	// seedKey is the Kafka key of the seed record: not a valid store key,
	// and never written again, so that compaction keeps the record.
	seedKey = "\x00kvs-seed"
)

// ErrTopicNotEmpty is returned by Seed for a topic that already holds
// records.
var ErrTopicNotEmpty = errors.New("bus: kafka: topic not empty")

// Seed fills a new Kafka topic with the entries of a backup, so that the
// kvsd instances that then replay the topic start from them: same keys,
// values, revisions, create revisions and versions. The topic must be
// missing (it is created as NewKafka would) or empty; otherwise Seed fails
// with ErrTopicNotEmpty (wrapped), having written nothing.
//
// Its first record is the seed record, whose revision is rev (at least the
// backup's revision), then a grant record for each of leases (each lease
// gets its whole TTL when an instance applies it), then count records, one
// per entry, in the order entries yields them: restore records of each
// key's entry (see kv.Record), which the instances apply as the key's
// state, without publishing them, and which carry the whole entry, so that
// compaction can remove any of them that a later change of its key
// supersedes. They take the revisions rev + 1 to rev + len(leases) +
// count; the store that replays the topic is at the last of them, its
// first write gets the next one, and its change feed starts after it
// (older revisions are 410). Instances refuse writes until they have
// applied every record of the seed.
//
// Seed fails if another program writes to the topic meanwhile, or if a
// produce fails: the topic is then not a faithful copy of the backup.
// It returns the revision of the seeded store, rev + len(leases) + count.
func Seed(ctx context.Context, opts KafkaOptions, rev int64, leases []kv.Lease, count int64, entries iter.Seq2[*kv.Entry, error]) (int64, error) {
	if rev < 0 || count < 0 {
		return 0, errors.New("bus: kafka: seed with a negative revision or count")
	}
	k, err := NewKafka(opts)
	if err != nil {
		return 0, err
	}
	defer k.Close()
	topic := k.opts.Topic
	if err := k.createTopic(ctx); err != nil {
		return 0, fmt.Errorf("bus: kafka: %w", err)
	}
	last, err := k.offset(ctx, kafka.LastOffset)
	if err != nil {
		return 0, fmt.Errorf("bus: kafka: %w", err)
	}
	if last > 0 {
		return 0, fmt.Errorf("%w: %s holds %d records: seed a new topic (-kafka-topic)", ErrTopicNotEmpty, topic, last)
	}

	h := []kafka.Header{
		{Key: HeaderOrigin, Value: []byte(k.origin)},
		{Key: HeaderSeed, Value: strconv.AppendInt(nil, rev, 10)},
		{Key: HeaderSeedRecords, Value: strconv.AppendInt(nil, int64(len(leases))+count, 10)},
	}
	value := fmt.Appendf(nil, `{"Revision":%d,"Records":%d}`, rev, int64(len(leases))+count)
	batch := []kafka.Record{{Key: kafka.NewBytes([]byte(seedKey)), Value: kafka.NewBytes(value), Headers: h}}
	size := 0
	var next int64 // the offset the next batch must start at
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		pctx, cancel := context.WithTimeout(ctx, k.opts.WriteTimeout)
		res, err := k.admin.Produce(pctx, &kafka.ProduceRequest{
			Topic: topic, Partition: 0, RequiredAcks: kafka.RequireAll,
			Records: kafka.NewRecordReader(batch...),
		})
		cancel()
		if err == nil && res.Error != nil {
			err = res.Error
		}
		switch {
		case err != nil && next == 0:
			return fmt.Errorf("bus: kafka: seeding %s: %w", topic, err)
		case err != nil:
			return fmt.Errorf("bus: kafka: seeding %s failed after %d of %d records, and the topic now holds part of the backup: "+
				"delete it, or seed another topic: %w", topic, next, int64(len(leases))+count+1, err)
		case res.BaseOffset != next && next == 0:
			return fmt.Errorf("%w: another program wrote to %s before the seed record: seed a new topic", ErrTopicNotEmpty, topic)
		case res.BaseOffset != next:
			return fmt.Errorf("bus: kafka: another program wrote to %s while it was being seeded (offset %d, want %d): "+
				"delete it, or seed another topic", topic, res.BaseOffset, next)
		}
		next += int64(len(batch))
		batch, size = batch[:0], 0
		return nil
	}
	for _, l := range leases {
		if size+256 > k.opts.MaxBatchBytes {
			if err := flush(); err != nil {
				return 0, err
			}
		}
		batch = append(batch, k.encode(kv.Record{LeaseOp: &kv.LeaseOp{Kind: kv.LeaseGrant, ID: l.ID, TTL: l.TTL}}))
		size += 256
	}
	var n int64
	for e, err := range entries {
		if err != nil {
			if ferr := flush(); ferr != nil {
				return 0, ferr
			}
			return 0, fmt.Errorf("bus: kafka: seeding %s: reading the backup after %d of %d entries: %w", topic, n, count, err)
		}
		if n++; n > count {
			break
		}
		r := kv.Restore{Key: e.Key, Entry: e}.Record()
		rs := len(e.Key) + len(e.Value) + 128
		if size+rs > k.opts.MaxBatchBytes {
			if err := flush(); err != nil {
				return 0, err
			}
		}
		batch = append(batch, k.encode(r))
		size += rs
	}
	if err := flush(); err != nil {
		return 0, err
	}
	if n != count {
		have := strconv.FormatInt(n, 10)
		if n > count {
			have = "more"
		}
		return 0, fmt.Errorf("bus: kafka: seeding %s: the backup has %s entries, not the %d it announced: delete the topic, or seed another one", topic, have, count)
	}
	return rev + int64(len(leases)) + count, nil
}

// seedRecord returns the revision and the number of records that follow
// of a seed record, and false for any other record.
func seedRecord(m *kafka.Record) (rev, records int64, ok bool) {
	var seed, recs bool
	for _, h := range m.Headers {
		switch h.Key {
		case HeaderSeed:
			n, err := strconv.ParseInt(string(h.Value), 10, 64)
			rev, seed = n, err == nil && n >= 0
		case HeaderSeedRecords:
			n, err := strconv.ParseInt(string(h.Value), 10, 64)
			records, recs = n, err == nil && n >= 0
		}
	}
	return rev, records, seed && recs
}
