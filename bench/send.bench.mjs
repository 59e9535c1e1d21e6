// Send benchmark: 100,000 personalized ~5 KB HTML emails (3 tracked links, open pixel,
// List-Unsubscribe) through Herald's engine to Postfix's smtp-sink on loopback, against this
// machine's ceiling measured in the same run: smtp-source → smtp-sink with the same message
// count, the same number of SMTP connections and a similar message size.
//
// Writes bench/results/send.json (no DKIM) and bench/results/send-dkim.json (DKIM RSA-2048; the
// ceiling is the one measured at the start of this same run). Run with `npm run bench:send`.
// `npm run bench:send -- --bus kafka`: the same runs with `herald start` on Kafka (the broker of
// KAFKA_BROKERS, else one started and stopped with infra/kafka/start.sh; each platform under
// topics of its own), written to send-kafka.json and send-dkim-kafka.json.
//
// Each engine run: a fresh platform (embedded default: PGlite, in-process bus) whose SMTP_URL is
// a fresh smtp-sink; 1,000 + 100,000 profiles imported; a 1,000-recipient warm-up delivery sent
// to the end; then the timed delivery: from the OK (step 2 of the confirmation) until the
// delivery is `finished`. Import, preparation, approval and Confirm send are outside the timing.
//
// Each result has, over the window from the OK until the KPI store counts every message (so the
// KPI ingest is included): CPU-seconds per 100,000 messages of each process (herald, smtp-sink,
// the broker and PostgreSQL where they run) and of all Herald processes, the herald process's
// CPU by thread role (main thread, worker threads, V8's GC/compiler threads, libuv, chDB's
// threads), peak RSS per process, the issue's targets each marked met or not, and for DKIM the
// machine's RSA-2048 signing ceiling (cores × `openssl speed rsa2048` sign/s) measured in the run.
//
// `--profile`: the herald process(es) run under `node --cpu-prof` (every thread writes a profile
// under bench/results/profiles/, not committed); the main thread's and the worker threads' CPU is
// split by part (store, relay, KPI consumer, chDB, bus, gateway, engine; rendering, SMTP, DKIM)
// and their top 15 functions by self time are printed and recorded. Profiling costs CPU, so these
// runs write <name>-profiled.json beside the unprofiled files. `--repeat N`: N rounds in one
// invocation (each with its own ceilings); each file lists every round and their spread.
//
// Environment (all optional): ENGINE_THREADS (default: cores), ENGINE_SMTP_CONNECTIONS (per
// thread, 10), ENGINE_BATCH_SIZE (500), BENCH_SEND_MESSAGES (100000), BENCH_SEND_DEADLINE_SECONDS
// (600: a timed send still running then is stopped and reported, and no result is written),
// BENCH_SEND_ONLY=plain|dkim (one engine run only).
//
// `npm run bench:send -- --bus kafka --engines N`: how the send scales with engine processes.
// The platform is `herald start --engines N` (gateway, KPI consumer and chDB in one process, N
// `herald engine` child processes in one consumer group) on PostgreSQL (a throwaway database on
// BENCH_PG_URL, else on the server of infra/postgres/start.sh) and Kafka; no DKIM run. ENGINE_THREADS
// defaults to cores / N (at least 1), so that every N runs the same total of worker threads; the
// SMTP connections (and the ceiling's sessions) are N × threads × ENGINE_SMTP_CONNECTIONS. The
// result records the CPU of each process (the parent, every engine, the broker, PostgreSQL,
// smtp-sink), GET /v1/ops/engines before the warm-up and at mid-send, the ledger rows each engine
// claimed, and the 1-minute load average when the run starts. Written to
// send-kafka-engines-<N>.json, or send-kafka-engines-<N>-threads-<T>.json when ENGINE_THREADS is
// not that default. Messages sent twice (smtp-sink's count above the recipients) are recorded,
// not refused.
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { analyzeProcessProfiles, cpuProfileFlags, formatTopFunctions } from './cpu-profile.mjs';
import { apiClient, benchArgs, createBenchDatabase, freePort, intFromEnv, machine, monotonicMicros, peakRssMiB, postgresCpuSeconds, postgresPeakRssMiB, postgresServerUrl, postmasterPid, postStream, processCpuSeconds, RESULTS_DIR, resetPeakRss, round, rsa2048SigningCeiling, rssMiB, startKafka, startPlatform, startSmtpSink, threadCpu, threadCpuDelta, threadRoles, writeResults } from './lib.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const INSTALL_SCRIPT = join(ROOT, 'infra', 'postfix', 'install.sh');


const ARGS = benchArgs({ engines: { type: 'string' }, profile: { type: 'boolean', default: false }, repeat: { type: 'string', default: '1' } });
const BUS = ARGS.bus;
/** `--engines N`: engine processes of `herald start --engines N` (Kafka only); null: one process. */
const ENGINES = ARGS.engines === undefined ? null : Number(ARGS.engines);
if (ENGINES !== null && (!Number.isInteger(ENGINES) || ENGINES < 1 || ENGINES > 16)) throw new Error(`--engines takes a whole number from 1 to 16, not '${ARGS.engines}'`);
if (ENGINES !== null && BUS !== 'kafka') throw new Error('--engines needs --bus kafka: engine processes share the work through Kafka and PostgreSQL');
/** `--profile`: the herald process(es) run under `node --cpu-prof`; results go to <name>-profiled.json. */
const PROFILE = ARGS.profile;
const PROFILES_DIR = join(RESULTS_DIR, 'profiles');
/** `--repeat N`: N rounds (signing ceiling, smtp ceiling, engine runs); each file lists every round. */
const REPEAT = Number(ARGS.repeat);
if (!Number.isInteger(REPEAT) || REPEAT < 1 || REPEAT > 20) throw new Error(`--repeat takes a whole number from 1 to 20, not '${ARGS.repeat}'`);
const MESSAGES = intFromEnv('BENCH_SEND_MESSAGES', 100_000);
/** CPU-seconds over the run → CPU-seconds per 100,000 messages. */
const PER_100K = 100_000 / MESSAGES;
const per100k = (seconds) => (seconds === null || seconds === undefined ? null : round(seconds * PER_100K, 2));
const WARMUP_MESSAGES = 1_000;
/** Worker threads per engine process; with --engines N the default splits the cores between them. */
const DEFAULT_THREADS = ENGINES === null ? os.availableParallelism() : Math.max(1, Math.floor(os.availableParallelism() / ENGINES));
const THREADS = intFromEnv('ENGINE_THREADS', DEFAULT_THREADS);
const CONNECTIONS_PER_THREAD = intFromEnv('ENGINE_SMTP_CONNECTIONS', 10);
const BATCH_SIZE = intFromEnv('ENGINE_BATCH_SIZE', 500);
const CONNECTIONS = (ENGINES ?? 1) * THREADS * CONNECTIONS_PER_THREAD;
const DEADLINE_SECONDS = intFromEnv('BENCH_SEND_DEADLINE_SECONDS', 600);
const textFromEnv = (name) => process.env[name] ?? '';
const ONLY = textFromEnv('BENCH_SEND_ONLY');
if (!['', 'plain', 'dkim'].includes(ONLY)) throw new Error(`BENCH_SEND_ONLY must be plain or dkim, got '${ONLY}'`);
if (ENGINES !== null && ONLY === 'dkim') throw new Error('--engines runs the send without DKIM only');
// The targets of the issue that set them (send throughput): the embedded default's ratio, its CPU
// for all Herald processes per 100,000 messages (KPI ingest included) and its peak RSS; the
// ratio on Kafka; DKIM against the machine's RSA-2048 signing ceiling.
const TARGET_RATIO = BUS === 'kafka' ? 0.35 : 0.5;
const TARGET_CPU_SECONDS_PER_100K = 15;
const TARGET_PEAK_RSS_MIB = 800;
const TARGET_DKIM_SIGNING_RATIO = 0.6;
/** After `finished`, how long the bench waits for the KPI store to count every message. */
const KPI_DEADLINE_SECONDS = 180;
const POLL_MS = 100;
const PROGRESS_EVERY_MS = 5_000;
const CHUNK_BYTES = 64 * 1024;

const SINK_BACKLOG = 1000;
const SINK_MAX_CONCURRENCY = 1000;
/** smtp-source's own header lines (From, To, Date, Message-Id, blank line) on the wire, about. */
const SMTP_SOURCE_HEADER_BYTES = 130;

const DOMAINS = ['example.com', 'example.net', 'example.org', 'mail.example'];
const FIRST = ['Alice', 'Bruno', 'Chloé', 'Dmitri', 'Emma', 'Farid', 'Grace', 'Hugo', 'Inès', 'Jonas', 'Keiko', 'Liam', 'Maya', 'Noah', 'Olga', 'Pablo'];
const LAST = ['Martin', 'Bernard', 'Müller', 'Rossi', 'García', 'Nowak', 'Smith', 'Tanaka', 'Silva', 'Dubois', 'Jensen', "O'Brien"];
const PLANS = ['free', 'starter', 'pro', 'enterprise'];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (message) => console.error(`[bench:send] ${message}`);

