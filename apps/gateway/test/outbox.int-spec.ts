// The outbox: OK commits the state change and the command together; a relay that died before
// publishing publishes on restart; a relay that died after publishing but before marking
// publishes again, and consumers dedupe by command id.
import { busFromEnv, type DeliveredMessage } from '@herald/bus';
import { type DeliveryCommand, deliveryCommandSchema, TOPICS } from '@herald/contracts';
import { type Database, OutboxRelay, PublishedMessages, type Queryable, systemClock } from '@herald/control-plane';
import { describeEachStore, eventually } from '@herald/testing';
import { z } from 'zod';
import { approvedDelivery, type Harness, startHarnessWithAudience } from './harness.js';

describeEachStore('outbox', (kind) => {
  describe('relay', () => {
    let h: Harness;
    let audienceId: string;

    beforeAll(async () => {
      // NOTE: this gateway runs no relay of its own: the test plays the relay's life and death.
      ({ h, audienceId } = await startHarnessWithAudience(kind, 4, {}, { relay: false }));
    });
    afterAll(async () => h?.close());

    it('publishes after a crash between commit and publish, and consumers apply each command once', async () => {
      const id = await approvedDelivery(h, audienceId);
      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      expect((await h.api('POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`)).status).toBe(202);

      // Committed: the state and the command are there; nothing was published.
      const unpublished = await h.database.db.query<{ command_id: string }>(
        `SELECT command_id FROM outbox WHERE payload->>'deliveryId' = $1 AND published_at IS NULL`,
        [id],
      );
      expect(unpublished).toHaveLength(1);
      expect(h.commands).toHaveLength(0);

      // A consumer that applies commands once, in its own transaction.
      const bus = busFromEnv({}, { inProcess: { retryBackoffMs: 5 } });
      const dedupe = h.gateway.controlPlane.commandDeduplicator('test-engine');
      const seen: DeliveredMessage<DeliveryCommand>[] = [];
      let applied = 0;
      await bus.subscribe({
        topic: TOPICS.deliveryCommands,
        group: 'engine',
        schema: deliveryCommandSchema,
        handler: async (batch) => {
          for (const message of batch) {
            seen.push(message);
            const command = message.value;
            await dedupe.once(command.commandId, async () => {
              applied++;
            });
          }
        },
      });

      // The relay restarts and publishes what was committed.
      const relay = new OutboxRelay(h.database.db, bus, systemClock);
      expect(await relay.drain()).toBe(1);
      await eventually(() => seen.length === 1, { what: 'the command delivered' });
      expect(seen[0]!.value).toMatchObject({ type: 'DeliveryStarted', deliveryId: id, commandId: unpublished[0]!.command_id });

      // A relay that died after publishing but before marking publishes the same command again.
      await h.database.db.query('UPDATE outbox SET published_at = NULL WHERE command_id = $1', [unpublished[0]!.command_id]);
      expect(await relay.drain()).toBe(1);
      await eventually(() => seen.length === 2, { what: 'the redelivery' });
      expect(applied).toBe(1);
      expect(await relay.drain()).toBe(0);
      await bus.close();
    });

    it('keeps commands in the outbox while the bus fails, and publishes them when it recovers', async () => {
      const id = await approvedDelivery(h, audienceId);
      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      await h.api('POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`);
      const bus = busFromEnv({});
      await bus.close(); // a bus that refuses every publish
      const failing = new OutboxRelay(h.database.db, bus, systemClock);
      await expect(failing.drain()).rejects.toThrow('bus is closed');
      const [row] = await h.database.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM outbox WHERE payload->>'deliveryId' = $1 AND published_at IS NULL`,
        [id],
      );
      expect(row!.n).toBe(1);
      const healthy = new OutboxRelay(h.database.db, h.bus, systemClock);
      expect(await healthy.drain()).toBeGreaterThanOrEqual(1);
      await eventually(() => h.commands.some((m) => (m.value as { deliveryId: string }).deliveryId === id), { what: 'the command' });
    });

    it('stop() during a drain lets that drain finish and ends the loop: nothing is published after it', async () => {
      const okDelivery = async () => {
        const id = await approvedDelivery(h, audienceId);
        const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
        await h.api('POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`);
      };
      await okDelivery();
      // A bus whose publishes wait at a gate: stop() is called while the loop's drain is in hand.
      const bus = busFromEnv({});
      const publish = bus.publish.bind(bus);
      let publishes = 0;
      let open!: () => void;
      const gate = new Promise<void>((resolve) => (open = resolve));
      bus.publish = async (topic, messages) => {
        publishes++;
        await gate;
        return publish(topic, messages);
      };
      const relay = new OutboxRelay(h.database.db, bus, systemClock);
      relay.start(1);
      await eventually(() => publishes === 1, { what: 'the drain in hand' });
      const stopped = relay.stop();
      open();
      await stopped;
      expect(publishes).toBe(1);
      // A command committed after the stop stays in the outbox: the loop did not start again.
      // Proof that the stopped loop had its chances: a second relay looping on the same outbox at
      // the same interval, on a bus that refuses every publish, finds the command still there
      // again and again (each attempt fails, so it takes nothing away from the stopped one).
      await okDelivery();
      const refusing = busFromEnv({});
      await refusing.close();
      let found = 0;
      const witness = new OutboxRelay(h.database.db, refusing, systemClock, () => found++);
      witness.start(1);
      await eventually(() => found >= 5 || publishes > 1, { what: 'a looping relay to find the command in the outbox five times' });
      await witness.stop();
      expect(publishes).toBe(1);
      await bus.close();
    });

    it('publishes a fanout row as one message per element, in order, and reads it back message by message', async () => {
      const db = h.database.db;
      const topic = `test.fanout.${Date.now()}`;
      const scratch = busFromEnv({});
      await new OutboxRelay(db, scratch, systemClock).drain(); // what earlier tests left
      await scratch.close();
      // A command, a fanout row of five messages (as the engine writes a batch's events), a command.
      // (How the relay's budget cuts between such rows: packages/control-plane's outbox-relay.int-spec.)
      const insert = (tx: Queryable, payload: unknown, fanout = false) =>
        tx.query('INSERT INTO outbox (command_id, topic, key, payload, fanout, messages) VALUES ($1, $2, $3, $4, $5, $6)', [
          crypto.randomUUID(),
          topic,
          'k',
          JSON.stringify(payload),
          fanout,
          Array.isArray(payload) ? payload.length : 1,
        ]);
      await db.transaction(async (tx) => {
        await insert(tx, { n: 0 });
        await insert(tx, [1, 2, 3, 4, 5].map((n) => ({ n })), true);
        await insert(tx, { n: 6 });
      });

      const bus = busFromEnv({}, { inProcess: { partitions: 1 } });
      const received: DeliveredMessage<{ n: number }>[] = [];
      await bus.subscribe({ topic, group: 'observer', schema: z.strictObject({ n: z.number() }), handler: async (batch) => void received.push(...batch) });
      const since = new Date(Date.now() - 1000);
      expect(await new OutboxRelay(db, bus, systemClock).drain()).toBe(3);
      await eventually(() => received.length === 7, { what: 'seven messages' });
      expect(received.map((m) => [m.key, (m.value as { n: number }).n])).toEqual([0, 1, 2, 3, 4, 5, 6].map((n) => ['k', n]));
      await bus.close();

      // Read back in pages of 2 messages: the pages end inside the fanout row and go on from there.
      const published = new PublishedMessages(db, topic);
      const seen: number[] = [];
      let after: { id: number; idx: number } | null = null;
      for (;;) {
        const page = await published.publishedSince(since, after, 2);
        if (page.length === 0) break;
        seen.push(...page.map((m) => (m.payload as { n: number }).n));
        after = page[page.length - 1]!;
      }
      expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6]);
    });

    it('prunes rows published longer ago than the retention, and never a row not published', async () => {
      const db = h.database.db;
      const topic = `test.prune.${Date.now()}`;
      const relay = new OutboxRelay(db, busFromEnv({}), systemClock);
      const add = (n: number) =>
        db.query('INSERT INTO outbox (command_id, topic, key, payload) VALUES ($1, $2, $3, $4)', [crypto.randomUUID(), topic, 'k', JSON.stringify({ n })]);
      const ids = async () => (await db.query<{ id: string }>('SELECT id FROM outbox WHERE topic = $1 ORDER BY id', [topic])).map((r) => Number(r.id));
      await add(1);
      await add(2);
      await relay.drain();
      const [first, second] = await ids();
      // Everything up to the second row was published eight days ago; the third row just now.
      await db.query(`UPDATE outbox SET published_at = now() - interval '8 days' WHERE id <= $1`, [second]);
      await add(3);
      await relay.drain();
      // An old row that never got published (its transaction committed late) stays.
      await db.query(`UPDATE outbox SET published_at = NULL WHERE id = $1`, [first]);
      await add(4);
      const sevenDays = 7 * 24 * 3_600_000;
      expect(await relay.prune(sevenDays)).toBeGreaterThanOrEqual(1);
      const left = await ids();
      expect(left).toHaveLength(3);
      expect(left[0]).toBe(first);
      expect(left).not.toContain(second);
      expect(await relay.prune(sevenDays)).toBe(0);
      const [unpublished] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox WHERE topic = $1 AND published_at IS NULL', [topic]);
      expect(unpublished!.n).toBe(2);
      await relay.drain();
    });

    it('drain() publishes a command committed while another drain was finishing', async () => {
      // The first drain has read an empty outbox and holds, as if its lock release were slow;
      // a command commits; a drain() called then must publish it, not share the empty drain.
      const real = h.database.db;
      let calls = 0;
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      const db: Database = Object.create(real);
      db.withAdvisoryLock = async (key, work) => {
        const result = await real.withAdvisoryLock(key, work);
        if (calls++ === 0) await held;
        return result;
      };
      await new OutboxRelay(real, h.bus, systemClock).drain();
      const relay = new OutboxRelay(db, h.bus, systemClock);
      const first = relay.drain();
      await eventually(() => calls === 1, { what: 'the first drain to finish reading' });
      const id = await approvedDelivery(h, audienceId);
      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      expect((await h.api('POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`)).status).toBe(202);
      const second = relay.drain();
      release();
      expect(await first).toBe(0);
      expect(await second).toBe(1);
      const started = h.commands.filter((m) => (m.value as DeliveryCommand).deliveryId === id && (m.value as DeliveryCommand).type === 'DeliveryStarted');
      expect(started).toHaveLength(1);
    });
  });
});
