// What an operator sees of running `herald` processes (real processes, a real SMTP server on
// loopback): the gateway's /metrics, an engine's /health/ready and GET /v1/ops/engines.
import {
  type CaptureSink,
  call,
  createTestDatabase,
  describeOnStore,
  eventually,
  freePort,
  kafkaAvailable,
  metricSample,
  metricsBase,
  type Platform,
  Platforms,
  platformEnv,
  startPlatform,
  startPrivateKafka,
  startSend,
  startTestSink,
  storesUnderTest,
  type TestDatabase,
  tempDir,
  waitForDeliveryState,
} from '@herald/testing';
import pg from 'pg';

describe('herald start: the gateway /metrics', () => {
  let sink: CaptureSink;
  let platform: Platform;

  beforeAll(async () => {
    sink = await startTestSink();
    platform = await startPlatform(await platformEnv('metrics', { SMTP_URL: sink.url, LOG_LEVEL: 'warn', ENGINE_THREADS: '1' }));
  });
  afterAll(async () => {
    if (platform.child.exitCode === null) platform.child.kill('SIGTERM');
    await platform.exited;
    await sink.close();
  });

  it('counts what the outbox relay published, per topic', async () => {
    const id = await startSend(platform, { prefix: 'om-', count: 40 });
    await waitForDeliveryState(platform, id, 'finished', 60_000);
    const metrics = async () => (await fetch(`${platform.url}/metrics`)).text();
    // Two message events per recipient sent (sent, delivered), and the DeliveryStarted command.
    await eventually(async () => metricSample(await metrics(), 'herald_outbox_published_total{topic="herald.message-events"}') === 80, { what: 'the events counted' });
    expect(metricSample(await metrics(), 'herald_outbox_published_total{topic="herald.delivery-commands"}')).toBeGreaterThanOrEqual(1);
  });

  it("includes the in-process engine's figures, named as on an engine process's /metrics", async () => {
    const id = await startSend(platform, { prefix: 'em-', count: 30 });
    await waitForDeliveryState(platform, id, 'finished', 60_000);
    const metrics = async () => (await fetch(`${platform.url}/metrics`)).text();
    expect(metricSample(await metrics(), 'herald_engine_threads')).toBe(1);
    // The figures come with the engine's heartbeat (every 2 s).
    await eventually(async () => (metricSample(await metrics(), 'herald_engine_messages') ?? 0) >= 30, { what: 'the engine messages counted' });
    for (const name of ['herald_engine_batches', 'herald_engine_in_flight_batches', 'herald_engine_limit_share']) {
      expect(metricSample(await metrics(), name)).toBeDefined();
    }
  });
});

async function ready(p: Platform): Promise<{ status: number; body: { status: string; reason?: string } }> {
  const response = await fetch(`${metricsBase(p)}/health/ready`);
  return { status: response.status, body: (await response.json()) as { status: string; reason?: string } };
}

