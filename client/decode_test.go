package client

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/kvsdb/kvs/wire"
)

// FuzzDecode checks the decoders of answers and events against
// encoding/json: for any input, both fail, or both succeed with the same
// result.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"Type":"set","Key":"City","Value":"Ahmedabad","Revision":42}`,
		`{"Type":"delete","Key":"City","Revision":43}`,
		`{"Type":"progress","Revision":57}`,
		`{"Type":"set","Key":"k","Value":{"a":[1,2.5e3,"x\"y"]},"Revision":7,"More":true}`,
		`{"Type":"delete","Key":"lease/a","Revision":9,"Reason":"expired"}`,
		`{"Type":"set","Key":"a\u00e9\n","Value":null,"Revision":1,"Extra":[{}]}`,
		`{"type":"set","Key":"k","Revision":1}`,
		`{"Key":"City","Value":"Mumbai","Revision":3,"CreateRevision":1,"Version":2}`,
		`{"Key":"k","Revision":5}`,
		`{"Revision":6,"Entries":[{"Key":"a","Value":1,"Revision":1,"CreateRevision":1,"Version":1},{"Key":"b","Value":[true,false,null],"Revision":6,"CreateRevision":2,"Version":3}]}`,
		`{"Revision":0,"Entries":[]}`,
		` { "Revision" : 1 , "Entries" : [ ] } `,
		`{"Revision":1.5}`,
		`{"Revision":-0,"Key":"\ud800"}`,
		`null`,
		`{"Entries":[{"Key":"a","Version":1}],"Entries":[{"Key":"b"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev, wantEv Event
		checkSame(t, "event", decodeEvent(data, &ev), json.Unmarshal(data, &wantEv), ev, wantEv)
		var e, wantE Entry
		checkSame(t, "entry", decodeEntry(data, &e), json.Unmarshal(data, &wantE), e, wantE)
		var r, wantR wire.WriteResult
		checkSame(t, "write result", decodeWriteResult(data, &r), json.Unmarshal(data, &wantR), r, wantR)
		var l, wantL List
		checkSame(t, "list", decodeList(bytes.Clone(data), &l), json.Unmarshal(data, &wantL), l, wantL)
	})
}

func checkSame(t *testing.T, what string, err, wantErr error, got, want any) {
	t.Helper()
	switch {
	case (err == nil) != (wantErr == nil):
		t.Fatalf("%s: error %v, encoding/json says %v", what, err, wantErr)
	case err == nil && !reflect.DeepEqual(got, want):
		t.Fatalf("%s: got %+v, encoding/json gives %+v", what, got, want)
	}
}

// TestDecodeFastPath checks that kvsd's answers and events take the
// scanner, not encoding/json: the scanner alone decodes them.
func TestDecodeFastPath(t *testing.T) {
	var ev Event
	s := scanner{data: []byte(`{"Type":"set","Key":"k","Value":{"a":1},"Revision":7,"More":true}`)}
	if !s.event(&ev) || !s.end() || ev.Type != "set" || ev.Key != "k" || string(ev.Value) != `{"a":1}` || ev.Revision != 7 || !ev.More {
		t.Errorf("event: got %+v", ev)
	}
	var e Entry
	s = scanner{data: []byte(`{"Key":"k","Value":"v","Revision":3,"CreateRevision":1,"Version":2}`)}
	if !s.entry(&e, false) || !s.end() || e.Key != "k" || string(e.Value) != `"v"` || e.Revision != 3 || e.CreateRevision != 1 || e.Version != 2 {
		t.Errorf("entry: got %+v", e)
	}
	var l List
	s = scanner{data: []byte(`{"Revision":6,"Entries":[{"Key":"a","Value":1,"Revision":1,"CreateRevision":1,"Version":1}]}` + "\n")}
	if !s.list(&l) || !s.end() || l.Revision != 6 || len(l.Entries) != 1 || l.Entries[0].Key != "a" {
		t.Errorf("list: got %+v", l)
	}
	var r wire.WriteResult
	s = scanner{data: []byte(`{"Key":"k","Revision":5}`)}
	if !s.writeResult(&r) || !s.end() || r != (wire.WriteResult{Key: "k", Revision: 5}) {
		t.Errorf("write result: got %+v", r)
	}
}
