package promtext

import "testing"

// TestParse checks that the parser rejects what Prometheus
// would, so that a test passing through it means something.
func TestParse(t *testing.T) {
	good := "# HELP a_total A counter.\n# TYPE a_total counter\na_total{x=\"1\"} 2\na_total{x=\"q\\\"\\\\\\n\"} 3 1700000000\n" +
		"# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n"
	if _, err := Parse(good); err != nil {
		t.Fatalf("a valid exposition: %v", err)
	}
	bad := []struct{ name, text string }{
		{"no final newline", "# TYPE a gauge\na 1"},
		{"no type", "a 1\n"},
		{"bad name", "# TYPE 1a gauge\n1a 1\n"},
		{"bad label name", "# TYPE a gauge\na{1x=\"1\"} 1\n"},
		{"reserved label name", "# TYPE a gauge\na{__x=\"1\"} 1\n"},
		{"unquoted label", "# TYPE a gauge\na{x=1} 1\n"},
		{"bad escape", "# TYPE a gauge\na{x=\"\\t\"} 1\n"},
		{"unterminated", "# TYPE a gauge\na{x=\"1} 1\n"},
		{"bad value", "# TYPE a gauge\na 1x\n"},
		{"two spaces", "# TYPE a gauge\na  1\n"},
		{"repeated series", "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n"},
		{"interleaved", "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"1\"} 1\n"},
		{"type after samples", "# TYPE a gauge\na 1\n# TYPE a gauge\n"},
		{"negative counter", "# TYPE a_total counter\na_total -1\n"},
		{"unknown type", "# TYPE a meter\na 1\n"},
		{"histogram without +Inf", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n"},
		{"histogram not cumulative", "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"},
		{"histogram count differs", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n"},
		{"histogram buckets out of order", "# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"},
		{"histogram without sum", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n"},
		{"bucket without le", "# TYPE h histogram\nh_bucket 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"},
	}
	for _, tt := range bad {
		if _, err := Parse(tt.text); err == nil {
			t.Errorf("%s: parsed %q without an error", tt.name, tt.text)
		}
	}
}
