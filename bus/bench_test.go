package bus_test

import (
	"fmt"
	"testing"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/kv"
)

// BenchmarkPublish publishes revisions of one change and transactions of
// four, of 100-byte values, to subscribers that read everything (and let
// go of it), as the write path does.
func BenchmarkPublish(b *testing.B) {
	for _, subs := range []int{0, 1, 100} {
		for _, size := range []int{1, 4} {
			b.Run(fmt.Sprintf("subs=%d/txn=%d", subs, size), func(b *testing.B) {
				h := bus.New(bus.Options{History: 10000, Encode: encodeValue})
				defer h.Close()
				var ss []*bus.Subscription
				for range subs {
					s, err := h.Subscribe(bus.Filter{}, 0)
					if err != nil {
						b.Fatal(err)
					}
					ss = append(ss, s)
				}
				changes := make([]kv.Change, 16*size) // 16 revisions a batch
				for i := range changes {
					changes[i] = setOf(0, fmt.Sprint("k", i), 100)
				}
				rev := int64(0)
				b.ReportAllocs()
				for b.Loop() {
					for i := range changes {
						if i%size == 0 {
							rev++
						}
						changes[i].Revision = rev
					}
					h.Publish(changes)
					for _, s := range ss {
						drain(s)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(changes)), "ns/change")
			})
		}
	}
}
