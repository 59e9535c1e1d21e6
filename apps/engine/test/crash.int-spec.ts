// The platform as a user runs it (`herald start`, a real process on the embedded default),
// killed mid-send and restarted: every recipient is handled exactly once in the ledger, and the
// SMTP server on loopback sees duplicates only for messages in flight at a kill -9.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CaptureSink, startCaptureSink } from '@herald/capture-sink';
import { createTestDatabase, describeOnStore, type TestDatabase } from '@herald/testing';
import { call, freePort, ledgerStatuses, type Platform, startPlatform, startSend, until } from './platform.js';

const RECIPIENTS = 20_000;

describe('herald start killed mid-send', () => {
  let sink: CaptureSink;
  let env: Record<string, string>;
  const platforms: Platform[] = [];

  beforeEach(async () => {
    sink = await startCaptureSink({ store: 'memory' });
    env = {
      HERALD_HOME: mkdtempSync(join(tmpdir(), 'herald-crash-')),
      PORT: String(await freePort()),
      SMTP_URL: sink.url,
      LOG_LEVEL: 'info',
      ENGINE_THREADS: '2',
      ENGINE_BATCH_SIZE: '200',
    };
  });

  afterEach(async () => {
    for (const p of platforms.splice(0)) {
      if (p.child.exitCode === null) p.child.kill('SIGKILL');
      await p.exited;
    }
    await sink.close();
  });

  it('kill -9 at about 40%, restart: each recipient settled once, duplicates only what was in flight', async () => {
    const first = await startPlatform(env);
    platforms.push(first);
    const id = await startSend(first, { prefix: 'k9-', count: RECIPIENTS });
    await until(() => sink.count() >= RECIPIENTS * 0.4, 120_000, '40% of the send');
    first.child.kill('SIGKILL');
    await first.exited;
    const atDeath = sink.count();
    expect(atDeath).toBeLessThan(RECIPIENTS);

    const second = await startPlatform(env);
    platforms.push(second);
    await until(async () => (await call(second, 'GET', `/v1/deliveries/${id}`)).body.state === 'finished', 180_000, 'the send to finish');

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
    const first = await startPlatform(env);
    platforms.push(first);
    const id = await startSend(first, { prefix: 'tm-', count: RECIPIENTS });
    await until(() => sink.count() >= RECIPIENTS * 0.4, 120_000, '40% of the send');
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);

    const second = await startPlatform(env);
    platforms.push(second);
    await until(async () => (await call(second, 'GET', `/v1/deliveries/${id}`)).body.state === 'finished', 180_000, 'the send to finish');
    expect(await ledgerStatuses(second, id)).toEqual({ sent: RECIPIENTS });
    expect(sink.count()).toBe(RECIPIENTS);
    expect(sink.messageIdCounts().size).toBe(RECIPIENTS);
    await expectExactKpis(second, id);
  });
});

/** The Deployment counters match the ledger exactly: no event lost with the killed process, none counted twice. */
async function expectExactKpis(p: Platform, id: string) {
  await until(async () => (await call(p, 'GET', `/v1/deliveries/${id}/deployment`)).body.kpis.sent >= RECIPIENTS, 30_000, 'the KPIs to count every message');
  // Settle: anything counted twice would show up after the last flush.
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  const { kpis } = (await call(p, 'GET', `/v1/deliveries/${id}/deployment`)).body;
  expect(kpis).toMatchObject({ toSend: RECIPIENTS, sent: RECIPIENTS, delivered: RECIPIENTS, bouncesAndErrors: 0 });
}

describeOnStore('postgres', 'herald gateway and herald engine as separate processes on PostgreSQL', () => {
  let sink: CaptureSink;
  let database: TestDatabase;
  const platforms: Platform[] = [];

  beforeAll(async () => {
    sink = await startCaptureSink({ store: 'memory' });
    database = await createTestDatabase('postgres');
  });
  afterAll(async () => {
    for (const p of platforms) {
      if (p.child.exitCode === null) p.child.kill('SIGTERM');
      await p.exited;
    }
    await sink.close();
    await database.drop();
  });

  it('sends what the gateway confirmed, through the engine process', async () => {
    const env = { HERALD_HOME: mkdtempSync(join(tmpdir(), 'herald-split-')), DATABASE_URL: database.url!, SMTP_URL: sink.url, LOG_LEVEL: 'warn' };
    const gateway = await startPlatform({ ...env, PORT: String(await freePort()) }, 'gateway');
    platforms.push(gateway);
    const engine = await startPlatform({ ...env, PORT: String(await freePort()) }, 'engine');
    platforms.push(engine);
    const id = await startSend(gateway, { prefix: 'sp-', count: 500 });
    await until(async () => (await call(gateway, 'GET', `/v1/deliveries/${id}`)).body.state === 'finished', 60_000, 'the send to finish');
    expect(sink.count()).toBe(500);
    expect(await ledgerStatuses(gateway, id)).toEqual({ sent: 500 });
    // The engine's message events reach the gateway's KPI store (through the store's outbox,
    // relayed by the gateway: the engine process's own in-process bus has no consumer).
    await until(async () => (await call(gateway, 'GET', `/v1/deliveries/${id}/deployment`)).body.kpis?.sent === 500, 15_000, 'the KPIs to count the 500 messages');
  });
});
