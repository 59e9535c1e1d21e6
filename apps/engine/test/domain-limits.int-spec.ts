// A per-domain limit (ENGINE_DOMAIN_LIMITS) holds only its own domain: the messages of other
// domains, in the same batches and in the batches behind, go out at once, while the limited
// domain keeps its rate. One worker thread of five connections, so that a batch kept waiting for
// the limited domain would hold every other message behind it.
import { describeEachStore } from '@herald/testing';
import { type EngineHarness, startEngineHarness } from './engine-harness.js';

const PER_SECOND = 5;
const AUDIENCE = 200;
/** Every fifth recipient is at the limited domain: 40 of them (8 s at 5/s), spread over both batches. */
const limited = (n: number) => n % 5 === 0;

describeEachStore('per-domain limits', (kind) => {
  let h: EngineHarness;
  beforeAll(async () => {
    h = await startEngineHarness(kind, { threads: 1, engine: { domainLimits: [{ domain: 'slow.test', perSecond: PER_SECOND }] } });
  });
  afterAll(async () => h?.close());

  it('never delays the messages of other domains, and keeps the limited domain at its rate', async () => {
    const id = await h.deliveryFor(AUDIENCE, {}, 'dl-', (n) => (limited(n) ? `dl-${n}@slow.test` : `dl-${n}@example.com`));
    await h.confirmAndOk(id);
    await h.waitForState(id, 'finished');
    expect(await h.ledger(id)).toEqual({ sent: AUDIENCE });
    const [attempts] = await h.database.db.query<{ max: number }>('SELECT max(attempts)::int AS max FROM send_ledger WHERE delivery_id = $1', [id]);
    expect(attempts!.max).toBe(1);

    const messages = h.sink.messages().filter((m) => m.to[0]!.startsWith('dl-'));
    expect(new Set(messages.map((m) => m.messageId)).size).toBe(AUDIENCE);
    // When each message's transaction began (its MAIL FROM at the sink): what a limit paces.
    const start = Math.min(...messages.map((m) => Date.parse(m.startedAt)));
    const at = (domain: string) =>
      messages
        .filter((m) => m.to[0]!.endsWith(`@${domain}`))
        .map((m) => Date.parse(m.startedAt) - start)
        .sort((a, b) => a - b);
    const others = at('example.com');
    const slow = at('slow.test');
    expect(others).toHaveLength(160);
    expect(slow).toHaveLength(40);
    // The other domain's 160 messages all went out within a bound of the first one (~0.2 s for
    // all of them unlimited, here), not behind the limited domain's 8 s.
    expect(others.at(-1)).toBeLessThan(1000);
    // The limited domain keeps its rate: sends keep to their slots, 200 ms apart; one a worker
    // started late can come closer to the next, so no 1 s holds more than PER_SECOND + 1 (50 ms
    // of jitter in the start times allowed). And not much slower either.
    for (let i = 0; i + PER_SECOND + 1 < slow.length; i++) expect(slow[i + PER_SECOND + 1]! - slow[i]!).toBeGreaterThanOrEqual(950);
    expect(slow.at(-1)! - slow[0]!).toBeLessThan((slow.length - 1) * (1000 / PER_SECOND) + 2000);
  });
});
