// Tracking benchmark (M3, tracking half): autocannon against the open pixel (/t/o) and the click
// redirect (/t/c) of `herald start` on the embedded default (PGlite, in-process bus, chDB), and
// against a bare Fastify server answering the same 1×1 GIF (and a 302) in its own process, in the
// same run: requests/s, p99 latency, the ratio to the bare server, and requests per CPU-second of
// the server process. Then the control-plane statements per hit, on PostgreSQL (its statistics
// views; PGlite has no outside view): a fixed number of hits, the deltas of the transactions and
// of the ledger, link and outbox row operations, less those of an idle window of the same length.
//
// `--old <dir>`: a built checkout of the code to compare with (e.g. `git worktree add --detach
// /tmp/tracking-old main`, npm install, build): its platform is measured first, then this one's,
// back to back, with the same bare server. The links are those of a real send (the capture sink's
// .eml files), so every hit verifies a genuine token. Writes bench/results/tracking.json.
// Run with `npm run bench:tracking [-- --old <dir>]` (BENCH_PG_URL: the PostgreSQL server).
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import autocannon from 'autocannon';
import {
  apiClient,
  benchArgs,
  createBenchDatabase,
  freePort,
  machine,
  postgresServerUrl,
  processCpuSeconds,
  round,
  startPlatform,
  writeResults,
} from './lib.mjs';

const MESSAGES = 1_000;
const CONNECTIONS = 50;
const DURATION_SECONDS = 10;
const WARMUP_SECONDS = 3;
const STATEMENT_HITS = 2_000;
const HTML = '<p>Hello {{profile.firstName}}, <a href="https://shop.example/sale">the sale</a> and <a href="https://shop.example/new">what is new</a>.</p>';

const log = (message) => process.stderr.write(`${message}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The bare server: Fastify answering the same GIF (and a 302 for clicks), in its own process. */
async function startBareServer() {
  const port = await freePort();
  const source = `
    import Fastify from 'fastify';
    const PIXEL = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');
    const app = Fastify({ routerOptions: { maxParamLength: 1000 } });
    app.get('/t/o/:token', (request, reply) => reply.header('content-type', 'image/gif').header('cache-control', 'no-store, max-age=0').send(PIXEL));
    app.get('/t/c/:token', (request, reply) => reply.header('cache-control', 'no-store').redirect('https://shop.example/sale', 302));
    await app.listen({ port: ${port}, host: '127.0.0.1' });
    process.stdout.write('listening\\n');`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', source], { cwd: resolve(import.meta.dirname, '..'), stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolveReady, reject) => {
    child.stdout.once('data', resolveReady);
    child.once('exit', (code) => reject(new Error(`the bare server exited with ${code}`)));
  });
  process.once('exit', () => child.kill('SIGKILL'));
  return { url: `http://127.0.0.1:${port}`, pid: child.pid, stop: () => child.kill('SIGTERM') };
}

/**
 * The open and first click paths of a captured message (.eml; @herald/testing has the same
 * helper, but it loads Jest's globals). Quoted-printable soft line breaks are undone first.
 */
