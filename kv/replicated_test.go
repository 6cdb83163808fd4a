package kv

import (
	"context"
	"errors"
	"testing"
)

// feedLog is a Replicated log whose records the test hands to the store
// itself, as a log would after compaction.
type feedLog struct {
	apply func([]Record) []Restore
}

func (l *feedLog) Close() error                          { return nil }
func (l *feedLog) Propose(context.Context, Record) error { return errors.New("not used") }
func (l *feedLog) Start(apply func([]Record) []Restore)  { l.apply = apply }

// TestApplyCompacted replays hand-made record sequences, as a store sees
// a compacted topic (Isolated: the first record of a key after records
// were removed), and checks the state it reaches and the restores it asks
// for.
func TestApplyCompacted(t *testing.T) {
	set := func(rev int64, key, value string, create, version int64) Record {
		return Record{Change: Change{Op: OpSet, Key: key, Value: []byte(value), Revision: rev}, CreateRevision: create, Version: version}
	}
	restore := func(rev int64, key, value string, of, entryRev, create, version int64) Record {
		r := set(rev, key, value, create, version)
		r.IsRestore, r.Restores, r.EntryRevision = true, of, entryRev
		return r
	}
	isolated := func(r Record) Record { r.Isolated = true; return r }
	cond := func(r Record, ifRev int64) Record { r.Cond, r.IfRevision = true, ifRev; return r }
	tests := []struct {
		name     string
		recs     []Record
		want     *Entry // the entry of key "k" at the end
		restores int    // restores asked for
	}{
		{"an update whose history was compacted keeps its version",
			[]Record{isolated(set(9, "k", `3`, 2, 5))},
			&Entry{Value: []byte(`3`), Revision: 9, CreateRevision: 2, Version: 5}, 0},
		{"a conditional set that won, without its history",
			[]Record{isolated(cond(set(9, "k", `3`, 2, 5), 7))},
			&Entry{Value: []byte(`3`), Revision: 9, CreateRevision: 2, Version: 5}, 0},
		{"a restore whose record was compacted away",
			[]Record{isolated(restore(12, "k", `"real"`, 11, 4, 2, 3))},
			&Entry{Value: []byte(`"real"`), Revision: 4, CreateRevision: 2, Version: 3}, 0},
		{"a failed conditional set cut from its restore by compaction",
			[]Record{isolated(cond(set(11, "k", `"rejected"`, 2, 4), 3)), set(15, "other", `1`, 0, 1), restore(16, "k", `"real"`, 11, 4, 2, 3)},
			&Entry{Value: []byte(`"real"`), Revision: 4, CreateRevision: 2, Version: 3}, 0},
		{"a stale restore cut from the restore of it",
			[]Record{isolated(restore(20, "k", `"old"`, 11, 4, 2, 3)), restore(21, "k", `"new"`, 4, 18, 2, 6)},
			&Entry{Value: []byte(`"new"`), Revision: 18, CreateRevision: 2, Version: 6}, 0},
		{"with its history, a failed condition asks for a restore and changes nothing",
			[]Record{set(1, "k", `1`, 0, 1), cond(set(2, "k", `2`, 1, 2), 5)},
			&Entry{Value: []byte(`1`), Revision: 1, CreateRevision: 1, Version: 1}, 1},
		{"with its history, a stale claim asks for a restore and is decided as it applies",
			[]Record{set(1, "k", `1`, 0, 1), set(2, "k", `2`, 0, 1)},
			&Entry{Value: []byte(`2`), Revision: 2, CreateRevision: 1, Version: 2}, 1},
		{"with its history, a restore changes nothing",
			[]Record{set(1, "k", `1`, 0, 1), set(2, "k", `2`, 0, 1), restore(3, "k", `2`, 2, 2, 1, 2)},
			&Entry{Value: []byte(`2`), Revision: 2, CreateRevision: 1, Version: 2}, 1},
		{"a restore that came after a later change is restored in turn",
			[]Record{set(1, "k", `1`, 0, 1), set(2, "k", `2`, 0, 1), set(3, "k", `3`, 1, 3), restore(4, "k", `2`, 2, 2, 1, 2)},
			&Entry{Value: []byte(`3`), Revision: 3, CreateRevision: 1, Version: 3}, 2},
		{"a record that is not Isolated is decided, not taken on its claim",
			[]Record{set(1, "k", `1`, 0, 1), {Change: Change{Op: OpDelete, Key: "k", Revision: 2}}, cond(set(5, "k", `5`, 1, 2), 1)},
			nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &feedLog{}
			s := New(Options{Replicated: l})
			var restores []Restore
			for _, r := range tt.recs {
				restores = append(restores, l.apply([]Record{r})...)
			}
			e, ok := s.Get("k")
			switch {
			case tt.want == nil && ok:
				t.Fatalf("got %+v, want no entry", e)
			case tt.want != nil && (!ok || string(e.Value) != string(tt.want.Value) || e.Revision != tt.want.Revision ||
				e.CreateRevision != tt.want.CreateRevision || e.Version != tt.want.Version):
				t.Fatalf("got %+v, want %s at %d/%d/v%d", e, tt.want.Value, tt.want.Revision, tt.want.CreateRevision, tt.want.Version)
			}
			if len(restores) != tt.restores {
				t.Fatalf("got restores %+v, want %d", restores, tt.restores)
			}
		})
	}
}

// TestReplicatedRevIsLogPosition: with a replicated log the store's
// revision follows every record applied, also those that change nothing
// (a failed condition, a restore), so that a listing's revision + 1 is
// where the feed goes on.
func TestReplicatedRevIsLogPosition(t *testing.T) {
	l := &feedLog{}
	s := New(Options{Replicated: l})
	set := Record{Change: Change{Op: OpSet, Key: "k", Value: []byte(`1`), Revision: 3}, Version: 1}
	failed := Record{Change: Change{Op: OpSet, Key: "k", Value: []byte(`2`), Revision: 7, Cond: true, IfRevision: 1}, CreateRevision: 3, Version: 2}
	steps := []struct {
		rec  Record
		want int64
	}{{set, 3}, {failed, 7}}
	for _, st := range steps {
		l.apply([]Record{st.rec})
		if got := s.Rev(); got != st.want {
			t.Fatalf("after the record at %d: Rev %d, want %d", st.rec.Revision, got, st.want)
		}
		if _, rev := s.Snapshot(""); rev != st.want {
			t.Fatalf("after the record at %d: Snapshot revision %d, want %d", st.rec.Revision, rev, st.want)
		}
	}
	if e, _ := s.Get("k"); e.Revision != 3 {
		t.Fatalf("failed record changed the key: %+v", e)
	}
}
