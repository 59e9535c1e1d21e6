// bench:ingest — message events into ClickHouse (chDB, the embedded default), three figures:
//
// 1. Throughput: 1,000,000 events published on the bus and moved by the KPI consumer (flush at
//    50,000 rows or 1 s) into herald.message_events, against the ceiling measured in the same
//    run: the same rows inserted straight into the same table in the same batch size (50,000),
//    with no bus and no consumer. ratio = pipeline / ceiling. The bus is the in-process one (12
//    partitions, publishes of 10,000 events), or with `--bus kafka` the Kafka bus on a local broker
//    (publishes of KAFKA_PUBLISH_CHUNK events, KAFKA_PUBLISH_IN_FLIGHT of them in flight: see
//    publishToKafka; KAFKA_COMPRESSION of the environment applies to the bus and to `herald start`).
// 2. Visibility through the API: `herald start` (on Kafka with `--bus kafka`) sends a delivery,
//    then asynchronous bounces are posted to the signed webhook at a steady pace while the
//    Deployment block is polled; the time from each webhook answer until `bouncesAndErrors`
//    counts it gives p50/p95 (target: p95 ≤ 2 s). It crosses the outbox relay, the bus, the
//    consumer's flush and the KPI query.
// 3. The deployment query on a delivery with 10,000,000 events (inserted with INSERT … SELECT
//    through the materialized views): the two ClickHouse reads GET /deployment makes (live
//    counters and the last computed rates), timed 300 times: p50/p99 (target: p99 ≤ 50 ms).
//    No bus is involved; it is measured again in a Kafka run so that each file stands alone.
//
// `npm run bench:ingest` writes bench/results/ingest.json; `npm run bench:ingest -- --bus kafka`
// writes bench/results/ingest-kafka.json, on the broker of KAFKA_BROKERS or else one started
// (and stopped) with infra/kafka/start.sh, every phase under topics of its own.
//
// Env: INGEST_EVENTS (1,000,000), INGEST_BATCH (50,000), VISIBILITY_BOUNCES (300),
// QUERY_EVENTS (10,000,000), QUERY_RUNS (300); with Kafka: KAFKA_BROKERS, KAFKA_PUBLISH_CHUNK
// (2,500), KAFKA_PUBLISH_IN_FLIGHT (4).
import { randomUUID } from 'node:crypto';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { busFromEnv } from '@herald/bus';
import { TOPICS } from '@herald/contracts';
import { KpiConsumer } from '@herald/kpi-consumer';
import { openKpiStore } from '@herald/kpi-store';
import { pino } from 'pino';
import { apiClient, busFromArgs, intFromEnv, machine, processCpuSeconds, round, startKafka, startPlatform, writeResults } from './lib.mjs';

const EVENTS = intFromEnv('INGEST_EVENTS', 1_000_000);
const BATCH = intFromEnv('INGEST_BATCH', 50_000);
const BOUNCES = intFromEnv('VISIBILITY_BOUNCES', 300);
const QUERY_EVENTS = intFromEnv('QUERY_EVENTS', 10_000_000);
const QUERY_RUNS = intFromEnv('QUERY_RUNS', 300);
const WEBHOOK_SECRET = 'bench-webhook-secret-0123456789abcdefgh';
const BUS = busFromArgs();
// Events of one delivery share a key, hence a partition, and kafkajs writes what one publish
// holds for a partition as one record batch: it must stay under the broker's message.max.bytes
// (1 MiB by default; 3,500 of these ~300-byte events are refused). 2,500 is about 0.8 MB.
const KAFKA_PUBLISH_CHUNK = intFromEnv('KAFKA_PUBLISH_CHUNK', 2_500);
const KAFKA_PUBLISH_IN_FLIGHT = intFromEnv('KAFKA_PUBLISH_IN_FLIGHT', 4);

const log = (message) => process.stderr.write(`[ingest] ${message}\n`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
};

/** A realistic mix for one delivery: per message sent + delivered, 30% opened, 10% clicked, 2% bounced. */
function makeEvents(deliveryId, count) {
  const events = [];
  const base = Date.UTC(2026, 10, 1, 9);
  for (let m = 0; events.length < count; m++) {
    const common = { deliveryId, occurrence: 0, messageId: `<${deliveryId.slice(0, 8)}-${m}@bench.example>`, profileId: `p${m}`, channel: 'email' };
    const at = (offsetS) => new Date(base + m * 10 + offsetS * 1000).toISOString();
    events.push({ ...common, eventId: randomUUID(), type: 'sent', occurredAt: at(0) });
    if (m % 50 === 0) events.push({ ...common, eventId: randomUUID(), type: 'bounced', bounceType: 'hard', reason: '550 user unknown', occurredAt: at(1) });
    else events.push({ ...common, eventId: randomUUID(), type: 'delivered', occurredAt: at(1) });
    if (m % 10 < 3) events.push({ ...common, eventId: randomUUID(), type: 'opened', occurredAt: at(600) });
    if (m % 10 === 0) events.push({ ...common, eventId: randomUUID(), type: 'clicked', url: 'https://shop.example/a', occurredAt: at(660) });
  }
  return events.slice(0, count);
}