function trackingPaths(file) {
  const text = readFileSync(file, 'utf8').replace(/=\r?\n/g, '').replace(/=3D/g, '=');
  const open = /https?:\/\/[^\s"<>]+(\/t\/o\/[\w.-]+)/.exec(text)?.[1];
  const click = /https?:\/\/[^\s"<>]+(\/t\/c\/[\w.-]+)/.exec(text)?.[1];
  if (!open || !click) throw new Error(`no tracking links in ${file}`);
  return { open, click };
}

/** Profiles, an audience, a delivery with two links, sent to the capture sink; returns the delivery and each message's tracking paths. */
async function sendMessages(platform, count) {
  const api = apiClient(platform);
  const profiles = Array.from({ length: count }, (_, i) => ({ id: `t${String(i).padStart(6, '0')}`, email: `t${i}@example.com`, firstName: `Name${i}`, attributes: { cohort: 'tracking' } }));
  await api('POST', '/v1/profiles/import', profiles);
  const audience = await api('POST', '/v1/audiences', { name: 'bench tracking', filter: { cohort: 'tracking' } });
  const delivery = await api('POST', '/v1/deliveries', {
    name: 'bench:tracking',
    channel: 'email',
    audienceId: audience.id,
    content: { from: 'Herald Shop <news@shop.example>', subject: 'Hello {{profile.firstName}}', html: HTML },
  });
  await api('POST', `/v1/deliveries/${delivery.id}/prepare`);
  await api('POST', `/v1/deliveries/${delivery.id}/approve`);
  const { confirmationId } = await api('POST', `/v1/deliveries/${delivery.id}/confirmations`);
  await api('POST', `/v1/deliveries/${delivery.id}/confirmations/${confirmationId}/ok`, undefined, { expect: 202 });
  const mail = join(platform.home, 'mail');
  const deadline = Date.now() + 120_000;
  for (;;) {
    const { state } = await api('GET', `/v1/deliveries/${delivery.id}`);
    const files = readdirSync(mail).filter((name) => name.endsWith('.eml'));
    if (state === 'finished' && files.length >= count) {
      const links = files.map((name) => trackingPaths(join(mail, name)));
      return { id: delivery.id, opens: links.map((l) => l.open), clicks: links.map((l) => l.click) };
    }
    if (Date.now() > deadline) throw new Error(`delivery ${delivery.id}: '${state}', ${files.length} of ${count} messages after 120 s`);
    await sleep(200);
  }
}

/** autocannon over `paths` (each connection cycles through them); with `pid`, the CPU-seconds that process used meanwhile. */
async function load(url, paths, { seconds = DURATION_SECONDS, amount, pid } = {}) {
  const cpuBefore = pid ? processCpuSeconds(pid) : null;
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    ...(amount ? { amount } : { duration: seconds }),
    requests: paths.map((path) => ({ method: 'GET', path, headers: { 'user-agent': 'Mozilla/5.0' } })),
  });
  const cpu = pid ? processCpuSeconds(pid) - cpuBefore : null;
  const statuses = { '2xx': result['2xx'], '3xx': result['3xx'], '4xx': result['4xx'], '5xx': result['5xx'], errors: result.errors, timeouts: result.timeouts };
  return {
    requests: result.requests.total,
    requestsPerSecond: round(result.requests.average, 0),
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    ...(cpu !== null && { serverCpuSeconds: round(cpu, 2), requestsPerCpuSecond: Math.round(result.requests.total / cpu) }),
    statuses,
  };
}

/** The figures of one code base on the embedded default, beside the bare server's of the same moment. */
async function measureEmbedded(label, root, bare) {
  log(`${label}: herald start (embedded default)...`);
  const platform = await startPlatform({ root });
  try {
    const sent = await sendMessages(platform, MESSAGES);
    log(`${label}: ${MESSAGES} messages sent; warming up`);
    await load(platform.url, sent.opens, { seconds: WARMUP_SECONDS });
    await load(platform.url, sent.clicks, { seconds: WARMUP_SECONDS });
    await load(bare.url, sent.opens, { seconds: WARMUP_SECONDS });
    const figures = {};
    for (const [kind, paths] of [
      ['open', sent.opens],
      ['click', sent.clicks],
    ]) {
      const herald = await load(platform.url, paths, { pid: platform.pid });
      const bareServer = await load(bare.url, paths, { pid: bare.pid });
      figures[kind] = { herald, bare: bareServer, ratio: round(herald.requestsPerSecond / bareServer.requestsPerSecond, 4) };
      log(
        `${label} ${kind}: herald ${herald.requestsPerSecond}/s (p99 ${herald.p99Ms} ms, ${herald.requestsPerCpuSecond}/CPU-s), ` +
          `bare ${bareServer.requestsPerSecond}/s (p99 ${bareServer.p99Ms} ms, ${bareServer.requestsPerCpuSecond}/CPU-s): ratio ${figures[kind].ratio}; statuses ${JSON.stringify(herald.statuses)}`,
      );
    }
    return figures;
  } finally {
    await platform.stop();
  }
}

/** Transactions and tracking-related row operations of the bench database so far (PostgreSQL statistics). */
async function storeActivity(client) {
  await client.query('SELECT pg_stat_clear_snapshot()');
  const [{ xacts }] = (await client.query('SELECT xact_commit + xact_rollback AS xacts FROM pg_stat_database WHERE datname = current_database()')).rows;
  const tables = (
    await client.query(
      `SELECT relname, seq_scan + coalesce(idx_scan, 0) AS scans, n_tup_ins + n_tup_upd + n_tup_del AS writes
         FROM pg_stat_user_tables WHERE relname IN ('send_ledger', 'tracked_links', 'outbox')`,
    )
  ).rows;
  const of = (name) => tables.find((t) => t.relname === name) ?? { scans: 0, writes: 0 };
  return {
    transactions: Number(xacts),
    ledgerReads: Number(of('send_ledger').scans),
    linkReads: Number(of('tracked_links').scans),
    outboxReadsAndWrites: Number(of('outbox').scans) + Number(of('outbox').writes),
  };
}

