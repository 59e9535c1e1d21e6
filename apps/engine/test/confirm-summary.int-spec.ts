// What Confirm send tells the user about the engines that will send: the finish time they can
// keep, from the rate they measured. A real gateway, engine and SMTP server on loopback, on
// PGlite and PostgreSQL.
import { describeEachStore, eventually } from '@herald/testing';
import { type EngineHarness, startEngineHarness } from './engine-harness.js';

describeEachStore('Confirm send summary with live engines', (kind) => {
  let h: EngineHarness;
  beforeAll(async () => {
    h = await startEngineHarness(kind);
  });
  afterAll(async () => h?.close());

  it('names the provider the live engines will send email through', async () => {
    const id = await h.deliveryFor(3);
    const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
    expect(confirm.status).toBe(201);
    const sink = new URL(h.sink.url);
    expect(confirm.body.summary.provider).toEqual({ channel: 'email', kind: 'smtp', host: sink.hostname, port: Number(sink.port), url: h.sink.url });
    expect(confirm.body.summary.warnings).toEqual([]);
  });

  it('projects the finish time from the send rate the engines measured', async () => {
    const first = await h.deliveryFor(600);
    await h.confirmAndOk(first);
    await h.waitForState(first, 'finished');
    // The engine reports the rate it measured while sending with its next heartbeats; once a
    // heartbeat counted every message, idle ones leave the rate as it is.
    const measured = await eventually(
      async () => {
        const [row] = await h.database.db.query<{ rate: number | null; messages: number }>(
          `SELECT (stats->>'measuredPerSecond')::float AS rate, (stats->>'messages')::int AS messages FROM engine_instances`,
        );
        return row && row.messages >= 600 && row.rate ? row.rate : undefined;
      },
      { timeoutMs: 15_000, what: 'a measured send rate' },
    );
    const next = await h.deliveryFor(1000);
    const confirm = await h.api('POST', `/v1/deliveries/${next}/confirmations`);
    expect(confirm.status).toBe(201);
    const { projectedFinishAt, projectedFinishBasis } = confirm.body.summary;
    expect(projectedFinishBasis).toEqual({ source: 'engines', perHour: Math.round(measured * 3600) });
    const expected = h.clock.now().getTime() + Math.ceil((1000 / projectedFinishBasis.perHour) * 3_600_000);
    expect(Date.parse(projectedFinishAt)).toBe(expected);
  });
});
