// Engine memory benchmark: the send engine's own peak RSS on a 1,000,000-recipient send, with
// the engine in a process of its own. `herald gateway` and `herald engine` run as two processes
// on one PostgreSQL database (a fresh one, dropped at the end), so the store's memory is not in
// the engine's process; the engine sends to Postfix's smtp-sink on loopback. Target (design):
// the engine stays under 512 MiB RSS.
//
// Steps: start PostgreSQL (infra/postgres/start.sh, or BENCH_PG_URL / the server of
// HERALD_TEST_DATABASE_URL), create a database, start smtp-sink, the gateway and the engine
// (sharing one temporary HERALD_HOME, so they share the generated secrets); import the profiles
// (NDJSON, streamed, 200,000 per request); audience, delivery (~2 KB HTML, 2 links,
// {{profile.firstName}}), prepare, approve, Confirm send; reset the engine's and the gateway's
// VmHWM; OK; poll until finished, sampling the engine's VmRSS every second.
//
// Writes bench/results/engine-memory.json. Environment (all optional): BENCH_MEM_RECIPIENTS
// (1000000), BENCH_MEM_DEADLINE_SECONDS (780: a send still running then is stopped, and no
// result is written), ENGINE_THREADS (default: the engine's own default, the cores),
// ENGINE_SMTP_CONNECTIONS, ENGINE_BATCH_SIZE (passed through to the engine when set),
// BENCH_MEM_ENGINE_NODE_OPTIONS (diagnostics: added to the engine's NODE_OPTIONS only, e.g.
// --max-old-space-size=128, to tell V8 heap slack from retained memory; recorded in the result).
//
// `npm run bench:engine-memory -- --bus kafka`: the same with both processes on Kafka (a broker
// of the run's own, see startKafka in lib.mjs), written to engine-memory-kafka.json.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { apiClient, benchArgs, createBenchDatabase, postgresServerUrl, freePort, machine, peakRssMiB, postStream, resetPeakRss, round, rssMiB, startHerald, startKafka, startSmtpSink, writeResults, intFromEnv } from './lib.mjs';

const RECIPIENTS = intFromEnv('BENCH_MEM_RECIPIENTS', 1_000_000);
const DEADLINE_SECONDS = intFromEnv('BENCH_MEM_DEADLINE_SECONDS', 780);
const THREADS = intFromEnv('ENGINE_THREADS', os.availableParallelism());
const ENGINE_NODE_OPTIONS = process.env.BENCH_MEM_ENGINE_NODE_OPTIONS ?? ''; // diagnostics only, e.g. --max-old-space-size=256
const IMPORT_BATCH = 200_000;
const LIMIT_MIB = 512;
const SAMPLE_MS = 1_000;
const KEEP_EVERY_SECONDS = 5;
const CHUNK_BYTES = 64 * 1024;
const RUN = 'mem';
const BUS = benchArgs().bus;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (message) => console.error(`[bench:engine-memory] ${message}`);

// ---- the message: ~2 KB of HTML, 2 links, personalized -----------------------------------

const FROM = 'Herald Bench <news@example.com>';
const SUBJECT = '{{profile.firstName}}, your weekly digest';
const p = (text) => `<p style="margin:0 0 16px 0;font-family:Helvetica,Arial,sans-serif;font-size:15px;line-height:22px;color:#333333;">${text}</p>`;
const HTML = [
  '<!DOCTYPE html>',
  '<html lang="en"><head><meta charset="utf-8"><title>Weekly digest</title></head>',
  '<body style="margin:0;padding:0;background:#f4f4f4;">',
  '<table role="presentation" width="600" cellpadding="0" cellspacing="0" border="0" style="background:#ffffff;"><tr><td style="padding:32px 40px;">',
  '<h1 style="margin:0 0 20px 0;font-family:Helvetica,Arial,sans-serif;font-size:24px;color:#111111;">Hello {{profile.firstName}},</h1>',
  p('This week we shipped a shorter checkout, clearer delivery dates on every product page and a returns form that takes less than a minute. Every one of these changes started with a message from someone like you, so thank you for writing to us.'),
  p('Our winter collection arrives next week and subscribers can order it today. Most orders leave the same day and arrive within two working days; returns are free for sixty days.'),
  p('<a href="https://shop.example.com/winter?utm_source=herald" style="color:#1a73e8;">See the winter collection</a>'),
  p('Want fewer emails? <a href="https://shop.example.com/account/preferences" style="color:#1a73e8;">Update your preferences</a> at any time.'),
  p('See you soon, {{profile.firstName}}!<br>The Example Shop team'),
  '</td></tr></table>',
  '<p style="margin:16px 0 0 0;font-family:Helvetica,Arial,sans-serif;font-size:12px;color:#888888;">Example Shop, 1 Market Street, Springfield. You receive this email because you subscribed to our weekly digest.</p>',
  '</body></html>',
].join('\n');