// ---- the message ---------------------------------------------------------------------------

const FROM = 'Herald Bench <news@example.com>';
const SUBJECT = '{{profile.firstName}}, your November picks are here';
const LINKS = ['https://shop.example.com/sale?utm_source=herald&utm_campaign=november', 'https://shop.example.com/account/preferences', 'https://blog.example.com/2026/11/whats-new'];

const PARAGRAPHS = [
  'This month we went through hundreds of your suggestions and picked the ones that came up again and again. The result is a shorter checkout, clearer delivery dates on every product page, and a returns form that takes less than a minute to fill in. Thank you for taking the time to write to us: every one of these changes started with a message from someone like you.',
  'Our winter collection arrives in stores next week, and as a subscriber you can order it today. Everything ships from our new warehouse, which means most orders leave the same day and arrive within two working days. If something does not fit, send it back within sixty days, free of charge, with the label that comes in the box.',
  'We also redesigned the mobile app. Your wish list now syncs across devices, price alerts tell you when something you saved goes on sale, and the store finder shows opening hours and stock levels for the shop nearest to you. The update is rolling out this week on both platforms; you do not need to do anything to get it.',
  'Finally, a word about your data. We never sell it, we keep only what we need to run your account and send you the messages you asked for, and you can download or delete all of it from your account page at any time. If you would rather hear from us less often, you can choose a monthly digest instead of weekly news.',
];

function buildHtml() {
  const p = (text) => `<p style="margin:0 0 16px 0;font-family:Helvetica,Arial,sans-serif;font-size:15px;line-height:22px;color:#333333;">${text}</p>`;
  const button = (href, label) =>
    `<table role="presentation" cellpadding="0" cellspacing="0" border="0" style="margin:8px 0 24px 0;"><tr><td style="background:#1a73e8;border-radius:4px;"><a href="${href}" style="display:inline-block;padding:12px 24px;font-family:Helvetica,Arial,sans-serif;font-size:15px;color:#ffffff;text-decoration:none;">${label}</a></td></tr></table>`;
  return [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>November picks</title></head>',
    '<body style="margin:0;padding:0;background:#f4f4f4;">',
    '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="background:#f4f4f4;"><tr><td align="center" style="padding:24px 12px;">',
    '<table role="presentation" width="600" cellpadding="0" cellspacing="0" border="0" style="background:#ffffff;border-radius:6px;"><tr><td style="padding:32px 40px;">',
    '<h1 style="margin:0 0 20px 0;font-family:Helvetica,Arial,sans-serif;font-size:24px;line-height:30px;color:#111111;">Hello {{profile.firstName}} {{profile.lastName}},</h1>',
    p(PARAGRAPHS[0]),
    p('As a <strong>{{profile.attributes.plan | "free"}}</strong> member, {{profile.firstName}}, you get early access to the sale starting today.'),
    button(LINKS[0], 'See the November sale'),
    p(PARAGRAPHS[1]),
    p(PARAGRAPHS[2]),
    p(`Want different emails? <a href="${LINKS[1]}" style="color:#1a73e8;">Update your preferences</a>, or read <a href="${LINKS[2]}" style="color:#1a73e8;">what is new on our blog</a>.`),
    p(PARAGRAPHS[3]),
    '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="margin:0 0 24px 0;border-top:1px solid #eeeeee;"><tr>',
    ...[
      ['Wool coat', 'Recycled wool, three colours, sizes XS to XXL.', '149.00'],
      ['Trail boots', 'Waterproof leather, resoled for free for two years.', '119.00'],
      ['Knit scarf', 'Merino and cashmere, made in Portugal.', '39.00'],
    ].map(
      ([name, blurb, price]) =>
        `<td width="33%" valign="top" style="padding:16px 8px 0 8px;font-family:Helvetica,Arial,sans-serif;font-size:13px;line-height:19px;color:#555555;"><strong style="color:#111111;">${name}</strong><br>${blurb}<br><span style="color:#1a73e8;">EUR ${price}</span></td>`,
    ),
    '</tr></table>',
    p('See you soon, {{profile.firstName}}!<br>The Example Shop team'),
    '</td></tr></table>',
    '<p style="margin:16px 0 0 0;font-family:Helvetica,Arial,sans-serif;font-size:12px;line-height:18px;color:#888888;">Example Shop, 1 Market Street, Springfield. You receive this email because you subscribed with {{profile.email}}.</p>',
    '</td></tr></table>',
    '</body></html>',
  ].join('\n');
}

const HTML = buildHtml();

// ---- profiles ------------------------------------------------------------------------------

function profile(cohort, n) {
  const h = Math.imul(n ^ 0x9e3779b9, 0x85ebca6b) >>> 0;
  return {
    id: `${cohort}-${String(n).padStart(6, '0')}`,
    email: `${cohort === 'bench' ? 'user' : 'warm'}${n}@${DOMAINS[n % DOMAINS.length]}`,
    firstName: FIRST[h % FIRST.length],
    lastName: LAST[(h >>> 8) % LAST.length],
    attributes: { cohort, plan: PLANS[(h >>> 4) % PLANS.length] },
  };
}

function* ndjsonChunks() {
  let chunk = '';
  const rows = function* () {
    for (let n = 1; n <= WARMUP_MESSAGES; n++) yield profile('warmup', n);
    for (let n = 1; n <= MESSAGES; n++) yield profile('bench', n);
  };
  for (const row of rows()) {
    chunk += `${JSON.stringify(row)}\n`;
    if (chunk.length >= CHUNK_BYTES) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk) yield chunk;
}

// ---- Postfix test tools ----------------------------------------------------------------------

function findTools() {
  const sink = ['/usr/sbin/smtp-sink', '/usr/bin/smtp-sink', '/usr/local/sbin/smtp-sink'].find((p) => existsSync(p));
  const source = ['/usr/sbin/smtp-source', '/usr/bin/smtp-source', '/usr/local/sbin/smtp-source'].find((p) => existsSync(p));
  return sink && source ? { sink, source } : undefined;
}

async function ensureTools() {
  const found = findTools();
  if (found) return found;
  log(`smtp-sink/smtp-source missing: running ${INSTALL_SCRIPT}`);
  const out = await new Promise((resolve, reject) => {
    const child = spawn('bash', [INSTALL_SCRIPT], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (s) => {
      stdout += s;
    });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`${INSTALL_SCRIPT} exited with ${code}`))));
  });
  const [sink, source] = out.trim().split('\n');
  if (!sink || !source) throw new Error(`${INSTALL_SCRIPT} printed no tool paths: ${out}`);
  return { sink, source };
}

/** smtp-sink from the installed tools (see startSmtpSink in lib.mjs). */
const startSink = (sinkBin, dir, label) =>
  startSmtpSink(dir, { bin: sinkBin, label: `${label}-sink`, concurrency: SINK_MAX_CONCURRENCY, backlog: SINK_BACKLOG });

// ---- the ceiling: smtp-source → smtp-sink --------------------------------------------------------

