// One contract, two adapters: the same cases run against the in-process bus and the Kafka bus
// (a real broker: KAFKA_BROKERS, else one started by infra/kafka/start.sh). Each case uses its
// own topic and group; the Kafka run uses its own topic prefix, so runs never see each other.
import { randomBytes } from 'node:crypto';
import { type DeadLetter, deadLetterSchema, dlqTopic } from '@herald/contracts';
import kafkajs from 'kafkajs';
import { eventually, gate, holdFor, kafkaAvailable, startTestKafka, type TestKafka } from '@herald/testing-base';
import { z } from 'zod';
import { type Bus, type ConsumerIncident, type DeliveredMessage, dlq, drop, ok, type OutgoingMessage, retry, type Subscription } from './bus.js';
import { InProcessBus } from './in-process-bus.js';
import { KafkaBus } from './kafka-bus.js';

const PARTITIONS = 4;

interface Adapter {
  name: string;
  available: () => boolean;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** A bus whose topics have PARTITIONS partitions; `incidents` collects what it reports. */
  create(incidents: ConsumerIncident[]): Bus;
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
  create: (incidents) => new InProcessBus({ partitions: PARTITIONS, retryBackoffMs: 50, maxRetryBackoffMs: 200, onIncident: (i) => incidents.push(i) }),
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
  create: (incidents) =>
    new KafkaBus({
      brokers: broker!.brokers,
      clientId: 'herald-conformance',
      topicPrefix: kafkaPrefix,
      defaultPartitions: PARTITIONS,
      retryBackoffMs: 50,
      maxRetryBackoffMs: 200,
      logLevel: 'error',
      onIncident: (i) => incidents.push(i),
      // Rebalances are what makes a Kafka suite slow: members learn of one at their next
      // heartbeat, and an idle fetch waits maxWaitTimeInMs before the heartbeat is sent.
      consumer: { sessionTimeout: KAFKA_SESSION_TIMEOUT_MS, heartbeatInterval: 300, rebalanceTimeout: 10_000, maxWaitTimeInMs: 100 },
    }),
  sessionTimeoutMs: KAFKA_SESSION_TIMEOUT_MS,
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
    /** What the bus of the running case reported (retries, dead letters, drops). */
    let incidents: ConsumerIncident[] = [];
    let counter = 0;
    const fresh = (what: string) => `${what}-${++counter}`;

    beforeAll(() => adapter.start(), 180_000);
    afterAll(() => adapter.stop(), 60_000);
    afterEach(async () => {
      for (const subscription of subscriptions.splice(0)) await subscription.close();
      for (const bus of buses.splice(0)) await bus.close();
    });

    const newBus = (): Bus => {
      incidents = [];
      const bus = adapter.create(incidents);
      buses.push(bus);
      return bus;
    };

    /** Resolves once `members` subscriptions of `group` on `topic` own every partition between them (the port's assignments). */
    const settled = async (bus: Bus, topic: string, group: string, members: number) => {
      await eventually(() => {
        const mine = bus.assignments(topic).filter((a) => a.group === group);
        const owned = mine.flatMap((a) => a.partitions);
        return mine.length === members && mine.every((a) => a.partitions.length > 0) && owned.length === PARTITIONS && new Set(owned).size === PARTITIONS;
      }, { timeoutMs: 30_000, what: `${members} members of ${group} sharing ${PARTITIONS} partitions` });
    };

