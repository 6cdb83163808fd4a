package main_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// BenchmarkTxn compares, on one kvsd and in one run, transactions with
// single sets over 64 keep-alive connections: "set" is a /set of one key,
// "txn-move" a /txn that checks two keys exist and sets both (the move of
// an item between two keys), "txn-get" a /txn that reads two keys. It
// reports requests per second; compare the rows of one run:
//
//	go test ./cmd/kvsd -run '^$' -bench BenchmarkTxn -benchtime 5s
func BenchmarkTxn(b *testing.B) {
	for _, backend := range []string{"memory", "file"} {
		b.Run("backend="+backend, func(b *testing.B) {
			srv := kvstest.Start(b, "-backend", backend)
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}, Timeout: 30 * time.Second}
			const keys = 10000
			post := func(path string, body []byte) error {
				resp, err := hc.Post(srv.URL+path, "application/json", bytes.NewReader(body))
				if err != nil {
					return err
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("%s: %s", path, resp.Status)
				}
				return nil
			}
			for i := range keys {
				if err := post("/set", fmt.Appendf(nil, `{"Key":"k%d","Value":"0123456789abcdef"}`, i)); err != nil {
					b.Fatal(err)
				}
			}
			bodies := map[string]func(r *rand.Rand) (string, []byte){
				"set": func(r *rand.Rand) (string, []byte) {
					return "/set", fmt.Appendf(nil, `{"Key":"k%d","Value":"0123456789abcdef"}`, r.IntN(keys))
				},
				"txn-move": func(r *rand.Rand) (string, []byte) {
					x, y := r.IntN(keys), r.IntN(keys-1)
					if y >= x {
						y++
					}
					return "/txn", fmt.Appendf(nil, `{"If":[{"Key":"k%d","Exists":true},{"Key":"k%d","Exists":true}],`+
						`"Then":[{"Op":"set","Key":"k%d","Value":"0123456789abcdef"},{"Op":"set","Key":"k%d","Value":"fedcba9876543210"}]}`, x, y, x, y)
				},
				"txn-get": func(r *rand.Rand) (string, []byte) {
					return "/txn", fmt.Appendf(nil, `{"Then":[{"Op":"get","Key":"k%d"},{"Op":"get","Key":"k%d"}]}`, r.IntN(keys), r.IntN(keys))
				},
			}
			for _, op := range []string{"set", "txn-move", "txn-get"} {
				b.Run("op="+op, func(b *testing.B) {
					b.SetParallelism((64 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
					began := time.Now()
					b.RunParallel(func(pb *testing.PB) {
						r := rand.New(rand.NewPCG(rand.Uint64(), 0))
						for pb.Next() {
							if err := post(bodies[op](r)); err != nil {
								b.Error(err)
								return
							}
						}
					})
					b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "req/s")
				})
			}
		})
	}
}