describeOnStore('postgres', 'herald gateway and herald engine processes on PostgreSQL', () => {
  let sink: CaptureSink;
  let database: TestDatabase;
  let env: Record<string, string>;
  const platforms = new Platforms();
  const start = async (command: string, extra: Record<string, string> = {}) => platforms.start({ ...env, PORT: String(await freePort()), ...extra }, command);

  beforeEach(async () => {
    sink = await startTestSink();
    database = await createTestDatabase('postgres');
    env = { HERALD_HOME: tempDir('obs'), DATABASE_URL: database.url!, SMTP_URL: sink.url, LOG_LEVEL: 'warn', ENGINE_THREADS: '1' };
  });
  afterEach(async () => {
    await platforms.end('SIGKILL');
    await sink.close();
    await database.drop();
  });

  it('an engine is ready while it reaches the store, 503 with the reason while it cannot, ready again after', async () => {
    // No gateway here: the engine is given the base of its links.
    const engine = await start('engine', { PUBLIC_URL: 'http://herald.test' });
    expect(await ready(engine)).toEqual({ status: 200, body: expect.objectContaining({ status: 'ok' }) });
    const name = new URL(database.url!).pathname.slice(1);
    const admin = new pg.Client({ connectionString: process.env.HERALD_TEST_DATABASE_URL });
    await admin.connect();
    try {
      // The store goes away: no new connection is accepted, and the open ones are cut.
      await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [name]);
      await eventually(async () => (await ready(engine)).status === 503, { what: 'the engine to be unready' });
      const down = await ready(engine);
      expect(down.body.status).toBe('unavailable');
      // The first probe may see its connection cut; the next ones cannot connect.
      expect(down.body.reason).toMatch(/^store: /);
      await eventually(async () => /not currently accepting connections/.test((await ready(engine)).body.reason ?? ''), { what: 'the refused connection as the reason' });
      await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
      await eventually(async () => (await ready(engine)).status === 200, { what: 'the engine to be ready again' });
    } finally {
      await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
      await admin.end();
    }
  });

  it('GET /v1/ops/engines says stale as soon as an engine misses its heartbeats, long before its work is requeued', async () => {
    const gateway = await start('gateway');
    const engine = await start('engine');
    const listed = async () => (await call(gateway, 'GET', '/v1/ops/engines')).body;
    await eventually(async () => (await listed()).items?.some((e: { pid: number; status: string }) => e.pid === engine.child.pid && e.status === 'live'), { what: 'the engine listed live' });
    const body = await listed();
    expect(body).toMatchObject({ totals: { engines: 1, stale: 0 }, staleAfterMs: 5_000, requeueAfterMs: 15_000 });
    engine.child.kill('SIGKILL');
    const killedAt = Date.now();
    await engine.exited;
    await eventually(async () => (await listed()).items.some((e: { pid: number; status: string }) => e.pid === engine.child.pid && e.status === 'stale'), { what: 'the engine listed stale' });
    const staleAfter = Date.now() - killedAt;
    // The late bound (5 s) after its last heartbeat, which came before the kill; a margin for a
    // busy machine, and still far from the 15 s after which its work is requeued.
    expect(staleAfter).toBeLessThanOrEqual(7_000);
    expect((await listed()).totals).toMatchObject({ engines: 0, stale: 1 });
    process.stdout.write(`ops/engines: a killed engine listed stale ${staleAfter} ms after kill -9 (its work is requeued after 15 s)\n`);
  });
});

// A broker of the test's own, killed under a running engine (announced as skipped where Kafka cannot run).
describeOnStore(
  'postgres',
  'herald engine on Kafka',
  () => {
    it('is unready while the broker is down, with the reason, and ready again once it is back', async () => {
      const kafka = await startPrivateKafka();
      const database = await createTestDatabase('postgres');
      const engine = await startPlatform(
        {
          HERALD_HOME: tempDir('obs-kafka'),
          PORT: String(await freePort()),
          DATABASE_URL: database.url!,
          KAFKA_BROKERS: kafka.brokers.join(','),
          SMTP_URL: 'smtp://127.0.0.1:9',
          PUBLIC_URL: 'http://herald.test',
          LOG_LEVEL: 'error',
          ENGINE_THREADS: '1',
        },
        'engine',
      );
      try {
        expect((await ready(engine)).status).toBe(200);
        kafka.kill();
        await eventually(async () => (await ready(engine)).status === 503, { timeoutMs: 15_000, what: 'the engine to be unready' });
        expect((await ready(engine)).body.reason).toMatch(/^bus: /);
        await kafka.restart();
        await eventually(async () => (await ready(engine)).status === 200, { timeoutMs: 60_000, what: 'the engine to be ready again' });
      } finally {
        if (engine.child.exitCode === null) engine.child.kill('SIGKILL');
        await engine.exited;
        await database.drop();
        await kafka.stop();
      }
    }, 240_000);
  },
  storesUnderTest().includes('postgres') && kafkaAvailable(),
);