async function measureCeiling(tools, dir, messageBytes) {
  const sink = await startSink(tools.sink, dir, 'ceiling');
  try {
    const payloadBytes = Math.max(1, Math.round(((messageBytes - SMTP_SOURCE_HEADER_BYTES) * 80) / 81)); // 80-byte lines + CR on the wire
    // -d: keep each session open and send the next message over it (like the engine's pooled
    // connections); -s: parallel sessions = the engine's total connections; -N: distinct recipients.
    const args = ['-d', '-s', String(CONNECTIONS), '-m', String(MESSAGES), '-l', String(payloadBytes), '-N', '-f', 'news@example.com', '-t', 'user@example.com', `127.0.0.1:${sink.port}`];
    const bytesBefore = sink.bytesRead();
    const cpuBefore = sink.cpuSeconds();
    const peakReset = resetPeakRss(sink.pid);
    log(`ceiling: ${tools.source} ${args.join(' ')}`);
    const started = performance.now();
    const { code, stderr } = await new Promise((resolve, reject) => {
      const child = spawn(tools.source, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let text = '';
      child.stderr.setEncoding('utf8').on('data', (s) => {
        text = (text + s).slice(-4096);
      });
      child.once('error', reject);
      child.once('exit', (exitCode) => resolve({ code: exitCode, stderr: text }));
    });
    const seconds = (performance.now() - started) / 1000;
    await sleep(200); // the sink's counter is written when "." is answered; let the last ones land
    const received = sink.messages();
    if (code !== 0) throw new Error(`smtp-source exited with ${code}: ${stderr.trim()}`);
    if (received !== MESSAGES) throw new Error(`ceiling: smtp-sink counted ${received} messages, expected ${MESSAGES}`);
    const result = {
      seconds,
      messagesPerSecond: MESSAGES / seconds,
      payloadBytes,
      wireBytesPerMessage: Math.round((sink.bytesRead() - bytesBefore) / MESSAGES),
      sinkCpuSeconds: round(sink.cpuSeconds() - cpuBefore, 2),
      sinkPeakRssMiB: peakReset ? peakRssMiB(sink.pid) : null,
      command: `smtp-source ${args.slice(0, -1).join(' ')} 127.0.0.1:<port>`,
    };
    log(`ceiling: ${MESSAGES} messages in ${round(seconds, 2)} s = ${Math.round(result.messagesPerSecond)}/s (${result.wireBytesPerMessage} bytes/message on the wire)`);
    return result;
  } finally {
    await sink.stop();
  }
}

// ---- the engine ------------------------------------------------------------------------------

/** The same message the engine renders, to know its size (before DKIM). */
async function renderedMessageBytes(publicUrl) {
  const { EmailRenderer } = await import('@herald/channels');
  const renderer = new EmailRenderer({ from: FROM, subject: SUBJECT, html: HTML });
  const ctx = { deliveryId: '6f1c2c1e-0000-4000-8000-000000000000', occurrence: 0, publicUrl, trackingSecret: 'x'.repeat(43) };
  let total = 0;
  const samples = 200;
  for (let n = 1; n <= samples; n++) {
    const p = profile('bench', n * 397);
    total += renderer.render({ profileId: p.id, address: p.email, profile: p }, ctx).raw.length;
  }
  return Math.round(total / samples);
}

/** Audience by attribute filter, delivery, prepare, approve, Confirm send: the delivery awaits OK. */
async function prepareDelivery(api, cohort, expected) {
  const audience = await api('POST', '/v1/audiences', { name: `bench ${cohort}`, filter: { cohort } });
  const delivery = await api('POST', '/v1/deliveries', {
    name: `bench:send ${cohort}`,
    channel: 'email',
    audienceId: audience.id,
    content: { from: FROM, subject: SUBJECT, html: HTML },
  });
  const prepared = await api('POST', `/v1/deliveries/${delivery.id}/prepare`);
  if (prepared.state !== 'ready' || prepared.preparation?.toSend !== expected) {
    throw new Error(`prepare ${cohort}: expected state ready and ${expected} to send, got ${JSON.stringify({ state: prepared.state, preparation: prepared.preparation })}`);
  }
  await api('POST', `/v1/deliveries/${delivery.id}/approve`);
  const { confirmationId } = await api('POST', `/v1/deliveries/${delivery.id}/confirmations`);
  return { id: delivery.id, confirmationId };
}

async function ok(api, delivery) {
  const answer = await api('POST', `/v1/deliveries/${delivery.id}/confirmations/${delivery.confirmationId}/ok`, undefined, { expect: 202 });
  if (answer.state !== 'sending') throw new Error(`OK answered state ${answer.state}, expected sending`);
}

/**
 * Polls the delivery until `finished` (any other end state throws). Returns the seconds from
 * `started` to the answer that said finished, or null past the deadline; `latency` collects the
 * slowest poll answer (the API's responsiveness during the send).
 */
async function waitFinished(api, id, started, { deadlineSeconds, latency = { maxSeconds: 0 } }) {
  for (;;) {
    const asked = performance.now();
    const { state, stateReason } = await api('GET', `/v1/deliveries/${id}`);
    const now = performance.now();
    latency.maxSeconds = Math.max(latency.maxSeconds, (now - asked) / 1000);
    if (state === 'finished') return (now - started) / 1000;
    if (!['sending', 'scheduled'].includes(state)) throw new Error(`delivery ${id} is '${state}'${stateReason ? ` (${stateReason})` : ''}, not finished`);
    if ((now - started) / 1000 > deadlineSeconds) return null;
    await sleep(POLL_MS);
  }
}

/** Pages the whole ledger of a delivery (after the timing) and counts statuses and errors. */
async function ledgerSummary(api, id) {
  const statuses = {};
  const errors = {};
  let after;
  let rows = 0;
  for (;;) {
    const page = await api('GET', `/v1/deliveries/${id}/logs?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
    for (const item of page.items) {
      rows++;
      statuses[item.status] = (statuses[item.status] ?? 0) + 1;
      if (item.status !== 'sent') {
        const key = String(item.error ?? item.lastError ?? item.code ?? 'unknown').slice(0, 120);
        errors[key] = (errors[key] ?? 0) + 1;
      }
    }
    if (!page.next) break;
    after = page.next;
  }
  return { rows, statuses, errors };
}

/**
 * Polls GET /v1/deliveries/{id}/deployment until the KPI store counts `expected` messages sent and
 * delivered, or the deadline passes. Resolves with { seconds (after `since`), kpis } (seconds:
 * null past the deadline, with the last counters seen).
 */
async function waitKpis(api, id, expected, since, deadlineSeconds) {
  for (;;) {
    const { kpis } = await api('GET', `/v1/deliveries/${id}/deployment`);
    const seconds = (performance.now() - since) / 1000;
    if (kpis.sent >= expected && kpis.delivered >= expected) return { seconds, kpis: { sent: kpis.sent, delivered: kpis.delivered } };
    if (seconds > deadlineSeconds) return { seconds: null, kpis: { sent: kpis.sent, delivered: kpis.delivered } };
    await sleep(200);
  }
}

/** The result file of a run: send.json, send-dkim.json, send-kafka.json, ... (-profiled with --profile). */
function resultName(dkim) {
  const name =
    ENGINES !== null
      ? `send-kafka-engines-${ENGINES}${THREADS === DEFAULT_THREADS ? '' : `-threads-${THREADS}`}`
      : `${dkim ? 'send-dkim' : 'send'}${BUS === 'kafka' ? '-kafka' : ''}`;
  return PROFILE ? `${name}-profiled` : name;
}

async function runEngine(tools, dir, { dkim, kafka, postgres }) {
  const label = dkim ? 'dkim' : 'plain';
  const sink = await startSink(tools.sink, dir, label);
  // --profile: every thread of the herald process (and of its engine processes: NODE_OPTIONS is
  // inherited) writes a .cpuprofile when it exits; the window of the send is cut out afterwards.
  const profileDir = PROFILE ? join(PROFILES_DIR, `${resultName(dkim)}-${new Date().toISOString().replace(/\D/g, '').slice(0, 14)}`) : null;
  const env = {
    SMTP_URL: `smtp://127.0.0.1:${sink.port}`,
    LOG_LEVEL: 'warn',
    ENGINE_THREADS: String(THREADS),
    ENGINE_SMTP_CONNECTIONS: String(CONNECTIONS_PER_THREAD),
    ENGINE_BATCH_SIZE: String(BATCH_SIZE),
    ...kafka?.env(label),
  };
  if (dkim) {
    const keyFile = join(dir, 'dkim-private.pem');
    if (!existsSync(keyFile)) {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
      writeFileSync(keyFile, privateKey, { mode: 0o600 });
    }
    Object.assign(env, { DKIM_DOMAIN: 'example.com', DKIM_SELECTOR: 'bench', DKIM_PRIVATE_KEY: keyFile });
  }
  let platform;
  let db = null;
  let run;
  let profileInputs = null;
  try {
    let args = [];
    if (ENGINES !== null) {
      // `herald start --engines N` on a throwaway database. The engines' ports are PORT + 1 + i,
      // and they must link to the gateway (PUBLIC_URL), not to their own metrics port.
      db = await createBenchDatabase(postgres.serverUrl, 'bench_send');
      const port = await freePort();
      Object.assign(env, { DATABASE_URL: db.url, PORT: String(port), PUBLIC_URL: `http://127.0.0.1:${port}` });
      args = ['--engines', String(ENGINES)];
    }
    if (profileDir) {
      mkdirSync(profileDir, { recursive: true });
      env.NODE_OPTIONS = [process.env.NODE_OPTIONS, cpuProfileFlags(profileDir)].filter(Boolean).join(' ');
    }
    // A profiled process writes its profiles as it exits: give it the time to.
    platform = await startPlatform({ env, args, stopGraceMs: PROFILE ? 300_000 : undefined });
    const { pid } = platform;
    const api = apiClient(platform);
    log(`${label}: platform up at ${platform.url} (store ${platform.store}, pid ${pid}); smtp-sink pid ${sink.pid} on port ${sink.port}`);
    const engines = ENGINES === null ? null : await engineProcesses(platform, api, db);

    const imported = await postStream(`${platform.url}/v1/profiles/import`, {
      headers: { authorization: `Bearer ${platform.token}`, 'content-type': 'application/x-ndjson' },
      body: ndjsonChunks(),
    });
    const total = WARMUP_MESSAGES + MESSAGES;
    if (imported.status !== 200 || imported.json?.imported !== total || imported.json?.rejectedCount !== 0) {
      throw new Error(`import: expected ${total} imported, got HTTP ${imported.status}: ${imported.text.slice(0, 500)}`);
    }
    log(`${label}: imported ${total} profiles in ${round(imported.seconds, 2)} s`);

    // Warm-up: threads, SMTP connections and JIT, with a whole small delivery.
    const warmup = await prepareDelivery(api, 'warmup', WARMUP_MESSAGES);
    const warmStarted = performance.now();
    await ok(api, warmup);
    const warmSeconds = await waitFinished(api, warmup.id, warmStarted, { deadlineSeconds: 120 });
    if (warmSeconds === null) throw new Error('the warm-up delivery did not finish within 120 s');
    await sleep(300);
    if (sink.messages() !== WARMUP_MESSAGES) throw new Error(`warm-up: smtp-sink counted ${sink.messages()} messages, expected ${WARMUP_MESSAGES}`);
    log(`${label}: warm-up ${WARMUP_MESSAGES} messages in ${round(warmSeconds, 2)} s`);

    // The timed delivery: everything up to Confirm send is done before the clock starts.
    const preparingStarted = performance.now();
    const delivery = await prepareDelivery(api, 'bench', MESSAGES);
    const preparationSeconds = (performance.now() - preparingStarted) / 1000;
    log(`${label}: delivery ${delivery.id} prepared, approved, confirmed in ${round(preparationSeconds, 2)} s; OK...`);
    await sleep(500); // let the outbox relay and planner settle from the warm-up

    const lifetimePeakBeforeMiB = peakRssMiB(pid);
    const rssBeforeMiB = rssMiB(pid);
    const resetWorked = resetPeakRss(pid);
    const sinkBefore = sink.messages();
    const bytesBefore = sink.bytesRead();
    const sinkCpuBefore = sink.cpuSeconds();
    const sinkPeakReset = resetPeakRss(sink.pid);
    // Only a broker of this run's own: a shared broker's high-water mark is not this bench's to reset.
    const brokerPeakReset = kafka?.startedHere && kafka.pid ? resetPeakRss(kafka.pid) : false;
    const threadsBefore = threadCpu(pid);
    const cpuBefore = processCpuSeconds(pid);
    const brokerCpuBefore = kafka?.pid ? processCpuSeconds(kafka.pid) : null;
    const enginesBefore = engines?.processes.map((e) => ({ cpu: processCpuSeconds(e.pid), threads: threadCpu(e.pid), peakReset: resetPeakRss(e.pid) }));
    const postgresBefore = engines?.postmaster ? postgresCpuSeconds(engines.postmaster, db.name) : null;
    const machineBefore = machineCpuSeconds();
    let midSend = null;
    let midSendDone = Promise.resolve();
    const progress = [];
    let firstMessageAt = null;
    let lastMessageAt = null;
    let at20k = null;
    let topSnapshot = null;
    let lastProgress = 0;

    const loadAverage = os.loadavg().map((v) => round(v, 2)); // other work on the machine skews the figures
    if (engines) log(`${label}: load average ${loadAverage.join(', ')} at the OK`);
    const okAtMicros = monotonicMicros(); // the clock of the CPU profiles' samples
    const started = performance.now();
    const elapsedNow = () => (performance.now() - started) / 1000;
    // The sink's counter, sampled on a timer of the bench's own (independent of the API's answers).
    const sampler = setInterval(() => {
      const elapsed = elapsedNow();
      const received = sink.messages() - sinkBefore;
      if (firstMessageAt === null && received > 0) firstMessageAt = elapsed;
      if (lastMessageAt === null && received >= MESSAGES) lastMessageAt = elapsed;
      if (at20k === null && received >= 20_000) at20k = elapsed;
      if (engines && midSend === null && received >= MESSAGES / 2) {
        midSend = { atSeconds: round(elapsed, 1), sinkMessages: received };
        midSendDone = midSendView(api, engines, kafka, sink, db).then((view) => Object.assign(midSend, view));
      }
      if (elapsed - lastProgress >= PROGRESS_EVERY_MS / 1000) {
        lastProgress = elapsed;
        progress.push([round(elapsed, 1), received]);
        log(`${label}: ${round(elapsed, 1)} s: ${received} messages at the sink (${Math.round(received / elapsed)}/s so far), RSS ${rssMiB(pid)} MiB`);
      }
    }, 50);
    const topTimer = setTimeout(() => {
      if (engines) return; // a view of every process at mid-send instead
      topOf(pid).then((lines) => {
        topSnapshot = lines;
      });
    }, 5_000);
    const latency = { maxSeconds: 0 };
    let okSeconds;
    let seconds;
    try {
      await ok(api, delivery);
      okSeconds = elapsedNow();
      seconds = await waitFinished(api, delivery.id, started, { deadlineSeconds: DEADLINE_SECONDS, latency });
    } finally {
      clearInterval(sampler);
      clearTimeout(topTimer);
    }
    if (okSeconds > 1) log(`${label}: WARNING: the OK took ${round(okSeconds, 1)} s to answer`);
    if (seconds === null) {
      const received = sink.messages() - sinkBefore;
      const elapsed = elapsedNow();
      await api('POST', `/v1/deliveries/${delivery.id}/stop`).catch(() => undefined);
      throw new Error(
        `${label}: not finished after ${DEADLINE_SECONDS} s: ${received} of ${MESSAGES} messages at the sink (${Math.round(received / elapsed)}/s overall` +
          `${at20k ? `; 20,000 reached after ${round(at20k, 1)} s = ${Math.round(20_000 / at20k)}/s` : ''}); stopped, no result written`,
      );
    }
    await midSendDone; // started at half-way, a few seconds at most
    const threadsAfter = threadCpu(pid);
    const cpuAfter = processCpuSeconds(pid);
    const brokerCpuAfter = kafka?.pid ? processCpuSeconds(kafka.pid) : null;
    const enginesAfter = engines?.processes.map((e) => ({ cpu: processCpuSeconds(e.pid), threads: threadCpu(e.pid), peakRssMiB: peakRssMiB(e.pid), rssMiB: rssMiB(e.pid) }));
    const postgresAfter = engines?.postmaster ? postgresCpuSeconds(engines.postmaster, db.name) : null;
    const machineAfter = machineCpuSeconds();
    const rssAfterMiB = rssMiB(pid);

    // The CPU figures per 100,000 messages include the KPI ingest: from the OK until the KPI store
    // counts every message sent and delivered (the relay, the bus, the consumer, chDB inserts).
    const kpiWait = await waitKpis(api, delivery.id, MESSAGES, started, seconds + KPI_DEADLINE_SECONDS);
    const kpisAtMicros = monotonicMicros();
    if (kpiWait.seconds === null) log(`${label}: WARNING: the KPI store counted ${JSON.stringify(kpiWait.kpis)} ${KPI_DEADLINE_SECONDS} s after finished; the CPU window ends there`);
    else log(`${label}: the KPI store counted every message ${round(kpiWait.seconds - seconds, 2)} s after finished`);
    const windowSeconds = (kpisAtMicros - okAtMicros) / 1e6;
    const threadsKpis = threadCpu(pid);
    const cpuKpis = processCpuSeconds(pid);
    const sinkCpuKpis = sink.cpuSeconds();
    const brokerCpuKpis = kafka?.pid ? processCpuSeconds(kafka.pid) : null;
    const enginesKpis = engines?.processes.map((e) => ({ cpu: processCpuSeconds(e.pid), threads: threadCpu(e.pid) }));
    const postgresKpis = engines?.postmaster ? postgresCpuSeconds(engines.postmaster, db.name) : null;
    const sendPeakMiB = peakRssMiB(pid);
    const sinkPeakMiB = sinkPeakReset ? peakRssMiB(sink.pid) : null;
    const brokerPeakMiB = brokerPeakReset ? peakRssMiB(kafka.pid) : null;
    const postgresPeakMiB = engines?.postmaster ? postgresPeakRssMiB(engines.postmaster) : null;
    await sleep(300);
    const received = sink.messages() - sinkBefore;
    lastMessageAt ??= seconds;
    const wireBytesPerMessage = Math.round((sink.bytesRead() - bytesBefore) / Math.max(received, 1));
    const sinkCpuSeconds = round(sink.cpuSeconds() - sinkCpuBefore, 2);

    const ledger = await ledgerSummary(api, delivery.id);
    const problems = [];
    // With several engines, messages sent twice are a finding to record, not a reason to write nothing.
    const duplicates = engines && received > MESSAGES ? received - MESSAGES : 0;
    if (duplicates) log(`${label}: WARNING: smtp-sink counted ${received} messages for ${MESSAGES} recipients: ${duplicates} sent more than once`);
    else if (received !== MESSAGES) problems.push(`smtp-sink counted ${received} messages for ${MESSAGES} recipients`);
    if (ledger.rows !== MESSAGES || ledger.statuses.sent !== MESSAGES) problems.push(`ledger: ${JSON.stringify(ledger)}`);
    const stderr = platform.stderrTail().trim();
    if (problems.length) throw new Error(`${label}: ${problems.join('; ')}${stderr ? `\n--- platform stderr (tail) ---\n${stderr}` : ''}`);
    if (stderr) log(`${label}: the platform wrote on stderr (tail):\n${stderr.slice(-2000)}`);

    const peaks = [lifetimePeakBeforeMiB, sendPeakMiB].filter((v) => v !== null);
    const heraldProcessSeconds = cpuBefore === null || cpuAfter === null ? null : round(cpuAfter - cpuBefore, 2);
    const brokerSeconds = brokerCpuBefore === null || brokerCpuAfter === null ? null : round(brokerCpuAfter - brokerCpuBefore, 2);
    let scaling = null;
    if (engines) {
      const perEngine = engines.processes.map((e, i) => ({
        engine: e.index,
        pid: e.pid,
        threads: e.threads,
        cpuSeconds: enginesBefore[i].cpu === null || enginesAfter[i].cpu === null ? null : round(enginesAfter[i].cpu - enginesBefore[i].cpu, 2),
        coresBusy: enginesBefore[i].cpu === null || enginesAfter[i].cpu === null ? null : round((enginesAfter[i].cpu - enginesBefore[i].cpu) / seconds, 2),
        cpuByThread: threadCpuDelta(enginesBefore[i].threads, enginesAfter[i].threads).filter((t) => t.cpuSeconds >= 0.05),
        peakRssMiB: enginesBefore[i].peakReset ? enginesAfter[i].peakRssMiB : null,
        rssAfterSendMiB: enginesAfter[i].rssMiB,
      }));
      const postgresCpu = postgresBefore && postgresAfter
        ? { serverSeconds: round(postgresAfter.total - postgresBefore.total, 2), benchDatabaseBackendsSeconds: round(postgresAfter.database - postgresBefore.database, 2) }
        : null;
      const machineSeconds = machineBefore && machineAfter ? round(machineAfter.busy - machineBefore.busy, 2) : null;
      const known = [heraldProcessSeconds, ...perEngine.map((e) => e.cpuSeconds), brokerSeconds, postgresCpu?.serverSeconds, sinkCpuSeconds].filter((v) => typeof v === 'number');
      const knownSeconds = round(known.reduce((a, b) => a + b, 0), 2);
      scaling = {
        engines: ENGINES,
        threadsPerEngine: THREADS,
        totalThreads: ENGINES * THREADS,
        threadsNote: THREADS === DEFAULT_THREADS ? `ENGINE_THREADS=${THREADS}: the bench's default under --engines ${ENGINES} (cores / engines), so the total of worker threads matches one engine on every core` : `ENGINE_THREADS=${THREADS} per engine (set for this run; the bench's default under --engines ${ENGINES} is ${DEFAULT_THREADS})`,
        processes: perEngine,
        ledgerByEngine: engines.ledgerByEngine ? await engines.ledgerByEngine(delivery.id, midSend?.ops?.items ?? engines.opsAtStart?.items ?? []) : null,
        opsAtStart: engines.opsAtStart,
        opsWaitNote: engines.waitNote,
        midSend,
        smtpSinkDuplicates: duplicates,
        cpuSeconds: {
          gatewayKpiChdbProcess: heraldProcessSeconds,
          engines: perEngine.map((e) => e.cpuSeconds),
          kafkaBroker: brokerSeconds,
          postgres: postgresCpu,
          smtpSink: sinkCpuSeconds,
          sumOfThese: knownSeconds,
          machineBusy: machineSeconds,
          machineCapacity: round(os.availableParallelism() * seconds, 2),
          note: 'CPU seconds over the timed send (OK to finished). machineBusy: every process of the machine (/proc/stat), so machineBusy - sumOfThese is work outside this run (the bench process itself, other work on the machine); postgres.serverSeconds counts every database of the server, benchDatabaseBackendsSeconds only the live backends of this run\'s database',
        },
      };
    }

    // CPU per 100,000 messages, per process, over the window OK → KPIs complete.
    const delta = (a, b) => (a === null || a === undefined || b === null || b === undefined ? null : round(b - a, 2));
    const heraldWindowSeconds = delta(cpuBefore, cpuKpis);
    const roles = threadRoles(pid, threadsBefore, threadsKpis);
    const engineRoles = engines?.processes.map((e, i) => threadRoles(e.pid, enginesBefore[i].threads, enginesKpis[i].threads));
    const processEntries = [
      {
        process: ENGINES === null ? 'herald start' : `herald start --engines ${ENGINES} (gateway, KPI consumer, chDB)`,
        pid,
        herald: true,
        cpuSeconds: heraldWindowSeconds,
        cpuSecondsPer100k: per100k(heraldWindowSeconds),
        peakRssMiB: resetWorked ? sendPeakMiB : null,
      },
      ...(engines?.processes.map((e, i) => {
        const used = delta(enginesBefore[i].cpu, enginesKpis[i].cpu);
        return { process: `herald engine ${e.index}`, pid: e.pid, herald: true, cpuSeconds: used, cpuSecondsPer100k: per100k(used), peakRssMiB: enginesBefore[i].peakReset ? enginesAfter[i].peakRssMiB : null };
      }) ?? []),
      (() => {
        const used = delta(sinkCpuBefore, sinkCpuKpis);
        return { process: 'smtp-sink', pid: sink.pid, herald: false, cpuSeconds: used, cpuSecondsPer100k: per100k(used), peakRssMiB: sinkPeakMiB };
      })(),
      ...(kafka
        ? [
            (() => {
              const used = delta(brokerCpuBefore, brokerCpuKpis);
              return {
                process: 'Kafka broker',
                pid: kafka.pid,
                herald: false,
                cpuSeconds: used,
                cpuSecondsPer100k: per100k(used),
                peakRssMiB: brokerPeakMiB,
                ...(!kafka.startedHere && {
                  note: kafka.pid
                    ? 'the local broker of KAFKA_BROKERS: its CPU and memory count every client of it, not only this run'
                    : 'the broker of KAFKA_BROKERS is not a process of this machine: its CPU is not measured',
                }),
              };
            })(),
          ]
        : []),
      ...(engines
        ? [
            (() => {
              const used = postgresBefore && postgresKpis ? round(postgresKpis.total - postgresBefore.total, 2) : null;
              return {
                process: 'PostgreSQL (the whole server)',
                pid: engines.postmaster,
                herald: false,
                cpuSeconds: used,
                cpuSecondsPer100k: per100k(used),
                peakRssMiB: postgresPeakMiB,
                note: 'CPU of every process of the server (also other databases on it); peak RSS: its largest process since that process started',
              };
            })(),
          ]
        : []),
    ];
    const heraldSeconds = processEntries.filter((e) => e.herald).map((e) => e.cpuSeconds);
    const allHeraldSeconds = heraldSeconds.includes(null) ? null : round(heraldSeconds.reduce((a, b) => a + b, 0), 2);
    const rolesPer100k = (r) =>
      Object.fromEntries(Object.entries(r).map(([role, { cpuSeconds, threads }]) => [role, { cpuSeconds, cpuSecondsPer100k: per100k(cpuSeconds), threads }]));
    const cpuPer100k = {
      window: {
        from: 'the OK (step 2 of the confirmation)',
        to: 'the KPI store counting every message sent and delivered (GET /v1/deliveries/{id}/deployment, polled every 200 ms after finished)',
        seconds: round(windowSeconds),
        kpisCompleteAfterFinishedSeconds: kpiWait.seconds === null ? null : round(kpiWait.seconds - seconds),
        ...(kpiWait.seconds === null && { incomplete: `the KPI store counted ${JSON.stringify(kpiWait.kpis)} ${KPI_DEADLINE_SECONDS} s after finished` }),
      },
      allHeraldProcesses: per100k(allHeraldSeconds),
      processes: processEntries,
      heraldThreads: rolesPer100k(roles),
      ...(engineRoles && { engineThreads: engineRoles.map(rolesPer100k) }),
      source:
        'CPU-seconds (user + system) from /proc/<pid>/stat and, per thread, /proc/<pid>/task/<tid>/stat (10 ms ticks). Threads by role: mainThread is the thread whose id is the pid; ' +
        'v8PlatformThreads are V8Worker threads, which run the garbage collector\'s parallel and concurrent work and background compilation (TurboFan, Maglev, WebAssembly tier-up) for every isolate; ' +
        'nativeLibraryThreads: every other thread (chDB\'s ClickHouse pools in the embedded default).',
    };
    profileInputs = profileDir && {
      fromUs: okAtMicros,
      toUs: kpisAtMicros,
      processes: [{ pid, label: 'herald start', roles }, ...(engines?.processes.map((e, i) => ({ pid: e.pid, label: `herald engine ${e.index}`, roles: engineRoles[i] })) ?? [])],
    };

    run = {
      seconds,
      messagesPerSecond: MESSAGES / seconds,
      peakRssMiB: resetWorked ? sendPeakMiB : peaks.length ? Math.max(...peaks) : null,
      rss: {
        peakIsSendPhaseOnly: resetWorked,
        peakWindow: 'from the OK until the KPI store counts every message (peakIsSendPhaseOnly false: since the process started)',
        lifetimePeakMiB: peaks.length ? Math.max(...peaks) : null,
        beforeSendMiB: rssBeforeMiB,
        afterSendMiB: rssAfterMiB,
      },
      timeline: {
        firstMessageAtSeconds: firstMessageAt === null ? null : round(firstMessageAt),
        lastMessageAtSeconds: round(lastMessageAt),
        finishedAtSeconds: round(seconds),
        sinkMessagesPerSecond: Math.round(MESSAGES / lastMessageAt),
        okAnswerSeconds: round(okSeconds),
        slowestStatusPollSeconds: round(latency.maxSeconds),
        progress,
      },
      scaling,
      cpuPer100k,
      cpu: {
        window: 'from the OK until finished (the send only, as in results before the KPI window was added)',
        heraldProcessSeconds,
        heraldThreads: threadCpuDelta(threadsBefore, threadsAfter).filter((t) => t.cpuSeconds >= 0.05),
        smtpSinkSeconds: sinkCpuSeconds,
        ...(kafka && { kafkaBrokerSeconds: brokerSeconds }),
        top: topSnapshot,
      },
      wireBytesPerMessage,
      loadAverage,
      ledger: ledger.statuses,
      importSeconds: round(imported.seconds),
      warmupSeconds: round(warmSeconds),
      preparationSeconds: round(preparationSeconds),
      store: platform.store,
    };
  } finally {
    await platform?.stop();
    await sink.stop();
    await db?.drop().catch((error) => log(`could not drop ${db.name}: ${error.message}`));
  }
  if (profileDir) run.profile = profileOf(profileDir, profileInputs);
  return run;
}

/**
 * The CPU profiles of a run (written as the processes exited), cut to the window OK → KPIs
 * complete: per process, the main thread and the worker threads, their parts and top 15 functions
 * in CPU-seconds (the /proc CPU of the thread × the share of its busy samples).
 */
function profileOf(dir, { fromUs, toUs, processes }) {
  const perProcess = processes.map(({ pid, label, roles }) => {
    const analysis = analyzeProcessProfiles(dir, pid, {
      fromUs,
      toUs,
      cpu: { mainThread: roles.mainThread.cpuSeconds, workerThreads: roles.workerThreads.cpuSeconds },
      perHundredK: PER_100K,
      top: 15,
    });
    if (!analysis) log(`WARNING: no CPU profile of ${label} (pid ${pid}) in ${dir}`);
    return { process: label, pid, ...(analysis ?? { files: [], mainThread: null, workerThreads: [] }) };
  });
  return {
    profiled: true,
    dir: dir.replace(`${RESULTS_DIR}/`, 'bench/results/'),
    window: 'the samples from the OK until the KPI store counts every message (the window of cpuPer100k)',
    method:
      'node --cpu-prof (NODE_OPTIONS: every thread of the herald processes samples its stack every 1 ms). A sample counts for the part its function belongs to, else the part of its nearest caller that belongs to one ' +
      '(zod, pino, Node\'s streams, JSON.parse... count for the Herald code that called them); (garbage collector) is the GC work done on that thread itself, (program) native code outside JavaScript. ' +
      'CPU-seconds of a part or function = the thread\'s CPU-seconds over the window (from /proc) × its share of the thread\'s busy samples (idle samples excluded); worker threads share their CPU by busy samples.',
    overhead:
      'Profiling costs CPU (a signal and a stack walk per thread every 1 ms, code events logged): every figure of a -profiled file comes from a profiled run. Compare CPU and rates with the file of the same name without -profiled, measured without it.',
    processes: perProcess,
  };
}

// ---- --engines N: the engine processes, their view through the API, the machine's CPU ---------

/**
 * The engine processes `herald start --engines N` printed ("  Engine 1:  pid P, T worker threads,
 * metrics at URL/metrics"), once GET /v1/ops/engines lists all of them with partitions of
 * herald.send-batches (or after 60 s, noted). Also the local postmaster (for PostgreSQL's CPU)
 * and ledgerByEngine(deliveryId, opsItems): the delivery's ledger rows by the engine that
 * claimed them last (send_ledger.engine_id), with the engine's pid from the ops view.
 */
async function engineProcesses(platform, api, db) {
  const processes = [...platform.stdout().matchAll(/Engine (\d+):\s+pid (\d+), (\d+) worker threads, metrics at (\S+)\/metrics/g)].map((m) => ({
    index: Number(m[1]),
    pid: Number(m[2]),
    threads: Number(m[3]),
    url: m[4],
  }));
  if (processes.length !== ENGINES) throw new Error(`herald start --engines ${ENGINES} printed ${processes.length} engine lines:\n${platform.stdout()}`);
  log(`engines: ${processes.map((e) => `${e.index}: pid ${e.pid}, ${e.threads} threads, ${e.url}`).join('; ')}`);
  const waitStarted = performance.now();
  let ops;
  let waitNote = null;
  for (;;) {
    ops = await api('GET', '/v1/ops/engines');
    const assigned = ops.items.filter((e) => Array.isArray(e.partitions) && e.partitions.length > 0).length;
    if (ops.items.length === ENGINES && assigned === ENGINES) break;
    if (performance.now() - waitStarted > 60_000) {
      waitNote = `after 60 s GET /v1/ops/engines listed ${ops.items.length} live engines, ${assigned} with partitions; the bench went on`;
      log(`WARNING: ${waitNote}`);
      break;
    }
    await sleep(500);
  }
  const waitedSeconds = round((performance.now() - waitStarted) / 1000, 1);
  log(`engines: GET /v1/ops/engines lists ${ops.items.length} (partitions ${ops.items.map((e) => e.partitions?.length ?? 'none').join(' + ')}) after ${waitedSeconds} s`);
  const postmaster = await postmasterPid(db.url);
  if (!postmaster) log('WARNING: the PostgreSQL server is not a local process this bench can read: no PostgreSQL CPU in the result');
  const ledgerByEngine = async (deliveryId, items) => {
    const { default: pg } = await import('pg');
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const { rows } = await client.query('SELECT engine_id::text AS engine_id, status, count(*)::int AS n FROM send_ledger WHERE delivery_id = $1 GROUP BY 1, 2 ORDER BY 3 DESC', [deliveryId]);
      return rows.map((r) => {
        const pid = items.find((e) => e.id === r.engine_id)?.pid ?? null;
        return { engineId: r.engine_id, engine: processes.find((e) => e.pid === pid)?.index ?? null, pid, status: r.status, rows: r.n };
      });
    } finally {
      await client.end();
    }
  };
  return { processes, platformPid: platform.pid, opsAtStart: { waitedSeconds, ...ops }, waitNote, postmaster, ledgerByEngine };
}

/** GET /v1/ops/engines, each engine's herald_engine_* metrics and a `top` of the machine, at once. */
async function midSendView(api, engines, kafka, sink, db) {
  const [ops, metrics, top] = await Promise.all([
    api('GET', '/v1/ops/engines').catch((error) => ({ error: error.message })),
    Promise.all(
      engines.processes.map((e) =>
        fetch(`${e.url}/metrics`, { signal: AbortSignal.timeout(5_000) })
          .then((r) => r.text())
          .then((text) => text.split('\n').filter((l) => l.startsWith('herald_engine_')))
          .catch((error) => [`error: ${error.message}`]),
      ),
    ),
    topOfMachine(),
  ]);
  const pids = { [engines.platformPid]: 'herald start (gateway, KPI consumer, chDB)', [sink.pid]: 'smtp-sink' };
  for (const e of engines.processes) pids[e.pid] = `herald engine ${e.index}`;
  if (kafka?.pid) pids[kafka.pid] = 'Kafka broker';
  if (engines.postmaster) pids[engines.postmaster] = `postmaster (backends of ${db.name} are its 'postgres' children)`;
  return { ops, engineMetrics: Object.fromEntries(engines.processes.map((e, i) => [`engine ${e.index}`, metrics[i]])), top, topPids: pids };
}

/** Busy CPU seconds of the whole machine so far (/proc/stat: all but idle and iowait); null when unreadable. */
function machineCpuSeconds() {
  try {
    const [user, nice, system, , , irq, softirq, steal] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return { busy: (user + nice + system + irq + softirq + steal) / 100 };
  } catch {
    return null;
  }
}

/** Runs `top` in batch mode twice, one second apart, and resolves with its output lines (null without top). */
function runTop(args) {
  return new Promise((resolve) => {
    const child = spawn('top', ['-b', '-n', '2', '-d', '1', '-w', '200', ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s) => {
      out += s;
    });
    child.once('error', () => resolve(null));
    child.once('exit', () => resolve(out.split('\n')));
  });
}

/** `top` of the machine's busiest processes over one second (best effort; null without top). */
async function topOfMachine() {
  const lines = await runTop(['-o', '%CPU']);
  const header = lines?.findLastIndex((l) => /^\s*PID\s/.test(l)) ?? -1;
  if (header === -1) return null;
  const second = lines.findLastIndex((l) => l.startsWith('top - '));
  const summary = second === -1 ? [] : lines.slice(second, second + 5);
  const busy = lines.slice(header + 1).filter((l) => Number(l.trim().split(/\s+/)[8]) >= 0.5); // %CPU column
  return [...summary, lines[header], ...busy.slice(0, 20)].map((l) => l.trimEnd()).filter(Boolean);
}

/** A `top -H` view of the process's threads over one second (best effort; null without top). */
async function topOf(pid) {
  // The second iteration's %CPU is over the second between the two.
  const lines = await runTop(['-H', '-p', String(pid)]);
  const header = lines?.findLastIndex((l) => /^\s*PID\s/.test(l)) ?? -1;
  return header === -1 ? null : lines.slice(header, header + 16).map((l) => l.trimEnd()).filter(Boolean);
}

// ---- main ------------------------------------------------------------------------------------

/**
 * The targets of the issue that apply to a run, each with its figure and whether it is met:
 * the embedded default (ratio, CPU of all Herald processes per 100,000, peak RSS), Kafka (ratio),
 * DKIM (rate against the RSA-2048 signing ceiling). --engines runs have none.
 */
function targetsOf({ dkim, ratio, allHeraldPer100k, peakRssMiB, signingRatio }) {
  if (ENGINES !== null) return [];
  const targets = [];
  const check = (target, value, comparison, limit) =>
    targets.push({ target, value, comparison, limit, met: value === null || value === undefined ? null : comparison === '>=' ? value >= limit : value <= limit });
  if (dkim) check('DKIM RSA-2048 send rate / (cores × openssl speed rsa2048 sign/s)', signingRatio, '>=', TARGET_DKIM_SIGNING_RATIO);
  else if (BUS === 'kafka') check('ratio to the smtp-source ceiling, Kafka bus', ratio, '>=', TARGET_RATIO);
  else {
    check('ratio to the smtp-source ceiling', ratio, '>=', TARGET_RATIO);
    check('CPU-seconds per 100,000 messages, all Herald processes, KPI ingest included', allHeraldPer100k, '<=', TARGET_CPU_SECONDS_PER_100K);
    check('peak RSS of herald start during the send (MiB)', peakRssMiB, '<=', TARGET_PEAK_RSS_MIB);
  }
  return targets;
}

/** cpuPer100k with the profile's parts in it (the main thread's, and each group of worker threads'), or a note without a profile. */
function withParts(cpuPer100k, profile) {
  const herald = profile?.processes[0];
  const threads = structuredClone(cpuPer100k.heraldThreads);
  const partsOf = (group) => group.parts.map(({ part, cpuSecondsPer100k, share }) => ({ part, cpuSecondsPer100k, share }));
  threads.mainThread.parts = herald?.mainThread ? partsOf(herald.mainThread) : null;
  threads.workerThreads.groups = herald
    ? herald.workerThreads.map((g) => ({ entry: g.entry, threads: g.threads, cpuSecondsPer100k: per100k(g.cpuSeconds), parts: partsOf(g) }))
    : null;
  const gcOn = (group) => (group ? (group.parts.find((p) => p.part.startsWith('(garbage collector)'))?.cpuSecondsPer100k ?? 0) : null);
  const gc = {
    v8PlatformThreads: threads.v8PlatformThreads.cpuSecondsPer100k,
    onMainThread: herald ? gcOn(herald.mainThread) : null,
    onWorkerThreads: herald ? round(herald.workerThreads.reduce((sum, g) => sum + gcOn(g), 0), 2) : null,
    note: 'v8PlatformThreads: the GC\'s parallel and concurrent work and background compilation (not separable from /proc); onMainThread/onWorkerThreads: (garbage collector) samples of the profile on those threads (with --profile only)',
  };
  return {
    ...cpuPer100k,
    heraldThreads: threads,
    gc,
    ...(!profile && {
      partsNote: `parts of the main thread and of the worker threads come from CPU profiles, which cost CPU: run \`npm run bench:send -- --profile\` (written to ${resultName(false)}-profiled.json and its siblings)`,
    }),
  };
}

function resultOf(run, ceiling, { dkim, messageBytes, ceilingNote, kafka, signingCeiling }) {
  const ratio = round(run.messagesPerSecond / ceiling.messagesPerSecond);
  const signingRatio = dkim && signingCeiling?.signsPerSecond ? round(run.messagesPerSecond / signingCeiling.signsPerSecond) : null;
  const cpuPer100k = withParts(run.cpuPer100k, run.profile);
  return {
    benchmark: dkim ? 'send-dkim' : 'send',
    bus: BUS,
    profiled: Boolean(run.profile),
    messagesPerSecond: Math.round(run.messagesPerSecond),
    ceilingMessagesPerSecond: Math.round(ceiling.messagesPerSecond),
    ratio,
    targetRatio: dkim || ENGINES !== null ? null : TARGET_RATIO,
    cpuSecondsPer100kAllHerald: cpuPer100k.allHeraldProcesses,
    peakRssMiB: run.peakRssMiB,
    targets: targetsOf({ dkim, ratio, allHeraldPer100k: cpuPer100k.allHeraldProcesses, peakRssMiB: run.peakRssMiB, signingRatio }),
    ...(dkim && { dkimSigningCeiling: { ...signingCeiling, sendRatio: signingRatio } }),
    threads: THREADS,
    ...(ENGINES !== null && { engines: ENGINES, totalThreads: ENGINES * THREADS }),
    messages: MESSAGES,
    seconds: round(run.seconds),
    ceilingSeconds: round(ceiling.seconds),
    connections: CONNECTIONS,
    connectionsPerThread: CONNECTIONS_PER_THREAD,
    batchSize: BATCH_SIZE,
    messageBytes,
    wireBytesPerMessage: run.wireBytesPerMessage,
    dkim: dkim ? 'rsa-sha256, 2048-bit key, relaxed/relaxed (nodemailer)' : null,
    ceiling: {
      ...ceiling,
      seconds: round(ceiling.seconds),
      messagesPerSecond: Math.round(ceiling.messagesPerSecond),
      sinkCpuSecondsPer100k: per100k(ceiling.sinkCpuSeconds),
      sinkPeakRssMiB: ceiling.sinkPeakRssMiB,
      measured: ceilingNote,
    },
    timing: 'engine: from the OK (202) until GET /v1/deliveries/{id} answers finished (polled every 100 ms), after a 1,000-message warm-up delivery; ceiling: smtp-source wall clock',
    rss: run.rss,
    ...(run.scaling && { scaling: run.scaling }),
    timeline: run.timeline,
    cpuPer100k,
    cpu: run.cpu,
    ...(run.profile && { profile: run.profile }),
    ledger: run.ledger,
    setup: { importSeconds: run.importSeconds, warmupSeconds: run.warmupSeconds, preparationSeconds: run.preparationSeconds },
    store: run.store,
    ...(ENGINES !== null && {
      platform: `herald start --engines ${ENGINES}: the gateway, the KPI consumer and chDB in one process (peakRssMiB, cpu.heraldProcessSeconds), ${ENGINES} \`herald engine\` child process(es) (scaling.processes), PostgreSQL (a throwaway database) and Kafka`,
    }),
    ...(kafka && {
      kafka: {
        broker: kafka.startedHere
          ? 'single node (KRaft, loopback) started by infra/kafka/start.sh for this run'
          : `KAFKA_BROKERS${kafka.pid ? ' (a local broker: its CPU counts every client of it)' : ''}`,
        brokerStartSeconds: kafka.startSeconds,
        client: 'herald start with KAFKA_BROKERS and a KAFKA_TOPIC_PREFIX of its own: KafkaBus defaults (kafkajs, idempotent producer, acks -1)',
      },
    }),
    loadAverageAtOk: run.loadAverage,
    ...(run.loadAverageAtStart && { loadAverageAtStart: run.loadAverageAtStart }),
    machine: machine(),
    measuredAt: new Date().toISOString(),
  };
}

function summary(result, path) {
  const target = result.targetRatio === null ? '' : result.ratio >= result.targetRatio ? ` (target ${result.targetRatio}: met)` : ` (target ${result.targetRatio}: BELOW TARGET)`;
  return (
    `${result.benchmark} (${result.bus} bus${result.profiled ? ', PROFILED' : ''}): ${result.messages} messages in ${result.seconds} s = ${result.messagesPerSecond}/s vs ceiling ${result.ceilingMessagesPerSecond}/s ` +
    `(smtp-source → smtp-sink, ${result.ceilingSeconds} s): ratio ${result.ratio}${target}; ` +
    `${result.engines ? `${result.engines} engine process(es) × ` : ''}${result.threads} threads × ${result.connectionsPerThread} connections; ` +
    (result.scaling
      ? `CPU s: parent ${result.scaling.cpuSeconds.gatewayKpiChdbProcess}, engines ${result.scaling.cpuSeconds.engines.join(' + ')}, broker ${result.scaling.cpuSeconds.kafkaBroker}, ` +
        `PostgreSQL ${result.scaling.cpuSeconds.postgres?.serverSeconds}, smtp-sink ${result.scaling.cpuSeconds.smtpSink}, machine ${result.scaling.cpuSeconds.machineBusy} of ${result.scaling.cpuSeconds.machineCapacity}; ` +
        `duplicates at smtp-sink ${result.scaling.smtpSinkDuplicates}; load at start ${result.loadAverageAtStart?.[0]}; `
      : '') +
    `${result.messageBytes} B/message; peak RSS ${result.peakRssMiB} MiB; written to ${path}`
  );
}

/** The per-100,000 CPU figures, the targets and (profiled) the top functions, as text lines. */
function details(result) {
  const c = result.cpuPer100k;
  const lines = [`CPU-seconds per 100,000 messages (${c.window.seconds} s from the OK until the KPIs are complete, ${c.window.kpisCompleteAfterFinishedSeconds} s after finished):`];
  for (const p of c.processes) lines.push(`  ${String(p.cpuSecondsPer100k ?? '?').padStart(7)}  ${p.process}${p.herald ? '' : ' (not Herald)'}; peak RSS ${p.peakRssMiB ?? '?'} MiB`);
  lines.push(`  ${String(c.allHeraldProcesses ?? '?').padStart(7)}  all Herald processes`);
  const roles = c.heraldThreads;
  lines.push('  herald start by thread:');
  for (const [role, r] of Object.entries(roles)) {
    if (r.cpuSeconds === 0 && r.threads === 0) continue;
    lines.push(`  ${String(r.cpuSecondsPer100k).padStart(9)}  ${role} (${r.threads} thread${r.threads === 1 ? '' : 's'})`);
    for (const part of r.parts ?? []) lines.push(`  ${String(part.cpuSecondsPer100k).padStart(13)}  ${part.part} (${(part.share * 100).toFixed(1)}%)`);
    for (const g of r.groups ?? []) {
      lines.push(`  ${String(g.cpuSecondsPer100k).padStart(13)}  ${g.entry} (${g.threads} thread${g.threads === 1 ? '' : 's'})`);
      for (const part of g.parts) lines.push(`  ${String(part.cpuSecondsPer100k).padStart(17)}  ${part.part} (${(part.share * 100).toFixed(1)}%)`);
    }
  }
  if (c.partsNote) lines.push(`  (${c.partsNote})`);
  lines.push(`ceiling: smtp-sink ${result.ceiling.sinkCpuSecondsPer100k} CPU-s per 100,000 at ${result.ceilingMessagesPerSecond}/s`);
  if (result.dkimSigningCeiling) {
    const d = result.dkimSigningCeiling;
    lines.push(`DKIM signing ceiling: ${d.signsPerSecond ?? '?'} signatures/s (${d.command ?? d.error}); the send reached ${d.sendRatio ?? '?'} of it`);
  }
  for (const t of result.targets) lines.push(`target: ${t.target} ${t.comparison} ${t.limit}: ${t.value} — ${t.met === null ? 'not measured' : t.met ? 'met' : 'NOT MET'}`);
  for (const p of result.profile?.processes ?? []) {
    lines.push(...formatTopFunctions(`top 15 by self time, ${p.process} (pid ${p.pid}), main thread`, p.mainThread));
    for (const g of p.workerThreads) lines.push(...formatTopFunctions(`top 15 by self time, ${p.process}, worker threads running ${g.entry} (${g.threads})`, g));
  }
  return lines.join('\n');
}

/** The figures of one round, for the list of rounds a result file keeps (--repeat). */
function roundFigures(result) {
  const roles = result.cpuPer100k.heraldThreads;
  return {
    measuredAt: result.measuredAt,
    profiled: result.profiled,
    messagesPerSecond: result.messagesPerSecond,
    ceilingMessagesPerSecond: result.ceilingMessagesPerSecond,
    ratio: result.ratio,
    cpuSecondsPer100kAllHerald: result.cpuSecondsPer100kAllHerald,
    mainThreadPer100k: roles.mainThread.cpuSecondsPer100k,
    workerThreadsPer100k: roles.workerThreads.cpuSecondsPer100k,
    v8PlatformThreadsPer100k: roles.v8PlatformThreads.cpuSecondsPer100k,
    nativeLibraryThreadsPer100k: roles.nativeLibraryThreads.cpuSecondsPer100k,
    smtpSinkPer100k: result.cpuPer100k.processes.find((p) => p.process === 'smtp-sink')?.cpuSecondsPer100k ?? null,
    peakRssMiB: result.peakRssMiB,
    ...(result.dkimSigningCeiling && { signsPerSecond: result.dkimSigningCeiling.signsPerSecond, signingRatio: result.dkimSigningCeiling.sendRatio }),
    loadAverageAtOk: result.loadAverageAtOk,
  };
}

/** min, median and max of each numeric figure over the rounds. */
function spreadOf(rounds) {
  const spread = {};
  for (const key of Object.keys(rounds[0])) {
    const values = rounds.map((r) => r[key]).filter((v) => typeof v === 'number').sort((a, b) => a - b);
    if (values.length === 0) continue;
    const mid = values.length >> 1;
    const median = values.length % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
    spread[key] = { min: values[0], median: round(median, 3), max: values.at(-1) };
  }
  return spread;
}

async function main() {
  const loadAverageAtStart = os.loadavg().map((v) => round(v, 2)); // before this run adds its own load
  if (HTML.length < 4_500 || HTML.length > 5_600) throw new Error(`the bench HTML is ${HTML.length} characters, not ~5 KB`);
  const tools = await ensureTools();
  const postgres = ENGINES === null ? null : { serverUrl: postgresServerUrl() };
  const dir = mkdtempSync(join(os.tmpdir(), 'herald-bench-send-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const kafka = BUS === 'kafka' ? await startKafka({ log }) : null;
  const withDkim = ONLY !== 'plain' && ENGINES === null;
  const rounds = new Map(); // result name → the figures of each round
  try {
    // Size of the message the engine sends (the tracked URLs use the platform's address, whose
    // port has the same number of digits as any free port picked here, give or take one).
    const messageBytes = await renderedMessageBytes(`http://127.0.0.1:${await freePort()}`);
    log(
      `${MESSAGES} messages, ${ENGINES === null ? '' : `${ENGINES} engine process(es) × `}${THREADS} threads × ${CONNECTIONS_PER_THREAD} SMTP connections = ${CONNECTIONS}, batches of ${BATCH_SIZE}; ` +
        `HTML ${HTML.length} chars, message ${messageBytes} bytes; bus ${BUS}; load average ${loadAverageAtStart.join(', ')}` +
        `${PROFILE ? '; PROFILED (node --cpu-prof)' : ''}${REPEAT > 1 ? `; ${REPEAT} rounds` : ''}`,
    );

    for (let repetition = 1; repetition <= REPEAT; repetition++) {
      if (REPEAT > 1) log(`round ${repetition} of ${REPEAT}`);
      const loadAverageAtRound = repetition === 1 ? loadAverageAtStart : os.loadavg().map((v) => round(v, 2));
      const signingCeiling = withDkim ? rsa2048SigningCeiling() : null;
      if (signingCeiling) log(`DKIM signing ceiling: ${signingCeiling.signsPerSecond ?? signingCeiling.error} RSA-2048 signatures/s (${signingCeiling.signsPerSecondOneCore} on one core)`);
      const ceiling = await measureCeiling(tools, dir, messageBytes);
      for (const dkim of [false, true]) {
        if ((ONLY === 'plain' && dkim) || (ONLY === 'dkim' && !dkim) || (ENGINES !== null && dkim)) continue;
        const run = await runEngine(tools, dir, { dkim, kafka, postgres });
        run.loadAverageAtStart = loadAverageAtRound;
        const name = resultName(dkim);
        const result = resultOf(run, ceiling, {
          dkim,
          messageBytes,
          kafka,
          signingCeiling,
          ceilingNote:
            ENGINES !== null
              ? `in this run, before the engine run, with ${CONNECTIONS} sessions (the engines' SMTP connections in total)`
              : `once per round, before the engine runs; ${kafka ? 'send-kafka.json and send-dkim-kafka.json' : 'send.json and send-dkim.json'} of one round share it`,
        });
        const figures = [...(rounds.get(name) ?? []), roundFigures(result)];
        rounds.set(name, figures);
        if (figures.length > 1) {
          result.rounds = figures;
          result.spread = spreadOf(figures);
          result.roundsNote = `--repeat ${REPEAT}: the figures at the top and every detail are those of the last round; rounds lists each round, spread their min, median and max`;
        }
        const path = writeResults(name, result);
        console.log(summary(result, path));
        console.log(details(result));
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await kafka?.stop();
  }
}

main().catch((error) => {
  console.error(`bench:send FAILED: ${error.stack ?? error}`);
  process.exit(1);
});
