// KPI rates refresh benchmark (M3, rates half): the time, CPU and peak memory of the rates refresh
// (`refreshRates()`, what the hourly schedule and Compute stats run) as history that is no longer
// active grows, on the embedded KPI store (chDB in the measuring process). For each history size,
// synthetic events of finished deliveries are inserted through the store's views (as the KPI
// consumer's inserts are), one refresh settles them, then a small active delivery gets new events
// and the refresh that follows is measured (`--rounds` times, the median kept), once the background
// merges of the inserted history are done (CPU is the whole process's). Also the storage
// of message_events per million events (system.parts, system.columns) with each side's codecs.
//
// `--old <dir>`: a built checkout of the code to compare with (e.g. `git worktree add --detach
// /tmp/kpi-old main`, npm install, build): measured first, then this one, back to back, on the
// same synthetic events. Each side runs in a child process of its own (chDB binds one data
// directory per process), which reads its own peak RSS (VmHWM, reset before each refresh).
// Writes bench/results/kpi-refresh.json. Run with `npm run bench:kpi-refresh [-- --old <dir>]`;
// `--sizes 2000000,6000000,10000000` sets the history sizes (events, cumulative).
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { benchArgs, machine, round, writeResults } from './lib.mjs';

const ROOT = resolve(import.meta.dirname, '..');
const ACTIVE_EVENTS = 30_000;
const EVENTS_PER_DELIVERY = 100_000;
const INSERT_CHUNK = 1_000_000;

const log = (message) => process.stderr.write(`${message}\n`);

/**
 * The measuring side, run with `node --input-type=module -e` in `root`: its own @herald/kpi-store
 * (built dist, default migrations), a temp data directory, and one JSON line per result on stdout.
 */
