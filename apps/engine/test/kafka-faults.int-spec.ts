// Production mode under faults: `herald start --engines 2` on Apache Kafka and PostgreSQL (the
// gateway, the KPI consumer and chDB in one process, two `herald engine` processes), a real SMTP
// server on loopback. Each case ends with every recipient settled once in the ledger, duplicates
// at the SMTP server no more than what a killed process had in flight, and in ClickHouse
// count() = count(DISTINCT event_id) = the expected number of events.
import { busFromEnv } from '@herald/bus';
import { deadLetterSchema, dlqTopic, TOPICS } from '@herald/contracts';
import {
  type CaptureSink,
  call,
  createTestDatabase,
  describeOnStore,
  eventually,
  hit,
  holdFor,
  kafkaAvailable,
  kpiEventCounts,
  ledgerStatuses,
  messageLinks,
  type Platform,
  Platforms,
  runHerald,
  startPrivateKafka,
  startSend,
  startTestKafka,
  startTestSink,
  stopPlatform,
  storesUnderTest,
  type TestDatabase,
  type TestKafka,
  tempDir,
  waitForDeliveryState,
} from '@herald/testing';

const RECIPIENTS = 20_000;
/**
 * After kill -9 of one of two engines, sending never stops longer than this (the bound
 * docs/operations.md states): the survivor keeps sending, and has the dead one's partitions within
 * KAFKA_SESSION_TIMEOUT (default 10 s) and a rebalance.
 */
const TAKEOVER_BOUND_MS = 15_000;

/** Progress on stdout with the seconds since the test began: where a slow or stuck case spent its time shows in CI's output. */
let began = Date.now();
const progress = (what: string) => process.stdout.write(`kafka faults +${((Date.now() - began) / 1000).toFixed(1)} s: ${what}\n`);

/** The pids of the engine processes `herald start --engines N` printed. */
const enginePids = (p: Platform): number[] => [...p.stdout().matchAll(/Engine \d+:\s+pid (\d+)/g)].map((m) => Number(m[1]));

// Both announce a skip loudly, and throw instead when CI requires them (HERALD_REQUIRE_KAFKA, HERALD_REQUIRE_ALL_STORES).
const available = storesUnderTest().includes('postgres') && kafkaAvailable();

