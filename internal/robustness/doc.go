// Package robustness holds kvs's robustness tests (go test runs them): real
// kvsd processes serve concurrent clients while faults are injected (kvsd
// killed and restarted, the Kafka broker cut off or slow, a subscriber that
// stops reading), the clients record every operation with its call and
// return time, and the history is checked against a model of the store
// with a linearizability checker (github.com/anishathalye/porcupine),
// while validators check every watcher's feed. It follows etcd's
// tests/robustness. The package has test files only; docs/guarantees.md
// says which guarantee each scenario checks and how to run it for longer
// (KVS_ROBUSTNESS=10m).
package robustness
