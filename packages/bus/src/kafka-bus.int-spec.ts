// The Kafka adapter's own cases, beyond the conformance suite shared with the in-process bus.
import { randomBytes } from 'node:crypto';
import { kafkaAvailable, startTestKafka, type TestKafka } from '@herald/testing-base';
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
});
