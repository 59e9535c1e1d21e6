// The platform as a user runs it: `herald` commands as real processes, driven over HTTP.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERALD = fileURLToPath(new URL('../../cli/bin/herald.js', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface Platform {
  child: ChildProcess;
  url: string;
  token: string;
  logs: string[];
  exited: Promise<number | null>;
  /** Everything it printed on stdout so far. */
  stdout(): string;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Runs `herald <command>` until it exits, or until it is up (then stops it): a command that
 * should refuse to start and does not shows as `up: true`.
 */
export function runUntilExit(command: string[], env: Record<string, string>): Promise<{ code: number | null; up: boolean; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [HERALD, ...command], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
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

export async function startPlatform(env: Record<string, string>, command = 'start', args: string[] = []): Promise<Platform> {
  const child = spawn(process.execPath, [HERALD, command, ...args], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  let stdout = '';
  child.stdout!.on('data', (chunk) => {
    stdout += chunk;
  });
  child.stderr!.on('data', (chunk) => logs.push(String(chunk)));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // NOTE: after a kill -9, PGlite replays its WAL at start: that can take a while on a busy machine.
  const deadline = Date.now() + 180_000;
  const ready = command === 'engine' ? /Herald is up/ : /export HERALD_TOKEN=(\S+)/;
  while (!ready.test(stdout)) {
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error(`herald start did not come up:\n${stdout}\n${logs.join('')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
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

export async function call(p: Platform, method: string, path: string, body?: unknown, contentType = 'application/json') {
  const response = await fetch(p.url + path, {
    method,
    headers: { authorization: `Bearer ${p.token}`, ...(body === undefined ? {} : { 'content-type': contentType }) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

export async function until(predicate: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

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


/** The open pixel and the first click link of a captured message (.eml file; its quoted-printable body decoded). */
export function trackingLinks(file: string): { pixel: string; click: string } {
  const raw = readFileSync(file, 'utf8')
    .replace(/=\r\n/g, '')
    .replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
  return { pixel: /http:\/\/[^/]+\/t\/o\/[\w.-]+/.exec(raw)![0], click: /http:\/\/[^/]+\/t\/c\/[\w.-]+/.exec(raw)![0] };
}

/** Fetches a tracking link as a person's browser would (not a known machine). */
export const hit = (url: string) => fetch(url, { redirect: 'manual', headers: { 'user-agent': 'Mozilla/5.0' } });

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
