package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kvsdb/kvs/kv"
)

// fetchLoop reads the partition from the first offset, in order, and
// applies what it reads.
func (k *Kafka) fetchLoop(ctx context.Context) {
	defer k.wg.Done()
	wait := 50 * time.Millisecond
	var recs []kv.Record
	for ctx.Err() == nil {
		res, next, stop := k.fetch(ctx, &wait)
		if stop {
			return
		}
		if res == nil {
			continue // after a backoff
		}
		recs, next = k.applyFetched(res.Records, next, recs[:0])
		recs = k.flushApply(recs)
		k.advance(next)
	}
}

// fetch fetches records from the offset of the next record to apply,
// connecting first if need be, and returns them and that offset. It
// returns no response when the fetch failed, after a backoff of *wait
// (which it doubles, and resets after a fetch that worked), and stop when
// the fetch loop must end: ctx is done, or the broker lost records.
func (k *Kafka) fetch(ctx context.Context, wait *time.Duration) (res *kafka.FetchResponse, next int64, stop bool) {
	k.mu.Lock()
	connected, next, lost := k.connected, k.next, k.lost != nil
	k.mu.Unlock()
	if lost {
		return nil, 0, true
	}
	if !connected {
		if err := k.connect(ctx); err != nil {
			if ctx.Err() == nil {
				k.setFetchErr(err)
				backoff(ctx, wait)
			}
			return nil, 0, false
		}
		k.mu.Lock()
		next = k.next
		k.mu.Unlock()
	}
	maxBytes := max(4<<20, 2*k.opts.MaxBatchBytes)
	res, err := k.fetcher.Fetch(ctx, &kafka.FetchRequest{
		Topic: k.opts.Topic, Partition: 0, Offset: next,
		MinBytes: 1, MaxBytes: int64(maxBytes), MaxWait: k.opts.FetchWait,
	})
	if err == nil && res.Error != nil {
		err = res.Error
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, true
		}
		switch {
		case errors.Is(err, kafka.OffsetOutOfRange):
			k.mu.Lock()
			k.loseLocked(fmt.Errorf("%w: topic %s no longer has offset %d (%v)", ErrDataLost, k.opts.Topic, next, err))
			k.mu.Unlock()
			return nil, 0, true
		case errors.Is(err, kafka.UnknownTopicOrPartition):
			k.mu.Lock()
			k.connected = false
			k.mu.Unlock()
		}
		k.setFetchErr(err)
		backoff(ctx, wait)
		return nil, 0, false
	}
	*wait = 50 * time.Millisecond
	k.mu.Lock()
	k.hwm = max(k.hwm, res.HighWatermark)
	k.mu.Unlock()
	return res, next, false
}

// backoff waits *d, or until ctx is done, and doubles *d up to 2s.
func backoff(ctx context.Context, d *time.Duration) {
	select {
	case <-time.After(*d):
	case <-ctx.Done():
	}
	*d = min(*d*2, 2*time.Second)
}

// applyFetched reads the records of a fetch from offset next on, and
// decodes and applies them in order (see flushApply), noting the offsets
// that compaction removed. It returns the records it has yet to apply
// (appended to recs) and the offset after the last record it read.
func (k *Kafka) applyFetched(rr kafka.RecordReader, next int64, recs []kv.Record) ([]kv.Record, int64) {
	for {
		m, err := rr.ReadRecord()
		if err == io.EOF {
			return recs, next
		}
		if err != nil {
			k.setFetchErr(err)
			return recs, next
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
		k.markIsolated(&r, m.Offset)
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
}

// markIsolated sets r.Isolated, on the record at offset, when the records
// it depends on may have been removed by compaction (see
// kv.Record.Isolated), and notes the keys delivered while replaying.
func (k *Kafka) markIsolated(r *kv.Record, offset int64) {
	k.mu.Lock()
	replaying, seed := !k.caughtUp, offset < k.seedEnd
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

// txnKeys returns the keys whose state t depends on or changes: those of
// its conditions and of its writes, and the leases its sets attach keys to.
func txnKeys(t *kv.Txn) []string {
	keys := t.WriteKeys()
	for _, c := range t.If {
		keys = append(keys, c.Key)
	}
	for _, ops := range [][]kv.TxnOp{t.Then, t.Else} {
		for _, op := range ops {
			if op.Lease != 0 {
				keys = append(keys, leaseKey(op.Lease))
			}
		}
	}
	return keys
}

// sawAll reports whether the fetch loop delivered a record of every one of
// keys since it started replaying. Only the fetch loop calls it.
func (k *Kafka) sawAll(keys []string) bool {
	for _, key := range keys {
		if _, ok := k.seen[key]; !ok {
			return false
		}
	}
	return true
}
