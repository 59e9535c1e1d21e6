// The Kafka adapter's own cases, beyond the conformance suite shared with the in-process bus.
import { randomBytes } from 'node:crypto';
import { eventually, kafkaAvailable, startTestKafka, type TestKafka } from '@herald/testing-base';
import { z } from 'zod';
import type { DeliveredMessage } from './bus.js';
import { HERALD_TOPICS, KafkaBus } from './kafka-bus.js';

(kafkaAvailable() ? describe : describe.skip)('KafkaBus', () => {
  let broker: TestKafka;
  beforeAll(async () => {
    broker = await startTestKafka();
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it('lets processes that start together each create the topics: every one of them is ready', async () => {
    // Engines of one platform start at once and race to create the same topics; the loser must
    // wait for the winner's topics, not crash with UNKNOWN_TOPIC_OR_PARTITION.
    for (let round = 0; round < 3; round++) {
      const topicPrefix = `herald-test-${randomBytes(4).toString('hex')}-`;
      const buses = Array.from({ length: 4 }, () => new KafkaBus({ brokers: broker.brokers, clientId: 'herald-topics', topicPrefix, logLevel: 'nothing' }));
      try {
        const outcomes = await Promise.allSettled(buses.map((bus) => bus.ensureTopics()));
        expect(outcomes.filter((o) => o.status === 'rejected').map((o) => String((o as PromiseRejectedResult).reason))).toEqual([]);
        await Promise.all(buses.map((bus) => bus.publish(HERALD_TOPICS[0]!, [{ key: 'k', value: { round } }])));
      } finally {
        await Promise.all(buses.map((bus) => bus.close()));
      }
    }
  });

  it.each(['zstd', 'gzip'] as const)('publishes %s-compressed batches that a consumer reads back in order, whatever its own compression', async (compression) => {
    const topicPrefix = `herald-test-${randomBytes(4).toString('hex')}-`;
    const producer = new KafkaBus({ brokers: broker.brokers, topicPrefix, compression, logLevel: 'nothing', defaultPartitions: 3 });
    const consumer = new KafkaBus({ brokers: broker.brokers, topicPrefix, logLevel: 'nothing', defaultPartitions: 3, consumer: { maxWaitTimeInMs: 100 } });
    const topic = 'compressed';
    const sent = Array.from({ length: 2_000 }, (_, i) => ({ key: `k${i % 5}`, value: { i, text: 'a fairly repetitive value '.repeat(4) } }));
    const received: DeliveredMessage<{ i: number; text: string }>[] = [];
    try {
      // Several publishes, so that batches of many records and of one record are both read back.
      await producer.publish(topic, sent.slice(0, 1_999));
      await producer.publish(topic, sent.slice(1_999));
      const subscription = await consumer.subscribe({
        topic,
        group: 'reader',
        schema: z.object({ i: z.number(), text: z.string() }),
        handler: async (batch) => {
          received.push(...batch);
        },
      });
      await eventually(() => received.length >= sent.length, { timeoutMs: 30_000, what: () => `${sent.length} messages (${received.length} so far)` });
      await subscription.close();
      expect(received.length).toBe(sent.length);
      for (let k = 0; k < 5; k++) {
        const ofKey = received.filter((m) => m.key === `k${k}`).map((m) => m.value.i);
        expect(ofKey).toEqual(sent.filter((m) => m.key === `k${k}`).map((m) => m.value.i));
      }
      expect(received.find((m) => m.value.i === 1_999)?.value).toEqual(sent[1_999]!.value);
    } finally {
      await Promise.all([producer.close(), consumer.close()]);
    }
  });
});
