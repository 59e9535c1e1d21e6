// The platform as a user runs it: `herald` commands as real processes (the built CLI, found by
// package resolution of @herald/cli/bin/herald.js), driven over HTTP as a user would.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { eventually, freePort, tempDir } from '@herald/testing-base';
import { expect } from '@jest/globals';

/** The repository root: where a spawned script resolves the workspace packages. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface Platform {
  child: ChildProcess;
  /** The API's base URL it printed (empty for `herald engine`). */
  url: string;
  /** The admin token it printed (empty for `herald engine`). */
  token: string;
  /** What it wrote on stderr (its logs), chunk by chunk. */
  logs: string[];
  exited: Promise<number | null>;
  /** Everything it printed on stdout so far. */
  stdout(): string;
}

/**
 * The path of the `herald` command (apps/cli/bin/herald.js), which runs the compiled CLI: fails,
 * saying so, when the CLI is not built.
 */
export function heraldBin(): string {
  // NOTE: resolved, not imported: a test process spawns the command; the kit depends on no app.
  const bin = createRequire(import.meta.url).resolve('@herald/cli/bin/herald.js');
  if (!existsSync(join(dirname(bin), '../dist/main.js'))) throw new Error('apps/cli is not built: run `npm run build` (npm test does it first)');
  return bin;
}

/** The environment of a `herald` process for a test: a fresh HERALD_HOME (herald-<name>-…), a free PORT, then `extra`. */
export async function platformEnv(name: string, extra: Record<string, string> = {}): Promise<Record<string, string>> {
  return { HERALD_HOME: tempDir(name), PORT: String(await freePort()), ...extra };
}

/** Runs `herald <args>` to its end (killed after `timeoutMs`): its exit code and output. */
export async function runHerald(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 30_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const bin = heraldBin();
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env: { PATH: process.env.PATH, ...env }, timeout: timeoutMs }, (error, stdout, stderr) => {
      const code = error ? ((error as { code?: unknown }).code as number | null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Runs `herald <command>` until it exits, or until it is up (then stops it): a command that
 * should refuse to start and does not shows as `up: true`.
 */
export function runUntilExit(command: string[], env: Record<string, string>): Promise<{ code: number | null; up: boolean; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [heraldBin(), ...command], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let up = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      if (!up && /Herald is up/.test(stdout)) {
        up = true;
        child.kill('SIGKILL');
      }
    });
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, up, stdout, stderr });
    });
  });
}

/**
 * Starts `herald <command> <args>` and resolves once it says it is up (the token it prints; the
 * "Herald is up" line of `herald engine`). Fails with what it printed if it exits first, or is
 * not up within 3 minutes.
 */
export async function startPlatform(env: Record<string, string>, command = 'start', args: string[] = []): Promise<Platform> {
  const child = spawn(process.execPath, [heraldBin(), command, ...args], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  let stdout = '';
  child.stderr.on('data', (chunk) => logs.push(String(chunk)));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const ready = command === 'engine' ? /Herald is up/ : /export HERALD_TOKEN=(\S+)/;
  await new Promise<void>((resolve, reject) => {
    const fail = (why: string) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`herald ${command} ${why}:\n${stdout}\n${logs.join('')}`));
    };
    // NOTE: after a kill -9, PGlite replays its WAL at start: that can take a while on a busy machine.
    const timer = setTimeout(() => fail('did not come up within 180 s'), 180_000);
    const onClose = (code: number | null) => fail(`exited (${code}) before it was up`);
    child.once('close', onClose);
    child.stdout.on('data', (chunk) => {
      const before = ready.test(stdout);
      stdout += chunk;
      if (!before && ready.test(stdout)) {
        clearTimeout(timer);
        child.off('close', onClose);
        resolve();
      }
    });
  });
  return {
    child,
    url: /API:\s+(\S+)/.exec(stdout)?.[1] ?? '',
    token: /export HERALD_TOKEN=(\S+)/.exec(stdout)?.[1] ?? '',
    logs,
    exited,
    stdout: () => stdout,
  };
}