    /** Subscribes with a handler that records every delivered message (and batch). */
    const collect = async (
      bus: Bus,
      topic: string,
      group: string,
      options: { maxBatchSize?: number; schema?: z.ZodType } = {},
    ): Promise<{ received: DeliveredMessage[]; batches: DeliveredMessage[][]; subscription: Subscription }> => {
      const received: DeliveredMessage[] = [];
      const batches: DeliveredMessage[][] = [];
      const subscription = await bus.subscribe({
        topic,
        group,
        schema: options.schema ?? z.unknown(),
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
          schema: z.unknown(),
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
      await eventually(async () => (await bus.lag(topic, 'g')) === 0, { timeoutMs: 30_000, what: 'lag 0' });
    });

    it('shares the partitions among the consumers of one group, each message handled by exactly one', async () => {
      const bus = newBus();
      const topic = fresh('sharing');
      const a = await collect(bus, topic, 'workers');
      const b = await collect(bus, topic, 'workers');
      await settled(bus, topic, 'workers', 2);
      const total = 300;
      await bus.publish(topic, range(0, total).map((i) => ({ key: `k-${i}`, value: i })));
      await eventually(async () => a.received.length + b.received.length >= total && (await bus.lag(topic, 'workers')) === 0, { timeoutMs: 30_000, what: 'every message handled and committed' });

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
      await eventually(async () => (await bus.lag(topic, 'billing')) === 0 && (await bus.lag(topic, 'analytics')) === 0, { timeoutMs: 30_000, what: 'both groups caught up' });
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
        schema: z.unknown(),
        // Enough to outlast the case: the budget is another case's subject.
        retryBudget: 1_000,
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
      expect(await bus.lag(topic, 'flaky')).toBe(attempts[0]!.length);

      failing = false;
      await eventually(async () => (await bus.lag(topic, 'flaky')) === 0, { timeoutMs: 30_000, what: 'lag 0 once the handler succeeds' });
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
      await eventually(async () => (await bus.lag(topic, 'flaky')) === 0, { timeoutMs: 30_000, what: 'lag 0' });
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
        await bus.subscribe({ topic, group: 'g', schema: z.unknown(), maxBatchSize: 3000, maxFetchBytes: 8 * 1024 * 1024, handler: async (messages) => void batches.push(messages.length) }),
      );
      await eventually(() => batches.reduce((sum, n) => sum + n, 0) === 3000, { timeoutMs: 30_000, what: 'the 3,000 messages' });
      expect(batches).toEqual([3000]);
    });