async function throughput(store, kafka) {
  // Ceiling: the same rows, straight into the same table, BATCH rows per insert.
  const direct = makeEvents(randomUUID(), EVENTS);
  let started = performance.now();
  for (let i = 0; i < direct.length; i += BATCH) {
    await store.insertEvents(direct.slice(i, i + BATCH), { dedupToken: `ceiling-${i}-${direct[i].eventId}` });
  }
  const ceilingSeconds = (performance.now() - started) / 1000;
  log(`ceiling: ${EVENTS} events inserted directly in ${round(ceilingSeconds, 2)} s`);

  // The pipeline: bus + KPI consumer with its defaults (50,000 rows or 1 s per flush).
  const events = makeEvents(randomUUID(), EVENTS);
  const bus = kafka
    ? busFromEnv({ KAFKA_BROKERS: kafka.brokers.join(','), KAFKA_TOPIC_PREFIX: kafka.env('ingest').KAFKA_TOPIC_PREFIX, KAFKA_COMPRESSION: process.env.KAFKA_COMPRESSION })
    : busFromEnv({}, { inProcess: { partitions: 12 } });
  const consumer = new KpiConsumer(bus, store, pino({ level: 'warn' }), { maxRows: BATCH });
  await consumer.start(); // on Kafka: the topic exists and the consumer has joined its group
  const cpuBefore = { bench: process.cpuUsage(), broker: kafka?.pid ? processCpuSeconds(kafka.pid) : null };
  started = performance.now();
  if (kafka) await publishToKafka(bus, events);
  else {
    for (let i = 0; i < events.length; i += 10_000) {
      await bus.publish(TOPICS.messageEvents, events.slice(i, i + 10_000).map((e) => ({ key: e.deliveryId, value: e })));
      // Yield so the consumer runs while the producer publishes, as across processes.
      await sleep(0);
    }
  }
  const publishedSeconds = (performance.now() - started) / 1000;
  for (let seen = -1, since = Date.now(); consumer.stats.inserted < EVENTS; await sleep(5)) {
    if (consumer.stats.inserted !== seen) [seen, since] = [consumer.stats.inserted, Date.now()];
    else if (Date.now() - since > 60_000) throw new Error(`pipeline stalled: ${seen} of ${EVENTS} events inserted, nothing more for 60 s`);
  }
  const pipelineSeconds = (performance.now() - started) / 1000;
  const benchCpu = process.cpuUsage(cpuBefore.bench);
  const brokerCpuAfter = kafka?.pid ? processCpuSeconds(kafka.pid) : null;
  await consumer.stop();
  await bus.close();
  log(`pipeline: ${EVENTS} events through the bus and the consumer in ${round(pipelineSeconds, 2)} s (${consumer.stats.flushes} flushes; all published after ${round(publishedSeconds, 2)} s)`);
  const counters = await store.deliveryCounters(events[0].deliveryId);
  if (counters.sentEvents + counters.delivered + counters.bounces + counters.opens + counters.clicks !== EVENTS) {
    throw new Error(`pipeline lost or doubled events: ${JSON.stringify(counters)}`);
  }
  return {
    eventsPerSecond: Math.round(EVENTS / pipelineSeconds),
    ceilingEventsPerSecond: Math.round(EVENTS / ceilingSeconds),
    ratio: round(ceilingSeconds / pipelineSeconds),
    flushes: consumer.stats.flushes,
    ...(kafka && {
      pipeline: {
        publishChunk: KAFKA_PUBLISH_CHUNK,
        publishesInFlight: KAFKA_PUBLISH_IN_FLIGHT,
        publishedSeconds: round(publishedSeconds, 2),
        consumedSeconds: round(pipelineSeconds, 2),
        ceilingSeconds: round(ceilingSeconds, 2),
        rowsPerFlush: Math.round(EVENTS / consumer.stats.flushes),
        partitionsUsed: 1,
        benchProcessCpuSeconds: round((benchCpu.user + benchCpu.system) / 1e6, 2),
        brokerCpuSeconds: brokerCpuAfter === null || cpuBefore.broker === null ? null : round(brokerCpuAfter - cpuBefore.broker, 2),
        note: 'one delivery, so one key and one partition, as in the in-process run; producer, consumer and chDB share the bench process (node + chDB threads), the broker is another process on the same 2 cores',
      },
    }),
  };
}

