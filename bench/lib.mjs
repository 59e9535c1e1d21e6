// Shared helpers for the benchmarks: run the platform as a child process on the embedded
// defaults (or on Kafka, `--bus kafka`, with a broker of the run's own), stream request bodies,
// read peak memory and CPU, describe the machine, write results.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, fstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect as connectTcp, createServer } from 'node:net';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const HERALD_BIN = join(ROOT, 'apps', 'cli', 'bin', 'herald.js');
export const RESULTS_DIR = join(ROOT, 'bench', 'results');

const READY_DEADLINE_MS = 60_000;
const STOP_GRACE_MS = 10_000;
const TAIL_BYTES = 8_192;

/** A TCP port that was free a moment ago (the OS picks it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Spawns `herald <command>` with the Node that runs the bench (Node 24 under npm scripts) and
 * `env` as its whole environment, and keeps draining its pipes (a full pipe would block it).
 * The child is SIGKILLed, and `cleanup` runs, if the bench exits without stopping it (Ctrl-C
 * and kill of the bench exit through the same hook). `stop()` is idempotent: SIGTERM, SIGKILL
 * after `stopGraceMs` (10 s; longer when the child writes CPU profiles as it exits), then `cleanup`. `waitReady(probe, deadlineMs)` calls `probe(stdout)` every 100 ms
 * until it returns something truthy (resolved with it); it stops the child and throws, with
 * stdout and the tail of stderr, if the child exits first or the deadline passes.
 */
function spawnHerald(command, env, { cleanup = () => undefined, args = [], stopGraceMs = STOP_GRACE_MS } = {}) {
  // BENCH_NODE_ARGS: node flags for the herald process, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const nodeArgs = process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const child = spawn(process.execPath, [...nodeArgs, HERALD_BIN, command, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderrTail = '';
  let exited = null; // { code, signal } once the child is gone
  const exitedPromise = new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    }),
  );
  child.stdout.setEncoding('utf8').on('data', (s) => {
    if (stdout.length < 65_536) stdout += s;
  });
  child.stderr.setEncoding('utf8').on('data', (s) => {
    stderrTail = (stderrTail + s).slice(-TAIL_BYTES);
  });

  const onExit = () => {
    if (!exited) child.kill('SIGKILL');
    cleanup();
  };
  process.once('exit', onExit);
  const onSignal = (signal) => process.exit(signal === 'SIGINT' ? 130 : 143);
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);

  let stopping;
  const stop = () => {
    stopping ??= (async () => {
      if (!exited) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), stopGraceMs);
        await exitedPromise;
        clearTimeout(timer);
      }
      process.off('exit', onExit).off('SIGINT', onSignal).off('SIGTERM', onSignal);
      cleanup();
      return exited;
    })();
    return stopping;
  };

  const waitReady = async (probe, deadlineMs) => {
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      let why;
      if (exited) why = 'it exited before it was ready';
      else if (Date.now() > deadline) why = `not ready within ${deadlineMs / 1000} s`;
      if (why) {
        const status = exited ? ` (it exited: code ${exited.code}, signal ${exited.signal})` : '';
        await stop();
        const tail = stderrTail.trim() ? `\n--- herald ${command} stderr (tail) ---\n${stderrTail.trim()}` : '\n(it wrote nothing on stderr)';
        throw new Error(`herald ${command}: ${why}${status}\n--- stdout ---\n${stdout.trim()}${tail}`);
      }
      const value = await probe(stdout);
      if (value) return value;
      await sleep(100);
    }
  };

  return { pid: child.pid, stop, waitReady, stdout: () => stdout, stderrTail: () => stderrTail, exited: () => exited };
}

/** GET <url>: the status and the parsed JSON answer, or null while nothing answers. */
async function probeGet(url) {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    return { status: res.status, body: await res.json().catch(() => ({})) };
  } catch {
    return null; // not listening yet
  }
}

/**
 * Names the platform would read from the caller's shell to reach external services. A bench
 * platform runs on the embedded defaults (PGlite, in-process bus, chDB, its own tokens) unless
 * the bench itself passes one of these in `env` (e.g. KAFKA_BROKERS for a run on Kafka).
 */
