// `npm run bench:events` (measurement M2 of issue 12, small form): the outbox relay publishing
// message events on Kafka, keyed by message id (what Herald does) against keyed by delivery (what
// it did), for BENCH_EVENTS_N events of one delivery and the same spread over 32 deliveries. The
// events are written as the engine writes them (one fanout outbox row per batch of 500) into an
// embedded control-plane store; the relay drains them onto a topic of BENCH_EVENTS_PARTITIONS
// partitions. Per case: the relay's events/s (drain wall time, and CPU-seconds of this process
// per 100,000 events) and the busiest partition's share of the events (from the topic's offsets).
// The by-delivery cases publish the same rows on a second topic that keeps each fanout row's key,
// as the relay did for message events. Cases alternate within each round (same machine load).
// Written to bench/results/events.json. The broker is KAFKA_BROKERS, else one started here.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { busFromEnv } from '@herald/bus';
import { TOPICS } from '@herald/contracts';
import { migrate, OutboxRelay, openDatabase, systemClock } from '@herald/control-plane';
import kafkajs from 'kafkajs';
import { intFromEnv, machine, round, startKafka, writeResults } from './lib.mjs';

const EVENTS = intFromEnv('BENCH_EVENTS_N', 100_000);
const ROUNDS = intFromEnv('BENCH_EVENTS_ROUNDS', 2);
const PARTITIONS = intFromEnv('BENCH_EVENTS_PARTITIONS', 12);
const BATCH = 500;
/** Not a topic Herald reads: its fanout rows are published under the row's key (the delivery id). */
const BY_DELIVERY_TOPIC = 'bench.message-events-by-delivery';
const log = (message) => process.stderr.write(`[events] ${message}\n`);

/** BENCH_EVENTS_N events (sent, delivered per message) over `deliveries` deliveries, in batches of one delivery. */
function batchesOf(deliveries) {
  const ids = Array.from({ length: deliveries }, () => randomUUID());
  const batches = [];
  const perDelivery = Math.ceil(EVENTS / deliveries);
  const now = new Date().toISOString();
  for (const deliveryId of ids) {
    for (let start = 0; start < perDelivery; start += BATCH) {
      const batch = [];
      for (let i = start; i < Math.min(start + BATCH, perDelivery); i += 2) {
        const common = { deliveryId, occurrence: 0, messageId: `<${deliveryId.slice(0, 8)}-${i}@bench.example>`, profileId: `p${i}`, channel: 'email', occurredAt: now };
        batch.push({ ...common, eventId: randomUUID(), type: 'sent' }, { ...common, eventId: randomUUID(), type: 'delivered' });
      }
      batches.push({ deliveryId, events: batch });
    }
  }
  return batches;
}

async function partitionCounts(brokers, topic) {
  const admin = new kafkajs.Kafka({ clientId: 'herald-bench', brokers, logLevel: kafkajs.logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.sort((a, b) => a.partition - b.partition).map((o) => Number(o.high) - Number(o.low));
  } finally {
    await admin.disconnect();
  }
}

async function measure(kafka, db, { deliveries, keyedBy, label }) {
  const env = kafka.env(label);
  const topic = keyedBy === 'message' ? TOPICS.messageEvents : BY_DELIVERY_TOPIC;
  const bus = busFromEnv({ ...env, KAFKA_MESSAGE_EVENT_PARTITIONS: PARTITIONS, KAFKA_PARTITIONS: PARTITIONS }, { kafka: { logLevel: 'error' } });
  try {
    // Topic created and producer connected before the clock starts.
    await bus.publish(topic, [{ key: 'warm-up', value: { warmUp: true } }]);
    const batches = batchesOf(deliveries);
    await db.transaction(async (tx) => {
      for (const { deliveryId, events } of batches) {
        await tx.query('INSERT INTO outbox (command_id, topic, key, payload, fanout, messages) VALUES ($1, $2, $3, $4, true, $5)', [
          randomUUID(),
          topic,
          deliveryId,
          JSON.stringify(events),
          events.length,
        ]);
      }
    });
    const events = batches.reduce((n, b) => n + b.events.length, 0);
    const physical = `${env.KAFKA_TOPIC_PREFIX}${topic}`;
    const warmUp = await partitionCounts(kafka.brokers, physical);
    const relay = new OutboxRelay(db, bus, systemClock);
    const cpu = process.cpuUsage();
    const started = performance.now();
    await relay.drain();
    const seconds = (performance.now() - started) / 1000;
    const used = process.cpuUsage(cpu);
    const counts = (await partitionCounts(kafka.brokers, physical)).map((n, i) => n - (warmUp[i] ?? 0));
    const total = counts.reduce((a, b) => a + b, 0);
    const busiest = Math.max(...counts);
    return {
      label,
      deliveries,
      keyedBy,
      events,
      published: total,
      relayEventsPerSecond: Math.round(events / seconds),
      relayCpuSecondsPer100k: round(((used.user + used.system) / 1e6) * (100_000 / events), 2),
      busiestPartitionShare: round(busiest / total, 3),
      partitionsUsed: counts.filter((c) => c > 0).length,
    };
  } finally {
    await bus.close();
  }
}

const loadAverageAtStart = os.loadavg().map((l) => round(l, 2)); // other work on the machine skews the figures
const kafka = await startKafka({ log });
const dir = mkdtempSync(join(os.tmpdir(), 'herald-bench-events-'));
const db = await openDatabase({ dataDir: join(dir, 'store') });
try {
  await migrate(db);
  const cases = [
    { deliveries: 1, keyedBy: 'delivery' },
    { deliveries: 1, keyedBy: 'message' },
    { deliveries: 32, keyedBy: 'delivery' },
    { deliveries: 32, keyedBy: 'message' },
  ];
  const runs = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of cases) {
      const result = await measure(kafka, db, { ...c, label: `r${r}-${c.deliveries}d-by-${c.keyedBy}` });
      log(JSON.stringify(result));
      runs.push(result);
    }
  }
  const summary = cases.map((c) => {
    const mine = runs.filter((r) => r.deliveries === c.deliveries && r.keyedBy === c.keyedBy);
    const rates = mine.map((r) => r.relayEventsPerSecond);
    return {
      ...c,
      relayEventsPerSecond: { median: rates.sort((a, b) => a - b)[Math.floor(rates.length / 2)], min: Math.min(...rates), max: Math.max(...rates) },
      relayCpuSecondsPer100k: mine.map((r) => r.relayCpuSecondsPer100k),
      busiestPartitionShare: mine.map((r) => r.busiestPartitionShare),
    };
  });
  writeResults('events', { measuredAt: new Date().toISOString(), loadAverageAtStart, machine: machine(), events: EVENTS, partitions: PARTITIONS, batch: BATCH, rounds: ROUNDS, broker: kafka.startedHere ? 'started by the bench' : 'KAFKA_BROKERS', summary, runs });
  log(JSON.stringify(summary, null, 1));
} finally {
  await db.close();
  rmSync(dir, { recursive: true, force: true });
  await kafka.stop();
}