/**
 * Publishes `events` to Kafka in chunks of KAFKA_PUBLISH_CHUNK, KAFKA_PUBLISH_IN_FLIGHT publishes
 * in flight, as a producer that prepares its next requests without waiting for each answer.
 * kafkajs's idempotent producer sends one produce request at a time per broker anyway (each
 * takes its sequence numbers once it holds the broker), so what overlaps is the encoding of the
 * next chunks with the broker's round trip.
 */
async function publishToKafka(bus, events) {
  const inFlight = [];
  for (let i = 0; i < events.length; i += KAFKA_PUBLISH_CHUNK) {
    const sent = bus.publish(TOPICS.messageEvents, events.slice(i, i + KAFKA_PUBLISH_CHUNK).map((e) => ({ key: e.deliveryId, value: e })));
    sent.catch(() => undefined); // awaited below; a rejection meanwhile is not unhandled
    inFlight.push(sent);
    if (inFlight.length >= KAFKA_PUBLISH_IN_FLIGHT) await inFlight.shift();
  }
  await Promise.all(inFlight);
}

async function visibility(kafka) {
  const platform = await startPlatform({ env: { HERALD_WEBHOOK_SECRET: WEBHOOK_SECRET, ...kafka?.env('visibility') } });
  try {
    const api = apiClient(platform);
    const recipients = BOUNCES + 100;
    const profiles = Array.from({ length: recipients }, (_, i) => ({ id: `v${i}`, email: `v${i}@bench.example` }));
    await api('POST', '/v1/profiles/import', profiles);
    const audience = await api('POST', '/v1/audiences', { name: 'visibility', profileIds: profiles.map((p) => p.id) });
    const delivery = await api('POST', '/v1/deliveries', {
      name: 'visibility',
      channel: 'email',
      audienceId: audience.id,
      content: { from: 'news@shop.example', subject: 'Hello', text: 'Hello {{profile.firstName}}' },
    });
    await api('POST', `/v1/deliveries/${delivery.id}/prepare`);
    await api('POST', `/v1/deliveries/${delivery.id}/approve`);
    const confirmation = await api('POST', `/v1/deliveries/${delivery.id}/confirmations`);
    await api('POST', `/v1/deliveries/${delivery.id}/confirmations/${confirmation.confirmationId}/ok`);
    for (;;) {
      const deployment = await api('GET', `/v1/deliveries/${delivery.id}/deployment`);
      if (deployment.state === 'finished' && deployment.kpis.sent === recipients) break;
      await sleep(100);
    }
    const messageIds = [];
    for (let after; ; ) {
      const page = await api('GET', `/v1/deliveries/${delivery.id}/logs?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      messageIds.push(...page.items.map((row) => row.messageId));
      after = page.next;
      if (!after) break;
    }
    log(`visibility: ${recipients} sent; posting ${BOUNCES} bounces, one every 100 ms, polling the Deployment block`);

    const answeredAt = [];
    const visibleAt = [];
    let done = false;
    const poller = (async () => {
      while (!done) {
        const { kpis } = await api('GET', `/v1/deliveries/${delivery.id}/deployment`);
        const now = performance.now();
        for (let i = 0; i < kpis.bouncesAndErrors && i < answeredAt.length; i++) visibleAt[i] ??= now;
        await sleep(20);
      }
    })();
    for (let i = 0; i < BOUNCES; i++) {
      const body = JSON.stringify({ messageId: messageIds[i], type: 'soft', reason: '452 mailbox full' });
      const t = Math.floor(Date.now() / 1000);
      const signature = `t=${t},v1=${createHmac('sha256', WEBHOOK_SECRET).update(`${t}.${body}`).digest('hex')}`;
      const response = await fetch(`${platform.url}/v1/webhooks/bounces`, { method: 'POST', headers: { 'content-type': 'application/json', 'herald-signature': signature }, body });
      if (response.status !== 200) throw new Error(`webhook: HTTP ${response.status}: ${await response.text()}`);
      answeredAt.push(performance.now());
      await sleep(100);
    }
    const deadline = Date.now() + 30_000;
    while (visibleAt.length < BOUNCES && Date.now() < deadline) await sleep(20);
    done = true;
    await poller;
    if (visibleAt.length < BOUNCES) throw new Error(`only ${visibleAt.length} of ${BOUNCES} bounces became visible`);
    const latencies = answeredAt.map((t, i) => visibleAt[i] - t);
    return { p50VisibleMs: Math.round(percentile(latencies, 50)), p95VisibleMs: Math.round(percentile(latencies, 95)), maxVisibleMs: Math.round(Math.max(...latencies)) };
  } finally {
    await platform.stop();
  }
}

async function deploymentQuery(store) {
  const deliveryId = randomUUID();
  const started = performance.now();
  // 10M events for one delivery, in the proportions of makeEvents, through every materialized view.
  for (let from = 0; from < QUERY_EVENTS; from += 2_000_000) {
    const n = Math.min(2_000_000, QUERY_EVENTS - from);
    await store.client.command({
      query: `INSERT INTO herald.message_events (event_id, type, delivery_id, occurrence, message_id, profile_id, channel, occurred_at, bounce_type)
              SELECT generateUUIDv4(),
                     multiIf(k = 0, 'sent', k = 1, if(m % 50 = 0, 'bounced', 'delivered'), k = 2, 'opened', 'clicked'),
                     toUUID({d:String}), 0, concat('<', toString(m), '@bench.example>'), concat('p', toString(m)), 'email',
                     toDateTime64('2026-11-01 09:00:00', 3, 'UTC') + toIntervalSecond(intDiv(m, 100)) + toIntervalSecond(k * 60),
                     if(k = 1 AND m % 50 = 0, 'hard', '')
              FROM (SELECT number AS i, intDiv(number, 4) AS m, number % 4 AS k FROM numbers({from:UInt64}, {n:UInt64}))`,
      query_params: { d: deliveryId, from, n },
      clickhouse_settings: { insert_deduplication_token: '' },
    });
    log(`query: ${from + n} of ${QUERY_EVENTS} events inserted`);
  }
  const insertSeconds = (performance.now() - started) / 1000;
  let t = performance.now();
  await store.refreshRates({ timeoutMs: 600_000 });
  const refreshSeconds = (performance.now() - t) / 1000;
  const counters = await store.deliveryCounters(deliveryId);
  if (counters.sentEvents + counters.delivered + counters.bounces + counters.opens + counters.clicks !== QUERY_EVENTS) {
    throw new Error(`the 10M delivery does not add up: ${JSON.stringify(counters)}`);
  }
  const times = [];
  for (let i = 0; i < QUERY_RUNS; i++) {
    t = performance.now();
    await Promise.all([store.deliveryCounters(deliveryId), store.deliveryRates(deliveryId)]);
    times.push(performance.now() - t);
  }
  return {
    kpiQueryP50Ms: round(percentile(times, 50), 2),
    kpiQueryP99Ms: round(percentile(times, 99), 2),
    events: QUERY_EVENTS,
    insertSeconds: round(insertSeconds, 1),
    rateRefreshSeconds: round(refreshSeconds, 2),
  };
}

const loadAverageAtStart = os.loadavg().map((v) => round(v, 2)); // other work on the machine skews the figures
const kafka = BUS === 'kafka' ? await startKafka({ log }) : null;
const dir = mkdtempSync(join(os.tmpdir(), 'herald-ingest-'));
const store = openKpiStore({ dataDir: dir });
try {
  await store.migrate();
  const ingest = await throughput(store, kafka);
  const query = await deploymentQuery(store);
  await store.close();
  const visible = await visibility(kafka);
  const result = {
    benchmark: 'ingest',
    bus: BUS,
    kpiStore: 'chdb',
    events: EVENTS,
    batch: BATCH,
    ...ingest,
    ...visible,
    targets: { ratio: 0.5, p95VisibleMs: 2000, kpiQueryP99Ms: 50 },
    deploymentQuery: query,
    kpiQueryP50Ms: query.kpiQueryP50Ms,
    kpiQueryP99Ms: query.kpiQueryP99Ms,
    ...(kafka && {
      kafka: {
        broker: kafka.startedHere
          ? 'single node (KRaft, loopback) started by infra/kafka/start.sh for this run'
          : `KAFKA_BROKERS${kafka.pid ? ' (a local broker: its CPU counts every client of it)' : ''}`,
        brokerStartSeconds: kafka.startSeconds,
        client: `the Kafka bus of busFromEnv (kafkajs, idempotent producer, acks -1, KAFKA_COMPRESSION ${process.env.KAFKA_COMPRESSION || 'unset'}); herald.message-events created with 12 partitions`,
      },
    }),
    loadAverageAtStart,
    machine: machine(),
    measuredAt: new Date().toISOString(),
  };
  const path = writeResults(kafka ? 'ingest-kafka' : 'ingest', result);
  console.log(JSON.stringify(result, null, 2));
  log(`written to ${path}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
  await kafka?.stop();
}
