package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kvsdb/kvs/client"
	"github.com/kvsdb/kvs/wire"
)

// txnUsage is the usage line of txn.
const txnUsage = "txn [-if COND]... [-then OP]... [-else OP]... [-json-value] [-json] | -file F [-json]"

// txnDoc is the help of txn.
const txnDoc = "Run a transaction: when every condition -if holds, the operations -then,\n" +
	"else the operations -else; the changes of the list that runs are made at once,\n" +
	"at one revision. Print \"then R\" or \"else R\" (R: the transaction's revision),\n" +
	"then a line for each get: KEY<TAB>VALUE (values as in get -all), or KEY alone\n" +
	"for a missing key. With -json, print the server's JSON answer. Exit code 0\n" +
	"when -then ran, 1 when -else ran.\n\n" +
	"A condition is KEY followed by one of: rev=R, rev!=R, rev<R, rev>R (the key's\n" +
	"revision; 0 when it does not exist), exists, absent, value=V or value!=V. An\n" +
	"operation is: set KEY V, del KEY or get KEY. V is a string (the rest of the\n" +
	"argument), or with -json-value JSON. Keys with spaces, and anything else:\n" +
	"-file F with the transaction as the JSON body of POST /txn (- for stdin),\n" +
	"for example {\"If\":[{\"Key\":\"k\",\"Revision\":4}],\"Then\":[{\"Op\":\"delete\",\"Key\":\"k\"}]}."

// listFlag collects the values of a flag given several times.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ", ") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func defineTxn(fs *flag.FlagSet) func(context.Context, *cli) error {
	var conds, thens, elses listFlag
	fs.Var(&conds, "if", "a condition `COND`: KEY rev=R (or !=, <, >), KEY exists, KEY absent, KEY value=V (or !=); repeatable")
	fs.Var(&thens, "then", "an operation `OP` when every condition holds: set KEY V, del KEY or get KEY; repeatable")
	fs.Var(&elses, "else", "an operation `OP` when a condition does not hold; repeatable")
	jsonValue := fs.Bool("json-value", false, "parse the values V as JSON (a number, true, an object, ...)")
	file := fs.String("file", "", "read the transaction, as the JSON body of POST /txn, from `F` (- for stdin)")
	asJSON := fs.Bool("json", false, "print the server's JSON answer")
	return func(ctx context.Context, c *cli) error {
		set := given(fs)
		var (
			t   *client.TxnRequest
			err error
		)
		switch {
		case set["file"] && (len(conds)+len(thens)+len(elses) > 0 || set["json-value"]):
			return usageErrorf("txn: give -file F, or -if, -then and -else, not both")
		case set["file"]:
			t, err = c.readTxn(*file)
		case len(conds)+len(thens)+len(elses) == 0:
			return usageErrorf("txn: give -if, -then and -else, or -file F\nusage: kvscli [global flags] %s", txnUsage)
		default:
			t, err = parseTxn(conds, thens, elses, *jsonValue)
		}
		if err != nil {
			return err
		}
		res, err := c.kvs.Txn(ctx, t)
		if err != nil {
			return c.fail(err, "txn", true)
		}
		var out []byte
		if *asJSON {
			out = encodeJSON(res)
		} else {
			out = txnLines(res)
		}
		if err := c.writeOut(out); err != nil {
			return err
		}
		if !res.Succeeded {
			return &exitError{code: exitFailed}
		}
		return nil
	}
}

