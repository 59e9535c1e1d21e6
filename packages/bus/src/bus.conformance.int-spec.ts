// One contract, two adapters: the same cases run against the in-process bus and the Kafka bus
// (a real broker: KAFKA_BROKERS, else one started by infra/kafka/start.sh). Each case uses its
// own topic and group; the Kafka run uses its own topic prefix, so runs never see each other.
import { randomBytes } from 'node:crypto';
import { dlqTopic } from '@herald/contracts';
import kafkajs from 'kafkajs';
import { eventually, gate, holdFor, kafkaAvailable, startTestKafka, type TestKafka } from '@herald/testing-base';
import type { Bus, DeliveredMessage, OutgoingMessage, Subscription } from './bus.js';
import { InProcessBus } from './in-process-bus.js';
import { KafkaBus } from './kafka-bus.js';

const PARTITIONS = 4;

interface Adapter {
  name: string;
  available: () => boolean;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** A bus whose topics have PARTITIONS partitions. */
  create(): Bus;
  lag(bus: Bus, topic: string, group: string): Promise<number>;
  /** Resolves once `members` subscriptions of `group` on `topic` own every partition between them. */
  settled(bus: Bus, topic: string, group: string, members: number): Promise<void>;
  /** The topic names on the broker, where there is one. */
  brokerTopics?(bus: Bus): Promise<string[]>;
  /** How long a consumer may go silent before its group drops it (0: never). */
  sessionTimeoutMs: number;
}


const inProcess: Adapter = {
  name: 'InProcessBus',
  available: () => true,
  start: async () => undefined,
  stop: async () => undefined,
  create: () => new InProcessBus({ partitions: PARTITIONS, retryBackoffMs: 50 }),
  lag: async (bus, topic, group) => (bus as InProcessBus).lag(topic, group),
  settled: async () => undefined,
  sessionTimeoutMs: 0,
};

// The broker's default group.min.session.timeout.ms: the lowest a KAFKA_BROKERS broker accepts.
const KAFKA_SESSION_TIMEOUT_MS = 6_000;
const kafkaPrefix = `herald-test-${randomBytes(4).toString('hex')}-`;
let broker: TestKafka | undefined;
const kafka: Adapter = {
  name: 'KafkaBus',
  available: kafkaAvailable,
  start: async () => {
    broker = await startTestKafka();
  },
  stop: async () => {
    await broker?.stop();
  },
  create: () =>
    new KafkaBus({
      brokers: broker!.brokers,
      clientId: 'herald-conformance',
      topicPrefix: kafkaPrefix,
      defaultPartitions: PARTITIONS,
      retryBackoffMs: 50,
      logLevel: 'error',
      onHandlerError: () => undefined,
      // Rebalances are what makes a Kafka suite slow: members learn of one at their next
      // heartbeat, and an idle fetch waits maxWaitTimeInMs before the heartbeat is sent.
      consumer: { sessionTimeout: KAFKA_SESSION_TIMEOUT_MS, heartbeatInterval: 300, rebalanceTimeout: 10_000, maxWaitTimeInMs: 100 },
    }),
  sessionTimeoutMs: KAFKA_SESSION_TIMEOUT_MS,
  lag: (bus, topic, group) => (bus as KafkaBus).lag(topic, group),
  settled: async (bus, topic, group, members) => {
    await eventually(() => {
      const mine = (bus as KafkaBus).assignments().filter((a) => a.topic === topic && a.group === group);
      const owned = mine.flatMap((a) => a.partitions);
      return mine.length === members && mine.every((a) => a.partitions.length > 0) && owned.length === PARTITIONS && new Set(owned).size === PARTITIONS;
    }, { timeoutMs: 30_000, what: `${members} members of ${group} sharing ${PARTITIONS} partitions` });
  },
  brokerTopics: async () => {
    const admin = new kafkajs.Kafka({ brokers: broker!.brokers, logLevel: kafkajs.logLevel.ERROR }).admin();
    await admin.connect();
    try {
      return await admin.listTopics();
    } finally {
      await admin.disconnect();
    }
  },
};

