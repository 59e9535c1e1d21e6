// Shared helpers for the benchmarks: run the platform as a child process on the embedded
// defaults, stream request bodies, read peak memory, describe the machine, write results.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { createServer } from 'node:net';
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
