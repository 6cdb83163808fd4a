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

	sd := &seeder{k: k, records: int64(len(leases)) + count + 1}
	sd.batch = []kafka.Record{k.encodeSeedRecord(rev, int64(len(leases))+count)}
	for _, l := range leases {
		if err := sd.add(ctx, k.encode(kv.Record{LeaseOp: &kv.LeaseOp{Kind: kv.LeaseGrant, ID: l.ID, TTL: l.TTL}}), 256); err != nil {
			return 0, err
		}
	}
	var n int64
	for e, err := range entries {
		if err != nil {
			if ferr := sd.flush(ctx); ferr != nil {
				return 0, ferr
			}
			return 0, fmt.Errorf("bus: kafka: seeding %s: reading the backup after %d of %d entries: %w", topic, n, count, err)
		}
		if n++; n > count {
			break
		}
		r := kv.Restore{Key: e.Key, Entry: e}.Record()
		if err := sd.add(ctx, k.encode(r), len(e.Key)+len(e.Value)+128); err != nil {
			return 0, err
		}
	}
	if err := sd.flush(ctx); err != nil {
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

// seeder produces the records of a seed in batches of at most
// MaxBatchBytes, and checks that each batch lands right after the last.
type seeder struct {
	k       *Kafka
	records int64 // the records of the seed, the seed record's included
	batch   []kafka.Record
	size    int   // about the bytes of batch (the seed record's not counted)
	next    int64 // the offset the next batch must start at
}

// add queues rec, of about size bytes, producing the queued records first
// if rec would take the batch over MaxBatchBytes.
func (sd *seeder) add(ctx context.Context, rec kafka.Record, size int) error {
	if sd.size+size > sd.k.opts.MaxBatchBytes {
		if err := sd.flush(ctx); err != nil {
			return err
		}
	}
	sd.batch = append(sd.batch, rec)
	sd.size += size
	return nil
}

// flush produces the queued records, and fails if they did not land right
// after the records produced before.
func (sd *seeder) flush(ctx context.Context) error {
	if len(sd.batch) == 0 {
		return nil
	}
	k, topic, next := sd.k, sd.k.opts.Topic, sd.next
	pctx, cancel := context.WithTimeout(ctx, k.opts.WriteTimeout)
	res, err := k.admin.Produce(pctx, &kafka.ProduceRequest{
		Topic: topic, Partition: 0, RequiredAcks: kafka.RequireAll,
		Records: kafka.NewRecordReader(sd.batch...),
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
			"delete it, or seed another topic: %w", topic, next, sd.records, err)
	case res.BaseOffset != next && next == 0:
		return fmt.Errorf("%w: another program wrote to %s before the seed record: seed a new topic", ErrTopicNotEmpty, topic)
	case res.BaseOffset != next:
		return fmt.Errorf("bus: kafka: another program wrote to %s while it was being seeded (offset %d, want %d): "+
			"delete it, or seed another topic", topic, res.BaseOffset, next)
	}
	sd.next += int64(len(sd.batch))
	sd.batch, sd.size = sd.batch[:0], 0
	return nil
}