const EXTERNAL_SERVICES = ['DATABASE_URL', 'KAFKA_BROKERS', 'KAFKA_TOPIC_PREFIX', 'KAFKA_CLIENT_ID', 'CLICKHOUSE_URL', 'HERALD_JWKS_URL'];

/**
 * Starts `herald start [...args]` (e.g. `--engines 2`) with a fresh temporary HERALD_HOME and a
 * free port (PORT in `env` wins), and waits for its token line and for /health/ready. `env` goes
 * on top of the caller's environment minus EXTERNAL_SERVICES (so the bus is Kafka only when `env`
 * names KAFKA_BROKERS; NODE_OPTIONS in `env` reaches its engine processes too). Returns
 * { url, token, pid, home, store, stop, stdout(), stderrTail() }
 * (stdout: the first 64 KiB it printed, e.g. its `Engine i:` lines). `stop()` is idempotent: SIGTERM,
 * SIGKILL after 10 s, then the temp home is removed; it also runs (SIGKILL + removal) if the
 * bench process exits without calling it.
 */
export async function startPlatform({ env = {}, args = [], deadlineMs = READY_DEADLINE_MS, stopGraceMs } = {}) {
  const home = mkdtempSync(join(os.tmpdir(), 'herald-bench-'));
  const port = await freePort();
  const inherited = { ...process.env };
  for (const name of EXTERNAL_SERVICES) delete inherited[name];
  const childEnv = { ...inherited, HERALD_HOME: home, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env };
  const child = spawnHerald('start', childEnv, { args, stopGraceMs, cleanup: () => rmSync(home, { recursive: true, force: true }) });
  const ready = await child.waitReady(async (stdout) => {
    const url = stdout.match(/API:\s+(http\S+)/)?.[1];
    const token = stdout.match(/export HERALD_TOKEN=(\S+)/)?.[1];
    if (!url || !token) return null;
    const answer = await probeGet(`${url}/health/ready`);
    return answer?.status === 200 && answer.body.status === 'ok' ? { url, token, store: answer.body.store ?? 'unknown' } : null;
  }, deadlineMs);
  return { ...ready, pid: child.pid, home, stop: child.stop, stdout: child.stdout, stderrTail: child.stderrTail };
}

/**
 * POSTs a body streamed from an (async) iterable of strings/Buffers with node:http (chunked; no
 * client-side timeouts, unlike fetch's 300 s headers timeout). Resolves with the status, the
 * parsed JSON (or text) answer and the seconds from the request start to the end of the answer.
 */
export function postStream(url, { headers = {}, body }) {
  return new Promise((resolve, reject) => {
    const source = Readable.from(body, { objectMode: false });
    const started = performance.now();
    let answered = false;
    const req = request(url, { method: 'POST', headers, agent: false }, (res) => {
      answered = true;
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const seconds = (performance.now() - started) / 1000;
        source.destroy(); // an early (error) answer: stop generating
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode, json, text, seconds });
      });
    });
    // A write error after the server answered early (EPIPE/ECONNRESET) is not the story: the answer is.
    req.on('error', (error) => {
      if (!answered) reject(error);
    });
    source.on('error', (error) => req.destroy(error));
    source.pipe(req);
  });
}

/** A /proc/PID/status memory figure (VmHWM: peak RSS, VmRSS: current) in MiB; null when unreadable. */
function procStatusMiB(pid, field) {
  try {
    const kb = readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm'))?.[1];
    return kb ? Math.round((Number(kb) / 1024) * 10) / 10 : null;
  } catch {
    return null; // not Linux, or the process is gone
  }
}

/** Peak resident set size (VmHWM) of a live process, in MiB (since start or the last reset). */
export const peakRssMiB = (pid) => procStatusMiB(pid, 'VmHWM');
export const rssMiB = (pid) => procStatusMiB(pid, 'VmRSS');