const SIDE = String.raw`
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
const { sizes, rounds, activeEvents, eventsPerDelivery, insertChunk } = JSON.parse(process.env.BENCH_SIDE);
const { openKpiStore } = await import(pathToFileURL(join(process.cwd(), 'packages/kpi-store/dist/index.js')).href);
const dir = mkdtempSync(join(tmpdir(), 'kpi-refresh-'));
const store = openKpiStore({ dataDir: join(dir, 'data') });
// Stopped (the bench interrupted): remove the data directory, tens of GiB at the larger sizes.
process.once('SIGTERM', () => {
  rmSync(dir, { recursive: true, force: true });
  process.exit(143);
});
const out = (line) => process.stdout.write(JSON.stringify(line) + '\n');
const statusMiB = (field) => Number(new RegExp(field + ':\\s+(\\d+) kB').exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
const rows = async (query) => (await store.client.query({ query, format: 'JSONEachRow', clickhouse_settings: { output_format_json_quote_64bit_integers: 0 } })).json();
// Events as the KPI consumer would insert them: every 3 rows one message (sent, delivered, then an
// open, or a click for one message in four), 100,000 events per delivery, in the past.
const insertHistory = async (from, to) => {
  for (let start = from; start < to; start += insertChunk) {
    const n = Math.min(insertChunk, to - start);
    await store.client.command({
      query: "INSERT INTO herald.message_events (event_id, type, delivery_id, occurrence, message_id, profile_id, channel, occurred_at) " +
        "SELECT generateUUIDv4(number), " +
        "  [CAST('sent' AS String), 'delivered', if(intDiv(number, 3) % 4 = 0, 'clicked', 'opened')][number % 3 + 1], " +
        "  reinterpretAsUUID(sipHash128('history', intDiv(number, " + eventsPerDelivery + "))), 0, " +
        "  concat('<', toString(reinterpretAsUUID(sipHash128('message', intDiv(number, 3)))), '@mail.herald.example>'), " +
        "  concat('profile-', toString(intDiv(number, 3) % 5000000)), 'email', " +
        "  toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + toIntervalMillisecond(number * 10) " +
        "FROM numbers(" + start + ", " + n + ")",
      clickhouse_settings: { insert_deduplication_token: 'history-' + start + '-' + n },
    });
  }
};
let active = 0;
const ACTIVE = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa';
const insertActive = async () => {
  const events = [];
  for (let i = 0; i < activeEvents; i++) {
    const m = active + Math.floor(i / 3);
    const type = ['sent', 'delivered', 'opened'][i % 3];
    events.push({ eventId: crypto.randomUUID(), type, deliveryId: ACTIVE, occurrence: 0, messageId: '<active-' + m + '@mail.herald.example>',
      profileId: 'active-' + m, channel: 'email', occurredAt: new Date().toISOString() });
  }
  active += activeEvents / 3;
  await store.insertEvents(events, { dedupToken: 'active-' + active });
};
const refresh = async () => {
  const cpu0 = process.cpuUsage();
  const rss = statusMiB('VmRSS');
  writeFileSync('/proc/self/clear_refs', '5');
  const t = performance.now();
  await store.refreshRates({ timeoutMs: 3_600_000 });
  const ms = performance.now() - t;
  const cpu = process.cpuUsage(cpu0);
  const [state] = await rows("SELECT read_rows, written_rows FROM system.view_refreshes WHERE database = 'herald' AND view = 'delivery_rates'");
  return { ms, cpuSeconds: (cpu.user + cpu.system) / 1e6, rssBeforeMiB: rss, peakRssMiB: statusMiB('VmHWM'), readRows: state?.read_rows ?? null, writtenRows: state?.written_rows ?? null };
};
try {
  await store.migrate();
  await store.refreshRates({ timeoutMs: 3_600_000 });
  let history = 0;
  for (const size of sizes) {
    const t = performance.now();
    await insertHistory(history, size);
    const insertMs = performance.now() - t;
    history = size;
    // The refresh that first sees this history (it is still active here): settles it.
    const settle = await refresh();
    // History long inactive has been merged: wait for the background merges of these inserts, whose
    // CPU (and memory) would otherwise count in the refreshes measured next (at most a minute).
    const merging = performance.now();
    while (performance.now() - merging < 60_000 && (await rows('SELECT count() AS n FROM system.merges'))[0].n > 0) {
      await new Promise((r) => setTimeout(r, 500));
    }
    const mergeWaitMs = performance.now() - merging;
    const measured = [];
    for (let r = 0; r < rounds; r++) {
      await insertActive();
      measured.push(await refresh());
    }
    const [rates] = await rows("SELECT uniq_opens, delivered FROM (SELECT sum(unique_opens) AS uniq_opens, sum(delivered_messages) AS delivered FROM herald.delivery_rates WHERE delivery_id = '" + ACTIVE + "')");
    out({ historyEvents: size, insertMs, settle, mergeWaitMs, measured, activeRates: rates });
  }
  const [table] = await rows("SELECT sum(rows) AS rows, sum(bytes_on_disk) AS bytes, sum(data_compressed_bytes) AS compressed, sum(data_uncompressed_bytes) AS uncompressed FROM system.parts WHERE database = 'herald' AND table = 'message_events' AND active");
  const columns = await rows("SELECT name, type, compression_codec AS codec, data_compressed_bytes AS compressed FROM system.columns WHERE database = 'herald' AND table = 'message_events' ORDER BY position");
  out({ storage: { table, columns } });
} finally {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
`;

/** Runs one side in its own process; resolves with its JSON lines. */
function runSide(label, root, settings) {
  return new Promise((resolveSide, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', SIDE], {
      cwd: root,
      env: { ...process.env, BENCH_SIDE: JSON.stringify(settings) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // SIGTERM first: the side removes its data directory before it exits.
    process.once('exit', () => child.kill('SIGTERM'));
    const onSignal = (signal) => process.exit(signal === 'SIGINT' ? 130 : 143);
    process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
    const lines = [];
    let buffer = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s) => {
      buffer += s;
      for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
        const line = JSON.parse(buffer.slice(0, i));
        buffer = buffer.slice(i + 1);
        lines.push(line);
        if (line.historyEvents !== undefined) {
          const m = median(line.measured, 'ms');
          log(`${label}: history ${line.historyEvents.toLocaleString('en')} events: refresh ${round(m.ms, 0)} ms, ${round(m.cpuSeconds, 2)} CPU-s, peak ${round(m.peakRssMiB, 0)} MiB (settle ${round(line.settle.ms, 0)} ms)`);
        }
      }
    });
    child.stderr.setEncoding('utf8').on('data', (s) => {
      stderr = (stderr + s).slice(-8192);
    });
    child.once('exit', (code) => (code === 0 ? resolveSide(lines) : reject(new Error(`${label} side exited with ${code}: ${stderr}`))));
  });
}

