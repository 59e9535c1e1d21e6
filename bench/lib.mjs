// Shared helpers for the benchmarks: run the platform as a child process on the embedded
// defaults, stream request bodies, read peak memory, describe the machine, write results.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, fstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect as connectTcp, createServer } from 'node:net';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

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
 * Starts `herald start` with a fresh temporary HERALD_HOME and a free port, and waits for its
 * token line and for /health/ready. Returns { url, token, pid, home, store, stop, stderrTail() }.
 * `stop()` is idempotent: SIGTERM, SIGKILL after 10 s, then the temp home is removed; it also
 * runs (SIGKILL + removal) if the bench process exits without calling it.
 */
export async function startPlatform({ env = {}, deadlineMs = READY_DEADLINE_MS } = {}) {
  const home = mkdtempSync(join(os.tmpdir(), 'herald-bench-'));
  const port = await freePort();
  const childEnv = { ...process.env, HERALD_HOME: home, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env };
  // The embedded default: no external store, bus or identity provider from the caller's shell.
  for (const name of ['DATABASE_URL', 'KAFKA_BROKERS', 'CLICKHOUSE_URL', 'HERALD_JWKS_URL']) delete childEnv[name];

  // process.execPath: the Node that runs the bench (Node 24 under npm scripts) runs the platform too.
  const child = spawn(process.execPath, [HERALD_BIN, 'start'], { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderrTail = '';
  let exited = null; // { code, signal } once the child is gone
  const exitedPromise = new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    }),
  );
  // Keep draining both pipes for the child's whole life, or it blocks once a pipe buffer fills.
  child.stdout.setEncoding('utf8').on('data', (s) => {
    if (stdout.length < 65_536) stdout += s;
  });
  child.stderr.setEncoding('utf8').on('data', (s) => {
    stderrTail = (stderrTail + s).slice(-TAIL_BYTES);
  });

  const removeHome = () => rmSync(home, { recursive: true, force: true });
  const onExit = () => {
    if (!exited) child.kill('SIGKILL');
    removeHome();
  };
  process.once('exit', onExit);
  // Ctrl-C / kill of the bench: exit through the 'exit' hook above so nothing is left behind.
  const onSignal = (signal) => process.exit(signal === 'SIGINT' ? 130 : 143);
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);

  let stopping;
  const stop = () => {
    stopping ??= (async () => {
      if (!exited) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
        await exitedPromise;
        clearTimeout(timer);
      }
      process.off('exit', onExit).off('SIGINT', onSignal).off('SIGTERM', onSignal);
      removeHome();
      return exited;
    })();
    return stopping;
  };

  const fail = async (why) => {
    const status = exited ? ` (the platform exited: code ${exited.code}, signal ${exited.signal})` : '';
    await stop();
    const tail = stderrTail.trim() ? `\n--- platform stderr (tail) ---\n${stderrTail.trim()}` : '\n(the platform wrote nothing on stderr)';
    throw new Error(`herald start: ${why}${status}${tail}`);
  };

  const deadline = Date.now() + deadlineMs;
  let url;
  let token;
  let store;
  while (!store) {
    if (exited) return fail('it exited before it was ready');
    if (Date.now() > deadline) return fail(`not ready within ${deadlineMs / 1000} s`);
    url ??= stdout.match(/API and console:\s+(http\S+)/)?.[1];
    token ??= stdout.match(/export HERALD_TOKEN=(\S+)/)?.[1];
    if (url && token) {
      try {
        const res = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(2_000) });
        const body = await res.json().catch(() => ({}));
        if (res.status === 200 && body.status === 'ok') store = body.store ?? 'unknown';
      } catch {
        // not listening yet
      }
    }
    if (!store) await sleep(100);
  }
  return { url, token, pid: child.pid, home, store, stop, stderrTail: () => stderrTail };
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
  const child = spawn(process.execPath, [HERALD_BIN, command], { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderrTail = '';
  let exited = null;
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
  };
  process.once('exit', onExit);
  let stopping;
  const stop = () => {
    stopping ??= (async () => {
      if (!exited) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
        await exitedPromise;
        clearTimeout(timer);
      }
      process.off('exit', onExit);
      return exited;
    })();
    return stopping;
  };
  const fail = async (why) => {
    const status = exited ? ` (it exited: code ${exited.code}, signal ${exited.signal})` : '';
    await stop();
    const tail = stderrTail.trim() ? `\n--- herald ${command} stderr (tail) ---\n${stderrTail.trim()}` : '';
    throw new Error(`herald ${command}: ${why}${status}\n--- stdout ---\n${stdout.trim()}${tail}`);
  };
  const deadline = Date.now() + deadlineMs;
  let matches = null;
  let ready = false;
  while (!ready) {
    if (exited) return fail('it exited before it was ready');
    if (Date.now() > deadline) return fail(`not ready within ${deadlineMs / 1000} s`);
    if (!matches) {
      const found = waitFor.map((re) => stdout.match(re));
      if (found.every(Boolean)) matches = found;
    }
    if (matches && readyPath) {
      try {
        const res = await fetch(`${url}${readyPath}`, { signal: AbortSignal.timeout(2_000) });
        ready = res.status === 200;
      } catch {
        // not listening yet
      }
    } else if (matches) ready = true;
    if (!ready) await sleep(100);
  }
  return { pid: child.pid, matches, stop, stderrTail: () => stderrTail, exited: () => exited };
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
 * stop() }; messages() is the number of messages it has received so far.
 */
export async function startSmtpSink(dir, { label = 'sink', concurrency = 1000, backlog = 1000 } = {}) {
  const bin = ensureSmtpSink();
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
  return { port, pid: child.pid, args, messages, stop, stderr: () => stderr };
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
