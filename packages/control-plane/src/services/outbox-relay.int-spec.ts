// The outbox's reads for the relay over a real store (PGlite and PostgreSQL). The relay's
// publishing, death and restart, and its pruning are apps/gateway's outbox.int-spec.
import { createTestDatabase, describeEachStore, type TestDatabase } from '@herald/testing';
import { SqlOutboxRepository } from '../repositories/outbox.repository.js';

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
});