/** Resets the VmHWM of `pid` to its current RSS (Linux: clear_refs 5), to measure one phase; false if refused. */
export function resetPeakRss(pid) {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

export function machine() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model?.trim() ?? 'unknown',
    cores: cpus.length,
    totalMemoryMiB: Math.round(os.totalmem() / 1024 / 1024),
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
  };
}

/** Writes bench/results/<name>.json (pretty, trailing newline); returns the path. */
export function writeResults(name, data) {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = join(RESULTS_DIR, `${name}.json`);
  writeFileSync(path, `${JSON.stringify(data, null, 2)}\n`);
  return path;
}

export const round = (value, digits = 3) => Math.round(value * 10 ** digits) / 10 ** digits;

/**
 * A small JSON client for the platform's API (bearer token). `call(method, path, body)` resolves
 * with the parsed answer and throws, with the status and the answer's text, unless the status is
 * one of `expect` (default: any 2xx). node:http, not fetch: fetch gives up on an answer whose
 * headers take over 300 s, and a bench must see (and time) a slow answer rather than fail on it.
 */
export function apiClient({ url, token }) {
  const agent = new Agent({ keepAlive: true });
  return function call(method, path, body, { expect } = {}) {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers = { authorization: `Bearer ${token}`, ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}) };
    return new Promise((resolve, reject) => {
      const req = request(`${url}${path}`, { method, headers, agent }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const ok = expect === undefined ? res.statusCode >= 200 && res.statusCode < 300 : [expect].flat().includes(res.statusCode);
          if (!ok) return reject(new Error(`${method} ${path}: HTTP ${res.statusCode}: ${text.slice(0, 500)}`));
          try {
            resolve(text ? JSON.parse(text) : undefined);
          } catch {
            resolve(text);
          }
        });
      });
      req.on('error', (error) => reject(new Error(`${method} ${path}: ${error.message}`)));
      req.end(payload);
    });
  };
}

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ: 100 on every Linux architecture Node runs on

/** utime + stime, in seconds, of a /proc/.../stat line (the name in parentheses may hold spaces). */
function statCpuSeconds(text) {
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' '); // fields[0] is the state (field 3)
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