/**
 * Sends `signal` and waits for the process to exit, at most `timeoutMs`: past that it is killed
 * and the wait fails with the end of what it logged (a graceful stop that hangs says where).
 */
export async function stopPlatform(p: Platform, signal: NodeJS.Signals, timeoutMs = 90_000): Promise<number | null> {
  if (p.child.exitCode === null) p.child.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      p.child.kill('SIGKILL');
      const tail = p.logs.join('').split('\n').slice(-30).join('\n');
      reject(new Error(`herald did not exit within ${timeoutMs} ms of ${signal}; its last logs:\n${tail}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([p.exited, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** The `herald` processes a suite starts, ended together in its after-hook. */
export class Platforms {
  private readonly started: Platform[] = [];

  /** startPlatform, remembered for end(). */
  async start(env: Record<string, string>, command = 'start', args: string[] = []): Promise<Platform> {
    const p = await startPlatform(env, command, args);
    this.started.push(p);
    return p;
  }

  /** Every process started and not yet ended, in order. */
  get all(): readonly Platform[] {
    return this.started;
  }

  /** Sends `signal` to each process still running, waits until every one has exited, and forgets them. */
  async end(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    for (const p of this.started.splice(0)) {
      if (p.child.exitCode === null) p.child.kill(signal);
      await p.exited;
    }
  }
}

/** An API call with the platform's admin token; the body is parsed JSON (undefined when empty). */
export async function call(p: Platform, method: string, path: string, body?: unknown, contentType = 'application/json') {
  const response = await fetch(p.url + path, {
    method,
    headers: { authorization: `Bearer ${p.token}`, ...(body === undefined ? {} : { 'content-type': contentType }) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

/** Polls the delivery until it is in `state`; on a timeout, says the state (and reason) it was last seen in. */
export async function waitForDeliveryState(p: Platform, id: string, state: string, timeoutMs = 60_000): Promise<void> {
  let seen = 'not read';
  await eventually(
    async () => {
      const { body } = await call(p, 'GET', `/v1/deliveries/${id}`);
      seen = `'${body?.state}'${body?.stateReason ? ` (${body.stateReason})` : ''}`;
      return body?.state === state;
    },
    { timeoutMs, what: () => `delivery ${id} to be '${state}' (last seen ${seen})` },
  );
}

/** The count of each status in a delivery's sending logs (every page). */
export async function ledgerStatuses(p: Platform, id: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  let after: string | null = null;
  do {
    const page = await call(p, 'GET', `/v1/deliveries/${id}/logs?limit=1000${after ? `&after=${after}` : ''}`);
    for (const entry of page.body.items as { status: string }[]) counts[entry.status] = (counts[entry.status] ?? 0) + 1;
    after = page.body.next;
  } while (after);
  return counts;
}

export interface SendOptions {
  /** Profile ids are prefix + a 6-digit number, addresses prefix + number @example.com. */
  prefix: string;
  count: number;
  html?: string;
}

/** Imports `count` recipients, then creates, prepares, approves and confirms (OK) a delivery to them. */
export async function startSend(p: Platform, options: SendOptions): Promise<string> {
  const { prefix, count } = options;
  const rows = Array.from({ length: count }, (_, i) =>
    JSON.stringify({ id: `${prefix}${String(i).padStart(6, '0')}`, email: `${prefix}${i}@example.com`, firstName: `N${i}`, attributes: { run: prefix } }),
  );
  expect((await call(p, 'POST', '/v1/profiles/import', rows.join('\n'), 'application/x-ndjson')).body.imported).toBe(count);
  const audience = await call(p, 'POST', '/v1/audiences', { name: prefix, filter: { run: prefix } });
  const delivery = await call(p, 'POST', '/v1/deliveries', {
    name: `send ${prefix}`,
    channel: 'email',
    audienceId: audience.body.id,
    content: {
      from: 'news@shop.example',
      subject: 'Hi {{profile.firstName}}',
      html: options.html ?? '<p>Hello {{profile.firstName}} <a href="https://shop.example/x">x</a></p>',
    },
  });
  const id = delivery.body.id as string;
  expect((await call(p, 'POST', `/v1/deliveries/${id}/prepare`)).body.preparation.toSend).toBe(count);
  await call(p, 'POST', `/v1/deliveries/${id}/approve`);
  const confirm = await call(p, 'POST', `/v1/deliveries/${id}/confirmations`);
  expect((await call(p, 'POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`)).status).toBe(202);
  return id;
}

