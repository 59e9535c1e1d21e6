// Several processes, one platform: a `herald gateway` and two `herald engine` processes (real
// processes, PostgreSQL and Kafka), each with its own HERALD_HOME and no PUBLIC_URL or secret
// in its environment, as on separate hosts. The links of every engine's messages work: they
// point at the gateway and are signed with the secret it verifies, both from the store.
import {
  type CaptureSink,
  call,
  createTestDatabase,
  describeOnStore,
  eventually,
  freePort,
  kafkaAvailable,
  messageLinks,
  metricSample,
  metricsBase,
  type Platform,
  Platforms,
  runUntilExit,
  startSend,
  startTestKafka,
  startTestSink,
  storesUnderTest,
  type TestDatabase,
  type TestKafka,
  tempDir,
  waitForDeliveryState,
} from '@herald/testing';

const BROWSER = { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0' };

const available = storesUnderTest().includes('postgres') && kafkaAvailable();

describeOnStore(
  'postgres',
  'one platform, separate processes and homes: shared public URL and secrets',
  () => {
    let kafka: TestKafka;
    let database: TestDatabase;
    let sink: CaptureSink;
    let env: Record<string, string>;
    let gateway: Platform;
    const platforms = new Platforms();

    beforeAll(async () => {
      kafka = await startTestKafka();
      database = await createTestDatabase('postgres');
      sink = await startTestSink({ files: true });
      // Nothing that names the public URL or a secret: each process finds them in the store.
      env = {
        DATABASE_URL: database.url!,
        KAFKA_BROKERS: kafka.brokers.join(','),
        KAFKA_TOPIC_PREFIX: `settings-${Date.now().toString(36)}.`,
        SMTP_URL: sink.url,
        LOG_LEVEL: 'warn',
        ENGINE_THREADS: '1',
        ENGINE_BATCH_SIZE: '20',
      };
      gateway = await platforms.start({ ...env, HERALD_HOME: tempDir('settings-gateway'), PORT: String(await freePort()) }, 'gateway');
    });
    afterAll(async () => {
      await platforms.end('SIGTERM');
      await sink?.close();
      await database?.drop();
      await kafka?.stop();
    });

    it("a send through two engines: every engine's open, click and unsubscribe links work and are recorded", async () => {
      for (const name of ['engine-a', 'engine-b']) {
        await platforms.start({ ...env, HERALD_HOME: tempDir(`settings-${name}`), PORT: String(await freePort()) }, 'engine');
      }
      const engines = async () => (await call(gateway, 'GET', '/v1/ops/engines')).body.items as { id: string; pid: number; partitions: number[] | null }[];
      await eventually(async () => (await engines()).filter((e) => (e.partitions?.length ?? 0) > 0).length === 2, {
        timeoutMs: 60_000,
        what: 'both engines consuming send batches',
      });

      const id = await startSend(gateway, { prefix: 'ss-', count: 400 });
      await waitForDeliveryState(gateway, id, 'finished', 120_000);
      // Whichever process's outbox relay published them, the relays' counters add up to every event (sent, delivered).
      const published = async () => {
        let total = 0;
        for (const p of platforms.all) {
          total += metricSample(await (await fetch(`${metricsBase(p)}/metrics`)).text(), 'herald_outbox_published_total{topic="herald.message-events"}') ?? 0;
        }
        return total;
      };
      await eventually(async () => (await published()) === 800, { timeoutMs: 30_000, what: 'the relays to count 800 events' });
      // One message sent by each engine (the ledger keeps who sent it).
      const byEngine = await database.db.query<{ engine_id: string; profile_id: string; message_id: string }>(
        `SELECT DISTINCT ON (engine_id) engine_id, profile_id, message_id FROM send_ledger
          WHERE delivery_id = $1 AND status = 'sent' ORDER BY engine_id, profile_id`,
        [id],
      );
      expect(byEngine).toHaveLength(2);
      const enginePids = new Map((await engines()).map((e) => [e.id, e.pid]));
      expect(new Set(byEngine.map((row) => enginePids.get(row.engine_id)))).toEqual(new Set(platforms.all.slice(1).map((p) => p.child.pid)));

      for (const row of byEngine) {
        const captured = sink.messages().find((m) => m.messageId?.replace(/[<>]/g, '') === row.message_id.replace(/[<>]/g, ''));
        expect(captured?.file).toBeDefined();
        const links = messageLinks(captured!.file!);
        for (const link of Object.values(links)) expect(link.startsWith(`${gateway.url}/`)).toBe(true);
        expect((await fetch(links.pixel, { headers: BROWSER })).status).toBe(200);
        const click = await fetch(links.click, { headers: BROWSER, redirect: 'manual' });
        expect({ status: click.status, location: click.headers.get('location') }).toEqual({ status: 302, location: 'https://shop.example/x' });
        expect((await fetch(links.unsubscribe, { headers: BROWSER })).status).toBe(200);
        const oneClick = await fetch(links.unsubscribe, {
          method: 'POST',
          headers: { ...BROWSER, 'content-type': 'application/x-www-form-urlencoded' },
          body: 'List-Unsubscribe=One-Click',
        });
        expect(oneClick.status).toBe(200);
        expect((await call(gateway, 'GET', `/v1/profiles/${row.profile_id}`)).body.status).toBe('unsubscribed');
      }
      // Recorded: the opens and clicks of both messages are in the delivery's KPIs.
      await eventually(
        async () => {
          const { kpis } = (await call(gateway, 'POST', `/v1/deliveries/${id}/compute-stats`)).body;
          return kpis?.opens === 2 && kpis?.clicks === 2;
        },
        { timeoutMs: 60_000, what: 'the opens and clicks counted' },
      );
    });

    it('herald token, run with its own HERALD_HOME, signs with the platform secret the gateway verifies', async () => {
      const result = await runUntilExit(['token', '--user', 'ops', '--roles', 'delivery:view'], { ...env, HERALD_HOME: tempDir('settings-token') });
      expect(result.code).toBe(0);
      const me = await fetch(`${gateway.url}/v1/me`, { headers: { authorization: `Bearer ${result.stdout.trim()}` } });
      expect(me.status).toBe(200);
    });

    it('an engine given another HERALD_TRACKING_SECRET than the platform refuses to start, naming the variable', async () => {
      const result = await runUntilExit(['engine'], {
        ...env,
        HERALD_HOME: tempDir('settings-other'),
        PORT: String(await freePort()),
        HERALD_TRACKING_SECRET: 'another-tracking-secret-0123456789abcdef',
      });
      expect({ code: result.code, up: result.up }).toEqual({ code: 2, up: false });
      expect(result.stderr).toContain('HERALD_TRACKING_SECRET differs from the secret this platform signs tracking and unsubscribe links with');
      expect(result.stderr).not.toMatch(/^\s+at /m);
    });

    it('an engine on a store no gateway ever used, without PUBLIC_URL, refuses to start', async () => {
      const fresh = await createTestDatabase('postgres');
      try {
        const result = await runUntilExit(['engine'], { DATABASE_URL: fresh.url!, HERALD_HOME: tempDir('settings-lone'), PORT: String(await freePort()), SMTP_URL: sink.url });
        expect({ code: result.code, up: result.up }).toEqual({ code: 2, up: false });
        expect(result.stderr).toContain('start a gateway first (it records its URL in the control-plane store) or set PUBLIC_URL');
      } finally {
        await fresh.drop();
      }
    });
  },
  available,
);