// ---- profiles ------------------------------------------------------------------------------

const FIRST = ['Alice', 'Bruno', 'Chloé', 'Dmitri', 'Emma', 'Farid', 'Grace', 'Hugo', 'Inès', 'Jonas', 'Keiko', 'Liam', 'Maya', 'Noah', 'Olga', 'Pablo'];
const DOMAINS = ['example.com', 'example.net', 'example.org', 'mail.example'];

function* ndjson(from, to) {
  let chunk = '';
  for (let n = from; n < to; n++) {
    chunk += `${JSON.stringify({ id: `mem-${String(n).padStart(7, '0')}`, email: `user${n}@${DOMAINS[n % DOMAINS.length]}`, firstName: FIRST[n % FIRST.length], attributes: { run: RUN } })}\n`;
    if (chunk.length >= CHUNK_BYTES) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk) yield chunk;
}

// ---- helpers -------------------------------------------------------------------------------

/** Counts of the delivery's send_ledger rows by status: { sent: n, ... }. */
async function ledgerStatuses(databaseUrl, deliveryId) {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query('SELECT status, count(*)::int AS n FROM send_ledger WHERE delivery_id = $1 GROUP BY status', [deliveryId]);
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  } finally {
    await client.end();
  }
}

/** Least-squares slope of [x, y] points (y per x unit); null with fewer than 2 points. */
function slope(points) {
  if (points.length < 2) return null;
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const num = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const den = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  return den === 0 ? null : num / den;
}

// ---- main ----------------------------------------------------------------------------------

