// The circuit breaker on real sends (capture sink on loopback, PGlite and PostgreSQL): it judges
// rates on a minimum sample, never pauses a run with nothing left to send, stops a bad list
// within its first wave, and resume retries what waits at once.
import { describeEachStore } from '@herald/testing';
import { type EngineHarness, startEngineHarness } from './engine-harness.js';

/** Audit entries of a delivery that moved it to `paused`. */
async function pauses(h: EngineHarness, id: string): Promise<unknown[]> {
  const audit = await h.api('GET', `/v1/deliveries/${id}/audit`);
  return (audit.body.items as { toState: string }[]).filter((entry) => entry.toState === 'paused');
}

/** Recipients handed to the engine at least once (queued, sent, retried, bounced...). */
async function handedOut(h: EngineHarness, id: string): Promise<number> {
  const [row] = await h.database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM send_ledger WHERE delivery_id = $1 AND status <> 'pending'`, [id]);
  return row!.n;
}

describeEachStore('circuit breaker', (kind) => {
  describe('judging on enough evidence', () => {
    let h: EngineHarness;
    beforeAll(async () => {
      h = await startEngineHarness(kind, {
        rules: [
          { match: '*@greylist.test', code: 451, message: '4.7.1 Greylisted, try again later', times: 1 },
          { match: '/^hb-\\d*[0-5]@/', code: 550, message: '5.1.1 User unknown' },
        ],
      });
    });
    afterAll(async () => h?.close());

    it('does not pause a send for one greylisted address', async () => {
      // The one address of its domain answers 451 once ("100% of 1" paused the send).
      const id = await h.deliveryFor(100, {}, 'gl-', (n) => (n === 7 ? 'someone@greylist.test' : `gl-${n}@example.com`));
      await h.confirmAndOk(id);
      await h.waitForState(id, 'finished');
      expect(await h.ledger(id)).toEqual({ sent: 100 });
      expect(await pauses(h, id)).toEqual([]);
    });

    it('never pauses a run whose remaining recipients only wait for retries: it finishes', async () => {
      // The last 50 recipients (their domain answers 451 once) trip the domain rule, after
      // everyone was handed out: pausing would leave the run paused with nothing to send.
      const id = await h.deliveryFor(100, {}, 'rw-', (n) => (n < 50 ? `rw-${n}@example.com` : `rw-${n}@greylist.test`));
      await h.confirmAndOk(id);
      await h.waitForState(id, 'finished');
      expect(await h.ledger(id)).toEqual({ sent: 100 });
      expect(await pauses(h, id)).toEqual([]);
      const [retried] = await h.database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM send_ledger WHERE delivery_id = $1 AND attempts = 2`, [id]);
      expect(retried!.n).toBe(50);
    });

    it('stops a list with 60% hard bounces within its first wave', async () => {
      // First wave: max(1% of 5,000, the minimum sample of 50) = 50 recipients.
      const id = await h.deliveryFor(5000, {}, 'hb-');
      const before = h.sink.count();
      await h.confirmAndOk(id);
      const paused = await h.waitForState(id, 'paused');
      expect(paused.stateReason).toMatch(/^CIRCUIT_BREAKER: hard-bounce rate 60% is above 20% after 50 messages/);
      // The planner handed out the wave and nothing more until it was judged.
      expect(await handedOut(h, id)).toBe(50);
      expect(h.sink.count() - before).toBe(20);
      expect(await h.ledger(id)).toEqual({ sent: 20, bounced: 30, pending: 4950 });
    });
  });

  describe('resume', () => {
    let h: EngineHarness;
    beforeAll(async () => {
      h = await startEngineHarness(kind, {
        rules: [{ match: '*@example.com', code: 421, message: '4.7.0 Too many connections, slow down' }],
        // Production's first retry delay: a retry that waits for it does not go out in this test.
        engine: { retry: { retryDelayMs: 600_000, validityMs: 3_600_000 } },
      });
    });
    afterAll(async () => h?.close());

    it('retries at once what waits for a retry', async () => {
      const id = await h.deliveryFor(300, {}, 'rs-');
      await h.confirmAndOk(id);
      const paused = await h.waitForState(id, 'paused');
      expect(paused.stateReason).toMatch(/^CIRCUIT_BREAKER: example\.com answered 4xx to 100% of \d+ messages/);
      const waiting = (await h.ledger(id)).retry!;
      expect(waiting).toBeGreaterThan(0);
      // The receiving side is fixed; resume.
      h.sink.setRules([]);
      const resumed = await h.api('POST', `/v1/deliveries/${id}/resume`);
      expect(resumed.status).toBe(200);
      await h.gateway.relay.drain();
      await h.waitForState(id, 'finished', 20_000);
      expect(await h.ledger(id)).toEqual({ sent: 300 });
      const [retried] = await h.database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM send_ledger WHERE delivery_id = $1 AND attempts = 2`, [id]);
      expect(retried!.n).toBe(waiting);
      expect(Math.max(...h.sink.messageIdCounts().values())).toBe(1);
    });
  });
});
