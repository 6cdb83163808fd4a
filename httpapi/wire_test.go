package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kvsdb/kvs/kv"
	"github.com/kvsdb/kvs/wire"
)

// decodeExactly decodes data into v, rejecting members v does not have,
// and checks that encoding v again gives data back byte for byte (unless
// reencode is false).
func decodeExactly(t *testing.T, data []byte, v any, reencode bool) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s does not decode into %T: %v", data, v, err)
	}
	if dec.More() {
		t.Fatalf("%s: data after the value", data)
	}
	if !reencode {
		return
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	if got := bytes.TrimSuffix(buf.Bytes(), []byte("\n")); !bytes.Equal(got, data) {
		t.Fatalf("%T encodes as\n%s\nhttpapi wrote\n%s", v, got, data)
	}
}

// FuzzWireEncodings checks that httpapi's hand-written encoders write
// exactly the wire types: what they write decodes into the wire type with
// no unknown member, holds the same fields, and is what encoding/json
// writes for that value.
func FuzzWireEncodings(f *testing.F) {
	f.Add("City", []byte(`"Ahmedabad"`), int64(42))
	f.Add("a<b>&c\u2028\"\\", []byte(`{"n":1.50,"s":"<&>"}`), int64(1))
	f.Add("ключ/日本", []byte(`12345678901234567890`), int64(1<<62))
	f.Add("k", []byte(`[true,false,{"x":[]}]`), int64(7))
	f.Fuzz(func(t *testing.T, key string, value []byte, rev int64) {
		var compact bytes.Buffer
		if !kv.ValidKey(key) || rev < 0 || json.Compact(&compact, value) != nil || compact.String() == "null" {
			t.Skip()
		}
		v := compact.Bytes()
		// Every other entry has a lease, with some time left.
		var lease int64
		left := time.Duration(rev%100000) * time.Millisecond
		if rev%2 == 1 {
			lease = rev%kv.MaxLeaseID + 1
		}
		ttl := func(int64) (time.Duration, bool) { return left, true }
		e := &kv.Entry{Key: key, Value: v, Revision: rev, CreateRevision: rev / 2, Version: rev%5 + 1, Lease: lease}
		want := wire.Entry{Key: key, Value: v, Revision: rev, CreateRevision: rev / 2, Version: rev%5 + 1, Lease: lease}
		if lease != 0 {
			want.TTL = wire.Duration(left)
		}

		var got wire.Entry
		decodeExactly(t, appendEntry(nil, e, ttl), &got, lease == 0 || left > 0)
		if got.Key != want.Key || !bytes.Equal(got.Value, want.Value) || got.Revision != want.Revision ||
			got.CreateRevision != want.CreateRevision || got.Version != want.Version || got.Lease != want.Lease || got.TTL != want.TTL {
			t.Fatalf("entry: got %+v, want %+v", got, want)
		}

		var wr wire.WriteResult
		decodeExactly(t, appendWriteResult(nil, key, rev, lease), &wr, true)
		if wr != (wire.WriteResult{Key: key, Revision: rev, Lease: lease}) {
			t.Fatalf("write result: got %+v", wr)
		}

		var wl wire.Lease
		l := kv.Lease{ID: rev%kv.MaxLeaseID + 1, TTL: left + time.Second, Remaining: left, Keys: []string{key}}
		decodeExactly(t, appendLease(nil, l), &wl, true)
		if wl.ID != l.ID || wl.TTL != wire.Duration(left) || wl.GrantedTTL != wire.Duration(l.TTL) || len(wl.Keys) != 1 || wl.Keys[0] != key {
			t.Fatalf("lease: got %+v, want %+v", wl, l)
		}

		var we wire.Error
		decodeExactly(t, appendError(nil, key, false, nil), &we, true)
		if we.Error != key || we.Current != nil {
			t.Fatalf("error: got %+v", we)
		}
		we = wire.Error{}
		conflict := appendErrorTTL(nil, "revision condition failed", true, e, ttl)
		decodeExactly(t, conflict, &we, true)
		if we.Current == nil || we.Current.Key != key || !bytes.Equal(we.Current.Value, v) || we.Current.Revision != rev {
			t.Fatalf("conflict: got %+v", we)
		}
		we = wire.Error{}
		absent := appendError(nil, "revision condition failed", true, nil)
		decodeExactly(t, absent, &we, false) // "Current":null, which omitempty leaves out
		if we.Current != nil || !bytes.Contains(absent, []byte(`"Current":null`)) {
			t.Fatalf("conflict on an absent key: %s", absent)
		}

		for _, c := range []kv.Change{
			{Op: kv.OpSet, Key: key, Value: v, Revision: rev},
			{Op: kv.OpDelete, Key: key, Revision: rev},
			{Op: kv.OpSet, Key: key, Value: v, Revision: rev, Lease: lease},
			{Op: kv.OpDelete, Key: key, Revision: rev, Lease: rev%kv.MaxLeaseID + 1, Reason: kv.Reason(1 + rev%2)},
		} {
			var ev wire.Event
			decodeExactly(t, AppendEvent(nil, &c), &ev, true)
			wantType := map[kv.Op]string{kv.OpSet: wire.EventSet, kv.OpDelete: wire.EventDelete}[c.Op]
			if ev.Type != wantType || ev.Key != key || !bytes.Equal(ev.Value, c.Value) || ev.Revision != rev || ev.More ||
				ev.Reason != c.Reason.String() || ev.Lease != c.Lease {
				t.Fatalf("event of %v: got %+v", c.Op, ev)
			}
		}
		var ev wire.Event
		decodeExactly(t, appendProgress(nil, rev), &ev, true)
		if ev.Type != wire.EventProgress || ev.Key != "" || ev.Value != nil || ev.Revision != rev || ev.More || ev.Reason != "" {
			t.Fatalf("progress: got %+v", ev)
		}
	})
}

// TestWireList checks that /list writes exactly wire.List, and that every
// route of package wire is served.
func TestWireList(t *testing.T) {
	store := kv.New(kv.Options{})
	t.Cleanup(func() { store.Close() })
	h := New(Options{Store: store})
	for _, k := range []string{"b<&>", "a\u2028", "c\"\\", "日本"} {
		if _, err := store.Set(t.Context(), k, []byte(`{"k":"`+strings.ReplaceAll(strings.ReplaceAll(k, `\`, `\\`), `"`, `\"`)+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", wire.PathList, nil))
	var l wire.List
	decodeExactly(t, bytes.TrimSuffix(rec.Body.Bytes(), []byte("\n")), &l, true)
	if l.Revision != 4 || len(l.Entries) != 4 || rec.Header().Get(wire.RevisionHeader) != "4" {
		t.Fatalf("got %+v, header %q", l, rec.Header().Get(wire.RevisionHeader))
	}

	for _, p := range []string{wire.PathGet, wire.PathSet, wire.PathDelete, wire.PathList, wire.PathGetAll,
		wire.PathSubscribe, wire.PathHealthz, wire.PathReadyz} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("OPTIONS", p, nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("OPTIONS %s: %d, want 405 (a route with other methods)", p, rec.Code)
		}
	}
}
