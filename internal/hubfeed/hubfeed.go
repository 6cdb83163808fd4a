// Package hubfeed serves a bus.Hub as httpapi's change feed: the one place
// where the two meet, used by kvsd and by the tests that build a server
// from its parts.
package hubfeed

import (
	"context"
	"iter"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/kv"
)

// Feed is a bus.Hub as an httpapi.Feed.
type Feed struct{ *bus.Hub }

// Subscribe subscribes to the hub until ctx is done. It then unsubscribes
// without draining the live channel: its receiver drains it (see
// httpapi.Feed), so that it knows when every event is Done.
func (f Feed) Subscribe(ctx context.Context, key, prefix string, from int64) (httpapi.Subscription, int64, error) {
	s, err := f.Hub.Subscribe(bus.Filter{Key: key, Prefix: prefix}, from)
	if err != nil {
		return nil, 0, err
	}
	context.AfterFunc(ctx, s.Unsubscribe)
	return subscription{s}, s.From(), nil
}

type subscription struct{ *bus.Subscription }

func (s subscription) Events() (iter.Seq[[]*kv.Event], <-chan *kv.Event) {
	return s.Replay(), s.C()
}