const minus = (a, b) => Object.fromEntries(Object.keys(a).map((k) => [k, a[k] - b[k]]));

/** Control-plane activity per hit on PostgreSQL: `hits` opens then `hits` clicks, less an idle window of the same length. */
async function measureStatements(label, root, serverUrl) {
  const database = await createBenchDatabase(serverUrl, 'bench_tracking');
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: database.url });
  const platform = await startPlatform({ root, env: { DATABASE_URL: database.url } });
  try {
    await client.connect();
    const sent = await sendMessages(platform, 200);
    // One click per link first: a cache fill is not the steady state being measured.
    for (const path of sent.clicks.slice(0, 2)) await fetch(`${platform.url}${path}`, { redirect: 'manual', headers: { 'user-agent': 'Mozilla/5.0' } });
    // Statistics reach the views about once a second per backend: let the send's settle.
    await sleep(12_000);
    const figures = {};
    for (const [kind, paths] of [
      ['open', sent.opens],
      ['click', sent.clicks],
    ]) {
      const idleStart = await storeActivity(client);
      const started = performance.now();
      const hits = await load(platform.url, paths, { amount: STATEMENT_HITS });
      const loadMs = performance.now() - started;
      await sleep(12_000);
      const afterHits = minus(await storeActivity(client), idleStart);
      // The same length of time with no hit: the relay's and the scheduler's own polling.
      const idleFrom = await storeActivity(client);
      await sleep(loadMs + 12_000);
      const idle = minus(await storeActivity(client), idleFrom);
      const perHit = Object.fromEntries(Object.entries(minus(afterHits, idle)).map(([k, v]) => [k, round(v / hits.requests, 3)]));
      figures[kind] = { hits: hits.requests, statuses: hits.statuses, perHit, raw: { afterHits, idle } };
      log(`${label} ${kind} on PostgreSQL: per hit ${JSON.stringify(perHit)}`);
    }
    return figures;
  } finally {
    await client.end().catch(() => undefined);
    await platform.stop();
    await database.drop();
  }
}

async function main() {
  const args = benchArgs({ old: { type: 'string' } });
  const variants = [...(args.old ? [['old', resolve(args.old)]] : []), ['new', undefined]];
  const serverUrl = postgresServerUrl();
  const bare = await startBareServer();
  const results = {};
  try {
    for (const [label, root] of variants) {
      results[label] = { embedded: await measureEmbedded(label, root, bare), postgres: await measureStatements(label, root, serverUrl) };
    }
  } finally {
    bare.stop();
  }
  const result = {
    benchmark: 'tracking',
    messages: MESSAGES,
    connections: CONNECTIONS,
    durationSeconds: DURATION_SECONDS,
    timing: `autocannon, ${CONNECTIONS} connections, ${DURATION_SECONDS} s per figure after a ${WARMUP_SECONDS} s warm-up, cycling through the pixel (or first click) links of ${MESSAGES} sent messages; herald start (embedded default) and the bare Fastify server measured alternately in the same run`,
    statements: `PostgreSQL (pg_stat_database, pg_stat_user_tables) over ${STATEMENT_HITS} hits of each kind, after one click per link and 12 s for the statistics to settle, less an idle window of the same length: transactions, ledger reads (send_ledger scans), link reads (tracked_links scans), outbox scans and row writes (the hit's insert, the relay's read and update) per hit`,
    ...results,
    machine: machine(),
    measuredAt: new Date().toISOString(),
  };
  const path = writeResults('tracking', result);
  for (const [label] of variants) {
    const { embedded, postgres } = results[label];
    console.log(
      `${label}: open ${embedded.open.herald.requestsPerSecond}/s p99 ${embedded.open.herald.p99Ms} ms (bare ${embedded.open.bare.requestsPerSecond}/s, ratio ${embedded.open.ratio}); ` +
        `click ${embedded.click.herald.requestsPerSecond}/s p99 ${embedded.click.herald.p99Ms} ms (ratio ${embedded.click.ratio}); ` +
        `per open ${JSON.stringify(postgres.open.perHit)}, per click ${JSON.stringify(postgres.click.perHit)}`,
    );
  }
  console.log(`written to ${path}`);
}

main().catch((error) => {
  console.error(`bench:tracking FAILED: ${error.stack ?? error}`);
  process.exit(1);
});
