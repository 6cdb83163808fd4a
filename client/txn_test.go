package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"testing"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/client"
	"github.com/kvsdb/kvs/httpapi"
)

// Move an item from one list to another, only if neither changed since it
// was read: both change at one revision, or neither.
func ExampleClient_Txn() {
	addr := exampleServer()
	ctx := context.Background()
	c, err := client.New(addr, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	todoRev, _ := c.Set(ctx, "todo", json.RawMessage(`["milk","eggs"]`), nil)
	doneRev, _ := c.Set(ctx, "done", json.RawMessage(`[]`), nil)
	res, err := c.Txn(ctx, &client.TxnRequest{
		If:   []client.TxnCond{client.IfRevision("todo", "=", todoRev), client.IfRevision("done", "=", doneRev)},
		Then: []client.TxnOp{client.SetOp("todo", json.RawMessage(`["milk"]`)), client.SetOp("done", json.RawMessage(`["eggs"]`))},
		Else: []client.TxnOp{client.GetOp("todo"), client.GetOp("done")},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("moved:", res.Succeeded, "at revision", res.Revision)
	// The same again: the conditions no longer hold, Else reads the lists.
	res, err = c.Txn(ctx, &client.TxnRequest{
		If:   []client.TxnCond{client.IfRevision("todo", "=", todoRev)},
		Then: []client.TxnOp{client.DeleteOp("todo")},
		Else: []client.TxnOp{client.GetOp("todo"), client.GetOp("done")},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("moved:", res.Succeeded)
	for _, r := range res.Results {
		fmt.Printf("%s = %s (revision %d)\n", r.Key, r.Value, r.Revision)
	}
	// Output:
	// moved: true at revision 3
	// moved: false
	// todo = ["milk"] (revision 3)
	// done = ["eggs"] (revision 3)
}

func TestTxn(t *testing.T) {
	s := newServer(t, bus.Options{}, httpapi.Options{MaxTxnOps: 2})
	c, err := client.New(s.Addr, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	// Values go byte for byte, <, > and & included.
	res, err := c.Txn(ctx, &client.TxnRequest{
		If:   []client.TxnCond{client.IfExists("a", false), client.IfRevision("a", "<", 1)},
		Then: []client.TxnOp{client.SetOp("a", json.RawMessage(`{"x":"<&>", "n":1.0}`)), client.GetOp("a")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Succeeded || len(res.Results) != 2 || string(res.Results[1].Value) != `{"x":"<&>","n":1.0}` || !res.Results[1].Found {
		t.Fatalf("result: %+v", res)
	}
	res, err = c.Txn(ctx, &client.TxnRequest{
		If:   []client.TxnCond{client.IfValue("a", json.RawMessage(`{"x":"<&>","n":1.0}`))},
		Then: []client.TxnOp{client.DeleteOp("a"), client.DeleteOp("b")},
	})
	if err != nil || !res.Succeeded || !res.Results[0].Found || res.Results[1].Found || res.Revision != 2 {
		t.Fatalf("delete: %+v, %v", res, err)
	}
	// Refused transactions.
	for _, tx := range []*client.TxnRequest{
		{Then: []client.TxnOp{client.SetOp("a", json.RawMessage(`1`)), client.DeleteOp("a")}},
		{Then: []client.TxnOp{client.GetOp("a"), client.GetOp("b"), client.GetOp("c")}},
		{If: []client.TxnCond{{Key: "a"}}},
	} {
		_, err := c.Txn(ctx, tx)
		var ce *client.Error
		if !errors.Is(err, client.ErrInvalid) || !errors.As(err, &ce) || ce.Op != "txn" {
			t.Errorf("%+v: got %v, want an *Error matching ErrInvalid", tx, err)
		}
	}
}
