package bus

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kvsdb/kvs/kv"
)

type pendingRestore struct {
	r   kv.Restore
	due time.Time
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

// restoreLoop writes due restores: this instance's at once, other
// instances' when their writer did not.
func (k *Kafka) restoreLoop(ctx context.Context) {
	defer k.wg.Done()
	tick := time.NewTicker(min(k.opts.RestoreAfter/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
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
	ctx, cancel := context.WithTimeout(context.Background(), min(k.opts.WriteTimeout, 2*time.Second))
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

// recordKeys returns the keys, in the log's bookkeeping of restores, whose
// last record r is: a key, a transaction's writes, or a lease.
func recordKeys(r *kv.Record) []string {
	switch {
	case r.Txn != nil:
		return r.Txn.WriteKeys()
	case r.LeaseOp == nil:
		return []string{r.Key}
	case r.LeaseOp.Kind == kv.LeaseKeepAlive:
		return nil
	}
	return []string{leaseKey(r.LeaseOp.ID)}
}

// restoreKey returns the key of a restore in the log's bookkeeping.
func restoreKey(r *kv.Restore) string {
	if r.Lease != 0 {
		return leaseKey(r.Lease)
	}
	return r.Key
}