/** CPU seconds (user + system, all threads) a live process has used; null when unreadable. */
export function processCpuSeconds(pid) {
  try {
    return statCpuSeconds(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

/** The threads of a live process: Map tid → { name, cpuSeconds } (Linux; empty when unreadable). */
export function threadCpu(pid) {
  const threads = new Map();
  let tids = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return threads;
  }
  for (const tid of tids) {
    try {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      threads.set(tid, { name, cpuSeconds: statCpuSeconds(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')) });
    } catch {
      // the thread ended meanwhile
    }
  }
  return threads;
}

/**
 * CPU used per thread between two threadCpu() snapshots, grouped by thread name (threads that
 * started in between count from zero), busiest first: [{ name, threads, cpuSeconds }].
 */
export function threadCpuDelta(before, after) {
  const byName = new Map();
  for (const [tid, { name, cpuSeconds }] of after) {
    const used = cpuSeconds - (before.get(tid)?.cpuSeconds ?? 0);
    const entry = byName.get(name) ?? { name, threads: 0, cpuSeconds: 0 };
    entry.threads++;
    entry.cpuSeconds += used;
    byName.set(name, entry);
  }
  return [...byName.values()].map((e) => ({ ...e, cpuSeconds: round(e.cpuSeconds, 2) })).sort((a, b) => b.cpuSeconds - a.cpuSeconds);
}

/** What a thread of a Node process does, from its name (Linux names threads; 15 characters). */
const THREAD_ROLES = [
  ['workerThreads', (name) => name === 'WorkerThread'],
  // V8's platform threads: the GC's parallel and concurrent tasks (marking, sweeping, scavenging
  // helpers) and background compilation (TurboFan, Maglev, WebAssembly tier-up), for every
  // isolate of the process; the delayed-task scheduler only posts their tasks.
  ['v8PlatformThreads', (name) => name === 'V8Worker' || name === 'DelayedTaskSche'],
  ['libuvThreads', (name) => name === 'libuv-worker'],
  ['nodeInspector', (name) => name === 'SignalInspector'],
];

/**
 * The CPU a Node process used between two threadCpu() snapshots, by what its threads do:
 * { mainThread (the thread whose id is the pid), workerThreads (worker_threads), v8PlatformThreads
 * (GC helpers and background compilation), libuvThreads, nodeInspector, nativeLibraryThreads
 * (every other thread: threads a native library started, e.g. chDB's ClickHouse pools; those it
 * starts from the main thread keep the name "MainThread") }, in seconds, with thread counts.
 */
export function threadRoles(pid, before, after) {
  const roles = { mainThread: null, workerThreads: null, v8PlatformThreads: null, libuvThreads: null, nodeInspector: null, nativeLibraryThreads: null };
  const totals = Object.fromEntries(Object.keys(roles).map((k) => [k, { cpuSeconds: 0, threads: 0 }]));
  for (const [tid, { name, cpuSeconds }] of after) {
    const role = Number(tid) === pid ? 'mainThread' : (THREAD_ROLES.find(([, test]) => test(name))?.[0] ?? 'nativeLibraryThreads');
    totals[role].cpuSeconds += cpuSeconds - (before.get(tid)?.cpuSeconds ?? 0);
    totals[role].threads++;
  }
  for (const [role, t] of Object.entries(totals)) roles[role] = { cpuSeconds: round(t.cpuSeconds, 2), threads: t.threads };
  return roles;
}

/** Microseconds of the monotonic clock that V8's CPU profiles use (the same in every process of the machine). */
export const monotonicMicros = () => Number(process.hrtime.bigint() / 1000n);

/**
 * This machine's RSA-2048 signing ceiling: `openssl speed -seconds <s> rsa2048` (one process; sign/s
 * over its user CPU time, so other work on the machine barely moves it) × the cores. Null (with
 * the reason) when openssl is missing or prints no rsa 2048 line.
 */
export function rsa2048SigningCeiling({ seconds = 3 } = {}) {
  const run = spawnSync('openssl', ['speed', '-seconds', String(seconds), 'rsa2048'], { encoding: 'utf8', timeout: (seconds * 4 + 30) * 1000 });
  const line = run.stdout?.match(/^rsa\s+2048 bits\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)\s*$/m);
  if (run.error || !line) return { signsPerSecond: null, error: run.error?.message ?? `openssl speed printed no rsa 2048 line (exit ${run.status})` };
  const perCore = Number(line[1]);
  const cores = os.availableParallelism();
  return {
    signsPerSecond: Math.round(perCore * cores),
    signsPerSecondOneCore: perCore,
    cores,
    version: spawnSync('openssl', ['version'], { encoding: 'utf8' }).stdout?.trim() ?? null,
    command: `openssl speed -seconds ${seconds} rsa2048 (sign/s, one process) × ${cores} cores`,
  };
}

// ---- split roles on PostgreSQL: `herald gateway` / `herald engine`, smtp-sink, a bench database ----

/**
 * Starts `herald <command>` (e.g. 'gateway' or 'engine') with the given env on top of the
 * caller's (minus the names in `unset`), in `home` (a HERALD_HOME the
 * caller owns and removes: processes that share it share its generated secrets). Waits until
 * every regex of `waitFor` matches stdout, then, with `readyPath`, until GET <url><readyPath>
 * answers 200. Returns { pid, matches, stop, stderrTail(), exited() }; `stop()` is idempotent
 * (SIGTERM, SIGKILL after 10 s); the child is SIGKILLed if the bench exits without stopping it.
 */
export async function startHerald(command, { env = {}, unset = [], home, waitFor = [], url, readyPath, deadlineMs = READY_DEADLINE_MS } = {}) {
  if (!home) throw new Error('startHerald: pass a HERALD_HOME directory');
  const childEnv = { ...process.env, HERALD_HOME: home, HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env };
  for (const name of unset) delete childEnv[name];
  const child = spawnHerald(command, childEnv);
  let matches = null;
  await child.waitReady(async (stdout) => {
    if (!matches) {
      const found = waitFor.map((re) => stdout.match(re));
      if (found.every(Boolean)) matches = found;
    }
    if (!matches) return false;
    return readyPath ? (await probeGet(`${url}${readyPath}`))?.status === 200 : true;
  }, deadlineMs);
  return { pid: child.pid, matches, stop: child.stop, stderrTail: child.stderrTail, exited: child.exited };
}

const SMTP_SINK_PATHS = ['/usr/sbin/smtp-sink', '/usr/bin/smtp-sink', '/usr/local/sbin/smtp-sink'];

/** Postfix's smtp-sink, installed by infra/postfix/install.sh when missing; returns its path. */
export function ensureSmtpSink() {
  const found = SMTP_SINK_PATHS.find((p) => existsSync(p));
  if (found) return found;
  const script = join(ROOT, 'infra', 'postfix', 'install.sh');
  const run = spawnSync('bash', [script], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`${script} exited with ${run.status}`);
  const sink = SMTP_SINK_PATHS.find((p) => existsSync(p)) ?? run.stdout.trim().split('\n')[0];
  if (!sink || !existsSync(sink)) throw new Error(`${script} installed no smtp-sink: ${run.stdout}`);
  return sink;
}

/**
 * smtp-sink on a free loopback port (`-c -u nobody -m 1000 127.0.0.1:PORT 1000`: accepts and
 * discards), its running counters written to a file in `dir`. Returns { port, pid, messages(),
 * bytesRead(), cpuSeconds(), stop() }; messages() is the number of messages it has received so far.
 */
export async function startSmtpSink(dir, { label = 'sink', concurrency = 1000, backlog = 1000, bin = ensureSmtpSink() } = {}) {
  const port = await freePort();
  const countsFile = join(dir, `${label}-counts.txt`);
  const fd = openSync(countsFile, 'w');
  const privileges = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
  const args = ['-c', ...privileges, '-m', String(concurrency), `127.0.0.1:${port}`, String(backlog)];
  const child = spawn(bin, args, { stdio: ['ignore', fd, 'pipe'] });
  closeSync(fd);
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s) => {
    stderr = (stderr + s).slice(-4096);
  });
  let exited = null;
  const gone = new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve();
    }),
  );
  const kill = () => {
    if (!exited) child.kill('SIGKILL');
  };
  process.once('exit', kill);
  const stop = async () => {
    process.off('exit', kill);
    if (exited) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await gone;
    clearTimeout(timer);
  };
  // Ready once it greets with 220.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const greeted = await smtpGreets(port);
    if (greeted) break;
    if (exited || Date.now() > deadline) {
      await stop();
      throw new Error(`${bin} ${args.join(' ')}: nothing answers SMTP on port ${port}${exited ? ` (exited: ${JSON.stringify(exited)})` : ''}\n${stderr}`);
    }
    await sleep(50);
  }
  const messages = () => sinkMessageCount(countsFile);
  /** Bytes the sink has read (from its sockets: SMTP commands and message data), via /proc. */
  const bytesRead = () => {
    try {
      return Number(readFileSync(`/proc/${child.pid}/io`, 'utf8').match(/^rchar:\s+(\d+)/m)?.[1] ?? Number.NaN);
    } catch {
      return Number.NaN;
    }
  };
  return { port, pid: child.pid, args, messages, bytesRead, cpuSeconds: () => processCpuSeconds(child.pid), stop, stderr: () => stderr };
}

