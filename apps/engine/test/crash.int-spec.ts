// The platform as a user runs it (`herald start`, a real process on the embedded default),
// killed mid-send and restarted: every recipient is handled exactly once in the ledger, and the
// SMTP server on loopback sees duplicates only for messages in flight at a kill -9.
import {
  type CaptureSink,
  call,
  catchUpKpis,
  createTestDatabase,
  describeOnStore,
  eventually,
  freePort,
  ledgerStatuses,
  type Platform,
  Platforms,
  platformEnv,
  startSend,
  startTestSink,
  type TestDatabase,
  tempDir,
  waitForDeliveryState,
} from '@herald/testing';

const RECIPIENTS = 20_000;

describe('herald start killed mid-send', () => {
  let sink: CaptureSink;
  let env: Record<string, string>;
  const platforms = new Platforms();

  beforeEach(async () => {
    sink = await startTestSink();
    env = await platformEnv('crash', { SMTP_URL: sink.url, LOG_LEVEL: 'info', ENGINE_THREADS: '2', ENGINE_BATCH_SIZE: '200' });
  });

  afterEach(async () => {
    await platforms.end('SIGKILL');
    await sink.close();
  });

  it('kill -9 at about 40%, restart: each recipient settled once, duplicates only what was in flight', async () => {
    const first = await platforms.start(env);
    const id = await startSend(first, { prefix: 'k9-', count: RECIPIENTS });
    await eventually(() => sink.count() >= RECIPIENTS * 0.4, { timeoutMs: 120_000, what: '40% of the send' });
    first.child.kill('SIGKILL');
    await first.exited;
    const atDeath = sink.count();
    expect(atDeath).toBeLessThan(RECIPIENTS);

    const second = await platforms.start(env);
    await waitForDeliveryState(second, id, 'finished', 180_000);

    expect(await ledgerStatuses(second, id)).toEqual({ sent: RECIPIENTS });
    const recovered = second.logs.join('').split('\n').find((line) => line.includes('engine recovered runs'));
    expect(recovered).toBeDefined();
    const inFlight = JSON.parse(recovered!).inFlight as number;
    const ids = sink.messageIdCounts();
    expect(ids.size).toBe(RECIPIENTS);
    const duplicates = sink.count() - RECIPIENTS;
    expect(duplicates).toBeLessThanOrEqual(inFlight);
    expect(Math.max(...ids.values())).toBeLessThanOrEqual(2);
    await expectExactKpis(second, id);
    const recoveredEvents = second.logs.join('').split('\n').find((line) => line.includes('recovered message events'));
    process.stdout.write(
      `kill -9 at ${atDeath}/${RECIPIENTS}: ${inFlight} in flight, ${duplicates} received twice; ` +
        `KPI events recovered from the outbox: ${recoveredEvents ? JSON.parse(recoveredEvents).recovered : 0}\n`,
    );
  });

  it('SIGTERM mid-send, restart: zero duplicates, zero lost', async () => {
    const first = await platforms.start(env);
    const id = await startSend(first, { prefix: 'tm-', count: RECIPIENTS });
    await eventually(() => sink.count() >= RECIPIENTS * 0.4, { timeoutMs: 120_000, what: '40% of the send' });
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);

    const second = await platforms.start(env);
    await waitForDeliveryState(second, id, 'finished', 180_000);
    expect(await ledgerStatuses(second, id)).toEqual({ sent: RECIPIENTS });
    expect(sink.count()).toBe(RECIPIENTS);
    expect(sink.messageIdCounts().size).toBe(RECIPIENTS);
    await expectExactKpis(second, id);
  });
});

/** The Deployment counters match the ledger exactly: no event lost with the killed process, none counted twice. */
async function expectExactKpis(p: Platform, id: string) {
  await eventually(async () => (await call(p, 'GET', `/v1/deliveries/${id}/deployment`)).body.kpis.sent >= RECIPIENTS, {
    timeoutMs: 30_000,
    what: 'the KPIs to count every message',
  });
  // Anything counted twice would show up once the KPI store has every event recorded so far.
  await catchUpKpis(p, id);
  const { kpis } = (await call(p, 'GET', `/v1/deliveries/${id}/deployment`)).body;
  expect(kpis).toMatchObject({ toSend: RECIPIENTS, sent: RECIPIENTS, delivered: RECIPIENTS, bouncesAndErrors: 0 });
}

describeOnStore('postgres', 'herald gateway and herald engine as separate processes on PostgreSQL', () => {
  let sink: CaptureSink;
  let database: TestDatabase;
  const platforms = new Platforms();

  beforeAll(async () => {
    sink = await startTestSink();
    database = await createTestDatabase('postgres');
  });
  afterAll(async () => {
    await platforms.end('SIGTERM');
    await sink.close();
    await database.drop();
  });

  it('sends what the gateway confirmed, through the engine process', async () => {
    const env = { HERALD_HOME: tempDir('split'), DATABASE_URL: database.url!, SMTP_URL: sink.url, LOG_LEVEL: 'warn' };
    const gateway = await platforms.start({ ...env, PORT: String(await freePort()) }, 'gateway');
    await platforms.start({ ...env, PORT: String(await freePort()) }, 'engine');
    const id = await startSend(gateway, { prefix: 'sp-', count: 500 });
    await waitForDeliveryState(gateway, id, 'finished', 60_000);
    expect(sink.count()).toBe(500);
    expect(await ledgerStatuses(gateway, id)).toEqual({ sent: 500 });
    // The engine's message events reach the gateway's KPI store (through the store's outbox,
    // relayed by the gateway: the engine process's own in-process bus has no consumer).
    await eventually(async () => (await call(gateway, 'GET', `/v1/deliveries/${id}/deployment`)).body.kpis?.sent === 500, {
      timeoutMs: 15_000,
      what: 'the KPIs to count the 500 messages',
    });
  });
});
