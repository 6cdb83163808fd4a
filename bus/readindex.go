package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// readIndex makes reads linearizable on a replica of a shared log (etcd's
// ReadIndex, with its batching). A read asks the log for its end offset,
// with a request sent after the read began, and waits until the replica has
// applied every offset below it: every record acknowledged before the read
// began is then applied here, whichever replica wrote it.
//
// Concurrent reads share requests. The reads that arrive while no request
// is being sent form the open batch; one goroutine takes the open batch
// (closing it to newcomers), sends one request for it, and opens the way for
// the next batch. A read that arrives while a request is in flight waits for
// the next request: the answer of one sent before the read began could miss
// a write acknowledged in between.
//
// readIndex is safe for concurrent use.
type readIndex struct {
	// end returns the log's end offset (the offset after the last record
	// that the log acknowledged). It is called from one goroutine.
	end     func(ctx context.Context) (int64, error)
	timeout time.Duration // bounds each read, and each call of end

	kick chan struct{} // wakes loop: a batch is open

	// mu guards the batches below. It is never held with the caller's
	// lock of applied/fail (mu is taken alone).
	mu      sync.Mutex
	open    *readBatch   // reads waiting for the next request; nil: none
	waiting []*readBatch // batches whose target offset is not yet applied
	applied int64        // every offset below applied is applied
	failed  error        // set once for good (lost data, closed)

	requests atomic.Int64 // end offset requests made
	reads    atomic.Int64 // reads that waited on one
	joins    atomic.Int64 // times a read joined a batch (tests wait on it)
}

// readBatch is the reads that share one end offset request. done is
// closed once their target offset is applied, or with err.
type readBatch struct {
	done   chan struct{}
	target int64
	err    error
}

func newReadIndex(end func(context.Context) (int64, error), timeout time.Duration) *readIndex {
	return &readIndex{end: end, timeout: timeout, kick: make(chan struct{}, 1)}
}

// errBarrierTimeout is wrapped by a read that could not be confirmed
// current in time.
var errBarrierTimeout = errors.New("bus: kafka: read not confirmed current in time")

// wait returns once every offset below the log's end offset, as the log
// reports it in a request sent after wait was called, is applied; or an
// error after the timeout, when ctx is done, or when the log failed.
func (ri *readIndex) wait(ctx context.Context) error {
	ri.reads.Add(1)
	timer := time.NewTimer(ri.timeout)
	defer timer.Stop()
	var last error
	for {
		ri.mu.Lock()
		if err := ri.failed; err != nil {
			ri.mu.Unlock()
			return err
		}
		b := ri.open
		if b == nil {
			b = &readBatch{done: make(chan struct{})}
			ri.open = b
			select {
			case ri.kick <- struct{}{}:
			default:
			}
		}
		ri.joins.Add(1)
		ri.mu.Unlock()
		select {
		case <-b.done:
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			if last == nil {
				last = ri.stuck(b)
			}
			return fmt.Errorf("%w (%v): %v", errBarrierTimeout, ri.timeout, last)
		}
		if b.err == nil {
			return nil
		}
		ri.mu.Lock()
		failed := ri.failed
		ri.mu.Unlock()
		if failed != nil {
			return failed
		}
		// A failed request: join the next one (loop backs off).
		last = b.err
	}
}

// stuck describes what a read that timed out in batch b was waiting for.
func (ri *readIndex) stuck(b *readBatch) error {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	if b.target > 0 {
		return fmt.Errorf("the log ends at offset %d, applied here up to %d", b.target, ri.applied)
	}
	return errors.New("no answer from the broker")
}

// loop sends one end offset request for each open batch, until ctx is
// done. After a failed request it waits a little before the next.
func (ri *readIndex) loop(ctx context.Context) {
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			ri.fail(errors.New("bus: kafka: log closed"))
			return
		case <-ri.kick:
		}
		if backoff > 0 {
			select {
			case <-ctx.Done():
				continue
			case <-time.After(backoff):
			}
		}
		ri.mu.Lock()
		b := ri.open
		ri.open = nil
		ri.mu.Unlock()
		if b == nil {
			continue
		}
		ri.requests.Add(1)
		rctx, cancel := context.WithTimeout(ctx, ri.timeout)
		end, err := ri.end(rctx)
		cancel()
		ri.mu.Lock()
		switch {
		case err != nil:
			b.err = err
			close(b.done)
			backoff = min(max(2*backoff, 50*time.Millisecond), time.Second)
		case ri.failed != nil:
			b.err = ri.failed
			close(b.done)
		case end <= ri.applied:
			close(b.done)
			backoff = 0
		default:
			b.target = end
			ri.waiting = append(ri.waiting, b)
			backoff = 0
		}
		if ri.open != nil {
			// Reads arrived during the request: they need one of their own.
			select {
			case ri.kick <- struct{}{}:
			default:
			}
		}
		ri.mu.Unlock()
	}
}

// advance records that every offset below next is applied, and releases
// the reads waiting for it.
func (ri *readIndex) advance(next int64) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	ri.applied = max(ri.applied, next)
	kept := ri.waiting[:0]
	for _, b := range ri.waiting {
		if b.target <= ri.applied {
			close(b.done)
		} else {
			kept = append(kept, b)
		}
	}
	clear(ri.waiting[len(kept):])
	ri.waiting = kept
}

// fail fails every waiting read and every later one with err.
func (ri *readIndex) fail(err error) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	if ri.failed == nil {
		ri.failed = err
	}
	for _, b := range ri.waiting {
		b.err = ri.failed
		close(b.done)
	}
	ri.waiting = nil
	if b := ri.open; b != nil {
		b.err = ri.failed
		close(b.done)
		ri.open = nil
	}
}