/**
 * A fresh database `<prefix>_<random>` on the PostgreSQL server at `serverUrl` (the `pg`
 * package). Returns { url, name, drop() }: drop() (idempotent) removes it WITH (FORCE); if the
 * bench exits without dropping it, a best-effort synchronous `psql` drop runs on exit.
 */
export async function createBenchDatabase(serverUrl, prefix = 'bench') {
  const { default: pg } = await import('pg');
  const name = `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  let dropped = false;
  const dropSync = () => {
    if (dropped) return;
    spawnSync('psql', [serverUrl, '-q', '-c', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`], { stdio: 'ignore' });
  };
  process.once('exit', dropSync);
  const drop = async () => {
    if (dropped) return;
    const client = new pg.Client({ connectionString: serverUrl });
    await client.connect();
    try {
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      dropped = true;
      process.off('exit', dropSync);
    } finally {
      await client.end();
    }
  };
  return { url: url.toString(), name, drop };
}

/**
 * The PostgreSQL server of a bench run: BENCH_PG_URL when set, else the one infra/postgres/start.sh
 * starts or finds running (its dev server on 127.0.0.1:54329; idempotent). A server URL, on which
 * createBenchDatabase() makes a throwaway database.
 */
export function postgresServerUrl() {
  if (process.env.BENCH_PG_URL) return process.env.BENCH_PG_URL;
  const script = join(ROOT, 'infra', 'postgres', 'start.sh');
  const run = spawnSync('bash', [script], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`${script} exited with ${run.status}`);
  const url = run.stdout.trim().split('\n').at(-1);
  if (!url?.startsWith('postgres')) throw new Error(`${script} printed no URL: ${run.stdout}`);
  return url;
}