for (const adapter of [inProcess, kafka]) {
  (adapter.available() ? describe : describe.skip)(`Bus conformance: ${adapter.name}`, () => {
    const buses: Bus[] = [];
    const subscriptions: Subscription[] = [];
    let counter = 0;
    const fresh = (what: string) => `${what}-${++counter}`;

    beforeAll(() => adapter.start(), 180_000);
    afterAll(() => adapter.stop(), 60_000);
    afterEach(async () => {
      for (const subscription of subscriptions.splice(0)) await subscription.close();
      for (const bus of buses.splice(0)) await bus.close();
    });

    const newBus = (): Bus => {
      const bus = adapter.create();
      buses.push(bus);
      return bus;
    };

    /** Subscribes with a handler that records every delivered message (and batch). */
    const collect = async (
      bus: Bus,
      topic: string,
      group: string,
      options: { maxBatchSize?: number } = {},
    ): Promise<{ received: DeliveredMessage[]; batches: DeliveredMessage[][]; subscription: Subscription }> => {
      const received: DeliveredMessage[] = [];
      const batches: DeliveredMessage[][] = [];
      const subscription = await bus.subscribe({
        topic,
        group,
        maxBatchSize: options.maxBatchSize,
        handler: async (messages) => {
          batches.push(messages);
          received.push(...messages);
        },
      });
      subscriptions.push(subscription);
      return { received, batches, subscription };
    };

    const values = (messages: DeliveredMessage[]) => messages.map((m) => m.value);
    const numbers = (messages: DeliveredMessage[]) => messages.map((m) => m.value as number).sort((x, y) => x - y);
    const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

    it('tells each batch how many messages already wait behind it in its partition', async () => {
      const bus = newBus();
      const topic = fresh('behind');
      await bus.publish(topic, range(0, 10).map((i) => ({ key: 'one-key', value: i })));
      const infos: { first: number; count: number; behind: number }[] = [];
      subscriptions.push(
        await bus.subscribe({
          topic,
          group: 'g',
          maxBatchSize: 4,
          handler: async (messages, info) => void infos.push({ first: messages[0]!.value as number, count: messages.length, behind: info.behind }),
        }),
      );
      await eventually(() => infos.reduce((sum, i) => sum + i.count, 0) === 10, { timeoutMs: 30_000, what: 'all ten messages' });
      // Every batch knows the rest of the ten is behind it; the last one is caught up.
      for (const info of infos) expect(info.behind).toBe(10 - info.first - info.count);
      expect(infos.at(-1)!.behind).toBe(0);
    });

    it('keeps the order of messages with the same key, each key in one partition', async () => {
      const bus = newBus();
      const topic = fresh('ordering');
      const { received } = await collect(bus, topic, 'g');
      const keys = Array.from({ length: 10 }, (_, i) => `customer-${i}`);
      // Interleave keys, and spread each key's messages over several publish calls.
      for (let round = 0; round < 3; round++) {
        const messages: OutgoingMessage[] = [];
        for (let seq = round * 2; seq < round * 2 + 2; seq++) for (const key of keys) messages.push({ key, value: { key, seq } });
        await bus.publish(topic, messages);
      }
      await eventually(() => received.length === keys.length * 6, { timeoutMs: 30_000, what: 'all 60 messages received' });

      for (const key of keys) {
        const mine = received.filter((m) => m.key === key);
        expect(mine.map((m) => (m.value as { seq: number }).seq)).toEqual([0, 1, 2, 3, 4, 5]);
        expect(new Set(mine.map((m) => m.partition)).size).toBe(1);
        const offsets = mine.map((m) => m.offset);
        expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
        for (const m of mine) expect(m.topic).toBe(topic);
      }
      await eventually(async () => (await adapter.lag(bus, topic, 'g')) === 0, { timeoutMs: 30_000, what: 'lag 0' });
    });

    it('shares the partitions among the consumers of one group, each message handled by exactly one', async () => {
      const bus = newBus();
      const topic = fresh('sharing');
      const a = await collect(bus, topic, 'workers');
      const b = await collect(bus, topic, 'workers');
      await adapter.settled(bus, topic, 'workers', 2);
      const total = 300;
      await bus.publish(topic, range(0, total).map((i) => ({ key: `k-${i}`, value: i })));
      await eventually(async () => a.received.length + b.received.length >= total && (await adapter.lag(bus, topic, 'workers')) === 0, { timeoutMs: 30_000, what: 'every message handled and committed' });

      expect(a.received.length).toBeGreaterThan(0);
      expect(b.received.length).toBeGreaterThan(0);
      expect(numbers([...a.received, ...b.received])).toEqual(range(0, total));
      const partitionsOfA = new Set(a.received.map((m) => m.partition));
      const partitionsOfB = new Set(b.received.map((m) => m.partition));
      for (const p of partitionsOfA) expect(partitionsOfB.has(p)).toBe(false);
      expect(partitionsOfA.size + partitionsOfB.size).toBe(PARTITIONS);
    });

    it('delivers every message to each of two groups', async () => {
      const bus = newBus();
      const topic = fresh('groups');
      const billing = await collect(bus, topic, 'billing');
      const analytics = await collect(bus, topic, 'analytics');
      const total = 60;
      await bus.publish(topic, range(0, total).map((i) => ({ key: `k-${i % 7}`, value: i })));
      await eventually(async () => (await adapter.lag(bus, topic, 'billing')) === 0 && (await adapter.lag(bus, topic, 'analytics')) === 0, { timeoutMs: 30_000, what: 'both groups caught up' });
      expect(numbers(billing.received)).toEqual(range(0, total));
      expect(numbers(analytics.received)).toEqual(range(0, total));
    });

    it('redelivers the batch of a handler that throws, while the other partitions keep flowing, and loses nothing', async () => {
      const bus = newBus();
      const topic = fresh('redelivery');
      const attempts: DeliveredMessage[][] = [];
      const received: DeliveredMessage[] = [];
      let failing = true;
      const subscription = await bus.subscribe({
        topic,
        group: 'flaky',
        handler: async (messages) => {
          if (messages.some((m) => m.key === 'a')) {
            attempts.push(messages);
            if (failing) throw new Error('downstream unavailable');
          }
          received.push(...messages);
        },
      });
      subscriptions.push(subscription);

      // One publish: the failing partition's batch is the same on every attempt.
      const others = range(0, 20).map((i) => ({ key: `k-${i}`, value: `k-${i}` }));
      await bus.publish(topic, [
        { key: 'a', value: 'first' },
        { key: 'a', value: 'second' },
        { key: 'a', value: 'third' },
        ...others,
      ]);
      await eventually(() => attempts.length >= 3, { timeoutMs: 30_000, what: 'three attempts at the failing batch' });
      const failingPartition = attempts[0]![0]!.partition;
      const elsewhere = others.filter((o) => !attempts[0]!.some((m) => m.value === o.value)).map((o) => o.value);
      // The other partitions were handled meanwhile.
      await eventually(() => elsewhere.every((v) => received.some((m) => m.value === v)), { timeoutMs: 30_000, what: 'other partitions handled while one fails' });
      expect(received.some((m) => m.partition === failingPartition)).toBe(false);
      expect(await adapter.lag(bus, topic, 'flaky')).toBe(attempts[0]!.length);

      failing = false;
      await eventually(async () => (await adapter.lag(bus, topic, 'flaky')) === 0, { timeoutMs: 30_000, what: 'lag 0 once the handler succeeds' });
      for (const attempt of attempts) {
        expect(attempt.map((m) => m.offset)).toEqual(attempts[0]!.map((m) => m.offset));
        expect(values(attempt)).toEqual(values(attempts[0]!));
      }
      expect(attempts[0]![0]!.offset).toBe(0);
      expect(values(attempts[0]!.filter((m) => m.key === 'a'))).toEqual(['first', 'second', 'third']);
      expect(new Set(values(received))).toEqual(new Set(['first', 'second', 'third', ...others.map((o) => o.value)]));
      expect(received).toHaveLength(23);

      // Committed: not delivered again; later messages start after it.
      const settledAttempts = attempts.length;
      await bus.publish(topic, [{ key: 'a', value: 'fourth' }]);
      await eventually(() => attempts.length === settledAttempts + 1, { timeoutMs: 30_000, what: 'the next message' });
      expect(values(attempts[settledAttempts]!)).toEqual(['fourth']);
      expect(attempts[settledAttempts]![0]!.offset).toBe(attempts[0]!.length);
      await eventually(async () => (await adapter.lag(bus, topic, 'flaky')) === 0, { timeoutMs: 30_000, what: 'lag 0' });
    });

    it('caps batches at maxBatchSize, in offset order', async () => {
      const bus = newBus();
      const topic = fresh('batches');
      const { received, batches } = await collect(bus, topic, 'g', { maxBatchSize: 7 });
      await bus.publish(topic, range(0, 30).map((i) => ({ key: 'same', value: i })));
      await eventually(() => received.length === 30, { timeoutMs: 30_000, what: '30 messages' });
      for (const batch of batches) expect(batch.length).toBeLessThanOrEqual(7);
      expect(values(received)).toEqual(range(0, 30));
      expect(received.map((m) => m.offset)).toEqual(range(0, 30));
    });

    it('fills batches of maxBatchSize large messages when maxFetchBytes leaves room for them', async () => {
      const bus = newBus();
      const topic = fresh('fetch-bytes');
      // 3,000 messages of ~1 KiB (3 MiB) waiting on one partition: Kafka's default fetch (1 MiB) would bring ~1,000.
      const padding = 'x'.repeat(1000);
      await bus.publish(topic, range(0, 3000).map((i) => ({ key: 'same', value: { i, padding } })));
      const batches: number[] = [];
      subscriptions.push(
        await bus.subscribe({ topic, group: 'g', maxBatchSize: 3000, maxFetchBytes: 8 * 1024 * 1024, handler: async (messages) => void batches.push(messages.length) }),
      );
      await eventually(() => batches.reduce((sum, n) => sum + n, 0) === 3000, { timeoutMs: 30_000, what: 'the 3,000 messages' });
      expect(batches).toEqual([3000]);
    });

    it('hands the partitions of a closed consumer to the other member of its group', async () => {
      const bus = newBus();
      const topic = fresh('handover');
      const a = await collect(bus, topic, 'workers');
      const b = await collect(bus, topic, 'workers');
      await adapter.settled(bus, topic, 'workers', 2);
      const keys = range(0, 40).map((i) => `k-${i}`);
      await bus.publish(topic, keys.map((key) => ({ key, value: { key, round: 1 } })));
      await eventually(async () => a.received.length + b.received.length === keys.length && (await adapter.lag(bus, topic, 'workers')) === 0, { timeoutMs: 30_000, what: 'round 1 handled' });
      const partitionsOfA = new Set(a.received.map((m) => m.partition));
      expect(partitionsOfA.size).toBeGreaterThan(0);

      await a.subscription.close();
      const seenByA = a.received.length;
      const seenByB = b.received.length;
      await bus.publish(topic, keys.map((key) => ({ key, value: { key, round: 2 } })));
      await eventually(async () => b.received.length === seenByB + keys.length && (await adapter.lag(bus, topic, 'workers')) === 0, { timeoutMs: 30_000, what: 'round 2 handled by the remaining member' });
      expect(a.received).toHaveLength(seenByA);
      const round2 = b.received.slice(seenByB);
      expect(round2.map((m) => (m.value as { key: string }).key).sort()).toEqual([...keys].sort());
      const partitionsOfRound2 = new Set(round2.map((m) => m.partition));
      for (const p of partitionsOfA) expect(partitionsOfRound2.has(p)).toBe(true);
      expect(partitionsOfRound2.size).toBe(PARTITIONS);
    });

    it('closes gracefully (the batch in hand finishes and is committed), and a reopened consumer resumes after it', async () => {
      const bus = newBus();
      const topic = fresh('resume');
      const blocked = gate();
      const first: DeliveredMessage[][] = [];
      const subscription = await bus.subscribe({
        topic,
        group: 'resumer',
        handler: async (messages) => {
          first.push(messages);
          if (first.length === 1) await blocked.promise;
        },
      });
      await bus.publish(topic, range(1, 6).map((i) => ({ key: 'k', value: i })));
      await eventually(() => first.length === 1, { timeoutMs: 30_000, what: 'the first batch in hand' });
      let closed = false;
      const closing = subscription.close().then(() => {
        closed = true;
      });
      // The batch is released while close() is under way, waiting for it: close() has begun (it
      // stops the subscription before it returns), and it has not finished once the event loop
      // has run everything else that was ready.
      await new Promise((resolve) => setImmediate(resolve));
      expect(closed).toBe(false);
      blocked.release();
      await closing;
      expect(numbers(first.flat())).toEqual([1, 2, 3, 4, 5]);
      expect(await adapter.lag(bus, topic, 'resumer')).toBe(0);

      // Published while nobody consumes; the group's committed offsets are where it resumes.
      await bus.publish(topic, range(6, 11).map((i) => ({ key: 'k', value: i })));
      expect(await adapter.lag(bus, topic, 'resumer')).toBe(5);
      const reopened = await collect(bus, topic, 'resumer');
      await eventually(async () => reopened.received.length >= 5 && (await adapter.lag(bus, topic, 'resumer')) === 0, { timeoutMs: 30_000, what: 'the new messages' });
      expect(values(reopened.received)).toEqual([6, 7, 8, 9, 10]);
      expect(reopened.received[0]!.offset).toBe(5);
    });

    it('keeps the partitions of a handler that runs longer than the session timeout (no redelivery)', async () => {
      const bus = newBus();
      const topic = fresh('slow');
      const calls: DeliveredMessage[][] = [];
      const subscription = await bus.subscribe({
        topic,
        group: 'slow',
        handler: async (messages) => {
          calls.push(messages);
          if (calls.length === 1) await holdFor(adapter.sessionTimeoutMs + 1_500, 'the scenario: a handler that runs longer than the session timeout');
        },
      });
      subscriptions.push(subscription);
      await bus.publish(topic, range(0, 3).map((i) => ({ key: 'k', value: i })));
      await eventually(async () => calls.length >= 1 && (await adapter.lag(bus, topic, 'slow')) === 0, { timeoutMs: 60_000, what: 'the slow batch committed' });
      await bus.publish(topic, [{ key: 'k', value: 3 }]);
      await eventually(async () => (await adapter.lag(bus, topic, 'slow')) === 0 && calls.flat().length >= 4, { timeoutMs: 30_000, what: 'the next message' });
      expect(values(calls.flat())).toEqual([0, 1, 2, 3]);
    }, 90_000);

    it('names the dead-letter topic with dlqTopic, under the prefix on the broker', async () => {
      const bus = newBus();
      const topic = fresh('poison');
      const dlq = dlqTopic(topic);
      const { received } = await collect(bus, dlq, 'dlq-reader');
      await bus.publish(dlq, [{ key: 'k', value: { reason: 'schema: missing field id', original: { bad: true } } }]);
      await eventually(() => received.length === 1, { timeoutMs: 30_000, what: 'the dead letter' });
      expect(received[0]!.topic).toBe(`${topic}.dlq`);
      expect(received[0]!.value).toEqual({ reason: 'schema: missing field id', original: { bad: true } });
      if (adapter.brokerTopics) {
        const onBroker = await adapter.brokerTopics(bus);
        expect(onBroker).toContain(`${kafkaPrefix}${topic}.dlq`);
        expect(onBroker).not.toContain(`${topic}.dlq`);
      }
    });

    it('rejects a publish after close()', async () => {
      const bus = newBus();
      const topic = fresh('closed');
      const { received } = await collect(bus, topic, 'g');
      await bus.close();
      await expect(bus.publish(topic, [{ key: 'k', value: 1 }])).rejects.toThrow('bus is closed');
      expect(received).toHaveLength(0);
    });
  });
}
