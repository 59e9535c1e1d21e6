import { busFromEnv, type InProcessBusOptions, partitionFor } from '@herald/bus';
import { type DeadLetter, deadLetterSchema, dlqTopic, type MessageEvent, TOPICS } from '@herald/contracts';
import { eventually, holdFor } from '@herald/testing';
import { pino } from 'pino';
import { type EventSink, KpiConsumer } from './kpi-consumer.js';

/** A store whose connection fails a given number of times (a unit test double of ClickHouse). */
class FlakyStore implements EventSink {
  readonly inserts: { events: readonly MessageEvent[]; token?: string }[] = [];
  readonly stored = new Set<string>();
  lookups = 0;
  constructor(public failures: number) {}
  async insertEvents(events: readonly MessageEvent[], options: { dedupToken?: string }) {
    if (this.failures-- > 0) throw new Error('connection refused');
    this.inserts.push({ events, token: options.dedupToken });
    for (const event of events) this.stored.add(event.eventId);
  }
  async missingEventIds(ids: readonly string[]) {
    this.lookups++;
    return new Set(ids.filter((id) => !this.stored.has(id)));
  }
}

const event = (i: number): MessageEvent => ({
  eventId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
  type: 'sent',
  deliveryId: '11111111-1111-4111-8111-111111111111',
  occurrence: 0,
  messageId: `<m${i}@x>`,
  profileId: `p${i}`,
  channel: 'email',
  occurredAt: '2026-12-01T00:00:00.000Z',
});

/** How long a wait may take here: the bus and the store are in-process. */
const within = (what: string) => ({ timeoutMs: 5_000, intervalMs: 5, what });

const fast = { maxWaitMs: 10, retryDelayMs: 5 };

/** The in-process bus (an environment without KAFKA_BROKERS). */
const inProcessBus = (options: InProcessBusOptions) => busFromEnv({}, { inProcess: options });