describeOnStore(
  'postgres',
  'production mode on Kafka: faults lose nothing',
  () => {
    let kafka: TestKafka;
    let database: TestDatabase;
    let sink: CaptureSink;
    let env: Record<string, string>;
    const platforms = new Platforms();

    beforeAll(async () => {
      kafka = await startTestKafka();
    });
    afterAll(async () => kafka?.stop());

    beforeEach(async () => {
      began = Date.now();
      database = await createTestDatabase('postgres');
      sink = await startTestSink();
      env = {
        HERALD_HOME: tempDir('kafka-fault'),
        PORT: '0',
        SMTP_URL: sink.url,
        DATABASE_URL: database.url!,
        KAFKA_BROKERS: kafka.brokers.join(','),
        KAFKA_TOPIC_PREFIX: `fault-${Date.now().toString(36)}.`,
        LOG_LEVEL: 'info',
        ENGINE_THREADS: '1',
        ENGINE_BATCH_SIZE: '200',
        // The capture sink closes idle connections with 421 (e.g. while the broker is down): a
        // soft bounce, retried after this delay.
        ENGINE_RETRY_DELAY: '1s',
      };
    });

    afterEach(async () => {
      await platforms.end('SIGKILL');
      for (const pid of enginePidsStarted.splice(0)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await sink.close();
      await database.drop();
    });

    const enginePidsStarted: number[] = [];
    async function start(extra: Record<string, string> = {}) {
      // PORT 0: the gateway and each engine process take a free port. (Fixed ports collided:
      // PORT + 1 was taken by another connection, or by an engine of a killed parent.)
      const p = await platforms.start({ ...env, ...extra }, 'start', ['--engines', '2']);
      progress('herald start --engines 2 is up');
      enginePidsStarted.push(...enginePids(p));
      return p;
    }

    async function finishAndCheck(p: Platform, id: string, maxDuplicates: number) {
      await waitForDeliveryState(p, id, 'finished', 200_000).catch(async (error) => {
        // What is left, and what the platform said besides routine info lines.
        const unsettled = await database.db.query(
          `SELECT status, engine_id, last_error, count(*)::int AS n FROM send_ledger WHERE delivery_id = $1 AND status <> 'sent' GROUP BY 1, 2, 3`,
          [id],
        );
        const delivery = await call(p, 'GET', `/v1/deliveries/${id}`);
        const logs = p.logs.join('').split('\n').filter((l) => !l.includes('"level":30'));
        process.stderr.write(`delivery: ${JSON.stringify(delivery.body)}\nunsettled: ${JSON.stringify(unsettled)}\n${logs.slice(-40).join('\n')}\n`);
        throw error;
      });
      progress(`send finished (${sink.count()} received)`);
      expect(await ledgerStatuses(p, id)).toEqual({ sent: RECIPIENTS });
      const ids = sink.messageIdCounts();
      expect(ids.size).toBe(RECIPIENTS);
      const duplicates = sink.count() - RECIPIENTS;
      expect(duplicates).toBeLessThanOrEqual(maxDuplicates);
      await eventually(async () => (await call(p, 'GET', `/v1/deliveries/${id}/deployment`)).body.kpis.sent >= RECIPIENTS, { timeoutMs: 60_000, what: 'the KPIs' });
      progress('KPIs caught up');
      // Stop the platform gracefully, then count in ClickHouse itself.
      expect(await stopPlatform(p, 'SIGTERM')).toBe(0);
      progress('stopped');
      const counts = await kpiEventCounts(env.HERALD_HOME!, id);
      expect(counts).toEqual({ n: 2 * RECIPIENTS, distinct: 2 * RECIPIENTS, byType: { sent: RECIPIENTS, delivered: RECIPIENTS } });
      return duplicates;
    }

    it('two engines share a send; kill -9 one at about 40%: the other finishes it', async () => {
      const p = await start();
      const pids = enginePids(p);
      expect(pids).toHaveLength(2);
      // Both engines are registered and consume partitions of herald.send-batches.
      await eventually(async () => (await call(p, 'GET', '/v1/ops/engines')).body.items?.length === 2, { timeoutMs: 30_000, what: 'two live engines' });
      const engines = (await call(p, 'GET', '/v1/ops/engines')).body;
      expect(engines.items.map((e: { pid: number }) => e.pid).sort()).toEqual([...pids].sort());
      // Each engine process serves its figures for Prometheus on its own port.
      const metricsUrls = [...p.stdout().matchAll(/metrics at (\S+\/metrics)/g)].map((m) => m[1]!);
      expect(metricsUrls).toHaveLength(2);
      for (const url of metricsUrls) expect(await (await fetch(url)).text()).toMatch(/^herald_engine_threads 1$/m);
      const id = await startSend(p, { prefix: 'k2-', count: RECIPIENTS });
      await eventually(() => sink.count() >= RECIPIENTS * 0.4, { timeoutMs: 180_000, what: '40% of the send' });
      // Both have sent part of it (each reports its count in its heartbeat, every 2 s).
      await eventually(async () => (await call(p, 'GET', '/v1/ops/engines')).body.items.every((e: { messages: number }) => e.messages > 0), { timeoutMs: 30_000, what: 'both engines sending' });
      process.kill(pids[0]!, 'SIGKILL');
      const killedAt = Date.now();
      // The survivor takes the dead one's partitions over once the broker drops it from the group
      // (KAFKA_SESSION_TIMEOUT), and requeues what it held once its heartbeat is stale (15 s).
      const survivorPartitions = async () =>
        (await call(p, 'GET', '/v1/ops/engines')).body.items.find((e: { pid: number }) => e.pid === pids[1])?.partitions?.length ?? 0;
      const [partitionsAfter, requeuedAfter] = await Promise.all([
        eventually(async () => (await survivorPartitions()) === 32, { timeoutMs: 60_000, what: 'the survivor to own every partition' }).then(() => Date.now() - killedAt),
        eventually(() => p.logs.join('').includes('engine requeued the work of dead engines'), { timeoutMs: 60_000, what: 'the dead engine to be reaped' }).then(() => Date.now() - killedAt),
      ]);
      const reaped = JSON.parse(p.logs.join('').split('\n').find((line) => line.includes('engine requeued the work of dead engines'))!);
      const duplicates = await finishAndCheck(p, id, reaped.inFlight);
      // Takeover: the longest time after the kill during which the SMTP server received nothing.
      const received = sink
        .messages()
        .map((m) => Date.parse(m.receivedAt))
        .filter((at) => at >= killedAt)
        .sort((a, b) => a - b);
      const stall = Math.max(...received.map((at, i) => at - (i === 0 ? killedAt : received[i - 1]!)));
      process.stdout.write(
        `kafka: kill -9 of one of two engines: longest time with nothing sent ${(stall / 1000).toFixed(1)} s; partitions taken over after ` +
          `${(partitionsAfter / 1000).toFixed(1)} s, ${reaped.requeued} rows requeued after ${(requeuedAfter / 1000).toFixed(1)} s ` +
          `(${reaped.inFlight} of them in flight), ${duplicates} received twice\n`,
      );
      expect(stall).toBeLessThanOrEqual(TAKEOVER_BOUND_MS);
    }, 300_000);

    it('kill -9 the Kafka broker for 30 s during a send, then restart it: the send finishes, nothing twice', async () => {
      // A broker of this test's own: the shared one serves the other suites.
      const own = await startPrivateKafka();
      try {
        const p = await start({ KAFKA_BROKERS: own.brokers.join(',') });
        const id = await startSend(p, { prefix: 'kb-', count: RECIPIENTS });
        await eventually(() => sink.count() >= RECIPIENTS * 0.3, { timeoutMs: 180_000, what: '30% of the send' });
        own.kill();
        const atDeath = sink.count();
        await holdFor(30_000, 'the outage under test: the broker stays down 30 s while the platform runs');
        const duringOutage = sink.count() - atDeath;
        await own.restart();
        // Nothing died but the broker: batches redelivered after it came back are claimed once.
        await finishAndCheck(p, id, 0);
        process.stdout.write(`kafka: broker down 30 s at ${atDeath}/${RECIPIENTS}; ${duringOutage} sent meanwhile (batches in hand)\n`);
      } finally {
        await own.stop();
      }
    }, 420_000);

    it('SIGTERM every process mid-send, restart: zero duplicates', async () => {
      const first = await start();
      const id = await startSend(first, { prefix: 'st-', count: RECIPIENTS });
      await eventually(() => sink.count() >= RECIPIENTS * 0.4, { timeoutMs: 180_000, what: '40% of the send' });
      progress(`SIGTERM at ${sink.count()}`);
      expect(await stopPlatform(first, 'SIGTERM')).toBe(0);
      progress(`stopped at ${sink.count()}`);
      const second = await start();
      await finishAndCheck(second, id, 0);
      expect(sink.count()).toBe(RECIPIENTS);
    }, 300_000);

    it('kill -9 the gateway and its KPI consumer mid-send, restart: no event lost or counted twice', async () => {
      const first = await start();
      const id = await startSend(first, { prefix: 'kc-', count: RECIPIENTS });
      await eventually(() => sink.count() >= RECIPIENTS * 0.5, { timeoutMs: 180_000, what: 'half of the send' });
      progress(`kill -9 of the gateway at ${sink.count()}`);
      first.child.kill('SIGKILL');
      await first.exited;
      // Its engine processes keep sending (no engine died: nothing goes out twice); the KPI
      // consumer is gone until the restart, which takes over its partitions from the committed offsets.
      const second = await start();
      await finishAndCheck(second, id, 0);
    }, 300_000);

    it('opens and clicks go straight onto Kafka, no outbox row, counted once each, also once the ledger rows are gone', async () => {
      // A sink that keeps the messages: the engine processes' links must point at the gateway.
      const kept = await startTestSink({ files: true });
      const p = await start({ SMTP_URL: kept.url });
      const id = await startSend(p, { prefix: 'tk-', count: 200 });
      await waitForDeliveryState(p, id, 'finished', 120_000);
      const links = kept.messages().map((m) => messageLinks(m.file!));
      await database.db.query('DELETE FROM send_ledger WHERE delivery_id = $1', [id]);
      for (const link of links.slice(0, 20)) expect((await hit(link.pixel)).status).toBe(200);
      for (const link of links.slice(0, 5)) expect((await hit(link.click)).status).toBe(302);
      expect((await hit(links[0]!.pixel)).status).toBe(200);
      await eventually(
        async () => {
          const { kpis } = (await call(p, 'POST', `/v1/deliveries/${id}/compute-stats`)).body;
          return kpis.opens === 20 && kpis.clicks === 5;
        },
        { timeoutMs: 30_000, what: 'the opens and clicks counted' },
      );
      const [outbox] = await database.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM outbox_messages WHERE payload->>'deliveryId' = $1 AND payload->>'type' IN ('opened', 'clicked')`,
        [id],
      );
      expect(outbox!.n).toBe(0);
      await kept.close();
      expect(await stopPlatform(p, 'SIGTERM')).toBe(0);
      const counts = await kpiEventCounts(env.HERALD_HOME!, id);
      expect(counts.n).toBe(counts.distinct);
      expect([counts.byType.opened, counts.byType.clicked]).toEqual([21, 5]);
    }, 300_000);

    it('a poison event and a poison batch go to the DLQ with their reason; the partitions keep flowing', async () => {
      // A sink that keeps the messages: the engine processes' links must point at the gateway.
      const kept = await startTestSink({ files: true });
      const p = await start({ SMTP_URL: kept.url });
      const bus = busFromEnv(env);
      const dead: { topic: string; value: { reason: string } }[] = [];
      for (const topic of [dlqTopic(TOPICS.messageEvents), dlqTopic(TOPICS.sendBatches)]) {
        await bus.subscribe({ topic, group: 'test-dlq', schema: deadLetterSchema, handler: async (batch) => void dead.push(...batch.map((m) => ({ topic, value: m.value }))) });
      }
      await bus.publish(TOPICS.messageEvents, [{ key: 'x', value: { type: 'exploded' } }]);
      await bus.publish(TOPICS.sendBatches, [{ key: 'bad-batch', value: { batchId: 'bad-batch', recipients: 'none' } }]);
      const id = await startSend(p, { prefix: 'pz-', count: 2_000 });
      await waitForDeliveryState(p, id, 'finished', 120_000);
      await eventually(() => dead.length >= 2, { timeoutMs: 30_000, what: 'both poison messages in their DLQ' });
      expect(dead.map((d) => d.topic).sort()).toEqual([dlqTopic(TOPICS.messageEvents), dlqTopic(TOPICS.sendBatches)].sort());
      expect(dead.every((d) => d.value.reason.length > 0)).toBe(true);
      await eventually(async () => (await call(p, 'GET', `/v1/deliveries/${id}/deployment`)).body.kpis.sent === 2_000, { timeoutMs: 30_000, what: 'the KPIs after the poison' });
      const { pixel } = messageLinks(kept.messages()[0]!.file!);
      expect(pixel.startsWith(`${p.url}/t/o/`)).toBe(true);
      expect((await fetch(pixel)).status).toBe(200);
      await kept.close();
      // herald dlq replay puts a DLQ's messages back on their topic (still poison: back to the DLQ).
      const replay = await runHerald(['dlq', 'replay', TOPICS.messageEvents], env, 60_000);
      expect(replay.stdout).toContain(`replayed 1 message(s) from ${dlqTopic(TOPICS.messageEvents)} to ${TOPICS.messageEvents}`);
      await eventually(() => dead.filter((d) => d.topic === dlqTopic(TOPICS.messageEvents)).length === 2, { timeoutMs: 30_000, what: 'the replayed poison back in the DLQ' });
      await bus.close();
    }, 300_000);
  },
  available,
);