/** The round with the median `key`. */
function median(items, key) {
  const sorted = [...items].sort((a, b) => a[key] - b[key]);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

function summarize(lines) {
  const steps = lines
    .filter((l) => l.historyEvents !== undefined)
    .map((l) => {
      const m = median(l.measured, 'ms');
      return {
        historyEvents: l.historyEvents,
        refreshMs: round(m.ms, 0),
        refreshCpuSeconds: round(m.cpuSeconds, 3),
        peakRssMiB: round(m.peakRssMiB, 0),
        peakAboveBeforeMiB: round(m.peakRssMiB - m.rssBeforeMiB, 0),
        readRows: m.readRows,
        writtenRows: m.writtenRows,
        rounds: l.measured.map((r) => ({ ms: round(r.ms, 0), cpuSeconds: round(r.cpuSeconds, 3), peakRssMiB: round(r.peakRssMiB, 0) })),
        settleRefreshMs: round(l.settle.ms, 0),
        insertMs: round(l.insertMs, 0),
        mergeWaitMs: round(l.mergeWaitMs, 0),
        activeRates: l.activeRates,
      };
    });
  const { storage } = lines.find((l) => l.storage);
  const perMillion = (bytes) => round((Number(bytes) / Number(storage.table.rows)) * 1e6 / 1024 / 1024, 2);
  return {
    steps,
    storage: {
      rows: Number(storage.table.rows),
      MiBPerMillionEvents: perMillion(storage.table.bytes),
      uncompressedMiBPerMillionEvents: perMillion(storage.table.uncompressed),
      columns: storage.columns.map((c) => ({ name: c.name, codec: c.codec || 'default (LZ4)', MiBPerMillionEvents: perMillion(c.compressed) })),
    },
  };
}

const args = benchArgs({
  old: { type: 'string' },
  sizes: { type: 'string', default: '2000000,6000000,10000000' },
  rounds: { type: 'string', default: '3' },
});
const sizes = args.sizes.split(',').map(Number);
const settings = { sizes, rounds: Number(args.rounds), activeEvents: ACTIVE_EVENTS, eventsPerDelivery: EVENTS_PER_DELIVERY, insertChunk: INSERT_CHUNK };
const started = new Date();
const loadAverage = (await import('node:os')).loadavg();
const sides = {};
if (args.old) sides.old = summarize(await runSide('old', resolve(args.old), settings));
sides.new = summarize(await runSide('new', ROOT, settings));
const ratio = (side) => {
  const first = side.steps[0];
  const last = side.steps.at(-1);
  return { refreshMs: round(last.refreshMs / first.refreshMs, 2), peakRssMiB: round(last.peakRssMiB / first.peakRssMiB, 2) };
};
const result = {
  benchmark: 'kpi-refresh',
  description:
    'rates refresh (refreshRates) after a small active delivery got new events, with growing inactive history (synthetic finished deliveries), chDB in-process; median of the rounds',
  target: 'flat in the inactive history',
  historySizes: sizes,
  activeEventsPerRound: ACTIVE_EVENTS,
  eventsPerHistoryDelivery: EVENTS_PER_DELIVERY,
  ...Object.fromEntries(Object.entries(sides).map(([name, side]) => [name, { ...side, largestOverSmallest: ratio(side) }])),
  machine: machine(),
  loadAverageAtStart: loadAverage.map((l) => round(l, 2)),
  measuredAt: started.toISOString(),
};
log(`wrote ${writeResults('kpi-refresh', result)}`);