/** /proc/PID/stat fields after the name: [state, ppid, ...]; null when unreadable. */
function statFields(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/**
 * The postmaster's pid of the PostgreSQL server behind `databaseUrl` when it runs on this machine
 * (the parent of a backend: pg_backend_pid()), else null (a remote server, or /proc unreadable).
 */
export async function postmasterPid(databaseUrl) {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query('SELECT pg_backend_pid() AS pid');
    const ppid = Number(statFields(rows[0].pid)?.[1]);
    const parent = statFields(ppid);
    return parent && readFileSync(`/proc/${ppid}/comm`, 'utf8').trim().startsWith('postgres') ? ppid : null;
  } catch {
    return null;
  } finally {
    await client.end();
  }
}

/**
 * CPU seconds a local PostgreSQL server has used so far, from /proc (Linux):
 * - total: the postmaster itself, the children it has reaped (cutime + cstime: backends that
 *   ended) and its live children (backends, WAL writer, checkpointer, autovacuum...): every
 *   database of the server, so other work on the same server counts too;
 * - database: the live backends connected to `database` (their `postgres: user DB ...` title);
 *   a backend that ends between two readings takes its share out of this figure (not of total).
 * Null when the postmaster is unreadable. Subtract two readings to get a phase's figure.
 */
export function postgresCpuSeconds(postmaster, database) {
  const own = statFields(postmaster);
  if (!own) return null;
  const ticks = (f, ...i) => i.reduce((sum, n) => sum + Number(f[n]), 0);
  let total = ticks(own, 11, 12, 13, 14); // utime, stime, cutime, cstime
  let ofDatabase = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const f = statFields(entry);
    if (!f || Number(f[1]) !== postmaster) continue;
    const used = ticks(f, 11, 12);
    total += used;
    if (database) {
      try {
        const title = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
        if (title.split(' ').includes(database)) ofDatabase += used;
      } catch {
        // the backend ended meanwhile
      }
    }
  }
  return { total: total / CLOCK_TICKS_PER_SECOND, database: database ? ofDatabase / CLOCK_TICKS_PER_SECOND : null };
}

/**
 * The largest peak RSS (VmHWM: since each process started) among a local PostgreSQL server's
 * processes (the postmaster and its children), in MiB; null when unreadable. Shared buffers count
 * in every process that touched them, so the processes' figures do not add up.
 */
export function postgresPeakRssMiB(postmaster) {
  const peaks = [peakRssMiB(postmaster)];
  for (const entry of readdirSync('/proc')) {
    if (/^\d+$/.test(entry) && Number(statFields(entry)?.[1]) === postmaster) peaks.push(peakRssMiB(entry));
  }
  const known = peaks.filter((v) => v !== null);
  return known.length ? Math.max(...known) : null;
}