describe('KpiConsumer', () => {
  it('flushes by size: one insert per maxRows events gathered across partitions and bus batches', async () => {
    const bus = inProcessBus({ partitions: 4 });
    const store = new FlakyStore(0);
    const consumer = new KpiConsumer(bus, store, pino({ level: 'silent' }), { maxRows: 400, maxWaitMs: 60_000, fetchSize: 100 });
    await consumer.start();
    // 100 events on each of the 4 partitions (keys chosen by partition): one bus batch each, none behind.
    const keys = [0, 1, 2, 3].map((p) => Array.from({ length: 1000 }, (_, i) => `k${i}`).find((k) => partitionFor(k, 4) === p)!);
    await bus.publish(TOPICS.messageEvents, Array.from({ length: 400 }, (_, i) => ({ key: keys[i % 4]!, value: event(i) })));
    await eventually(() => consumer.stats.inserted === 400, within('the 400 events inserted'));
    expect(store.inserts.map((b) => b.events.length)).toEqual([400]);
    // A few more wait for the size or the time limit.
    await bus.publish(TOPICS.messageEvents, Array.from({ length: 10 }, (_, i) => ({ key: keys[0]!, value: event(400 + i) })));
    await eventually(() => consumer.stats.buffered === 10, within('the 10 more events buffered'));
    expect(store.inserts).toHaveLength(1);
    await consumer.stop();
    expect(consumer.stats.inserted).toBe(410);
    await bus.close();
  });

  it('flushes a backlog at once: a batch with more behind it does not wait for the time limit', async () => {
    const bus = inProcessBus({ partitions: 1 });
    const store = new FlakyStore(0);
    const consumer = new KpiConsumer(bus, store, pino({ level: 'silent' }), { maxRows: 50_000, maxWaitMs: 60_000, fetchSize: 100 });
    await bus.publish(TOPICS.messageEvents, Array.from({ length: 250 }, (_, i) => ({ key: 'd', value: event(i) })));
    await consumer.start();
    // Batches of 100 and 100 have more behind them: inserted at once; the last 50 wait (caught up).
    await eventually(() => consumer.stats.inserted === 200, within('200 events inserted'));
    expect(store.inserts.map((b) => b.events.length)).toEqual([100, 100]);
    expect(consumer.stats.buffered).toBe(50);
    await consumer.stop();
    await bus.close();
  });

  it('flushes by time: a few events are inserted after maxWaitMs, in one insert', async () => {
    const bus = inProcessBus({ partitions: 4 });
    const store = new FlakyStore(0);
    const consumer = new KpiConsumer(bus, store, pino({ level: 'silent' }), { maxWaitMs: 150 });
    await consumer.start();
    const started = Date.now();
    await bus.publish(TOPICS.messageEvents, Array.from({ length: 10 }, (_, i) => ({ key: `d${i}`, value: event(i) })));
    await eventually(() => consumer.stats.inserted === 10, within('the 10 events inserted'));
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(store.inserts).toHaveLength(1);
    await consumer.stop();
    await bus.close();
  });

  it('catches up on demand: inserts what it holds and what the bus has for it, without waiting for the time limit', async () => {
    const bus = inProcessBus({ partitions: 4 });
    const store = new FlakyStore(0);
    const consumer = new KpiConsumer(bus, store, pino({ level: 'silent' }), { maxWaitMs: 60_000 });
    await consumer.start();
    await bus.publish(TOPICS.messageEvents, Array.from({ length: 10 }, (_, i) => ({ key: `d${i}`, value: event(i) })));
    const started = Date.now();
    expect(await consumer.catchUp()).toBe(true);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(consumer.stats.inserted).toBe(10);
    expect(await bus.lag(TOPICS.messageEvents, 'kpi-consumer')).toBe(0);
    await consumer.stop();
    await bus.close();
  });

  it('while the store fails, retries the same flush with the same token and takes nothing more from the bus', async () => {
    const bus = inProcessBus({ partitions: 2, retryBackoffMs: 5 });
    const store = new FlakyStore(Number.POSITIVE_INFINITY);
    const tokens = new Set<string | undefined>();
    const insert = store.insertEvents.bind(store);
    store.insertEvents = async (events, options) => {
      tokens.add(options.dedupToken);
      return insert(events, options);
    };
    const consumer = new KpiConsumer(bus, store, pino({ level: 'silent' }), { maxWaitMs: 5, retryDelayMs: 5, maxRetryDelayMs: 20, fetchSize: 50 });
    await consumer.start();
    await bus.publish(TOPICS.messageEvents, Array.from({ length: 1_000 }, (_, i) => ({ key: `d${i}`, value: event(i) })));
    await eventually(() => consumer.stats.failures >= 10, within('ten failed inserts'));
    // One bus batch per partition in hand, no more: memory stays bounded while the store is down.
    expect(consumer.stats.buffered).toBeLessThanOrEqual(2 * 50);
    expect(tokens.size).toBe(1);
    expect(await bus.lag(TOPICS.messageEvents, 'kpi-consumer')).toBe(1_000);
    store.failures = 0;
    await eventually(() => consumer.stats.inserted === 1_000, within('the 1,000 events inserted'));
    expect(await bus.lag(TOPICS.messageEvents, 'kpi-consumer')).toBe(0);
    expect(new Set(store.inserts.flatMap((b) => b.events.map((e) => e.eventId))).size).toBe(1_000);
    await consumer.stop();
    await bus.close();
  });

  it('backs off while the store fails, then inserts everything once, acknowledged after the insert', async () => {
    const bus = inProcessBus({ partitions: 1, retryBackoffMs: 5 });
    const store = new FlakyStore(3);
    const consumer = new KpiConsumer(bus, store, pino({ level: 'silent' }), fast);
    await consumer.start();
    await bus.publish(TOPICS.messageEvents, Array.from({ length: 100 }, (_, i) => ({ key: 'd', value: event(i) })));
    await eventually(() => consumer.stats.inserted === 100, within('100 events inserted'));
    expect(consumer.stats.failures).toBe(3);
    expect(store.inserts.flatMap((b) => b.events.map((e) => e.eventId))).toHaveLength(100);
    expect(await bus.lag(TOPICS.messageEvents, 'kpi-consumer')).toBe(0);
    await consumer.stop();
    await bus.close();
  });

  it('drops what a previous consumer inserted but never acknowledged, and checks the store only until new events come', async () => {
    const bus = inProcessBus({ partitions: 1 });
    const store = new FlakyStore(0);
    // The previous consumer inserted events 0..99 and died before its offsets moved.
    await store.insertEvents(Array.from({ length: 100 }, (_, i) => event(i)), {});
    const consumer = new KpiConsumer(bus, store, pino({ level: 'silent' }), { ...fast, fetchSize: 60 });
    await consumer.start();
    await bus.publish(TOPICS.messageEvents, Array.from({ length: 300 }, (_, i) => ({ key: 'd', value: event(i) })));
    await eventually(async () => (await bus.lag(TOPICS.messageEvents, 'kpi-consumer')) === 0 && consumer.stats.buffered === 0, within('the bus drained and the buffer flushed'));
    expect(consumer.stats.redelivered).toBe(100);
    expect(consumer.stats.inserted).toBe(200);
    expect(store.inserts.slice(1).flatMap((b) => b.events.map((e) => e.eventId))).toEqual(Array.from({ length: 200 }, (_, i) => event(i + 100).eventId));
    // Batches 0-59 and 60-119 were looked up (the second brought new events); none after.
    expect(store.lookups).toBe(2);
    await consumer.stop();
    await bus.close();
  });

  it('runs work between flushes: never while an insert is in progress, and holds the next flush until it is done', async () => {
    const bus = inProcessBus({ partitions: 1 });
    const order: string[] = [];
    let releaseInsert!: () => void;
    const store: EventSink = {
      async insertEvents(events) {
        order.push(`insert ${events.length} started`);
        await new Promise<void>((resolve) => {
          releaseInsert = resolve;
        });
        order.push(`insert ${events.length} done`);
      },
    };
    const consumer = new KpiConsumer(bus, store, pino({ level: 'silent' }), fast);
    await consumer.start();
    await bus.publish(TOPICS.messageEvents, [{ key: 'd', value: event(1) }]);
    await eventually(() => order.length === 1, within('the first insert started'));
    let releaseWork!: () => void;
    const work = consumer.betweenFlushes(async () => {
      order.push('work started');
      await new Promise<void>((resolve) => {
        releaseWork = resolve;
      });
      order.push('work done');
      return 'result';
    });
    // Nothing marks "the work is held": time for it to start, were it not held, is the check.
    await holdFor(30, 'the work must not start while the insert is in progress');
    expect(order).toEqual(['insert 1 started']);
    releaseInsert();
    await eventually(() => order.includes('work started'), within('the work started'));
    // A flush due while the work runs waits for it.
    await bus.publish(TOPICS.messageEvents, [{ key: 'd', value: event(2) }, { key: 'd', value: event(3) }]);
    await eventually(() => consumer.stats.buffered === 2, within('two events buffered'));
    // The flush comes due by time (maxWaitMs, 10 ms): letting that time pass is the scenario.
    await holdFor(30, 'the flush comes due meanwhile, and must wait for the work');
    expect(order).toEqual(['insert 1 started', 'insert 1 done', 'work started']);
    releaseWork();
    expect(await work).toBe('result');
    await eventually(() => order.length === 5, within('the second insert started'));
    expect(order.slice(3)).toEqual(['work done', 'insert 2 started']);
    releaseInsert();
    await eventually(() => consumer.stats.inserted === 3, within('the three events inserted'));
    await consumer.stop();
    await bus.close();
  });

  it('gives the same batch the same deduplication token', async () => {
    const bus = inProcessBus({ partitions: 1 });
    const store = new FlakyStore(0);
    const consumer = new KpiConsumer(bus, store, pino({ level: 'silent' }), fast);
    await consumer.start();
    await bus.publish(TOPICS.messageEvents, [1, 2, 3].map((i) => ({ key: 'd', value: event(i) })));
    await eventually(() => store.inserts.length === 1, within('the first insert'));
    await bus.publish(TOPICS.messageEvents, [1, 2, 3].map((i) => ({ key: 'd', value: event(i) })));
    await eventually(() => store.inserts.length === 2, within('the second insert'));
    expect(store.inserts[0]!.token).toBe(store.inserts[1]!.token);
    await consumer.stop();
    await bus.close();
  });

  it('sends poison events to the DLQ with the reason, and the good ones still land', async () => {
    const bus = inProcessBus({ partitions: 1 });
    const store = new FlakyStore(0);
    const dead: DeadLetter[] = [];
    await bus.subscribe({ topic: dlqTopic(TOPICS.messageEvents), group: 'ops', schema: deadLetterSchema, handler: async (batch) => void dead.push(...batch.map((m) => m.value)) });
    const consumer = new KpiConsumer(bus, store, pino({ level: 'silent' }), fast);
    await consumer.start();
    await bus.publish(TOPICS.messageEvents, [
      { key: 'd', value: event(1) },
      { key: 'd', value: { type: 'exploded' } },
      { key: 'd', value: event(2) },
    ]);
    await eventually(() => consumer.stats.inserted === 2 && dead.length === 1, within('two events inserted and one dead-lettered'));
    expect(dead[0]).toMatchObject({ value: { type: 'exploded' }, reason: expect.stringContaining('eventId') });
    await consumer.stop();
    await bus.close();
  });
});
