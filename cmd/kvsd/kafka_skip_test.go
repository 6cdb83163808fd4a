package main_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// TestKafkaSkippedRecords: records that another program produced to the
// topic and that break the rules of a change (a value over
// -max-value-bytes, a kvs-if-revision that is not a revision; a
// transaction with such a value, an invalid key or a header it may not
// carry) are skipped by every kvsd alike, each with a warning and counted
// in kvs_kafka_skipped_records_total; the next record is applied.
func TestKafkaSkippedRecords(t *testing.T) {
	b := startBroker(t, false)
	topic := newTopic()
	args := []string{"-max-value-bytes", "1000"}
	s1 := startKafkaKvsd(t, b, topic, args...)
	s2 := startKafkaKvsd(t, b, topic, args...)
	rec := func(key, value string, h ...kafka.Header) kafka.Record {
		return kafka.Record{Key: kafka.NewBytes([]byte(key)), Value: kafka.NewBytes([]byte(value)), Headers: h}
	}
	txnHeader := kafka.Header{Key: "kvs-txn", Value: []byte("1")}
	cl := &kafka.Client{Addr: kafka.TCP(b.addr), Timeout: 10 * time.Second}
	res, err := cl.Produce(t.Context(), &kafka.ProduceRequest{Topic: topic, RequiredAcks: kafka.RequireAll, Records: kafka.NewRecordReader(
		rec("big", `"`+strings.Repeat("x", 1060)+`"`),
		rec("cond", `1`, kafka.Header{Key: "kvs-if-revision", Value: []byte("x")}),
		rec("cond", `1`, kafka.Header{Key: "kvs-if-revision", Value: []byte("-1")}),
		// Transactions: a value over the limit, a key that is not one, and
		// a header that does not belong on a transaction.
		rec("\x00kvs-txn", `{"Then":[{"Op":"set","Key":"t","Value":1},{"Op":"set","Key":"big","Value":"`+strings.Repeat("x", 1060)+`"}]}`, txnHeader),
		rec("\x00kvs-txn", `{"Then":[{"Op":"set","Key":"t","Value":1},{"Op":"set","Key":"","Value":1}]}`, txnHeader),
		rec("\x00kvs-txn", `{"Then":[{"Op":"set","Key":"t","Value":1}]}`, txnHeader, kafka.Header{Key: "kvs-if-revision", Value: []byte("0")}),
		rec("after", `"applied"`),
	)})
	if err == nil {
		err = res.Error
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*kvstest.Server{s1, s2} {
		deadline := time.Now().Add(30 * time.Second) // a hang guard
		for {
			resp, err := http.Get(srv.URL + "/get?key=after")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the record after the skipped ones was not applied: %d", resp.StatusCode)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got, _ := scrapeKvsd(t, srv).Value("kvs_kafka_skipped_records_total"); got != 6 {
			t.Errorf("kvs_kafka_skipped_records_total: got %v, want 6", got)
		}
		for _, key := range []string{"big", "cond", "t"} {
			resp, err := http.Get(srv.URL + "/get?key=" + key)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 404 {
				t.Errorf("%s: got %d, want 404 (skipped)", key, resp.StatusCode)
			}
		}
		if logs := srv.Logs(); strings.Count(logs, "kafka: skipping a record") != 6 {
			t.Errorf("want a warning per skipped record in the logs:\n%s", logs)
		}
	}
}
