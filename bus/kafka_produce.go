package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/segmentio/kafka-go"

	"github.com/kvsdb/kvs/kv"
)

// proposal is a record on its way to the broker. done receives the
// produce's outcome; it is nil for a restore, whose failure is retried.
type proposal struct {
	rec  kafka.Record
	size int
	done chan error
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
	case <-k.stop:
		return errors.New("bus: kafka: log closed")
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("bus: kafka: no acknowledgement in time: %w", ctx.Err())
	case <-k.stop:
		// The producer may have stopped before it took p: nobody would
		// answer. p may still have been produced (see kv.Replicated).
		select {
		case err := <-p.done:
			return err
		default:
			return errors.New("bus: kafka: log closed before the write was acknowledged")
		}
	}
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

// produceLoop sends queued proposals to the broker, as many as are queued
// (up to MaxBatchBytes) in each produce request, one request at a time.
func (k *Kafka) produceLoop(ctx context.Context) {
	defer k.wg.Done()
	var (
		batch []*proposal
		recs  []kafka.Record
	)
	for {
		batch, recs = batch[:0], recs[:0]
		select {
		case <-ctx.Done():
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
					k.produce(ctx, batch, recs)
					batch, recs, size = append(batch[:0], p), recs[:0], 0
				} else {
					batch = append(batch, p)
				}
				size += p.size
			default:
				break more
			}
		}
		k.produce(ctx, batch, recs)
	}
}

// produce sends one produce request with the records of batch and answers
// each proposal.
func (k *Kafka) produce(ctx context.Context, batch []*proposal, recs []kafka.Record) {
	for _, p := range batch {
		recs = append(recs, p.rec)
	}
	ctx, cancel := context.WithTimeout(ctx, k.opts.WriteTimeout)
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