    it('hands the partitions of a closed consumer to the other member of its group', async () => {
      const bus = newBus();
      const topic = fresh('handover');
      const a = await collect(bus, topic, 'workers');
      const b = await collect(bus, topic, 'workers');
      await settled(bus, topic, 'workers', 2);
      const keys = range(0, 40).map((i) => `k-${i}`);
      await bus.publish(topic, keys.map((key) => ({ key, value: { key, round: 1 } })));
      await eventually(async () => a.received.length + b.received.length === keys.length && (await bus.lag(topic, 'workers')) === 0, { timeoutMs: 30_000, what: 'round 1 handled' });
      const partitionsOfA = new Set(a.received.map((m) => m.partition));
      expect(partitionsOfA.size).toBeGreaterThan(0);

      await a.subscription.close();
      const seenByA = a.received.length;
      const seenByB = b.received.length;
      await bus.publish(topic, keys.map((key) => ({ key, value: { key, round: 2 } })));
      await eventually(async () => b.received.length === seenByB + keys.length && (await bus.lag(topic, 'workers')) === 0, { timeoutMs: 30_000, what: 'round 2 handled by the remaining member' });
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
        schema: z.unknown(),
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
      expect(await bus.lag(topic, 'resumer')).toBe(0);

      // Published while nobody consumes; the group's committed offsets are where it resumes.
      await bus.publish(topic, range(6, 11).map((i) => ({ key: 'k', value: i })));
      expect(await bus.lag(topic, 'resumer')).toBe(5);
      const reopened = await collect(bus, topic, 'resumer');
      await eventually(async () => reopened.received.length >= 5 && (await bus.lag(topic, 'resumer')) === 0, { timeoutMs: 30_000, what: 'the new messages' });
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
        schema: z.unknown(),
        handler: async (messages) => {
          calls.push(messages);
          if (calls.length === 1) await holdFor(adapter.sessionTimeoutMs + 1_500, 'the scenario: a handler that runs longer than the session timeout');
        },
      });
      subscriptions.push(subscription);
      await bus.publish(topic, range(0, 3).map((i) => ({ key: 'k', value: i })));
      await eventually(async () => calls.length >= 1 && (await bus.lag(topic, 'slow')) === 0, { timeoutMs: 60_000, what: 'the slow batch committed' });
      await bus.publish(topic, [{ key: 'k', value: 3 }]);
      await eventually(async () => (await bus.lag(topic, 'slow')) === 0 && calls.flat().length >= 4, { timeoutMs: 30_000, what: 'the next message' });
      expect(values(calls.flat())).toEqual([0, 1, 2, 3]);
    }, 90_000);

    /** Collects the dead letters of `topic` (its `<topic>.dlq`), checked against their contract. */
    const deadLetters = async (bus: Bus, topic: string): Promise<DeadLetter[]> => {
      const letters: DeadLetter[] = [];
      subscriptions.push(
        await bus.subscribe({ topic: dlqTopic(topic), group: 'dlq-reader', schema: deadLetterSchema, handler: async (messages) => void letters.push(...messages.map((m) => m.value)) }),
      );
      return letters;
    };

    it('hands the handler only what matches the contract; the rest goes to the DLQ with the reason and its key, and the partition moves on', async () => {
      const bus = newBus();
      const topic = fresh('contract');
      const letters = await deadLetters(bus, topic);
      const { received } = await collect(bus, topic, 'strict', { schema: z.strictObject({ n: z.number() }) });
      await bus.publish(topic, [
        { key: 'k', value: { n: 1 } },
        { key: 'k', value: { bad: true } },
        { key: 'k', value: { n: 2 } },
        { key: 'k', value: 'not an object' },
        { key: 'k', value: { n: 3 } },
      ]);
      await eventually(async () => received.length === 3 && letters.length === 2 && (await bus.lag(topic, 'strict')) === 0, { timeoutMs: 30_000, what: 'three handled, two dead-lettered, all committed' });
      expect(values(received)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
      expect(letters.map((l) => [l.key, l.value, l.offset, l.topic, l.group, l.attempts])).toEqual([
        ['k', { bad: true }, 1, topic, 'strict', 0],
        ['k', 'not an object', 3, topic, 'strict', 0],
      ]);
      expect(letters[0]!.reason).toContain(`does not match the contract of ${topic}`);
      expect(letters[0]!.reason).toContain('n:');
      expect(letters[0]!.partition).toBe(received[0]!.partition);
      expect(await bus.dlqCount(topic)).toBe(2);
      expect(incidents.filter((i) => i.outcome === 'dlq').reduce((sum, i) => sum + i.messages, 0)).toBe(2);
    });

    it('gives up on a message whose handler always throws after the retry budget: it goes to the DLQ with the last reason, and the partition moves on', async () => {
      const bus = newBus();
      const topic = fresh('always-fails');
      const letters = await deadLetters(bus, topic);
      const deliveries: string[] = [];
      subscriptions.push(
        await bus.subscribe({
          topic,
          group: 'g',
          schema: z.string(),
          maxBatchSize: 1,
          retryBudget: 3,
          handler: async ([message]) => {
            deliveries.push(message!.value);
            if (message!.value === 'poison') throw new Error('cannot handle poison');
          },
        }),
      );
      await bus.publish(topic, ['before', 'poison', 'after'].map((value) => ({ key: 'k', value })));
      await eventually(async () => letters.length === 1 && deliveries.includes('after') && (await bus.lag(topic, 'g')) === 0, { timeoutMs: 30_000, what: 'the poison dead-lettered and the next message handled' });
      // Delivered once, then again for each of the budget's 3 retries; the others once.
      expect(deliveries).toEqual(['before', 'poison', 'poison', 'poison', 'poison', 'after']);
      expect(letters[0]).toMatchObject({ key: 'k', value: 'poison', offset: 1, attempts: 4, reason: 'cannot handle poison (gave up after 4 deliveries)' });
      expect(incidents.filter((i) => i.outcome === 'retry').map((i) => [i.reason, i.attempts, (i.error as Error).message])).toEqual(
        [1, 2, 3].map((attempts) => ['cannot handle poison', attempts, 'cannot handle poison']),
      );
      expect(await bus.dlqCount(topic)).toBe(1);
    });

    it('settles each message as its result says: the first retry cuts the batch, dlq and drop are committed, a retry past its budget is a dead letter', async () => {
      const bus = newBus();
      const topic = fresh('results');
      const letters = await deadLetters(bus, topic);
      const batches: string[][] = [];
      subscriptions.push(
        await bus.subscribe({
          topic,
          group: 'g',
          schema: z.string(),
          retryBudget: 2,
          handler: async (messages) => {
            batches.push(messages.map((m) => m.value));
            return messages.map((m) =>
              m.value === 'poison' ? retry('not yet') : m.value === 'bad' ? dlq('unusable') : m.value === 'noise' ? drop('not wanted') : ok(),
            );
          },
        }),
      );
      await bus.publish(topic, ['a', 'bad', 'noise', 'poison', 'b'].map((value) => ({ key: 'k', value })));
      await eventually(async () => letters.length === 2 && (await bus.lag(topic, 'g')) === 0, { timeoutMs: 30_000, what: 'both dead letters, all committed' });
      // What came before the retry was settled once; the retried message came again with what followed it.
      expect(batches).toEqual([
        ['a', 'bad', 'noise', 'poison', 'b'],
        ['poison', 'b'],
        ['poison', 'b'],
      ]);
      expect(letters.map((l) => [l.value, l.reason, l.attempts])).toEqual([
        ['bad', 'unusable', 1],
        ['poison', 'not yet (gave up after 3 deliveries)', 3],
      ]);
      expect(incidents.filter((i) => i.outcome === 'drop').map((i) => [i.reason, i.messages])).toEqual([['not wanted', 1]]);
    });

    it('tells lag, assignments and the DLQ count through the port', async () => {
      const bus = newBus();
      const topic = fresh('figures');
      expect(bus.assignments(topic)).toEqual([]);
      expect(await bus.dlqCount(topic)).toBe(0);
      await bus.publish(topic, range(0, 8).map((i) => ({ key: `k-${i}`, value: i })));
      expect(await bus.lag(topic, 'g')).toBe(8);
      const { received } = await collect(bus, topic, 'g', { schema: z.number() });
      // One subscription of its group: every partition is its own.
      await eventually(() => bus.assignments(topic).flatMap((a) => a.partitions).length === PARTITIONS, { timeoutMs: 30_000, what: 'the partitions assigned' });
      expect(bus.assignments(topic)).toEqual([{ topic, group: 'g', partitions: range(0, PARTITIONS) }]);
      await eventually(async () => received.length === 8 && (await bus.lag(topic, 'g')) === 0, { timeoutMs: 30_000, what: 'lag 0' });
      expect(await bus.dlqCount(topic)).toBe(0);
      await expect(bus.ping()).resolves.toBeUndefined();
    });

    it('replays the dead letters to their topic under their key (Kafka), or says the in-process bus keeps none after its process', async () => {
      const bus = newBus();
      const topic = fresh('replay');
      const strict = await collect(bus, topic, 'strict', { schema: z.number() });
      await bus.publish(topic, [1, 'two', 3, 'four'].map((value) => ({ key: 'k', value })));
      await eventually(async () => (await bus.dlqCount(topic)) === 2 && (await bus.lag(topic, 'strict')) === 0, { timeoutMs: 30_000, what: 'two dead letters' });
      await strict.subscription.close();
      if (!bus.sharedAcrossProcesses) {
        await expect(bus.replayDlq(topic)).rejects.toThrow('the in-process bus keeps nothing after its process');
        return;
      }
      expect(await bus.replayDlq(topic, { limit: 1 })).toBe(1);
      expect(await bus.replayDlq(topic)).toBe(1);
      expect(await bus.replayDlq(topic)).toBe(0);
      const lenient = await collect(bus, topic, 'lenient', { schema: z.union([z.number(), z.string()]) });
      await eventually(() => lenient.received.length === 6, { timeoutMs: 30_000, what: 'the four messages and the two replayed' });
      expect(lenient.received.map((m) => [m.key, m.value])).toEqual([1, 'two', 3, 'four', 'two', 'four'].map((value) => ['k', value]));
      expect(await bus.dlqCount(topic)).toBe(2);
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
