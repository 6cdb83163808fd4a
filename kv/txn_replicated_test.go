package kv

import (
	"fmt"
	"slices"
	"testing"
)

// TestApplyCompactedTxn replays hand-made record sequences with
// transactions, as a store sees a compacted topic, and checks the state it
// reaches, what it publishes, and the restores it asks for.
func TestApplyCompactedTxn(t *testing.T) {
	set := func(rev int64, key, value string, create, version int64) Record {
		return Record{Change: Change{Op: OpSet, Key: key, Value: []byte(value), Revision: rev}, CreateRevision: create, Version: version}
	}
	restore := func(rev int64, key, value string, of, entryRev, create, version int64) Record {
		r := set(rev, key, value, create, version)
		r.IsRestore, r.Restores, r.EntryRevision = true, of, entryRev
		if value == "" {
			r.Op, r.Value, r.CreateRevision, r.Version = OpDelete, nil, 0, 0
		}
		return r
	}
	isolated := func(r Record) Record { r.Isolated = true; return r }
	// The transaction: if a is at revision aRev, set k, else set e.
	txnIf := func(rev, aRev int64) Record {
		return Record{Change: Change{Revision: rev}, Txn: &Txn{
			If:   []Cond{{Key: "a", Target: TargetRevision, Revision: aRev}},
			Then: []TxnOp{{Op: OpSet, Key: "k", Value: []byte(`"then"`)}},
			Else: []TxnOp{{Op: OpSet, Key: "e", Value: []byte(`"else"`)}},
		}}
	}
	txn := func(rev int64) Record { return txnIf(rev, 5) }
	tests := []struct {
		name      string
		recs      []Record
		want      []string // every entry at the end
		published []string
		restores  int
	}{
		{"with its history, a transaction is decided and published, and asks for restores of both lists' keys",
			[]Record{set(5, "a", `1`, 0, 1), txn(10)},
			[]string{`a=1@5/5/v1`, `k="then"@10/10/v1`},
			[]string{"5 set a", "10 set k"}, 2},
		{"without it, it is decided otherwise, not published, and repaired by its restores",
			// a's record at 5 was compacted away; the restores of k and
			// e follow the transaction.
			[]Record{isolated(txn(10)), isolated(restore(11, "k", `"then"`, 10, 10, 10, 1)), isolated(restore(12, "e", "", 10, 0, 0, 0)), isolated(set(13, "a", `2`, 5, 2))},
			[]string{`a=2@13/5/v2`, `k="then"@10/10/v1`},
			[]string{"13 set a"}, 0},
		{"a record of a key that a transaction set from a state it could not know is taken on its claim",
			// Truth: a at 5 and k at 3 (both compacted away); the
			// transaction (if a is absent) ran Else, then a set of k
			// landed before k's restore was written, making it
			// unnecessary. The store, without a, runs Then.
			[]Record{isolated(txnIf(10, 0)), isolated(set(11, "k", `"later"`, 2, 5)), isolated(restore(12, "e", `"else"`, 10, 10, 10, 1))},
			[]string{`e="else"@10/10/v1`, `k="later"@11/2/v5`},
			[]string{"11 set k"}, 0},
		{"a restore of a key that a transaction set from a state it could not know is taken",
			// Truth as above, but a restore of k's record at 3 lands
			// after the transaction (its writer was slow), making the
			// transaction's restore of k unnecessary.
			[]Record{isolated(txnIf(10, 0)), isolated(restore(11, "k", `"real"`, 3, 3, 2, 4)), isolated(restore(12, "e", `"else"`, 10, 10, 10, 1))},
			[]string{`e="else"@10/10/v1`, `k="real"@3/2/v4`},
			nil, 0},
		{"a delete of a key a transaction set from a state it could not know is applied",
			[]Record{isolated(txn(10)), isolated(restore(11, "k", "", 10, 0, 0, 0)), isolated(Record{Change: Change{Op: OpDelete, Key: "e", Revision: 12}})},
			nil,
			[]string{"12 delete e"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &feedLog{}
			p := &pubBatches{}
			s := New(Options{Replicated: l, Publisher: p})
			var restores []Restore
			for _, r := range tt.recs {
				restores = append(restores, l.apply([]Record{r})...)
			}
			if got := values2(s); !slices.Equal(got, tt.want) {
				t.Fatalf("entries: got %q, want %q", values2(s), tt.want)
			}
			var pub []string
			for _, b := range p.batches {
				for _, c := range b {
					pub = append(pub, fmt.Sprintf("%d %v %s", c.Revision, c.Op, c.Key))
				}
			}
			if !slices.Equal(pub, tt.published) {
				t.Fatalf("published: got %q, want %q", pub, tt.published)
			}
			if len(restores) != tt.restores {
				t.Fatalf("got restores %+v, want %d", restores, tt.restores)
			}
		})
	}
}

// values2 returns every entry of s as key=value@rev/create/vN, sorted.
func values2(s *Store) []string {
	entries, _ := s.Snapshot("")
	var out []string
	for _, e := range entries {
		out = append(out, fmt.Sprintf("%s=%s@%d/%d/v%d", e.Key, e.Value, e.Revision, e.CreateRevision, e.Version))
	}
	return out
}
