// CPU profiles of the processes a bench runs (`node --cpu-prof`, one .cpuprofile per thread): the
// samples of one time window, grouped by the part of Herald (or the library) their code belongs
// to, and the functions with the most self time. The profile says where a thread's time went in
// shares; /proc says how much CPU the thread used: a part's CPU-seconds are the thread's CPU over
// the window × the part's share of the thread's busy samples. (A profile's time deltas are wall
// time: on a machine shared with other work they count the time a thread waited for a core.)
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const ROOT_URL = `file://${ROOT}/`;

/** Node's file names: CPU.<date>.<time>.<pid>.<thread id: 0 for the main thread>.<seq>.cpuprofile */
const PROFILE_FILE = /^CPU\.\d+\.\d+\.(\d+)\.(\d+)\.(\d+)\.cpuprofile$/;

/** The node flags that make a process (and, through NODE_OPTIONS, its child processes) write profiles into `dir`. */
export const cpuProfileFlags = (dir) => `--cpu-prof --cpu-prof-dir=${dir}`;

/** The profile files of process `pid` in `dir`: [{ path, pid, threadId, main }], the main thread first. */
export function profileFiles(dir, pid) {
  let names = [];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .map((name) => ({ name, m: name.match(PROFILE_FILE) }))
    .filter(({ m }) => m && Number(m[1]) === pid)
    .map(({ name, m }) => ({ path: join(dir, name), pid, threadId: Number(m[2]), main: Number(m[2]) === 0 }))
    .sort((a, b) => a.threadId - b.threadId);
}

/**
 * The parts a sample is charged to: the first rule matching the URL of the sampled function, else
 * of its nearest caller that matches one (so zod, pino, Node's streams or a JSON.parse count for
 * the Herald code that called them). Order matters: the first match wins.
 */
