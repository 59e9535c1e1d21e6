import { type DeadLetter, deadLetterSchema, dlqTopic } from '@herald/contracts';
import { eventually, gate } from '@herald/testing-base';
import { z } from 'zod';
import { type ConsumerIncident, type DeliveredMessage, ok, type OutgoingMessage, retry, type Subscription } from './bus.js';
import { InProcessBus, type InProcessBusOptions, partitionFor } from './in-process-bus.js';

const TOPIC = 'events';
/** How long a wait may take here: everything is in-process. */
const within = (what: string) => ({ timeoutMs: 2_000, what });

describe('InProcessBus', () => {
  const buses: InProcessBus[] = [];
  const subscriptions: Subscription[] = [];

  const newBus = (options: InProcessBusOptions = {}): InProcessBus => {
    const bus = new InProcessBus({ retryBackoffMs: 5, ...options });
    buses.push(bus);
    return bus;
  };

  /** Subscribes with a handler that records every delivered message in the returned array. */
  const collect = async (
    bus: InProcessBus,
    group: string,
    options: { maxBatchSize?: number; batches?: DeliveredMessage[][] } = {},
  ): Promise<{ received: DeliveredMessage[]; subscription: Subscription }> => {
    const received: DeliveredMessage[] = [];
    const subscription = await bus.subscribe({
      topic: TOPIC,
      group,
      schema: z.unknown(),
      maxBatchSize: options.maxBatchSize,
      handler: async (messages) => {
        options.batches?.push(messages);
        received.push(...messages);
      },
    });
    subscriptions.push(subscription);
    return { received, subscription };
  };

  afterEach(async () => {
    for (const subscription of subscriptions.splice(0)) await subscription.close();
    for (const bus of buses.splice(0)) await bus.close();
  });

  describe('partitionFor', () => {
    it('is deterministic and stays within the partition range', () => {
      for (let i = 0; i < 200; i++) {
        const key = `key-${i}`;
        const partition = partitionFor(key, 7);
        expect(partition).toBe(partitionFor(key, 7));
        expect(Number.isInteger(partition)).toBe(true);
        expect(partition).toBeGreaterThanOrEqual(0);
        expect(partition).toBeLessThan(7);
      }
    });

    it('spreads keys over several partitions', () => {
      const used = new Set(Array.from({ length: 100 }, (_, i) => partitionFor(`key-${i}`, 4)));
      expect(used.size).toBe(4);
    });
  });

  it('keeps the order of messages with the same key, all in the partition of that key', async () => {
    const bus = newBus({ partitions: 4 });
    const { received } = await collect(bus, 'g');
    const keys = Array.from({ length: 10 }, (_, i) => `customer-${i}`);
    const perKey = 6;
    // Interleave keys, and spread each key's messages over several publish calls.
    for (let round = 0; round < 3; round++) {
      const messages: OutgoingMessage[] = [];
      for (let seq = round * 2; seq < round * 2 + 2; seq++) {
        for (const key of keys) messages.push({ key, value: { key, seq } });
      }
      await bus.publish(TOPIC, messages);
    }
    // Committed once the handler has resolved: a moment after it saw the last message.
    await eventually(async () => received.length === keys.length * perKey && (await bus.lag(TOPIC, 'g')) === 0, within('every message of every key, committed'));

    for (const key of keys) {
      const mine = received.filter((m) => m.key === key);
      expect(mine.map((m) => (m.value as { seq: number }).seq)).toEqual([0, 1, 2, 3, 4, 5]);
      expect(new Set(mine.map((m) => m.partition))).toEqual(new Set([partitionFor(key, 4)]));
      const offsets = mine.map((m) => m.offset);
      expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
      for (const m of mine) expect(m.topic).toBe(TOPIC);
    }
    expect(await bus.lag(TOPIC, 'g')).toBe(0);
  });

  it('shares partitions among the consumers of one group, each message seen exactly once', async () => {
    const bus = newBus({ partitions: 6 });
    const a = await collect(bus, 'workers');
    const b = await collect(bus, 'workers');
    const total = 300;
    await bus.publish(
      TOPIC,
      Array.from({ length: total }, (_, i) => ({ key: `k-${i}`, value: i })),
    );
    await eventually(async () => a.received.length + b.received.length >= total && (await bus.lag(TOPIC, 'workers')) === 0, within('all 300 messages handled and committed'));

    expect(a.received.length).toBeGreaterThan(0);
    expect(b.received.length).toBeGreaterThan(0);
    const all = [...a.received, ...b.received].map((m) => m.value as number).sort((x, y) => x - y);
    expect(all).toEqual(Array.from({ length: total }, (_, i) => i));
    // Each partition belongs to exactly one consumer of the group.
    const partitionsOfA = new Set(a.received.map((m) => m.partition));
    const partitionsOfB = new Set(b.received.map((m) => m.partition));
    for (const p of partitionsOfA) expect(partitionsOfB.has(p)).toBe(false);
    expect(partitionsOfA.size + partitionsOfB.size).toBe(6);
  });

  it('delivers every message to each of two groups', async () => {
    const bus = newBus({ partitions: 3 });
    const billing = await collect(bus, 'billing');
    const analytics = await collect(bus, 'analytics');
    const total = 60;
    await bus.publish(
      TOPIC,
      Array.from({ length: total }, (_, i) => ({ key: `k-${i % 7}`, value: i })),
    );
    await eventually(async () => (await bus.lag(TOPIC, 'billing')) === 0 && (await bus.lag(TOPIC, 'analytics')) === 0, within('both groups caught up'));

    const expected = Array.from({ length: total }, (_, i) => i);
    for (const { received } of [billing, analytics]) {
      expect(received.map((m) => m.value as number).sort((x, y) => x - y)).toEqual(expected);
    }
  });

  it('redelivers the same batch while the handler throws, and advances the offset only after success', async () => {
    const errors: { error: unknown; topic: string; group: string }[] = [];
    const bus = newBus({ partitions: 1, onIncident: ({ error, topic, group }) => errors.push({ error, topic, group }) });
    const attempts: { offsets: number[]; values: unknown[]; lag: number }[] = [];
    let failing = true;
    const subscription = await bus.subscribe({
      topic: TOPIC,
      group: 'flaky',
      schema: z.unknown(),
      handler: async (messages) => {
        attempts.push({
          offsets: messages.map((m) => m.offset),
          values: messages.map((m) => m.value),
          lag: await bus.lag(TOPIC, 'flaky'),
        });
        if (failing) throw new Error('downstream unavailable');
      },
    });
    subscriptions.push(subscription);

    await bus.publish(TOPIC, [
      { key: 'a', value: 'first' },
      { key: 'a', value: 'second' },
      { key: 'a', value: 'third' },
    ]);
    await eventually(() => attempts.length >= 3, within('three attempts at the failing batch'));
    expect(await bus.lag(TOPIC, 'flaky')).toBe(3);

    failing = false;
    await eventually(async () => (await bus.lag(TOPIC, 'flaky')) === 0, within('the batch committed once the handler succeeds'));
    const settled = attempts.length;

    for (const attempt of attempts) {
      expect(attempt.offsets).toEqual([0, 1, 2]);
      expect(attempt.values).toEqual(['first', 'second', 'third']);
      // The offset was still at the start of the batch each time the handler ran.
      expect(attempt.lag).toBe(3);
    }
    expect(errors.length).toBe(settled - 1);
    for (const e of errors) {
      expect(e.topic).toBe(TOPIC);
      expect(e.group).toBe('flaky');
      expect((e.error as Error).message).toBe('downstream unavailable');
    }

    // Once committed, the batch is not delivered again; later messages start after it.
    await bus.publish(TOPIC, [{ key: 'a', value: 'fourth' }]);
    await eventually(async () => (await bus.lag(TOPIC, 'flaky')) === 0 && attempts.length === settled + 1, within('the next message, once'));
    expect(attempts[settled]?.offsets).toEqual([3]);
    expect(attempts[settled]?.values).toEqual(['fourth']);
  });

  it('reports the lag of a group and drops it to 0 as batches complete', async () => {
    const bus = newBus({ partitions: 1 });
    await bus.publish(
      TOPIC,
      Array.from({ length: 10 }, (_, i) => ({ key: 'k', value: i })),
    );
    // A group that has not subscribed yet would read every retained message.
    expect(await bus.lag(TOPIC, 'slow')).toBe(10);

    const gates: ReturnType<typeof gate>[] = [];
    const sizes: number[] = [];
    const subscription = await bus.subscribe({
      topic: TOPIC,
      group: 'slow',
      schema: z.unknown(),
      maxBatchSize: 3,
      handler: async (messages) => {
        sizes.push(messages.length);
        const g = gate();
        gates.push(g);
        await g.promise;
      },
    });
    subscriptions.push(subscription);

    const expectedLag = [10, 7, 4, 1];
    for (const [step, lag] of expectedLag.entries()) {
      await eventually(() => gates.length === step + 1, within('the handler called with the next batch'));
      // The handler is running: nothing of this batch is committed yet.
      expect(await bus.lag(TOPIC, 'slow')).toBe(lag);
      gates[step]!.release();
    }
    await eventually(async () => (await bus.lag(TOPIC, 'slow')) === 0, within('every batch committed'));
    expect(sizes).toEqual([3, 3, 3, 1]);
    expect(await bus.lag(TOPIC, 'slow')).toBe(0);

    await bus.publish(TOPIC, [{ key: 'k', value: 10 }]);
    await eventually(() => gates.length === 5, within('the handler called with the new message'));
    expect(await bus.lag(TOPIC, 'slow')).toBe(1);
    gates[4]!.release();
    await eventually(async () => (await bus.lag(TOPIC, 'slow')) === 0, within('the new message committed'));
  });

  it('keeps the messages a slow group has not read while a fast group catches up', async () => {
    const bus = newBus({ partitions: 1 });
    const blocked = gate();
    const slowReceived: unknown[] = [];
    const slow = await bus.subscribe({
      topic: TOPIC,
      group: 'slow',
      schema: z.unknown(),
      maxBatchSize: 2,
      handler: async (messages) => {
        await blocked.promise;
        slowReceived.push(...messages.map((m) => m.value));
      },
    });
    subscriptions.push(slow);
    const fast = await collect(bus, 'fast');

    await bus.publish(
      TOPIC,
      Array.from({ length: 8 }, (_, i) => ({ key: 'k', value: i })),
    );
    await eventually(async () => (await bus.lag(TOPIC, 'fast')) === 0, within('the fast group caught up'));
    expect(fast.received.map((m) => m.value)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(await bus.lag(TOPIC, 'slow')).toBe(8);

    blocked.release();
    await eventually(async () => (await bus.lag(TOPIC, 'slow')) === 0, within('the slow group caught up once released'));
    expect(slowReceived).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('drops messages once every group has consumed them', async () => {
    const bus = newBus({ partitions: 2 });
    const first = await collect(bus, 'first');
    const second = await collect(bus, 'second');
    await bus.publish(
      TOPIC,
      Array.from({ length: 10 }, (_, i) => ({ key: `k-${i}`, value: i })),
    );
    await eventually(async () => (await bus.lag(TOPIC, 'first')) === 0 && (await bus.lag(TOPIC, 'second')) === 0, within('both groups caught up'));
    expect(first.received).toHaveLength(10);
    expect(second.received).toHaveLength(10);
    // A group that never subscribed counts the retained messages: none are left.
    expect(await bus.lag(TOPIC, 'late')).toBe(0);
    const late = await collect(bus, 'late');
    await bus.publish(TOPIC, [{ key: 'k-0', value: 10 }]);
    await eventually(() => late.received.length === 1 && first.received.length === 11, within('the late group and the first group to get the new message'));
    expect(late.received.map((m) => m.value)).toEqual([10]);
    // Offsets keep counting from the start of the partition, whatever was dropped.
    expect(late.received[0]?.offset).toBe(first.received[10]?.offset);
    expect(late.received[0]?.offset).toBeGreaterThan(0);
  });

  it('hands the partitions of a closed subscription to the remaining consumer', async () => {
    const partitions = 4;
    const bus = newBus({ partitions });
    const a = await collect(bus, 'workers');
    const b = await collect(bus, 'workers');
    // Keys covering every partition, several times each.
    const keys = Array.from({ length: 40 }, (_, i) => `k-${i}`);
    expect(new Set(keys.map((k) => partitionFor(k, partitions))).size).toBe(partitions);

    await bus.publish(
      TOPIC,
      keys.map((key) => ({ key, value: { key, round: 1 } })),
    );
    await eventually(async () => a.received.length + b.received.length === keys.length && (await bus.lag(TOPIC, 'workers')) === 0, within('round 1 handled and committed'));
    const partitionsOfA = new Set(a.received.map((m) => m.partition));
    expect(partitionsOfA.size).toBeGreaterThan(0);

    await a.subscription.close();
    const seenByA = a.received.length;
    const seenByB = b.received.length;

    await bus.publish(
      TOPIC,
      keys.map((key) => ({ key, value: { key, round: 2 } })),
    );
    await eventually(async () => b.received.length === seenByB + keys.length && (await bus.lag(TOPIC, 'workers')) === 0, within('round 2 handled by the remaining member'));

    expect(a.received).toHaveLength(seenByA);
    const round2 = b.received.slice(seenByB);
    expect(round2.map((m) => (m.value as { key: string }).key).sort()).toEqual([...keys].sort());
    const partitionsOfRound2 = new Set(round2.map((m) => m.partition));
    for (const p of partitionsOfA) expect(partitionsOfRound2.has(p)).toBe(true);
    expect(partitionsOfRound2.size).toBe(partitions);
  });

  it('delivers copies: mutating a published value afterwards does not change what consumers get', async () => {
    const bus = newBus({ partitions: 1 });
    const { received } = await collect(bus, 'g');
    const value = { name: 'Ada', nested: { count: 1 }, tags: ['a'] };
    await bus.publish(TOPIC, [{ key: 'k', value }]);
    value.name = 'changed';
    value.nested.count = 99;
    value.tags.push('b');

    await eventually(() => received.length === 1, within('the message delivered'));
    expect(received[0]?.value).toEqual({ name: 'Ada', nested: { count: 1 }, tags: ['a'] });
    expect(received[0]?.value).not.toBe(value);
  });

  it('caps batches at maxBatchSize', async () => {
    const bus = newBus({ partitions: 1 });
    const batches: DeliveredMessage[][] = [];
    const { received } = await collect(bus, 'g', { maxBatchSize: 7, batches });
    await bus.publish(
      TOPIC,
      Array.from({ length: 30 }, (_, i) => ({ key: 'same', value: i })),
    );
    await eventually(() => received.length === 30, within('30 messages'));

    expect(batches.map((batch) => batch.length)).toEqual([7, 7, 7, 7, 2]);
    for (const batch of batches) expect(batch.length).toBeLessThanOrEqual(7);
    expect(received.map((m) => m.value)).toEqual(Array.from({ length: 30 }, (_, i) => i));
    expect(received.map((m) => m.offset)).toEqual(Array.from({ length: 30 }, (_, i) => i));
  });

  it('rejects a publish after close()', async () => {
    const bus = newBus();
    const { received } = await collect(bus, 'g');
    await bus.close();
    await expect(bus.publish(TOPIC, [{ key: 'k', value: 1 }])).rejects.toThrow('bus is closed');
    expect(received).toHaveLength(0);
    expect(await bus.lag(TOPIC, 'g')).toBe(0);
  });
});

describe('InProcessBus regressions', () => {
  it('loses nothing when a partition changes owner while a batch is in flight', async () => {
    const bus = new InProcessBus({ partitions: 1, retryBackoffMs: 5 });
    let release!: () => void;
    const blocked = new Promise<void>((resolve) => {
      release = resolve;
    });
    const seenByB: unknown[] = [];
    const a = await bus.subscribe({ topic: 't', group: 'g', schema: z.unknown(), handler: async () => void (await blocked) });
    const b = await bus.subscribe({ topic: 't', group: 'g', schema: z.unknown(), handler: async (batch) => void seenByB.push(...batch.map((m) => m.value)) });
    await bus.publish('t', [
      { key: 'k', value: 1 },
      { key: 'k', value: 2 },
    ]);
    const closing = a.close(); // B takes the partition while A still handles [1, 2]
    await eventually(() => seenByB.length === 2, within('B to get the messages A had in hand'));
    release();
    await closing;
    expect(await bus.lag('t', 'g')).toBe(0);
    await bus.publish('t', [
      { key: 'k', value: 3 },
      { key: 'k', value: 4 },
    ]);
    await eventually(() => seenByB.length === 4, within('B to get the next messages'));
    expect(seenByB).toEqual([1, 2, 3, 4]);
    await b.close();
    await bus.close();
  });

  it('gives every group and every retry its own copy of a value', async () => {
    const bus = new InProcessBus({ partitions: 1, retryBackoffMs: 5, onIncident: () => undefined });
    const seenByAudit: unknown[] = [];
    const seenByMutator: unknown[] = [];
    const mutator = await bus.subscribe({
      topic: 't',
      group: 'mutator',
      schema: z.unknown(),
      handler: async (batch) => {
        const value = batch[0]!.value as { amount: number };
        seenByMutator.push({ ...value });
        value.amount *= 100;
        if (seenByMutator.length === 1) throw new Error('transient');
      },
    });
    const audit = await bus.subscribe({ topic: 't', group: 'audit', schema: z.unknown(), handler: async (batch) => void seenByAudit.push(batch[0]!.value) });
    await bus.publish('t', [{ key: 'k', value: { amount: 1 } }]);
    await eventually(() => seenByMutator.length === 2 && seenByAudit.length === 1, within('both groups to get the message'));
    expect(seenByMutator).toEqual([{ amount: 1 }, { amount: 1 }]);
    expect(seenByAudit).toEqual([{ amount: 1 }]);
    await mutator.close();
    await audit.close();
    await bus.close();
  });

  it('publishes all of a batch or none of it', async () => {
    const bus = new InProcessBus({ partitions: 1 });
    await expect(
      bus.publish('t', [
        { key: 'k', value: 'ok' },
        { key: 'k', value: undefined },
      ]),
    ).rejects.toThrow(TypeError);
    expect(await bus.lag('t', 'nobody')).toBe(0);
    await bus.close();
  });
});

describe('InProcessBus retention', () => {
  it('keeps only the newest messages of a topic nobody consumes, and a late group sees them', async () => {
    const bus = new InProcessBus({ partitions: 1, retainUnconsumed: 3 });
    await bus.publish('t', [1, 2, 3, 4, 5].map((value) => ({ key: 'k', value })));
    const seen: unknown[] = [];
    const sub = await bus.subscribe({ topic: 't', group: 'late', schema: z.unknown(), handler: async (batch) => void seen.push(...batch.map((m) => m.value)) });
    await eventually(() => seen.length === 3, within('the three retained messages'));
    expect(seen).toEqual([3, 4, 5]);
    await sub.close();
    await bus.close();
  });
});

describe('InProcessBus results, retries and dead letters', () => {
  const deadLettersOf = async (bus: InProcessBus, topic: string) => {
    const letters: DeadLetter[] = [];
    await bus.subscribe({ topic: dlqTopic(topic), group: 'dlq', schema: deadLetterSchema, handler: async (batch) => void letters.push(...batch.map((m) => m.value)) });
    return letters;
  };

  it('gives up on the whole batch of a batch-wide retry past its budget, each message with the reason', async () => {
    const incidents: ConsumerIncident[] = [];
    const bus = new InProcessBus({ partitions: 1, retryBackoffMs: 1, onIncident: (i) => incidents.push(i) });
    const letters = await deadLettersOf(bus, 't');
    let calls = 0;
    await bus.subscribe({
      topic: 't',
      group: 'g',
      schema: z.number(),
      retryBudget: 2,
      handler: async () => {
        calls++;
        return retry('store unavailable');
      },
    });
    await bus.publish('t', [1, 2, 3].map((value) => ({ key: 'k', value })));
    await eventually(async () => letters.length === 3 && (await bus.lag('t', 'g')) === 0, within('the batch dead-lettered'));
    expect(calls).toBe(3);
    expect(letters.map((l) => [l.value, l.attempts, l.reason])).toEqual([1, 2, 3].map((value) => [value, 3, 'store unavailable (gave up after 3 deliveries)']));
    // The backoff doubles from retryBackoffMs for each retry of the same message.
    expect(incidents.filter((i) => i.outcome === 'retry').map((i) => i.retryInMs)).toEqual([1, 2]);
    await bus.close();
  });

  it('dead-letters at the first retry with a budget of 0, and refuses a budget that is not a whole number', async () => {
    const bus = new InProcessBus({ partitions: 1, onIncident: () => undefined });
    const letters = await deadLettersOf(bus, 't');
    await bus.subscribe({ topic: 't', group: 'g', schema: z.number(), retryBudget: 0, handler: async () => retry('no') });
    await bus.publish('t', [{ key: 'k', value: 1 }]);
    await eventually(() => letters.length === 1, within('the dead letter'));
    expect(letters[0]).toMatchObject({ value: 1, attempts: 1, reason: 'no (gave up after 1 delivery)' });
    await expect(bus.subscribe({ topic: 't', group: 'h', schema: z.number(), retryBudget: -1, handler: async () => undefined })).rejects.toThrow(RangeError);
    await bus.close();
  });

  it('retries the batch of a handler that answers a result per message but not one for each', async () => {
    const incidents: ConsumerIncident[] = [];
    const bus = new InProcessBus({ partitions: 1, retryBackoffMs: 1, onIncident: (i) => incidents.push(i) });
    let calls = 0;
    await bus.subscribe({ topic: 't', group: 'g', schema: z.number(), handler: async () => (++calls === 1 ? [ok()] : undefined) });
    await bus.publish('t', [1, 2].map((value) => ({ key: 'k', value })));
    await eventually(async () => (await bus.lag('t', 'g')) === 0, within('the batch committed on its second delivery'));
    expect(calls).toBe(2);
    expect(incidents[0]).toMatchObject({ outcome: 'retry', messages: 2, attempts: 1 });
    expect(incidents[0]!.reason).toContain('answered 1 results for 2 messages');
    await bus.close();
  });

  it('commits nothing of a batch whose dead letters could not be published, and delivers it again', async () => {
    const bus = new InProcessBus({ partitions: 1, retryBackoffMs: 1, onIncident: () => undefined });
    const publish = bus.publish.bind(bus);
    let refuse = true;
    bus.publish = async (topic, messages) => {
      if (topic === dlqTopic('t') && refuse) throw new Error('DLQ unavailable');
      return publish(topic, messages);
    };
    const letters = await deadLettersOf(bus, 't');
    const seen: number[] = [];
    await bus.subscribe({ topic: 't', group: 'g', schema: z.number(), handler: async (batch) => void seen.push(...batch.map((m) => m.value)) });
    await bus.publish('t', [{ key: 'k', value: 1 }, { key: 'k', value: 'not a number' }]);
    await eventually(() => seen.length >= 2, within('the batch delivered twice'));
    expect(await bus.lag('t', 'g')).toBe(2);
    refuse = false;
    await eventually(async () => letters.length === 1 && (await bus.lag('t', 'g')) === 0, within('the dead letter published and the batch committed'));
    expect(letters[0]).toMatchObject({ value: 'not a number', attempts: 0 });
    await bus.close();
  });
});
