package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/kvsdb/kvs/bus"
)

// kafkaConfig is the configuration of -backend kafka.
type kafkaConfig struct {
	brokers           string
	topic             string
	replicationFactor int
	writeTimeout      time.Duration
	readTimeout       time.Duration
	leaseTakeover     time.Duration
}

func (c *kafkaConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.brokers, "kafka-brokers", "", "kafka backend: bootstrap brokers, host:port,host:port")
	fs.StringVar(&c.topic, "kafka-topic", "kvs-changes", "kafka backend: the topic every instance shares (created if missing: one partition, compacted)")
	fs.IntVar(&c.replicationFactor, "kafka-replication-factor", 0, "kafka backend: replication factor of a new topic (0: the brokers' default)")
	fs.DurationVar(&c.writeTimeout, "kafka-write-timeout", 5*time.Second, "kafka backend: how long a write may wait for the brokers and for its record to be applied before it fails with 503")
	fs.DurationVar(&c.leaseTakeover, "kafka-lease-takeover", 2*time.Second, "kafka backend: how long after a lease's TTL an instance that did not receive its last keep-alive waits before it expires the lease (the one that received it expires it at once; the others take over if it died)")
	fs.DurationVar(&c.readTimeout, "kafka-read-timeout", 5*time.Second, "kafka backend: how long a linearizable read may wait for the brokers and for this instance to apply what they reported before it fails with 503 (reads with ?consistency=local never wait)")
}

func (c *kafkaConfig) check() error {
	switch {
	case len(c.brokerList()) == 0:
		return errors.New("-backend kafka needs -kafka-brokers host:port[,host:port...]")
	case c.topic == "":
		return errors.New("-kafka-topic: must not be empty")
	case c.replicationFactor < 0:
		return fmt.Errorf("-kafka-replication-factor %d: must not be negative", c.replicationFactor)
	case c.writeTimeout <= 0:
		return fmt.Errorf("-kafka-write-timeout %v: must be positive", c.writeTimeout)
	case c.readTimeout <= 0:
		return fmt.Errorf("-kafka-read-timeout %v: must be positive", c.readTimeout)
	case c.leaseTakeover <= 0:
		return fmt.Errorf("-kafka-lease-takeover %v: must be positive", c.leaseTakeover)
	}
	return nil
}

// brokerList returns the brokers of -kafka-brokers.
func (c *kafkaConfig) brokerList() []string {
	var brokers []string
	for _, b := range strings.Split(c.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	return brokers
}

// open returns the Kafka log; the -data directory is not used.
func (c *kafkaConfig) open(hub *bus.Hub, maxValueBytes int, log *slog.Logger) (*bus.Kafka, error) {
	log.Info("kafka backend: the -data directory is not used", "brokers", c.brokerList(), "topic", c.topic)
	return bus.NewKafka(c.options(hub, maxValueBytes, log))
}

// options returns the options of the Kafka log; the gaps it finds go to
// hub, if not nil.
func (c *kafkaConfig) options(hub *bus.Hub, maxValueBytes int, log *slog.Logger) bus.KafkaOptions {
	opts := bus.KafkaOptions{
		Brokers:           c.brokerList(),
		Topic:             c.topic,
		ReplicationFactor: c.replicationFactor,
		WriteTimeout:      c.writeTimeout,
		ReadTimeout:       c.readTimeout,
		MaxValueBytes:     maxValueBytes,
		MaxBatchBytes:     max(1<<20, maxValueBytes+64<<10),
		Logger:            log,
	}
	if hub != nil {
		opts.OnGap = hub.Forget
	}
	return opts
}