const PARTS = [
  ['DKIM signing (nodemailer dkim, crypto)', /node_modules\/nodemailer\/(lib|dist\/[^/]+)\/dkim\//],
  ['SMTP client', /node_modules\/nodemailer\/|\/apps\/engine\/dist\/smtp-pool|\/packages\/channels\/dist\/smtp/],
  ['rendering (@herald/channels)', /\/packages\/channels\/dist\//],
  ['store: PGlite, pg, repositories', /^wasm:\/\/|node_modules\/@electric-sql\/pglite\/|node_modules\/(pg|pg-protocol|pg-pool|pg-types|pg-cursor|postgres-array|postgres-date|postgres-interval|postgres-bytea)\/|\/packages\/control-plane\/dist\/(repositories\/|database\.js)/],
  ['outbox relay', /\/packages\/control-plane\/dist\/services\/outbox-relay/],
  ['control plane (services)', /\/packages\/control-plane\/dist\//],
  ['KPI consumer', /\/apps\/kpi-consumer\/dist\/|\/apps\/gateway\/dist\/kpi-pipeline|\/packages\/kpi-store\/dist\//],
  ['chDB, @clickhouse/client', /node_modules\/(@clickhouse\/[^/]+|chdb)\//],
  ['bus', /\/packages\/bus\/dist\/|\/packages\/contracts\/dist\/|node_modules\/kafkajs\/|node_modules\/@platformatic\/kafka\//],
  ['gateway / HTTP', /\/apps\/gateway\/dist\/|node_modules\/(@nestjs\/[^/]+|fastify|@fastify\/[^/]+|find-my-way|avvio|light-my-request|fast-json-stringify)\//],
  ['engine: planner, dispatcher, worker', /\/apps\/engine\/dist\/|\/packages\/sending\/dist\/|node_modules\/piscina\//],
];
const GC = '(garbage collector) on this thread';
const PROGRAM = '(program): native code outside JavaScript';
const OTHER = 'other';

/** Who a function belongs to when no part claims it: a package, Node's own code, V8's builtins. */
function ownerOf(url) {
  if (!url) return 'V8 builtins and native functions (no script)';
  if (url.startsWith('node:')) return 'Node.js internals (node:*)';
  const pkg = url.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//)?.[1];
  if (pkg) return pkg;
  const workspace = url.match(/\/((?:apps|packages)\/[^/]+)\//)?.[1];
  return workspace ?? url.replace(ROOT_URL, '');
}

const partOfUrl = (url) => (url ? (PARTS.find(([, re]) => re.test(url))?.[0] ?? null) : null);

/** A URL as the report prints it: relative to the repository, node_modules paths shortened. */
const shortUrl = (url) => (url.startsWith(ROOT_URL) ? url.slice(ROOT_URL.length) : url).replace(/^.*node_modules\//, 'node_modules/');

/**
 * The samples of one profile taken between `fromUs` and `toUs` (the profile's clock: microseconds
 * of CLOCK_MONOTONIC on Linux, the same as process.hrtime() / 1000 in any process of the machine).
 * Returns { busySamples, idleSamples, parts: Map part → samples, owners: Map owner → samples
 * (samples of 'other'), functions: Map key → { functionName, url, line, samples, parts: Map },
 * entry } (entry: the URL of the thread's first script, e.g. the worker's file), or null when the
 * profile holds no sample of the window.
 */
export function profileWindow(path, fromUs, toUs) {
  const profile = JSON.parse(readFileSync(path, 'utf8'));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const child of n.children ?? []) parent.set(child, n.id);

  const partMemo = new Map();
  /** The part of node `id`: its own URL's, else its nearest caller's; null when none claims it. */
  const partOf = (id) => {
    if (partMemo.has(id)) return partMemo.get(id);
    const chain = [];
    let found = null;
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      if (partMemo.has(cur)) {
        found = partMemo.get(cur);
        break;
      }
      chain.push(cur);
      const part = partOfUrl(byId.get(cur).callFrame.url);
      if (part) {
        found = part;
        break;
      }
    }
    for (const n of chain) partMemo.set(n, found);
    return found;
  };

  const counts = new Map();
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i];
    if (t < fromUs || t > toUs) continue;
    counts.set(profile.samples[i], (counts.get(profile.samples[i]) ?? 0) + 1);
  }
  if (counts.size === 0) return null;

  let busySamples = 0;
  let idleSamples = 0;
  const parts = new Map();
  const owners = new Map();
  const functions = new Map();
  const add = (map, key, n) => map.set(key, (map.get(key) ?? 0) + n);
  for (const [id, n] of counts) {
    const { functionName, url, lineNumber } = byId.get(id).callFrame;
    if (functionName === '(idle)') {
      idleSamples += n;
      continue;
    }
    busySamples += n;
    let part;
    if (functionName === '(garbage collector)') part = GC;
    else if (functionName === '(program)' || functionName === '(root)') part = PROGRAM;
    else part = partOf(id) ?? OTHER;
    add(parts, part, n);
    if (part === OTHER) add(owners, ownerOf(url), n);
    const key = `${functionName}\u0000${url}\u0000${lineNumber}`;
    let fn = functions.get(key);
    if (!fn) {
      fn = { functionName: functionName || '(anonymous)', url: url ? shortUrl(url) : '', line: lineNumber >= 0 ? lineNumber + 1 : null, samples: 0, parts: new Map() };
      functions.set(key, fn);
    }
    fn.samples += n;
    add(fn.parts, part, n);
  }
  return { busySamples, idleSamples, parts, owners, functions, entry: entryOf(profile.nodes) };
}

/** The script a thread runs: a `*.worker.js` of the repository when it loaded one, else its first script of the repository. */
function entryOf(nodes) {
  const urls = nodes.map((n) => n.callFrame.url).filter((url) => url.startsWith(ROOT_URL) && !url.includes('/node_modules/'));
  return urls.find((url) => /\.worker\.m?js$/.test(url)) ?? urls[0] ?? null;
}

/** Adds window `b` into `a` (both from profileWindow); returns `a`. */
function mergeWindows(a, b) {
  a.busySamples += b.busySamples;
  a.idleSamples += b.idleSamples;
  const add = (map, key, n) => map.set(key, (map.get(key) ?? 0) + n);
  for (const [k, n] of b.parts) add(a.parts, k, n);
  for (const [k, n] of b.owners) add(a.owners, k, n);
  for (const [key, fn] of b.functions) {
    const mine = a.functions.get(key);
    if (!mine) {
      a.functions.set(key, { ...fn, parts: new Map(fn.parts) });
      continue;
    }
    mine.samples += fn.samples;
    for (const [k, n] of fn.parts) add(mine.parts, k, n);
  }
  return a;
}

const round = (value, digits) => Math.round(value * 10 ** digits) / 10 ** digits;

/**
 * A thread group's figures: its parts and top functions, in CPU-seconds (`cpuSeconds`: the
 * group's CPU over the window, from /proc) and in shares of its busy samples.
 */
function summarize(window, cpuSeconds, perHundredK, top) {
  const share = (n) => (window.busySamples ? n / window.busySamples : 0);
  const cpuOf = (n) => (cpuSeconds === null ? null : cpuSeconds * share(n));
  const parts = [...window.parts]
    .sort((a, b) => b[1] - a[1])
    .map(([part, n]) => ({
      part,
      cpuSeconds: cpuOf(n) === null ? null : round(cpuOf(n), 2),
      cpuSecondsPer100k: cpuOf(n) === null ? null : round(cpuOf(n) * perHundredK, 2),
      share: round(share(n), 4),
      samples: n,
      ...(part === OTHER && {
        detail: [...window.owners].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([owner, m]) => ({ owner, share: round(share(m), 4) })),
      }),
    }));
  const topFunctions = [...window.functions.values()]
    .sort((a, b) => b.samples - a.samples)
    .slice(0, top)
    .map((fn) => ({
      function: fn.functionName,
      url: fn.url,
      line: fn.line,
      selfMs: cpuOf(fn.samples) === null ? null : Math.round(cpuOf(fn.samples) * 1000),
      share: round(share(fn.samples), 4),
      samples: fn.samples,
      part: [...fn.parts].sort((a, b) => b[1] - a[1])[0][0],
    }));
  return { busySamples: window.busySamples, idleSamples: window.idleSamples, parts, topFunctions };
}

/**
 * The profiles of process `pid` over a window: the main thread, and the worker threads grouped by
 * what they run (their first script: e.g. the engine's send-batch worker). `cpu` gives the /proc
 * CPU-seconds over the same window: { mainThread, workerThreads } (null when unknown); the worker
 * threads' CPU is shared between the groups by their busy samples. Null without profiles.
 */
export function analyzeProcessProfiles(dir, pid, { fromUs, toUs, cpu, perHundredK, top = 15 }) {
  const files = profileFiles(dir, pid);
  if (files.length === 0) return null;
  const main = files.find((f) => f.main);
  const mainWindow = main ? profileWindow(main.path, fromUs, toUs) : null;
  const workerGroups = new Map();
  for (const f of files.filter((file) => !file.main)) {
    const w = profileWindow(f.path, fromUs, toUs);
    if (!w || w.busySamples === 0) continue; // a thread that did nothing in the window
    const kind = w.entry ? shortUrl(w.entry) : 'unknown worker';
    const group = workerGroups.get(kind);
    if (group) {
      mergeWindows(group.window, w);
      group.threads++;
    } else workerGroups.set(kind, { window: w, threads: 1 });
  }
  const workerBusy = [...workerGroups.values()].reduce((sum, g) => sum + g.window.busySamples, 0);
  const workers = [...workerGroups]
    .sort((a, b) => b[1].window.busySamples - a[1].window.busySamples)
    .map(([entry, g]) => {
      const cpuSeconds = cpu.workerThreads === null || workerBusy === 0 ? null : (cpu.workerThreads * g.window.busySamples) / workerBusy;
      return { entry, threads: g.threads, cpuSeconds: cpuSeconds === null ? null : round(cpuSeconds, 2), ...summarize(g.window, cpuSeconds, perHundredK, top) };
    });
  return {
    files: files.map((f) => ({ file: f.path.replace(`${ROOT}/`, ''), threadId: f.threadId })),
    mainThread: mainWindow ? { cpuSeconds: cpu.mainThread, ...summarize(mainWindow, cpu.mainThread, perHundredK, top) } : null,
    workerThreads: workers,
  };
}

/** The top functions of a summarize() result as text lines (function, url:line, self ms, share). */
export function formatTopFunctions(title, group) {
  if (!group) return [`${title}: no profile`];
  const lines = [`${title}: ${group.cpuSeconds ?? '?'} CPU-s in the window, ${group.busySamples} busy samples (${group.idleSamples} idle)`];
  lines.push(`  ${'self ms'.padStart(8)} ${'share'.padStart(6)}  function — url:line [part]`);
  for (const fn of group.topFunctions) {
    const where = fn.url ? `${fn.url}${fn.line ? `:${fn.line}` : ''}` : '(native)';
    lines.push(`  ${String(fn.selfMs ?? '?').padStart(8)} ${`${(fn.share * 100).toFixed(1)}%`.padStart(6)}  ${fn.function} — ${where} [${fn.part}]`);
  }
  lines.push('  parts:');
  for (const p of group.parts) lines.push(`  ${String(p.cpuSeconds ?? '?').padStart(8)} s ${`${(p.share * 100).toFixed(1)}%`.padStart(6)}  ${p.part}`);
  return lines;
}