/**
 * Brings the KPI store of a running `herald start` (or gateway) up to date with every event
 * recorded so far, without touching the counters of `deliveryId`: Compute stats on a draft made
 * for the purpose on the same audience (it relays the outbox and flushes the KPI consumer for all
 * deliveries, and reconciles only the draft's empty counters). A positive signal that whatever was
 * on its way to the delivery's counters has arrived, where a test would otherwise wait "long enough".
 */
export async function catchUpKpis(p: Platform, deliveryId: string): Promise<void> {
  const { body: delivery } = await call(p, 'GET', `/v1/deliveries/${deliveryId}`);
  const probe = await call(p, 'POST', '/v1/deliveries', {
    name: 'KPI catch-up probe',
    channel: 'email',
    audienceId: delivery.audienceId,
    content: { from: 'news@shop.example', subject: 'probe', text: 'probe' },
  });
  if (probe.status !== 201) throw new Error(`the catch-up probe delivery was refused: ${JSON.stringify(probe.body)}`);
  const stats = await call(p, 'POST', `/v1/deliveries/${probe.body.id}/compute-stats`);
  if (stats.status !== 200) throw new Error(`Compute stats on the catch-up probe failed: ${JSON.stringify(stats.body)}`);
}

/** The base URL of a process's /health and /metrics: what an engine printed, else the API URL. */
export function metricsBase(p: Platform): string {
  return /Health, metrics:\s+(\S+)\/health\/ready/.exec(p.stdout())?.[1] ?? p.url;
}

/** The value of one sample of a Prometheus text exposition (`name{labels}` as printed), or undefined. */
export function metricSample(metrics: string, series: string): number | undefined {
  const line = metrics.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/**
 * Runs statements on the chDB of a stopped platform, in a child process (chDB binds one data
 * directory per process); answers the rows of each (none for a statement that returns none).
 */
export function onKpiStore(home: string, statements: string[]): Promise<Record<string, unknown>[][]> {
  const script = `
    import { openKpiStore } from '@herald/kpi-store';
    const store = openKpiStore({ dataDir: process.argv[1] });
    const answers = [];
    for (const query of JSON.parse(process.argv[2])) {
      if (!/^\\s*SELECT/i.test(query)) {
        await store.client.command({ query });
        answers.push([]);
        continue;
      }
      const rs = await store.client.query({ query, format: 'JSONEachRow', clickhouse_settings: { output_format_json_quote_64bit_integers: 0 } });
      answers.push(await rs.json());
    }
    await store.close();
    console.log(JSON.stringify(answers));`;
  return new Promise((resolve, reject) => {
    // The script resolves @herald/kpi-store (built) from the repository root.
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, join(home, 'clickhouse'), JSON.stringify(statements)], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 120_000,
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`chDB statements failed (${code}): ${err}`));
      resolve(JSON.parse(out.trim().split('\n').at(-1)!));
    });
  });
}

/** Counts of a delivery's events in the chDB of a stopped platform. */
export async function kpiEventCounts(home: string, deliveryId: string): Promise<{ n: number; distinct: number; byType: Record<string, number> }> {
  const [rows] = await onKpiStore(home, [
    `SELECT toString(type) AS type, count() AS n, uniqExact(event_id) AS d FROM herald.message_events WHERE delivery_id = '${deliveryId}' GROUP BY type`,
  ]);
  const counts = rows as { type: string; n: number; d: number }[];
  return {
    n: counts.reduce((s, r) => s + Number(r.n), 0),
    distinct: counts.reduce((s, r) => s + Number(r.d), 0),
    byType: Object.fromEntries(counts.map((r) => [r.type, Number(r.n)])),
  };
}
