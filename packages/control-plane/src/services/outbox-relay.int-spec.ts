// The outbox's reads for the relay over a real store (PGlite and PostgreSQL), and how the relay
// keys message events on a real bus (the in-process one and Kafka). The relay's publishing,
// death and restart, and its pruning are apps/gateway's outbox.int-spec.
import { randomBytes } from 'node:crypto';
import { type Bus, busFromEnv, type DeliveredMessage } from '@herald/bus';
import { type MessageEvent, messageEventKey, messageEventSchema, TOPICS } from '@herald/contracts';
import { createTestDatabase, describeEachStore, eventually, kafkaAvailable, startTestKafka, type TestDatabase, type TestKafka } from '@herald/testing';
import { systemClock } from '../clock.js';
import { SqlOutboxRepository } from '../repositories/outbox.repository.js';
import { OutboxRelay } from './outbox-relay.js';

const PARTITIONS = 4;

describeEachStore('outbox', (kind) => {
  let database: TestDatabase;
  const outbox = new SqlOutboxRepository();

  beforeAll(async () => {
    database = await createTestDatabase(kind);
  });
  afterAll(async () => database?.drop());

  it("cuts the relay's next read between rows once they hold its budget of messages, never inside a fanout row, and always takes the first", async () => {
    const { db } = database;
    const topic = `test.fanout.${Date.now()}`;
    const uuid = () => crypto.randomUUID();
    await db.transaction(async (tx) => {
      await outbox.enqueue(tx, { commandId: uuid(), topic, key: 'k', payload: { n: 0 } });
      await outbox.enqueueFanout(tx, { commandId: uuid(), topic, key: 'k', payloads: [1, 2, 3, 4, 5].map((n) => ({ n })) });
      await outbox.enqueue(tx, { commandId: uuid(), topic, key: 'k', payload: { n: 6 } });
    });
    expect((await outbox.unpublished(db, 500, 3)).map((r) => r.fanout)).toEqual([false, true]);
    expect(await outbox.unpublished(db, 500, 1)).toHaveLength(1);
  });

  // One delivery's events, as the engine writes them (a fanout row per batch) and the webhook
  // writes a later bounce (a row per event): on a bus of PARTITIONS partitions they must spread
  // over several partitions, and each message's events must stay on one, in order.
  const buses: [string, () => boolean, () => Promise<{ bus: Bus; stop: () => Promise<void> }>][] = [
    ['the in-process bus', () => true, async () => {
      const bus = busFromEnv({}, { inProcess: { partitions: PARTITIONS } });
      return { bus, stop: () => bus.close() };
    }],
    ['Kafka', kafkaAvailable, async () => {
      const broker: TestKafka = await startTestKafka();
      const bus = busFromEnv(
        { KAFKA_BROKERS: broker.brokers.join(','), KAFKA_TOPIC_PREFIX: `herald-test-${randomBytes(4).toString('hex')}-`, KAFKA_MESSAGE_EVENT_PARTITIONS: PARTITIONS },
        { kafka: { logLevel: 'error' } },
      );
      return { bus, stop: async () => { await bus.close(); await broker.stop(); } };
    }],
  ];
  for (const [name, available, open] of buses) {
    (available() ? it : it.skip)(`publishes one delivery's events over several partitions of ${name}, each message's events on one partition and in order`, async () => {
      const { db } = database;
      const { bus, stop } = await open();
      try {
        const deliveryId = crypto.randomUUID();
        const messages = Array.from({ length: 24 }, (_, i) => `<m${i}.keys@herald.test>`);
        const event = (messageId: string, type: MessageEvent['type'], extra: Partial<MessageEvent> = {}): MessageEvent => ({
          eventId: crypto.randomUUID(),
          type,
          deliveryId,
          occurrence: 0,
          messageId,
          profileId: `p-${messageId}`,
          channel: 'email',
          occurredAt: new Date().toISOString(),
          ...extra,
        });
        const bounced = messages.filter((_, i) => i % 4 === 0);
        await db.transaction(async (tx) => {
          await outbox.enqueueFanout(tx, { commandId: crypto.randomUUID(), topic: TOPICS.messageEvents, key: deliveryId, payloads: messages.map((m) => event(m, 'sent')) });
          await outbox.enqueueFanout(tx, { commandId: crypto.randomUUID(), topic: TOPICS.messageEvents, key: deliveryId, payloads: messages.map((m) => event(m, 'delivered')) });
          for (const m of bounced) {
            const e = event(m, 'bounced', { bounceType: 'hard', supersedes: 'delivered' });
            await outbox.enqueue(tx, { commandId: e.eventId, topic: TOPICS.messageEvents, key: messageEventKey(e), payload: e });
          }
        });
        const seen: DeliveredMessage<MessageEvent>[] = [];
        await bus.subscribe({ topic: TOPICS.messageEvents, group: 'relay-keys', schema: messageEventSchema, handler: async (batch) => void seen.push(...batch) });
        await new OutboxRelay(db, bus, systemClock).drain();
        const mine = () => seen.filter((m) => m.value.deliveryId === deliveryId);
        const expected = messages.length * 2 + bounced.length;
        await eventually(() => mine().length >= expected, { timeoutMs: 30_000, what: `the delivery's ${expected} events consumed` });

        expect(mine()).toHaveLength(expected);
        expect(new Set(mine().map((m) => m.partition)).size).toBeGreaterThan(1);
        for (const messageId of messages) {
          const its = mine().filter((m) => m.value.messageId === messageId);
          expect(new Set(its.map((m) => m.partition)).size).toBe(1);
          expect(its.map((m) => m.key)).toEqual(its.map(() => messageId));
          const types = [...its].sort((a, b) => a.offset - b.offset).map((m) => m.value.type);
          expect(types).toEqual(bounced.includes(messageId) ? ['sent', 'delivered', 'bounced'] : ['sent', 'delivered']);
        }
      } finally {
        await stop();
      }
    });
  }
});
