// The platform as a user runs it (`herald start`, a real process on the embedded default),
// killed mid-send and restarted: every recipient is handled exactly once in the ledger, and the
// SMTP server on loopback sees duplicates only for messages in flight at a kill -9.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CaptureSink, startCaptureSink } from '@herald/capture-sink';
import { createTestDatabase, storeMatrix, type TestDatabase } from '@herald/testing';

const HERALD = fileURLToPath(new URL('../../cli/bin/herald.js', import.meta.url));
const RECIPIENTS = 20_000;

interface Platform {
  child: ChildProcess;
  url: string;
  token: string;
  logs: string[];
  exited: Promise<number | null>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function startPlatform(env: Record<string, string>, command = 'start'): Promise<Platform> {
  const child = spawn(process.execPath, [HERALD, command], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
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
    url: /API and console:\s+(\S+)/.exec(stdout)?.[1] ?? '',
    token: /export HERALD_TOKEN=(\S+)/.exec(stdout)?.[1] ?? '',
    logs,
    exited,
  };
}

async function call(p: Platform, method: string, path: string, body?: unknown, contentType = 'application/json') {
  const response = await fetch(p.url + path, {
    method,
    headers: { authorization: `Bearer ${p.token}`, ...(body === undefined ? {} : { 'content-type': contentType }) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

/** Imports the recipients, and creates, prepares, approves and confirms a delivery to them. */
async function startSend(p: Platform, prefix: string): Promise<string> {
  const rows = Array.from({ length: RECIPIENTS }, (_, i) =>
    JSON.stringify({ id: `${prefix}${String(i).padStart(6, '0')}`, email: `${prefix}${i}@example.com`, firstName: `N${i}`, attributes: { run: prefix } }),
  );
  expect((await call(p, 'POST', '/v1/profiles/import', rows.join('\n'), 'application/x-ndjson')).body.imported).toBe(RECIPIENTS);
  const audience = await call(p, 'POST', '/v1/audiences', { name: prefix, filter: { run: prefix } });
  const delivery = await call(p, 'POST', '/v1/deliveries', {
    name: `crash ${prefix}`,
    channel: 'email',
    audienceId: audience.body.id,
    content: { from: 'news@shop.example', subject: 'Hi {{profile.firstName}}', html: '<p>Hello {{profile.firstName}} <a href="https://shop.example/x">x</a></p>' },
  });
  const id = delivery.body.id as string;
  expect((await call(p, 'POST', `/v1/deliveries/${id}/prepare`)).body.preparation.toSend).toBe(RECIPIENTS);
  await call(p, 'POST', `/v1/deliveries/${id}/approve`);
  const confirm = await call(p, 'POST', `/v1/deliveries/${id}/confirmations`);
  expect((await call(p, 'POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`)).status).toBe(202);
  return id;
}

async function until(predicate: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function ledgerStatuses(p: Platform, id: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  let after: string | null = null;
  do {
    const page = await call(p, 'GET', `/v1/deliveries/${id}/logs?limit=1000${after ? `&after=${after}` : ''}`);
    for (const entry of page.body.items as { status: string }[]) counts[entry.status] = (counts[entry.status] ?? 0) + 1;
    after = page.body.next;
  } while (after);
  return counts;
}

describe('herald start killed mid-send', () => {
  let sink: CaptureSink;
  let env: Record<string, string>;
  const platforms: Platform[] = [];

  beforeEach(async () => {
    sink = await startCaptureSink({ store: 'memory' });
    env = {
      HERALD_HOME: mkdtempSync(join(tmpdir(), 'herald-crash-')),
      PORT: String(await freePort()),
      SMTP_URL: sink.url,
      LOG_LEVEL: 'info',
      ENGINE_THREADS: '2',
      ENGINE_BATCH_SIZE: '200',
    };
  });

  afterEach(async () => {
    for (const p of platforms.splice(0)) {
      if (p.child.exitCode === null) p.child.kill('SIGKILL');
      await p.exited;
    }
    await sink.close();
  });

  it('kill -9 at about 40%, restart: each recipient settled once, duplicates only what was in flight', async () => {
    const first = await startPlatform(env);
    platforms.push(first);
    const id = await startSend(first, 'k9-');
    await until(() => sink.count() >= RECIPIENTS * 0.4, 120_000, '40% of the send');
    first.child.kill('SIGKILL');
    await first.exited;
    const atDeath = sink.count();
    expect(atDeath).toBeLessThan(RECIPIENTS);

    const second = await startPlatform(env);
    platforms.push(second);
    await until(async () => (await call(second, 'GET', `/v1/deliveries/${id}`)).body.state === 'finished', 180_000, 'the send to finish');

    expect(await ledgerStatuses(second, id)).toEqual({ sent: RECIPIENTS });
    const recovered = second.logs.join('').split('\n').find((line) => line.includes('engine recovered runs'));
    expect(recovered).toBeDefined();
    const inFlight = JSON.parse(recovered!).inFlight as number;
    const ids = sink.messageIdCounts();
    expect(ids.size).toBe(RECIPIENTS);
    const duplicates = sink.count() - RECIPIENTS;
    expect(duplicates).toBeLessThanOrEqual(inFlight);
    expect(Math.max(...ids.values())).toBeLessThanOrEqual(2);
    process.stdout.write(`kill -9 at ${atDeath}/${RECIPIENTS}: ${inFlight} in flight, ${duplicates} received twice\n`);
  });

  it('SIGTERM mid-send, restart: zero duplicates, zero lost', async () => {
    const first = await startPlatform(env);
    platforms.push(first);
    const id = await startSend(first, 'tm-');
    await until(() => sink.count() >= RECIPIENTS * 0.4, 120_000, '40% of the send');
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);

    const second = await startPlatform(env);
    platforms.push(second);
    await until(async () => (await call(second, 'GET', `/v1/deliveries/${id}`)).body.state === 'finished', 180_000, 'the send to finish');
    expect(await ledgerStatuses(second, id)).toEqual({ sent: RECIPIENTS });
    expect(sink.count()).toBe(RECIPIENTS);
    expect(sink.messageIdCounts().size).toBe(RECIPIENTS);
  });
});

const postgres = storeMatrix().find((s) => s.kind === 'postgres')!;

(postgres.available ? describe : describe.skip)('herald gateway and herald engine as separate processes on PostgreSQL', () => {
  let sink: CaptureSink;
  let database: TestDatabase;
  const platforms: Platform[] = [];

  beforeAll(async () => {
    sink = await startCaptureSink({ store: 'memory' });
    database = await createTestDatabase('postgres');
  });
  afterAll(async () => {
    for (const p of platforms) {
      if (p.child.exitCode === null) p.child.kill('SIGTERM');
      await p.exited;
    }
    await sink.close();
    await database.drop();
  });

  it('sends what the gateway confirmed, through the engine process', async () => {
    const env = { HERALD_HOME: mkdtempSync(join(tmpdir(), 'herald-split-')), DATABASE_URL: database.url!, SMTP_URL: sink.url, LOG_LEVEL: 'warn' };
    const gateway = await startPlatform({ ...env, PORT: String(await freePort()) }, 'gateway');
    platforms.push(gateway);
    const engine = await startPlatform({ ...env, PORT: String(await freePort()) }, 'engine');
    platforms.push(engine);
    const rows = Array.from({ length: 500 }, (_, i) => JSON.stringify({ id: `sp-${i}`, email: `sp${i}@example.com`, attributes: { run: 'sp' } }));
    await call(gateway, 'POST', '/v1/profiles/import', rows.join('\n'), 'application/x-ndjson');
    const audience = await call(gateway, 'POST', '/v1/audiences', { name: 'sp', filter: { run: 'sp' } });
    const delivery = await call(gateway, 'POST', '/v1/deliveries', {
      name: 'split',
      channel: 'email',
      audienceId: audience.body.id,
      content: { from: 'news@shop.example', subject: 'Split', text: 'Hello' },
    });
    const id = delivery.body.id as string;
    await call(gateway, 'POST', `/v1/deliveries/${id}/prepare`);
    await call(gateway, 'POST', `/v1/deliveries/${id}/approve`);
    const confirm = await call(gateway, 'POST', `/v1/deliveries/${id}/confirmations`);
    await call(gateway, 'POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`);
    await until(async () => (await call(gateway, 'GET', `/v1/deliveries/${id}`)).body.state === 'finished', 60_000, 'the send to finish');
    expect(sink.count()).toBe(500);
    expect(await ledgerStatuses(gateway, id)).toEqual({ sent: 500 });
  });
});
