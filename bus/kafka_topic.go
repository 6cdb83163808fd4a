package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/segmentio/kafka-go"
)

// connect creates the topic if missing and lists its offsets.
func (k *Kafka) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, k.opts.WriteTimeout)
	defer cancel()
	if err := k.createTopic(ctx); err != nil {
		return err
	}
	first, err := k.offset(ctx, kafka.FirstOffset)
	if err != nil {
		return err
	}
	last, err := k.offset(ctx, kafka.LastOffset)
	if err != nil {
		return err
	}

	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.started {
		k.started, k.startHWM, k.next = true, last, first
		k.caughtUp = first >= last
		if k.caughtUp {
			k.seen = nil
		}
		if first > 0 {
			k.sawGap = true
			if k.opts.OnGap != nil {
				k.opts.OnGap(first)
			}
		}
		k.log.Info("kafka: replaying", "topic", k.opts.Topic, "from", first, "to", last)
	} else if last < k.next {
		k.loseLocked(fmt.Errorf("%w: topic %s now ends at offset %d, but offsets up to %d were read", ErrDataLost, k.opts.Topic, last, k.next))
		return k.lost
	}
	k.connected, k.fetchErr = true, nil
	return nil
}

// createTopic creates the topic if it is missing.
func (k *Kafka) createTopic(ctx context.Context) error {
	rf := k.opts.ReplicationFactor
	if rf <= 0 {
		rf = -1
	}
	res, err := k.admin.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic:             k.opts.Topic,
		NumPartitions:     1,
		ReplicationFactor: rf,
		ConfigEntries: []kafka.ConfigEntry{
			{ConfigName: "cleanup.policy", ConfigValue: "compact"},
			// Leave records alone for an hour before compacting them, so
			// that a restore record always lands first (see kv.Record).
			{ConfigName: "min.compaction.lag.ms", ConfigValue: "3600000"},
			{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(k.opts.MaxBatchBytes + 64<<10)},
		},
	}}})
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", k.opts.Topic, err)
	}
	if err := res.Errors[k.opts.Topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("creating topic %s: %w", k.opts.Topic, err)
	} else if err == nil {
		k.log.Info("kafka: created topic", "topic", k.opts.Topic, "replication_factor", k.opts.ReplicationFactor)
	}
	return nil
}

// offset returns the partition's first offset or high-water mark.
func (k *Kafka) offset(ctx context.Context, which int64) (int64, error) {
	res, err := k.admin.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		k.opts.Topic: {{Partition: 0, Timestamp: which}},
	}})
	if err != nil {
		return 0, fmt.Errorf("listing offsets of %s: %w", k.opts.Topic, err)
	}
	for _, p := range res.Topics[k.opts.Topic] {
		if p.Partition != 0 {
			continue
		}
		if p.Error != nil {
			return 0, fmt.Errorf("listing offsets of %s: %w", k.opts.Topic, p.Error)
		}
		if which == kafka.FirstOffset {
			return p.FirstOffset, nil
		}
		return p.LastOffset, nil
	}
	return 0, fmt.Errorf("listing offsets of %s: no partition 0", k.opts.Topic)
}