/** True when something on 127.0.0.1:port answers with an SMTP 220 greeting (one probe). */
export function smtpGreets(port) {
  return new Promise((resolve) => {
    const socket = connectTcp(port, '127.0.0.1');
    socket.setTimeout(1_000);
    socket.once('data', (data) => {
      socket.end('QUIT\r\n');
      resolve(data.toString().startsWith('220'));
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** A positive integer from the environment, or the fallback; a clear error when malformed. */
export function intFromEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got '${raw}'`);
  return value;
}

/** The last message count smtp-sink -c wrote to its counts file (it rewrites the line in place). */
export function sinkMessageCount(countsFile) {
  const fd = openSync(countsFile, 'r');
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(size, 256);
    const buffer = Buffer.alloc(length);
    readSync(fd, buffer, 0, length, size - length);
    const all = [...buffer.toString('latin1').matchAll(/mesg=(\d+)/g)];
    return all.length ? Number(all.at(-1)[1]) : 0;
  } finally {
    closeSync(fd);
  }
}

// ---- the bus of a run: `--bus in-process` (default) or `--bus kafka` ----------------------------

/**
 * The bench's command-line options: `--bus` (in-process by default, or kafka) and the bench's own
 * `options` (node:util parseArgs shapes); an unknown option is an error.
 */
export function benchArgs(options = {}, args = process.argv.slice(2)) {
  const { values } = parseArgs({ args, options: { bus: { type: 'string', default: 'in-process' }, ...options } });
  if (!['in-process', 'kafka'].includes(values.bus)) throw new Error(`--bus must be in-process or kafka, got '${values.bus}'`);
  return values;
}

/** The bus named on the command line (`--bus kafka`, `--bus=kafka`); 'in-process' by default. */
export function busFromArgs(args = process.argv.slice(2)) {
  return benchArgs({}, args).bus;
}

const KAFKA_SCRIPTS = join(ROOT, 'infra', 'kafka');

/** True when something accepts TCP connections on 127.0.0.1:port. */
function portOpen(port) {
  return new Promise((resolve) => {
    const socket = connectTcp(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * The Kafka broker of a bench run: the one of KAFKA_BROKERS when set, else a single-node broker
 * started here with infra/kafka/start.sh on free ports (HERALD_KAFKA_PORT when set; a port that
 * already answers is refused rather than shared, since this run stops what it starts).
 * Returns { brokers, startedHere, pid, startSeconds, env(label), stop() } (pid: the broker's process
 * when it runs on this machine, else null):
 * - env(label): KAFKA_BROKERS and a KAFKA_TOPIC_PREFIX of its own (`bench-<run>-<label>.`) for
 *   one platform or bus of the run, so that runs and phases never see each other's topics;
 * - pid: the broker's JVM when started here, or the local process of a single KAFKA_BROKERS
 *   broker on loopback (its CPU can be read; a shared broker's counts its other clients too);
 * - stop(): idempotent. A broker started here is stopped and its data removed
 *   (stop.sh --clean), also if the bench exits without calling stop(); on a broker of
 *   KAFKA_BROKERS the run's topics are deleted, nothing else is touched.
 */
export async function startKafka({ log = (message) => process.stderr.write(`${message}\n`) } = {}) {
  const run = `bench-${new Date().toISOString().replace(/\D/g, '').slice(0, 14)}-${Math.random().toString(36).slice(2, 6)}`;
  const prefixes = [];
  const env = (label) => {
    const prefix = `${run}-${label}.`;
    prefixes.push(prefix);
    return { KAFKA_BROKERS: brokers.join(','), KAFKA_TOPIC_PREFIX: prefix };
  };
  let brokers = (process.env.KAFKA_BROKERS ?? '').split(',').map((b) => b.trim()).filter(Boolean);
  let stopping;

  if (brokers.length > 0) {
    log(`kafka: using KAFKA_BROKERS=${brokers.join(',')}; topics of this run are prefixed '${run}-'`);
    const stop = () => {
      stopping ??= deleteTopics(brokers, prefixes).catch((error) => log(`kafka: could not delete the run's topics: ${error.message}`));
      return stopping;
    };
    // A broker on this machine: its CPU can be read, though it also counts every other client of it.
    const [host, port] = brokers.length === 1 ? brokers[0].split(':') : [];
    const pid = ['127.0.0.1', 'localhost'].includes(host) ? listeningPid(Number(port)) : null;
    return { brokers, startedHere: false, pid, startSeconds: null, env, stop };
  }

  const port = process.env.HERALD_KAFKA_PORT ? Number(process.env.HERALD_KAFKA_PORT) : await freePort();
  let controllerPort = await freePort();
  while (controllerPort === port) controllerPort = await freePort();
  if (await portOpen(port)) throw new Error(`port ${port} is in use: set KAFKA_BROKERS to bench on a running broker, or another HERALD_KAFKA_PORT`);
  // Only the scripts' own settings: a HERALD_KAFKA_DIR of the caller's shell would point them
  // at another broker's data (and stop.sh would stop that broker).
  const scriptEnv = { ...process.env, HERALD_KAFKA_PORT: String(port), HERALD_KAFKA_CONTROLLER_PORT: String(controllerPort) };
  delete scriptEnv.HERALD_KAFKA_DIR;
  const stopArgs = [join(KAFKA_SCRIPTS, 'stop.sh'), '--clean'];
  const stopSync = () => spawnSync('bash', stopArgs, { env: scriptEnv, stdio: 'ignore' });
  process.once('exit', stopSync);

  log(`kafka: starting a broker on 127.0.0.1:${port} with infra/kafka/start.sh`);
  const started = performance.now();
  const { code, stdout } = await new Promise((resolve, reject) => {
    const child = spawn('bash', [join(KAFKA_SCRIPTS, 'start.sh')], { env: scriptEnv, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s) => {
      out += s;
    });
    child.once('error', reject);
    child.once('exit', (exitCode) => resolve({ code: exitCode, stdout: out }));
  });
  const startSeconds = round((performance.now() - started) / 1000, 2);
  if (code !== 0 || !stdout.trim()) {
    stopSync();
    process.off('exit', stopSync);
    throw new Error(`infra/kafka/start.sh exited with ${code} (Kafka needs Java 17+ and Maven, or cached jars; or set KAFKA_BROKERS)`);
  }
  brokers = [stdout.trim().split('\n').at(-1)];
  let pid = null;
  try {
    pid = Number(readFileSync(join(readFileSync(`/tmp/herald-kafka-${port}.dir`, 'utf8').trim(), 'kafka.pid'), 'utf8')) || null;
  } catch {
    // the pid is only used to read the broker's CPU
  }
  log(`kafka: broker ${brokers[0]} ready in ${startSeconds} s (pid ${pid}); topics of this run are prefixed '${run}-'`);
  const stop = () => {
    stopping ??= new Promise((resolve) => {
      const child = spawn('bash', stopArgs, { env: scriptEnv, stdio: ['ignore', 'ignore', 'inherit'] });
      child.once('error', () => resolve());
      child.once('exit', () => resolve());
    }).then(() => process.off('exit', stopSync));
    return stopping;
  };
  return { brokers, startedHere: true, pid, startSeconds, env, stop };
}

/** The pid of the process listening on 127.0.0.1:port or *:port (`ss -ltnp`), or null. */
function listeningPid(port) {
  const run = spawnSync('ss', ['-Hltnp', `sport = :${port}`], { encoding: 'utf8' });
  const pid = Number(run.stdout?.match(/pid=(\d+)/)?.[1]);
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

/** Deletes the topics whose names start with one of `prefixes` (best effort, kafkajs admin). */
async function deleteTopics(brokers, prefixes) {
  if (prefixes.length === 0) return;
  const { default: kafkajs } = await import('kafkajs');
  const admin = new kafkajs.Kafka({ clientId: 'herald-bench', brokers, logLevel: kafkajs.logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const topics = (await admin.listTopics()).filter((topic) => prefixes.some((prefix) => topic.startsWith(prefix)));
    if (topics.length > 0) await admin.deleteTopics({ topics });
  } finally {
    await admin.disconnect();
  }
}
