// A whole platform in the test process: a real gateway and store (PGlite or PostgreSQL), the
// in-process bus, the engine with its Piscina pool, and a real SMTP server on loopback.
import type { CaptureSink, SinkRule } from '@herald/capture-sink';
import { systemClock } from '@herald/control-plane';
import { approvedDelivery, type Harness, startHarness } from '@herald/gateway/testing';
import { eventually, type StoreKind, startTestSink } from '@herald/testing';
import { pino } from 'pino';
import { Engine, type EngineOptions } from '../src/index.js';

/** The tracking secret of the harness's gateway and engines (a test may sign its own tokens with it). */
export const TRACKING_SECRET = 'test-tracking-secret-0123456789abcdef';

export interface EngineHarness extends Harness {
  sink: CaptureSink;
  engine: Engine;
  /** Starts a fresh engine on the same store and bus (after stopping the previous one). */
  restartEngine(): Promise<Engine>;
  /** Starts one more engine on the same store and bus (they share the work; closed with the harness). */
  addEngine(): Promise<Engine>;
  /**
   * Imports `count` profiles and returns an approved delivery's id over them (profile ids in
   * send order; addresses `${prefix}${n}@example.com` unless `address` says otherwise).
   */
  deliveryFor(count: number, extra?: Record<string, unknown>, prefix?: string, address?: (n: number) => string): Promise<string>;
  confirmAndOk(id: string): Promise<void>;
  waitForState(id: string, state: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /**
   * Waits until no engine holds a recipient of the delivery (nothing queued or being sent: all in
   * hand settled or released), e.g. after a pause: from then on nothing of it can leave.
   */
  waitUntilPutDown(id: string, timeoutMs?: number): Promise<void>;
  /** What arrived at the sink for addresses starting with `prefix` after `since` (ms), and how late the last one was. */
  /** The messages to `prefix` whose SMTP transaction began (MAIL FROM at the sink) after `since`, and the latest such start. */
  transactionsStartedAfter(prefix: string, since: number): { count: number; lastMs: number };
  ledger(id: string): Promise<Record<string, number>>;
}

export async function startEngineHarness(
  kind: StoreKind,
  options: {
    rules?: SinkRule[];
    engine?: Partial<EngineOptions>;
    threads?: number;
    workerOverrides?: Partial<EngineOptions['worker']>;
    /** More environment for the gateway (e.g. HERALD_WEBHOOK_SECRET). */
    env?: Record<string, string>;
  } = {},
): Promise<EngineHarness> {
  const h = await startHarness(kind, { HERALD_TRACKING_SECRET: TRACKING_SECRET, ...options.env });
  // The engine and the scheduler run on real time; the gateway's clock is only for its own tests.
  const sink = await startTestSink({ rules: options.rules, files: true });
  const engineOptions = (): EngineOptions => ({
    bus: h.bus,
    controlPlane: h.gateway.controlPlane,
    clock: systemClock,
    logger: pino({ level: process.env.HERALD_TEST_LOG ?? 'silent' }),
    threads: options.threads ?? 2,
    workerHeapMb: 96,
    batchSize: 100,
    domainLimits: [],
    retry: { retryDelayMs: 100, validityMs: 60_000 },
    breaker: { firstWave: 0.01, hardBounceRate: 0.2, domain4xxRate: 0.5, minSample: 50 },
    worker: {
      smtpUrl: sink.url,
      smtpConnections: 5,
      smtpTimeoutMs: 1_500,
      smtpIdleTimeoutMs: 30_000,
      publicUrl: 'http://herald.test',
      trackingSecret: TRACKING_SECRET,
      ...options.workerOverrides,
    },
    ...options.engine,
  });
  let engine = new Engine(engineOptions());
  await engine.start();
  const moreEngines: Engine[] = [];
  let audienceSeq = 0;
  const harness: EngineHarness = {
    ...h,
    sink,
    get engine() {
      return engine;
    },
    async restartEngine() {
      await engine.stop();
      engine = new Engine(engineOptions());
      await engine.start();
      return engine;
    },
    async addEngine() {
      const another = new Engine(engineOptions());
      await another.start();
      moreEngines.push(another);
      return another;
    },
    async deliveryFor(count, extra = {}, prefix = `r${audienceSeq++}-`, address = (n) => `${prefix}${n}@example.com`) {
      for (let start = 0; start < count; start += 10_000) {
        const rows = Array.from({ length: Math.min(10_000, count - start) }, (_, i) => {
          const n = start + i;
          return JSON.stringify({ id: `${prefix}${String(n).padStart(6, '0')}`, email: address(n), firstName: `Name${n}`, attributes: { batch: prefix } });
        });
        const res = await h.api('POST', '/v1/profiles/import', { raw: rows.join('\n'), contentType: 'application/x-ndjson' });
        if (res.body.imported !== rows.length) throw new Error(`import failed: ${JSON.stringify(res.body).slice(0, 300)}`);
      }
      const audience = await h.api('POST', '/v1/audiences', { body: { name: prefix, filter: { batch: prefix } } });
      return approvedDelivery(h, audience.body.id, extra);
    },
    async confirmAndOk(id) {
      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      const ok = await h.api('POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`);
      if (ok.status !== 202) throw new Error(`OK failed: ${JSON.stringify(ok.body)}`);
      await h.gateway.relay.drain();
    },
    async waitForState(id, state, timeoutMs = 60_000) {
      let delivery: Record<string, unknown> = {};
      await eventually(
        async () => {
          delivery = (await h.api('GET', `/v1/deliveries/${id}`)).body;
          return delivery.state === state;
        },
        { timeoutMs, intervalMs: 50, what: () => `delivery ${id} to be '${state}' (it is '${delivery.state}' (${delivery.stateReason}))` },
      );
      return delivery;
    },
    async waitUntilPutDown(id, timeoutMs = 30_000) {
      await eventually(
        async () => {
          const ledger = await harness.ledger(id);
          return (ledger.queued ?? 0) + (ledger.sending ?? 0) === 0;
        },
        { timeoutMs, what: 'the engines to put down the delivery' },
      );
    },
    transactionsStartedAfter(prefix, since) {
      const late = sink
        .messages()
        .filter((m) => m.to[0]!.startsWith(prefix))
        .map((m) => Date.parse(m.startedAt) - since)
        .filter((ms) => ms > 0);
      return { count: late.length, lastMs: Math.max(0, ...late) };
    },
    async ledger(id) {
      const rows = await h.database.db.query<{ status: string; n: number }>(
        'SELECT status, count(*)::int AS n FROM send_ledger WHERE delivery_id = $1 GROUP BY status',
        [id],
      );
      return Object.fromEntries(rows.map((r) => [r.status, r.n]));
    },
    async close() {
      for (const another of moreEngines) await another.stop();
      await engine.stop();
      await h.close();
      await sink.close();
    },
  };
  return harness;
}
