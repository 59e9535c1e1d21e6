// `npm run bench:kafka-bus`: the Kafka adapter alone, what its client costs per message. For each
// KAFKA_COMPRESSION (none, zstd, gzip; rounds alternate so that the machine's load falls on all
// of them alike): BENCH_KAFKA_EVENTS message events of one delivery (the shape the relay
// publishes) published through busFromEnv in chunks of 2,500, 4 publishes in flight (as
// `bench:ingest` does), then read back by one subscription with the KPI consumer's contract and
// batch size. CPU-seconds per 100,000 events of this process (producer or consumer, kafkajs and
// the bus around it) and of the broker (when it runs on this machine), and the wall time of each
// phase. Written to bench/results/kafka-bus.json. The broker is KAFKA_BROKERS, else one started
// (and stopped) with infra/kafka/start.sh.
import { randomUUID } from 'node:crypto';
import { busFromEnv } from '@herald/bus';
import { messageEventSchema, TOPICS } from '@herald/contracts';
import { intFromEnv, machine, processCpuSeconds, round, startKafka, writeResults } from './lib.mjs';

const EVENTS = intFromEnv('BENCH_KAFKA_EVENTS', 200_000);
const ROUNDS = intFromEnv('BENCH_KAFKA_ROUNDS', 3);
const CHUNK = 2_500;
const IN_FLIGHT = 4;
const COMPRESSIONS = (process.env.BENCH_KAFKA_COMPRESSIONS ?? 'none,zstd,gzip').split(',');
const log = (message) => process.stderr.write(`[kafka-bus] ${message}\n`);
const per100k = (seconds) => round((seconds * 100_000) / EVENTS, 2);

function makeEvents(deliveryId) {
  const base = Date.UTC(2026, 10, 1, 9);
  const events = [];
  for (let m = 0; events.length < EVENTS; m++) {
    const common = { deliveryId, occurrence: 0, messageId: `<${deliveryId.slice(0, 8)}-${m}@bench.example>`, profileId: `p${m}`, channel: 'email' };
    events.push({ ...common, eventId: randomUUID(), type: 'sent', occurredAt: new Date(base + m * 10).toISOString() });
    events.push({ ...common, eventId: randomUUID(), type: 'delivered', occurredAt: new Date(base + m * 10 + 1_000).toISOString() });
  }
  return events.slice(0, EVENTS);
}

/** CPU-seconds of this process and of the broker (null when it is not on this machine) since `before`. */
function cpuSince(before, brokerPid) {
  const own = process.cpuUsage(before.own);
  return { own: (own.user + own.system) / 1e6, broker: brokerPid ? processCpuSeconds(brokerPid) - before.broker : null };
}
const cpuNow = (brokerPid) => ({ own: process.cpuUsage(), broker: brokerPid ? processCpuSeconds(brokerPid) : 0 });

async function measure(kafka, compression, round_) {
  const bus = busFromEnv({ ...kafka.env(`${compression}-${round_}`), KAFKA_COMPRESSION: compression });
  try {
    const events = makeEvents(randomUUID());
    const outgoing = events.map((event) => ({ key: event.deliveryId, value: event }));
    await bus.publish(TOPICS.messageEvents, outgoing.slice(0, 1)); // topic created, producer connected
    let before = cpuNow(kafka.pid);
    let started = performance.now();
    const inFlight = [];
    for (let i = 1; i < outgoing.length; i += CHUNK) {
      const sent = bus.publish(TOPICS.messageEvents, outgoing.slice(i, i + CHUNK));
      sent.catch(() => undefined); // awaited below
      inFlight.push(sent);
      if (inFlight.length >= IN_FLIGHT) await inFlight.shift();
    }
    await Promise.all(inFlight);
    const publishSeconds = (performance.now() - started) / 1000;
    const publishCpu = cpuSince(before, kafka.pid);

    let received = 0;
    let done;
    const all = new Promise((resolve) => {
      done = resolve;
    });
    before = cpuNow(kafka.pid);
    started = performance.now();
    const subscription = await bus.subscribe({
      topic: TOPICS.messageEvents,
      group: 'bench',
      schema: messageEventSchema,
      maxBatchSize: 50_000,
      maxFetchBytes: 16 * 1024 * 1024,
      handler: async (batch) => {
        received += batch.length;
        if (received >= EVENTS) done();
      },
    });
    await all;
    const consumeSeconds = (performance.now() - started) / 1000;
    const consumeCpu = cpuSince(before, kafka.pid);
    await subscription.close();
    const result = {
      compression,
      round: round_,
      publish: { seconds: round(publishSeconds, 2), eventsPerSecond: Math.round(EVENTS / publishSeconds), cpuPer100k: per100k(publishCpu.own), brokerCpuPer100k: publishCpu.broker === null ? null : per100k(publishCpu.broker) },
      consume: { seconds: round(consumeSeconds, 2), eventsPerSecond: Math.round(EVENTS / consumeSeconds), cpuPer100k: per100k(consumeCpu.own), brokerCpuPer100k: consumeCpu.broker === null ? null : per100k(consumeCpu.broker) },
    };
    log(JSON.stringify(result));
    return result;
  } finally {
    await bus.close();
  }
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};

async function main() {
  const loadAverageAtStart = (await import('node:os')).loadavg().map((l) => round(l, 2));
  const kafka = await startKafka({ log });
  const runs = [];
  try {
    for (let r = 1; r <= ROUNDS; r++) for (const compression of COMPRESSIONS) runs.push(await measure(kafka, compression, r));
  } finally {
    await kafka.stop();
  }
  const summary = Object.fromEntries(
    COMPRESSIONS.map((compression) => {
      const of = runs.filter((run) => run.compression === compression);
      const pick = (phase, field) => median(of.map((run) => run[phase][field]).filter((v) => v !== null)) ?? null;
      return [
        compression,
        {
          publishCpuPer100k: pick('publish', 'cpuPer100k'),
          publishBrokerCpuPer100k: pick('publish', 'brokerCpuPer100k'),
          publishEventsPerSecond: pick('publish', 'eventsPerSecond'),
          consumeCpuPer100k: pick('consume', 'cpuPer100k'),
          consumeBrokerCpuPer100k: pick('consume', 'brokerCpuPer100k'),
          consumeEventsPerSecond: pick('consume', 'eventsPerSecond'),
        },
      ];
    }),
  );
  const path = writeResults('kafka-bus', {
    benchmark: 'kafka-bus',
    events: EVENTS,
    publishChunk: CHUNK,
    publishesInFlight: IN_FLIGHT,
    medianOfRounds: summary,
    runs,
    note: 'CPU-seconds per 100,000 events of the bench process (kafkajs and KafkaBus: encoding, partitioning, decoding, the contract check) and of the broker; the broker on this machine also counts any other client of it',
    broker: kafka.startedHere ? 'single node (KRaft, loopback) started by infra/kafka/start.sh for this run' : 'KAFKA_BROKERS',
    loadAverageAtStart,
    machine: machine(),
    measuredAt: new Date().toISOString(),
  });
  for (const [compression, s] of Object.entries(summary)) {
    log(`${compression}: publish ${s.publishCpuPer100k} CPU-s per 100,000 (broker ${s.publishBrokerCpuPer100k}), consume ${s.consumeCpuPer100k} (broker ${s.consumeBrokerCpuPer100k}); medians of ${ROUNDS}`);
  }
  log(`written to ${path}`);
  process.exit(0);
}

await main();
