package httpapi

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzScanBody checks that the reflection-free scanner agrees with
// json.Unmarshal whenever it accepts a body.
func FuzzScanBody(f *testing.F) {
	for _, s := range []string{
		`{"Key":"a","Value":1}`, ` { "key" : "a" , "value" : {"b":[1,"]}"]} , "IfRevision" : 3 } `,
		`{"KEY":"a","x":[{}],"Key":"b"}`, `{}`, `{"Key":"a\"b"}`, `{"Key":"a"} x`, `{"Value":tru}`,
		`{"Value":"\ud800"}`, `{"Key":"é"}`, `{"Kéy":1}`, `{"Key":1,}`, `[{"Key":1}]`, `{"Value":01}`,
		`{"Key":"a","Value":1,"Lease":7}`, `{"key":"a","value":1,"ttl":"30s","LEASE":0}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast body
		if !scanBody(data, &fast) {
			return
		}
		var slow body
		if err := json.Unmarshal(data, &slow); err != nil {
			t.Fatalf("scanBody accepted %q, json.Unmarshal: %v", data, err)
		}
		for _, m := range []struct {
			name       string
			fast, slow json.RawMessage
		}{{"Key", fast.Key, slow.Key}, {"Value", fast.Value, slow.Value}, {"IfRevision", fast.IfRevision, slow.IfRevision},
			{"Lease", fast.Lease, slow.Lease}, {"TTL", fast.TTL, slow.TTL}} {
			if !bytes.Equal(m.fast, m.slow) {
				t.Fatalf("%q: %s: scanBody %q, json.Unmarshal %q", data, m.name, m.fast, m.slow)
			}
		}
	})
}

func TestScanBodyFallsBack(t *testing.T) {
	for _, s := range []string{
		`{"K\u0065y":"a"}`, // escaped member name
		`{"Kéy":"a"}`,      // non-ASCII member name
		`{"Key":"a"} {}`,   // trailing data
		`{"Key":"a",}`,     // trailing comma
		`{"Key":01}`,       // invalid number
		`{"Key":"a`,        // truncated
		`["Key"]`,          // not an object
	} {
		var b body
		if scanBody([]byte(s), &b) {
			t.Errorf("scanBody(%s) accepted it, want a fall back to encoding/json", s)
		}
	}
}
