package httpapi

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzScanTxnBody checks that the reflection-free scanner of /txn bodies
// agrees with json.Unmarshal whenever it accepts a body.
func FuzzScanTxnBody(f *testing.F) {
	for _, s := range []string{
		`{"If":[{"Key":"a","Revision":1},{"key":"b","exists":true,"x":[{}]},null],"Then":[{"Op":"set","Key":"a","Value":{"b":[1,"]}"]}}],"Else":[]}`,
		` { "if" : [ { "Key" : "a" , "Value" : [ 1 ] , "Compare" : "!=" } ] , "then" : null , "other" : {"If":[1]} } `,
		`{"If":[],"If":[{"Key":"b"}]}`, `{"Then":[{"Op":"get","Key":"a","Key":"b"}]}`, `{}`, `{"If":[1]}`, `{"If":{}}`,
		`{"If":[{"Key":"a"]}`, `{"Then":[{"Op":"set","Value":01}]}`, `{"Th\u0065n":[]}`, `{"Thén":[]}`, `{"If":[{"Kéy":"a"}]}`,
		`{"If":[{"Key":"a"}]} x`, `{"If":[{"Key":"a"},]}`, `{"If":[{"Key":"a"}],}`, `[{"If":[]}]`, `{"If":[{"Key":"\ud800"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast txnBody
		if !scanTxnBody(data, &fast) {
			return
		}
		var slow txnBody
		if err := json.Unmarshal(data, &slow); err != nil {
			t.Fatalf("scanTxnBody accepted %q, json.Unmarshal: %v", data, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: scanTxnBody %+v, json.Unmarshal %+v", data, fast, slow)
		}
	})
}

func TestScanTxnBodyFallsBack(t *testing.T) {
	for _, s := range []string{
		`{"Th\u0065n":[]}`,           // escaped member name
		`{"Thén":[]}`,                // non-ASCII member name
		`{"If":[{"Kéy":"a"}]}`,       // non-ASCII member name in a condition
		`{"If":[]} {}`,               // trailing data
		`{"If":[{"Key":"a"},]}`,      // trailing comma
		`{"If":[1]}`,                 // not an object
		`{"If":{"Key":"a"}}`,         // not an array
		`{"Then":[{"Value":01}]}`,    // invalid number
		`{"Then":[{"Value":[1,}]}]}`, // invalid nested value
		`{"If":[{"Key":"a"]}`,        // mismatched brackets
	} {
		var b txnBody
		if scanTxnBody([]byte(s), &b) {
			t.Errorf("scanTxnBody(%s) accepted it, want a fall back to encoding/json", s)
		}
	}
	var b txnBody
	if !scanTxnBody([]byte(`{"If":[{"Key":"a","Exists":true}],"Then":[{"Op":"set","Key":"a","Value":{"x":[1,2]}}]}`), &b) {
		t.Fatal("scanTxnBody refused a usual body")
	}
}
