// Pause and stop act within a second: once the API has answered, no SMTP transaction starts
// more than a second later, on every engine sharing the send (only one of them receives the
// command). Real batches (500 recipients, the default), two worker threads of five
// connections per engine, a real SMTP server on loopback that timestamps the MAIL FROM opening
// each message's transaction (what the bound is about: a transaction begun within it may be
// accepted a little after it).
import { describeEachStore, eventually } from '@herald/testing';
import { type EngineHarness, startEngineHarness } from './engine-harness.js';

const BOUND_MS = 1000;
const AUDIENCE = 6000;

/**
 * Starts a send, waits until it is well under way, then POSTs `action`; once the engines have put
 * the delivery down, checks that no message arrived later than the bound after the API answered.
 */
async function interrupt(h: EngineHarness, id: string, prefix: string, action: 'pause' | 'stop'): Promise<void> {
  await h.confirmAndOk(id);
  await eventually(() => h.sink.messages().filter((m) => m.to[0]!.startsWith(prefix)).length >= 600, { timeoutMs: 30_000, what: 'the send to be under way' });
  const answer = await h.api('POST', `/v1/deliveries/${id}/${action}`);
  const answeredAt = Date.now();
  expect(answer.status).toBe(200);
  await h.waitUntilPutDown(id);
  expect(h.transactionsStartedAfter(prefix, answeredAt).lastMs).toBeLessThanOrEqual(BOUND_MS);
}

describeEachStore('pause and stop latency', (kind) => {
  describe.each([1, 2])('%i engine(s)', (engines) => {
    let h: EngineHarness;
    beforeAll(async () => {
      h = await startEngineHarness(kind, { engine: { batchSize: 500 } });
      for (let n = 1; n < engines; n++) await h.addEngine();
    });
    afterAll(async () => h?.close());

    it('starts no transaction a second after pause, and resumes with everyone sent once', async () => {
      const prefix = `pl${engines}-`;
      const id = await h.deliveryFor(AUDIENCE, {}, prefix);
      await interrupt(h, id, prefix, 'pause');
      const ledger = await h.ledger(id);
      expect(ledger.sent).toBeLessThan(AUDIENCE);
      expect(ledger.pending).toBeGreaterThan(0);

      await h.api('POST', `/v1/deliveries/${id}/resume`);
      await h.waitForState(id, 'finished');
      expect(await h.ledger(id)).toEqual({ sent: AUDIENCE });
      const mine = h.sink.messages().filter((m) => m.to[0]!.startsWith(prefix));
      expect(mine).toHaveLength(AUDIENCE);
      expect(new Set(mine.map((m) => m.messageId)).size).toBe(AUDIENCE);
      // A recipient put down unsent did not spend an attempt.
      const [attempts] = await h.database.db.query<{ max: number }>('SELECT max(attempts)::int AS max FROM send_ledger WHERE delivery_id = $1', [id]);
      expect(attempts!.max).toBe(1);
    });

    it('starts no transaction a second after stop; what was sent is in the ledger, once', async () => {
      const prefix = `st${engines}-`;
      const id = await h.deliveryFor(AUDIENCE, {}, prefix);
      await interrupt(h, id, prefix, 'stop');
      const mine = h.sink.messages().filter((m) => m.to[0]!.startsWith(prefix));
      expect(mine.length).toBeLessThan(AUDIENCE);
      expect(new Set(mine.map((m) => m.messageId)).size).toBe(mine.length);
      const ledger = await h.ledger(id);
      expect(ledger.sent).toBe(mine.length);
      // The recipients put down unsent by the stop are `stopped`, not pending in a run that will not go on.
      expect(ledger).toEqual({ sent: mine.length, stopped: AUDIENCE - mine.length });
      expect((await h.api('GET', `/v1/deliveries/${id}`)).body.state).toBe('stopped');
    });
  });
});