async function main() {
  const cleanups = [];
  const cleanup = async () => {
    while (cleanups.length) {
      const step = cleanups.pop();
      await step().catch((error) => log(`cleanup: ${error.message}`));
    }
  };
  // Ctrl-C / kill: clean up (processes, database, temp dir), then exit.
  const onSignal = (signal) => {
    log(`${signal}: cleaning up`);
    cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);

  try {
    const dir = mkdtempSync(join(os.tmpdir(), 'herald-bench-mem-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const home = join(dir, 'home');

    const serverUrl = postgresServerUrl();
    const db = await createBenchDatabase(serverUrl, 'bench_mem');
    cleanups.push(() => db.drop());
    log(`database ${db.name} on ${serverUrl}`);

    const sink = await startSmtpSink(dir, { label: 'engine-memory' });
    cleanups.push(() => sink.stop());

    const gatewayPort = await freePort();
    const url = `http://127.0.0.1:${gatewayPort}`;
    const kafka = BUS === 'kafka' ? await startKafka({ log }) : null;
    if (kafka) cleanups.push(() => kafka.stop());
    const common = { DATABASE_URL: db.url, LOG_LEVEL: 'warn', ...(kafka ? kafka.env('mem') : {}) };
    const unset = ['CLICKHOUSE_URL', 'HERALD_JWKS_URL', ...(kafka ? [] : ['KAFKA_BROKERS'])];
    const gateway = await startHerald('gateway', {
      home,
      unset,
      env: { ...common, PORT: String(gatewayPort) },
      waitFor: [/export HERALD_TOKEN=(\S+)/],
      url,
      readyPath: '/health/ready',
    });
    cleanups.push(() => gateway.stop());
    const token = gateway.matches[0][1];
    const engineEnv = { ...common, PORT: String(await freePort()), SMTP_URL: `smtp://127.0.0.1:${sink.port}`, PUBLIC_URL: url, ENGINE_THREADS: String(THREADS) };
    for (const name of ['ENGINE_SMTP_CONNECTIONS', 'ENGINE_BATCH_SIZE']) if (process.env[name]) engineEnv[name] = process.env[name];
    if (ENGINE_NODE_OPTIONS) engineEnv.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} ${ENGINE_NODE_OPTIONS}`.trim();
    const engine = await startHerald('engine', { home, unset, env: engineEnv, waitFor: [/Herald is up \(engine\)\./] });
    cleanups.push(() => engine.stop());
    log(`gateway pid ${gateway.pid} at ${url}; engine pid ${engine.pid} (${THREADS} threads); smtp-sink pid ${sink.pid} on port ${sink.port}; HTML ${HTML.length} chars`);

    const api = apiClient({ url, token });
    const ready = await api('GET', '/health/ready');
    if (ready.store !== 'postgres' && ready.store !== 'postgresql') log(`WARNING: the gateway reports store '${ready.store}'`);

    // Import.
    const importStarted = performance.now();
    for (let from = 1; from <= RECIPIENTS; from += IMPORT_BATCH) {
      const to = Math.min(from + IMPORT_BATCH, RECIPIENTS + 1);
      const answer = await postStream(`${url}/v1/profiles/import`, {
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
        body: ndjson(from, to),
      });
      if (answer.status !== 200 || answer.json?.imported !== to - from || answer.json?.rejectedCount) {
        throw new Error(`import ${from}..${to - 1}: HTTP ${answer.status}: ${answer.text.slice(0, 500)}`);
      }
      log(`imported ${to - 1} profiles (${round(answer.seconds, 1)} s for this request)`);
    }
    const importSeconds = (performance.now() - importStarted) / 1000;

    // Audience, delivery, prepare, approve, Confirm send.
    const setupStarted = performance.now();
    const audience = await api('POST', '/v1/audiences', { name: 'bench engine-memory', filter: { run: RUN } });
    const delivery = await api('POST', '/v1/deliveries', { name: 'bench:engine-memory', channel: 'email', audienceId: audience.id, content: { from: FROM, subject: SUBJECT, html: HTML } });
    const prepared = await api('POST', `/v1/deliveries/${delivery.id}/prepare`);
    const prepareSeconds = (performance.now() - setupStarted) / 1000;
    if (prepared.state !== 'ready' || prepared.preparation?.toSend !== RECIPIENTS) {
      throw new Error(`prepare: expected ready and ${RECIPIENTS} to send, got ${JSON.stringify({ state: prepared.state, preparation: prepared.preparation })}`);
    }
    log(`prepared ${RECIPIENTS} recipients in ${round(prepareSeconds, 1)} s`);
    await api('POST', `/v1/deliveries/${delivery.id}/approve`);
    const { confirmationId } = await api('POST', `/v1/deliveries/${delivery.id}/confirmations`);
    await sleep(2_000); // let both processes settle

    const engineLifetimePeakBeforeMiB = peakRssMiB(engine.pid);
    const engineBeforeMiB = rssMiB(engine.pid);
    const gatewayBeforeMiB = rssMiB(gateway.pid);
    const gatewayLifetimePeakBeforeMiB = peakRssMiB(gateway.pid);
    const resetWorked = resetPeakRss(engine.pid) && resetPeakRss(gateway.pid);
    const sinkBefore = sink.messages();
    log(`before OK: engine RSS ${engineBeforeMiB} MiB (lifetime peak ${engineLifetimePeakBeforeMiB}), gateway RSS ${gatewayBeforeMiB} MiB (lifetime peak ${gatewayLifetimePeakBeforeMiB}); VmHWM reset: ${resetWorked}`);

    const samples = []; // [seconds, engine MiB, gateway MiB, messages at the sink]
    const started = performance.now();
    const elapsed = () => (performance.now() - started) / 1000;
    const sample = () => {
      const row = [round(elapsed(), 1), rssMiB(engine.pid), rssMiB(gateway.pid), sink.messages() - sinkBefore];
      samples.push(row);
      if (samples.length % 10 === 0) log(`${row[0]} s: ${row[3]} messages at the sink (${Math.round(row[3] / row[0])}/s), engine RSS ${row[1]} MiB, gateway RSS ${row[2]} MiB`);
    };
    sample();
    const sampler = setInterval(sample, SAMPLE_MS);
    let seconds = null;
    let final;
    try {
      const answer = await api('POST', `/v1/deliveries/${delivery.id}/confirmations/${confirmationId}/ok`, undefined, { expect: 202 });
      if (answer.state !== 'sending') throw new Error(`OK answered state ${answer.state}, expected sending`);
      for (;;) {
        if (engine.exited()) throw new Error(`the engine exited during the send: ${JSON.stringify(engine.exited())}\n${engine.stderrTail()}`);
        if (gateway.exited()) throw new Error(`the gateway exited during the send: ${JSON.stringify(gateway.exited())}\n${gateway.stderrTail()}`);
        final = await api('GET', `/v1/deliveries/${delivery.id}`);
        if (final.state === 'finished') {
          seconds = elapsed();
          break;
        }
        if (!['sending', 'scheduled'].includes(final.state)) throw new Error(`delivery is '${final.state}'${final.stateReason ? ` (${final.stateReason})` : ''}, not finished`);
        if (elapsed() > DEADLINE_SECONDS) break;
        await sleep(1_000);
      }
    } finally {
      clearInterval(sampler);
    }
    sample();
    const engineRssPeakMiB = peakRssMiB(engine.pid);
    const gatewayPeakRssMiB = peakRssMiB(gateway.pid);
    const received = sink.messages() - sinkBefore;
    const keep = samples.filter(([s], i) => i === 0 || i === samples.length - 1 || Math.round(s) % KEEP_EVERY_SECONDS === 0);
    const engineRssSamplesMiB = keep.map(([s, e]) => [s, e]);
    if (seconds === null) {
      await api('POST', `/v1/deliveries/${delivery.id}/stop`).catch(() => undefined);
      throw new Error(
        `not finished after ${DEADLINE_SECONDS} s: ${received} of ${RECIPIENTS} messages at the sink (${Math.round(received / elapsed())}/s); engine VmHWM ${engineRssPeakMiB} MiB; ` +
          `stopped, no result written. Engine RSS samples: ${JSON.stringify(engineRssSamplesMiB)}`,
      );
    }
    await sleep(500);
    const receivedFinal = sink.messages() - sinkBefore;
    const problems = [];
    if (receivedFinal !== RECIPIENTS) problems.push(`smtp-sink counted ${receivedFinal} messages for ${RECIPIENTS} recipients`);
    // The send ledger's statuses, read straight from the bench database (paging 1M rows through the API is slow).
    const ledger = await ledgerStatuses(db.url, delivery.id).catch((error) => ({ error: error.message }));
    if (ledger.sent !== RECIPIENTS) problems.push(`send_ledger: ${JSON.stringify(ledger)}`);
    for (const [name, proc] of [['engine', engine], ['gateway', gateway]]) {
      const tail = proc.stderrTail().trim();
      if (tail) log(`the ${name} wrote on stderr (tail):\n${tail.slice(-2000)}`);
    }
    if (problems.length) log(`WARNING: ${problems.join('; ')}`);

    // Flat or growing: the slope of the engine's RSS over the middle 80 % of the send (ramp-up and tail excluded).
    const middle = samples.filter(([s]) => s >= seconds * 0.1 && s <= seconds * 0.9).map(([s, e]) => [s, e]);
    const slopePerMinute = slope(middle);
    const engineSampledMax = Math.max(...samples.map(([, e]) => e ?? 0));
    const peak = resetWorked ? engineRssPeakMiB : Math.max(engineRssPeakMiB ?? 0, engineSampledMax);

    const result = {
      benchmark: 'engine-memory',
      recipients: RECIPIENTS,
      engineRssPeakMiB: peak,
      limitMiB: LIMIT_MIB,
      ratio: round(peak / LIMIT_MIB),
      withinLimit: peak < LIMIT_MIB,
      engineRssSamplesMiB,
      gatewayPeakRssMiB,
      messagesPerSecond: Math.round(RECIPIENTS / seconds),
      seconds: round(seconds, 1),
      store: 'postgresql',
      bus: BUS,
      threads: THREADS,
      engineNodeOptions: ENGINE_NODE_OPTIONS || null,
      engineRss: {
        peakIsSendPhaseOnly: resetWorked,
        peakSource: resetWorked ? 'VmHWM of the engine process, reset (clear_refs 5) just before the OK' : 'max of the lifetime VmHWM and the 1-s samples',
        sampledMaxMiB: engineSampledMax,
        beforeOkMiB: engineBeforeMiB,
        lifetimePeakBeforeOkMiB: engineLifetimePeakBeforeMiB,
        afterSendMiB: samples.at(-1)[1],
        slopeMiBPerMinuteMiddle80pct: slopePerMinute === null ? null : round(slopePerMinute * 60, 2),
      },
      gatewayRss: { beforeOkMiB: gatewayBeforeMiB, lifetimePeakBeforeOkMiB: gatewayLifetimePeakBeforeMiB, sendPhasePeakMiB: gatewayPeakRssMiB },
      sinkMessages: receivedFinal,
      sinkProgress: keep.map(([s, , , m]) => [s, m]),
      problems,
      setup: { importSeconds: round(importSeconds, 1), prepareSeconds: round(prepareSeconds, 1), htmlChars: HTML.length },
      timing: 'from the OK (202 requested) until GET /v1/deliveries/{id} answers finished (polled every second)',
      delivery: { state: final.state, startedAt: final.startedAt, finishedAt: final.finishedAt },
      ledger,
      machine: machine(),
      measuredAt: new Date().toISOString(),
    };
    const path = writeResults(kafka ? 'engine-memory-kafka' : 'engine-memory', result);
    console.log(
      `engine-memory: ${RECIPIENTS} recipients in ${result.seconds} s = ${result.messagesPerSecond}/s; engine peak RSS ${peak} MiB of ${LIMIT_MIB} ` +
        `(ratio ${result.ratio}: ${result.withinLimit ? 'within' : 'OVER'} the limit; slope ${result.engineRss.slopeMiBPerMinuteMiddle80pct} MiB/min); ` +
        `gateway peak ${gatewayPeakRssMiB} MiB; ${THREADS} threads; PostgreSQL, ${BUS} bus; written to ${path}`,
    );
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    await cleanup();
  }
}

main().catch((error) => {
  console.error(`bench:engine-memory FAILED: ${error.stack ?? error}`);
  process.exit(1);
});