// readTxn reads a transaction from the file name, or stdin for "-".
func (c *cli) readTxn(name string) (*client.TxnRequest, error) {
	var (
		data []byte
		err  error
	)
	if name == "-" {
		if c.stdin == nil {
			return nil, usageErrorf("txn: -file -: no standard input")
		}
		data, err = io.ReadAll(c.stdin)
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, usageErrorf("txn: -file %s: %v", name, err)
	}
	if !utf8.Valid(data) {
		return nil, usageErrorf("txn: -file %s: not valid UTF-8", name)
	}
	t := new(client.TxnRequest)
	d := json.NewDecoder(bytes.NewReader(data))
	if err := d.Decode(t); err != nil {
		return nil, usageErrorf("txn: -file %s: not a transaction: %v", name, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, usageErrorf("txn: -file %s: data after the transaction", name)
	}
	return t, nil
}

// parseTxn builds a transaction from the -if, -then and -else arguments.
func parseTxn(conds, thens, elses []string, jsonValue bool) (*client.TxnRequest, error) {
	t := new(client.TxnRequest)
	for _, s := range conds {
		c, err := parseCond(s, jsonValue)
		if err != nil {
			return nil, err
		}
		t.If = append(t.If, c)
	}
	for _, list := range []struct {
		flag string
		args []string
		ops  *[]client.TxnOp
	}{{"then", thens, &t.Then}, {"else", elses, &t.Else}} {
		for _, s := range list.args {
			op, err := parseOp(list.flag, s, jsonValue)
			if err != nil {
				return nil, err
			}
			*list.ops = append(*list.ops, op)
		}
	}
	return t, nil
}

// parseCond parses "KEY rev=R", "KEY exists", "KEY value=V", ...
func parseCond(s string, jsonValue bool) (client.TxnCond, error) {
	bad := func(why string) error {
		return usageErrorf("txn: -if %q: %s; a condition is KEY rev=R (or rev!=R, rev<R, rev>R), KEY exists, KEY absent, KEY value=V or KEY value!=V", s, why)
	}
	key, test, ok := strings.Cut(s, " ")
	if !ok || key == "" {
		return client.TxnCond{}, bad("no test after the key")
	}
	if err := checkKey("txn", key); err != nil {
		return client.TxnCond{}, err
	}
	test = strings.TrimLeft(test, " ")
	switch {
	case test == "exists" || test == "absent":
		return client.IfExists(key, test == "exists"), nil
	case strings.HasPrefix(test, "rev"):
		cmp, r := splitCompare(test[len("rev"):])
		if cmp == "" {
			return client.TxnCond{}, bad("rev wants =, !=, < or >")
		}
		rev, err := strconv.ParseInt(strings.TrimSpace(r), 10, 64)
		if err != nil || rev < 0 {
			return client.TxnCond{}, bad("a revision is an integer >= 0")
		}
		return client.IfRevision(key, cmp, rev), nil
	case strings.HasPrefix(test, "value"):
		cmp, v := splitCompare(test[len("value"):])
		if cmp != "=" && cmp != "!=" {
			return client.TxnCond{}, bad("value wants = or !=")
		}
		value, err := txnValue("-if", s, v, jsonValue)
		if err != nil {
			return client.TxnCond{}, err
		}
		c := client.IfValue(key, value)
		if cmp == "!=" {
			c.Compare = "!="
		}
		return c, nil
	}
	return client.TxnCond{}, bad("unknown test")
}

// splitCompare splits "=R", "!=R", "<R" or ">R" into the comparison and the
// rest; the comparison is "" for anything else.
func splitCompare(s string) (cmp, rest string) {
	s = strings.TrimLeft(s, " ")
	for _, c := range []string{"!=", "=", "<", ">"} {
		if r, ok := strings.CutPrefix(s, c); ok {
			return c, strings.TrimLeft(r, " ")
		}
	}
	return "", s
}

// parseOp parses "set KEY V", "del KEY" or "get KEY".
func parseOp(flag, s string, jsonValue bool) (client.TxnOp, error) {
	bad := func(why string) error {
		return usageErrorf("txn: -%s %q: %s; an operation is set KEY V, del KEY or get KEY", flag, s, why)
	}
	name, rest, _ := strings.Cut(s, " ")
	rest = strings.TrimLeft(rest, " ")
	key, v, hasValue := strings.Cut(rest, " ")
	if key == "" {
		return client.TxnOp{}, bad("no key")
	}
	if err := checkKey("txn", key); err != nil {
		return client.TxnOp{}, err
	}
	switch name {
	case "set":
		if !hasValue {
			return client.TxnOp{}, bad("set wants a value after the key")
		}
		value, err := txnValue("-"+flag, s, v, jsonValue)
		if err != nil {
			return client.TxnOp{}, err
		}
		return client.SetOp(key, value), nil
	case "del", "delete", "get":
		if hasValue {
			return client.TxnOp{}, bad(name + " takes a key only")
		}
		if name == "get" {
			return client.GetOp(key), nil
		}
		return client.DeleteOp(key), nil
	}
	return client.TxnOp{}, bad("unknown operation " + strconv.Quote(name))
}

// txnValue returns v as a value: a JSON string, or with jsonValue v
// parsed as JSON.
func txnValue(flag, arg, v string, jsonValue bool) (json.RawMessage, error) {
	if !jsonValue {
		if !utf8.ValidString(v) {
			return nil, usageErrorf("txn: %s %q: the value is not valid UTF-8", flag, arg)
		}
		return client.String(v), nil
	}
	switch {
	case !json.Valid([]byte(v)):
		return nil, usageErrorf("txn: %s %q: %q is not valid JSON; without -json-value it is a string", flag, arg, v)
	case strings.TrimSpace(v) == "null":
		return nil, usageErrorf("txn: %s %q: a value cannot be null", flag, arg)
	}
	return json.RawMessage(v), nil
}

// txnLines is txn's plain output: "then R" or "else R", then a line per
// get.
func txnLines(res *client.TxnResult) []byte {
	out := []byte("else ")
	if res.Succeeded {
		out = []byte("then ")
	}
	out = strconv.AppendInt(out, res.Revision, 10)
	out = append(out, '\n')
	for _, r := range res.Results {
		if r.Op != wire.OpGet {
			continue
		}
		out = append(out, r.Key...)
		if r.Found {
			out = append(out, '\t')
			out = append(out, lineValue(r.Value)...)
		}
		out = append(out, '\n')
	}
	return out
}
