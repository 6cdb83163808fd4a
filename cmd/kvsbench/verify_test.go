package main

import (
	"slices"
	"testing"
)

func TestFeedCheckVerify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		acked []int64
		got   []int64
		want  verdict
	}{
		{"exact", []int64{1, 2, 3, 4, 5}, []int64{1, 2, 3, 4, 5},
			verdict{Expected: 5, Delivered: 5}},
		{"nothing acked, nothing delivered", nil, nil, verdict{}},
		{"missing in the middle", []int64{1, 2, 3, 4, 5}, []int64{1, 2, 4, 5},
			verdict{Expected: 5, Delivered: 4, Lost: 1}},
		{"missing first", []int64{1, 2, 3}, []int64{2, 3},
			verdict{Expected: 3, Delivered: 2, Lost: 1}},
		{"missing last", []int64{1, 2, 3}, []int64{1, 2},
			verdict{Expected: 3, Delivered: 2, Lost: 1}},
		{"nothing delivered", []int64{1, 2, 3}, nil,
			verdict{Expected: 3, Lost: 3}},
		{"duplicated at once", []int64{1, 2, 3}, []int64{1, 2, 2, 3},
			verdict{Expected: 3, Delivered: 4, Duplicated: 1}},
		{"duplicated later", []int64{1, 2, 3}, []int64{1, 2, 3, 1},
			verdict{Expected: 3, Delivered: 4, Duplicated: 1}},
		{"reordered pair", []int64{1, 2, 3, 4}, []int64{1, 3, 2, 4},
			verdict{Expected: 4, Delivered: 4, Reordered: 1}},
		{"reordered and then repeated", []int64{1, 2, 3}, []int64{1, 3, 2, 2},
			verdict{Expected: 3, Delivered: 4, Reordered: 1, Duplicated: 1}},
		{"one delivered far too early", []int64{1, 2, 3, 4}, []int64{4, 1, 2, 3},
			verdict{Expected: 4, Delivered: 4, Reordered: 3}},
		{"unexpected revision", []int64{1, 2, 3}, []int64{1, 2, 3, 7},
			verdict{Expected: 3, Delivered: 4, Unexpected: 1}},
		{"unexpected in place of a lost one", []int64{1, 2, 3}, []int64{1, 9, 3},
			verdict{Expected: 3, Delivered: 3, Lost: 1, Unexpected: 1, Reordered: 1}},
		{"sparse revisions (Kafka offsets, other writers)", []int64{3, 10, 11, 40}, []int64{3, 10, 11, 40},
			verdict{Expected: 4, Delivered: 4}},
		{"sparse revisions, one lost", []int64{3, 10, 11, 40}, []int64{3, 11, 40},
			verdict{Expected: 4, Delivered: 3, Lost: 1}},
		{"sparse revisions, one reordered", []int64{3, 10, 11, 40}, []int64{3, 11, 10, 40},
			verdict{Expected: 4, Delivered: 4, Reordered: 1}},
		{"all at once", []int64{1, 2, 3, 4, 5, 6}, []int64{1, 3, 3, 2, 6, 8},
			verdict{Expected: 6, Delivered: 6, Lost: 2, Duplicated: 1, Reordered: 1, Unexpected: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var f feedCheck
			for _, r := range tt.got {
				f.add(r)
			}
			got := f.verify(tt.acked)
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if got.ok() != (tt.want.Lost == 0 && tt.want.Duplicated == 0 && tt.want.Reordered == 0 && tt.want.Unexpected == 0) {
				t.Errorf("ok() = %v for %+v", got.ok(), got)
			}
		})
	}
}

// TestFeedCheckCompact checks that a long in-order feed is kept as one
// range, so that 1000 subscribers of a long run need little memory.
func TestFeedCheckCompact(t *testing.T) {
	t.Parallel()
	var f feedCheck
	acked := make([]int64, 0, 100000)
	for r := int64(1); r <= 100000; r++ {
		f.add(r)
		acked = append(acked, r)
	}
	if len(f.runs) != 1 || len(f.late) != 0 {
		t.Fatalf("100000 consecutive revisions: got %d ranges and %d late, want 1 and 0", len(f.runs), len(f.late))
	}
	if v := f.verify(acked); !v.ok() || v.Expected != 100000 || v.Delivered != 100000 {
		t.Errorf("got %+v, want 100000 expected and delivered, nothing wrong", v)
	}
}

func TestAckedUpTo(t *testing.T) {
	t.Parallel()
	acked := []int64{2, 4, 6}
	tests := []struct {
		rev  int64
		want []int64
	}{
		{0, []int64{}},
		{2, []int64{2}},
		{5, []int64{2, 4}},
		{6, []int64{2, 4, 6}},
		{100, []int64{2, 4, 6}},
	}
	for _, tt := range tests {
		if got := ackedUpTo(acked, tt.rev); !slices.Equal(got, tt.want) {
			t.Errorf("ackedUpTo(%v, %d): got %v, want %v", acked, tt.rev, got, tt.want)
		}
	}
}

func TestVerdictAdd(t *testing.T) {
	t.Parallel()
	v := verdict{Expected: 1, Delivered: 2, Lost: 3, Duplicated: 4, Reordered: 5, Unexpected: 6}
	var sum verdict
	sum.add(v)
	sum.add(v)
	if want := (verdict{2, 4, 6, 8, 10, 12}); sum != want {
		t.Errorf("got %+v, want %+v", sum, want)
	}
}
