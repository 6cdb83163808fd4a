package bus

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvsdb/kvs/kv"
)

// fakeEnd is an end offset function whose calls the test answers one by
// one: each call sends itself on calls and returns what the test sends on
// its answer channel.
type fakeEnd struct {
	calls chan *endCall
}

type endCall struct {
	answer chan endAnswer
}

type endAnswer struct {
	end int64
	err error
}

func newFakeEnd() *fakeEnd { return &fakeEnd{calls: make(chan *endCall, 16)} }

func (f *fakeEnd) end(ctx context.Context) (int64, error) {
	c := &endCall{answer: make(chan endAnswer, 1)}
	f.calls <- c
	select {
	case a := <-c.answer:
		return a.end, a.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// next returns the next call of end, failing the test after a while.
func (f *fakeEnd) next(t *testing.T) *endCall {
	t.Helper()
	select {
	case c := <-f.calls:
		return c
	case <-time.After(30 * time.Second): // a hang guard
		t.Fatal("no end offset request")
		return nil
	}
}

func startReadIndex(t *testing.T, f *fakeEnd, timeout time.Duration) *readIndex {
	t.Helper()
	ri := newReadIndex(f.end, timeout)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ri.loop(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ri
}

// goWait starts ri.wait and returns the channel its result arrives on.
func goWait(ri *readIndex) chan error {
	ch := make(chan error, 1)
	go func() { ch <- ri.wait(context.Background()) }()
	return ch
}

func returned(ch chan error) bool {
	select {
	case err := <-ch:
		ch <- err
		return true
	default:
		return false
	}
}

func result(t *testing.T, ch chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(30 * time.Second): // a hang guard
		t.Fatal("the read did not return")
		return nil
	}
}

// TestReadIndexNoReuse: a read that begins while a request is in flight
// waits for a request of its own, and for the offset that one reports.
func TestReadIndexNoReuse(t *testing.T) {
	f := newFakeEnd()
	ri := startReadIndex(t, f, time.Minute)

	r1 := goWait(ri)
	call1 := f.next(t) // in flight, sent after r1 began
	r2 := goWait(ri)   // begins while call1 is in flight
	// r2 joins a batch before call1 answers: wait until it did.
	waitFor(t, "the second read to join a batch", func() bool { return ri.joins.Load() == 2 })
	ri.advance(5)
	call1.answer <- endAnswer{end: 5}
	if err := result(t, r1); err != nil {
		t.Fatalf("first read: %v", err)
	}
	time.Sleep(20 * time.Millisecond) // give a wrongful return a moment
	if returned(r2) {
		t.Fatal("the second read returned on the answer to a request sent before it began")
	}
	call2 := f.next(t) // r2's own request
	call2.answer <- endAnswer{end: 7}
	ri.advance(6)
	// Give a wrongful return a moment to show.
	time.Sleep(20 * time.Millisecond)
	if returned(r2) {
		t.Fatal("the second read returned before offset 6 (end 7) was applied")
	}
	ri.advance(7)
	if err := result(t, r2); err != nil {
		t.Fatalf("second read: %v", err)
	}
}

// TestReadIndexBatching: reads that arrive together share one request.
func TestReadIndexBatching(t *testing.T) {
	f := newFakeEnd()
	ri := startReadIndex(t, f, time.Minute)
	first := goWait(ri)
	call := f.next(t)
	// 100 reads arrive while the first request is in flight: they form one
	// batch, served by the next request.
	var reads []chan error
	for range 100 {
		reads = append(reads, goWait(ri))
	}
	waitFor(t, "the reads to start", func() bool { return ri.reads.Load() == 101 })
	call.answer <- endAnswer{end: 0}
	if err := result(t, first); err != nil {
		t.Fatal(err)
	}
	f.next(t).answer <- endAnswer{end: 3}
	ri.advance(3)
	for _, r := range reads {
		if err := result(t, r); err != nil {
			t.Fatal(err)
		}
	}
	if n := ri.requests.Load(); n != 2 {
		t.Errorf("101 reads made %d requests, want 2", n)
	}
}

// TestReadIndexFailures: a failed request is retried within the read's
// time; a broker that does not answer, or a log that never applies the
// end offset, fails the read after the timeout with the reason; a log that
// failed for good fails reads at once.
func TestReadIndexFailures(t *testing.T) {
	t.Run("retried", func(t *testing.T) {
		f := newFakeEnd()
		ri := startReadIndex(t, f, time.Minute)
		r := goWait(ri)
		f.next(t).answer <- endAnswer{err: errors.New("connection reset")}
		f.next(t).answer <- endAnswer{end: 0}
		if err := result(t, r); err != nil {
			t.Fatalf("got %v, want the read to succeed on the retry", err)
		}
	})
	t.Run("no answer", func(t *testing.T) {
		f := newFakeEnd()
		ri := startReadIndex(t, f, 100*time.Millisecond)
		r := goWait(ri)
		f.next(t) // never answered: the request times out
		err := result(t, r)
		if !errors.Is(err, errBarrierTimeout) || err.Error() == errBarrierTimeout.Error() {
			t.Fatalf("got %v, want a timeout with its reason", err)
		}
	})
	t.Run("not applied", func(t *testing.T) {
		f := newFakeEnd()
		ri := startReadIndex(t, f, 100*time.Millisecond)
		r := goWait(ri)
		f.next(t).answer <- endAnswer{end: 9}
		err := result(t, r)
		if !errors.Is(err, errBarrierTimeout) {
			t.Fatalf("got %v, want a timeout", err)
		}
		if want := "the log ends at offset 9, applied here up to 0"; !strings.Contains(err.Error(), want) {
			t.Errorf("got %q, want it to say %q", err, want)
		}
	})
	t.Run("failed for good", func(t *testing.T) {
		f := newFakeEnd()
		ri := startReadIndex(t, f, time.Minute)
		r := goWait(ri)
		f.next(t).answer <- endAnswer{end: 9}
		waitFor(t, "the batch to wait", func() bool {
			ri.mu.Lock()
			defer ri.mu.Unlock()
			return len(ri.waiting) == 1
		})
		ri.fail(ErrDataLost)
		if err := result(t, r); !errors.Is(err, ErrDataLost) {
			t.Fatalf("waiting read: got %v, want ErrDataLost", err)
		}
		if err := ri.wait(context.Background()); !errors.Is(err, ErrDataLost) {
			t.Fatalf("later read: got %v, want ErrDataLost", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		f := newFakeEnd()
		ri := startReadIndex(t, f, time.Minute)
		ctx, cancel := context.WithCancel(context.Background())
		ch := make(chan error, 1)
		go func() { ch <- ri.wait(ctx) }()
		f.next(t)
		cancel()
		if err := result(t, ch); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	})
}

// TestKafkaReadBarrier: an instance whose applier is held back answers a
// read barrier only once it has applied a write another instance had
// acknowledged before the barrier began; concurrent barriers share broker
// requests.
func TestKafkaReadBarrier(t *testing.T) {
	c := newCluster(t)
	const topic = "barrier"
	a := newReplica(t, c, topic)

	// b applies through a gate the test opens.
	b, err := NewKafka(KafkaOptions{Brokers: c.ListenAddrs(), Topic: topic, FetchWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var (
		gate    = make(chan struct{})
		gated   atomic.Bool
		mu      sync.Mutex
		applied []int64 // revisions b applied
	)
	b.Start(func(recs []kv.Record) []kv.Restore {
		if gated.Load() {
			<-gate
		}
		mu.Lock()
		for _, r := range recs {
			applied = append(applied, r.Revision)
		}
		mu.Unlock()
		return nil
	})
	t.Cleanup(func() { b.Close() })
	waitFor(t, "b ready", func() bool { return b.Err() == nil })

	gated.Store(true)
	rev := set(t, a, "k", `1`) // acknowledged: a applied it
	done := make(chan error, 1)
	go func() { done <- b.ReadBarrier(context.Background()) }()
	time.Sleep(50 * time.Millisecond) // give a wrongful return a moment
	if returned(done) {
		t.Fatal("the barrier returned while b had not applied the acknowledged write")
	}
	close(gate)
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := applied
	mu.Unlock()
	if len(got) == 0 || got[len(got)-1] < rev {
		t.Fatalf("the barrier returned with b having applied %v, want revision %d applied", got, rev)
	}

	// Concurrent barriers share requests to the broker.
	var listOffsets atomic.Int64
	c.ControlKey(int16(kmsg.ListOffsets), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		listOffsets.Add(1)
		return nil, nil, false
	})
	reads0, requests0 := b.ReadBarrierStats()
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			if err := b.ReadBarrier(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	reads, requests := b.ReadBarrierStats()
	reads, requests = reads-reads0, requests-requests0
	if reads != 200 || requests > 50 || requests < 1 {
		t.Errorf("200 concurrent barriers: %d reads, %d requests; want 200 reads sharing a few requests", reads, requests)
	}
	if n := listOffsets.Load(); n < requests {
		t.Errorf("the broker saw %d ListOffsets requests, fewer than the %d counted", n, requests)
	}
	t.Logf("200 concurrent barriers shared %d broker requests", requests)

	// A log that lost data refuses at once.
	b.mu.Lock()
	b.loseLocked(ErrDataLost)
	b.mu.Unlock()
	if err := b.ReadBarrier(context.Background()); !errors.Is(err, ErrDataLost) {
		t.Fatalf("barrier after data loss: got %v, want ErrDataLost", err)
	}
}
