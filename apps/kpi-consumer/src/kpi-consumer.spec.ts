import { InProcessBus } from '@herald/bus';
import { dlqTopic, type MessageEvent, TOPICS } from '@herald/contracts';
import { pino } from 'pino';
import { type EventSink, KpiConsumer } from './kpi-consumer.js';

/** A store whose connection fails a given number of times (a unit test double of ClickHouse). */
class FlakyStore implements EventSink {
  readonly inserts: { events: readonly MessageEvent[]; token?: string }[] = [];
  constructor(private failures: number) {}
  async insertEvents(events: readonly MessageEvent[], options: { dedupToken?: string }) {
    if (this.failures-- > 0) throw new Error('connection refused');
    this.inserts.push({ events, token: options.dedupToken });
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

async function until(predicate: () => boolean, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('KpiConsumer', () => {
  it('backs off while the store fails, then inserts everything once, acknowledged after the insert', async () => {
    const bus = new InProcessBus({ partitions: 1, retryBackoffMs: 5 });
    const store = new FlakyStore(3);
    const consumer = new KpiConsumer(bus, store, pino({ level: 'silent' }));
    await consumer.start();
    await bus.publish(TOPICS.messageEvents, Array.from({ length: 100 }, (_, i) => ({ key: 'd', value: event(i) })));
    await until(() => consumer.stats.inserted === 100);
    expect(consumer.stats.failures).toBe(3);
    expect(store.inserts.flatMap((b) => b.events.map((e) => e.eventId))).toHaveLength(100);
    expect(bus.lag(TOPICS.messageEvents, 'kpi-consumer')).toBe(0);
    await consumer.stop();
    await bus.close();
  });

  it('gives the same batch the same deduplication token', async () => {
    const bus = new InProcessBus({ partitions: 1 });
    const store = new FlakyStore(0);
    const consumer = new KpiConsumer(bus, store, pino({ level: 'silent' }));
    await consumer.start();
    await bus.publish(TOPICS.messageEvents, [1, 2, 3].map((i) => ({ key: 'd', value: event(i) })));
    await until(() => store.inserts.length === 1);
    await bus.publish(TOPICS.messageEvents, [1, 2, 3].map((i) => ({ key: 'd', value: event(i) })));
    await until(() => store.inserts.length === 2);
    expect(store.inserts[0]!.token).toBe(store.inserts[1]!.token);
    await consumer.stop();
    await bus.close();
  });

  it('sends poison events to the DLQ with the reason, and the good ones still land', async () => {
    const bus = new InProcessBus({ partitions: 1 });
    const store = new FlakyStore(0);
    const dead: unknown[] = [];
    await bus.subscribe({ topic: dlqTopic(TOPICS.messageEvents), group: 'ops', handler: async (batch) => void dead.push(...batch.map((m) => m.value)) });
    const consumer = new KpiConsumer(bus, store, pino({ level: 'silent' }));
    await consumer.start();
    await bus.publish(TOPICS.messageEvents, [
      { key: 'd', value: event(1) },
      { key: 'd', value: { type: 'exploded' } },
      { key: 'd', value: event(2) },
    ]);
    await until(() => consumer.stats.inserted === 2 && dead.length === 1);
    expect(dead[0]).toMatchObject({ value: { type: 'exploded' }, reason: expect.stringContaining('eventId') });
    await consumer.stop();
    await bus.close();
  });
});
