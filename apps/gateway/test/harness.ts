// A real gateway over a real store (PGlite or PostgreSQL) and the in-process bus, on a free
// loopback port, with a manual clock. Tests talk to it over HTTP with fetch. Other workspaces'
// tests import it as @herald/gateway/testing (this package's "exports"; jest.config.js maps it):
// it starts the gateway app, so it cannot be part of @herald/testing, which imports no app.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Bus, busFromEnv, type DeliveredMessage } from '@herald/bus';
import { loadConfig } from '@herald/config';
import { type DeliveryCommand, deliveryCommandSchema, type MessageEvent, messageEventSchema, TOPICS } from '@herald/contracts';
import { ManualClock, resolvePlatformSettings } from '@herald/control-plane';
import type { KpiStore } from '@herald/kpi-store';
import { createTestDatabase, type StoreKind, type TestDatabase } from '@herald/testing';
import { pino } from 'pino';
import { type Gateway, startGateway } from '@herald/gateway';

export const ALL_ROLES = ['delivery:prepare', 'delivery:approve', 'delivery:start', 'delivery:view'];

export interface Harness {
  gateway: Gateway;
  database: TestDatabase;
  bus: Bus;
  clock: ManualClock;
  /** Every command the bus delivered on herald.delivery-commands. */
  commands: DeliveredMessage<DeliveryCommand>[];
  /** Every message event the bus delivered on herald.message-events (the relay's and the tracking links'). */
  events: MessageEvent[];
  token(user: string, roles?: string[]): Promise<string>;
  api(method: string, path: string, options?: { token?: string; body?: unknown; raw?: string; contentType?: string }): Promise<ApiResponse>;
  close(): Promise<void>;
}

export interface ApiResponse {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: test responses are inspected field by field
  body: any;
}

/** `kpi`: a KPI store the Deployment block reads (chDB: only in the one test file that opens it). */
export async function startHarness(kind: StoreKind, env: Record<string, string> = {}, options: { relay?: boolean; kpi?: KpiStore } = {}): Promise<Harness> {
  const database = await createTestDatabase(kind);
  const clock = new ManualClock(new Date('2026-12-01T08:00:00Z'));
  // The in-process bus (an environment without KAFKA_BROKERS).
  const bus = busFromEnv({}, { inProcess: { retryBackoffMs: 10 } });
  const config = loadConfig({
    HERALD_HOME: mkdtempSync(join(tmpdir(), 'herald-test-')),
    PORT: '0',
    HERALD_JWT_SECRET: 'test-secret-test-secret-test-secret-0123',
    OUTBOX_RELAY_INTERVAL: '20ms',
    ...env,
  });
  const gateway = await startGateway({
    config,
    db: database.db,
    bus,
    clock,
    logger: pino({ level: process.env.HERALD_TEST_LOG ?? 'silent' }),
    scheduler: false,
    relay: options.relay,
    kpi: options.kpi,
    settings: await resolvePlatformSettings(config, database.db),
  });
  const commands: DeliveredMessage<DeliveryCommand>[] = [];
  await bus.subscribe({ topic: TOPICS.deliveryCommands, group: 'test-observer', schema: deliveryCommandSchema, handler: async (batch) => void commands.push(...batch) });
  const events: MessageEvent[] = [];
  await bus.subscribe({ topic: TOPICS.messageEvents, group: 'test-observer', schema: messageEventSchema, handler: async (batch) => void events.push(...batch.map((m) => m.value)) });
  const tokens = new Map<string, string>();
  const harness: Harness = {
    gateway,
    database,
    bus,
    clock,
    commands,
    events,
    async token(user, roles = ALL_ROLES) {
      const key = `${user}|${roles.join(',')}`;
      if (!tokens.has(key)) tokens.set(key, await gateway.tokens.sign({ sub: user, roles }));
      return tokens.get(key)!;
    },
    async api(method, path, options = {}) {
      const token = options.token ?? (await harness.token('alice'));
      const headers: Record<string, string> = { authorization: `Bearer ${token}` };
      let body: string | undefined;
      if (options.raw !== undefined) {
        body = options.raw;
        headers['content-type'] = options.contentType ?? 'application/json';
      } else if (options.body !== undefined) {
        body = JSON.stringify(options.body);
        headers['content-type'] = 'application/json';
      }
      const response = await fetch(gateway.url + path, { method, headers, body });
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      return { status: response.status, body: parsed };
    },
    async close() {
      await gateway.close();
      await bus.close();
      await database.drop();
    },
  };
  return harness;
}

/** startHarness, then seedAudience: how most suites begin (the two seed requests are alice's). */
export async function startHarnessWithAudience(
  kind: StoreKind,
  count: number,
  env: Record<string, string> = {},
  options: { relay?: boolean } = {},
): Promise<{ h: Harness; audienceId: string }> {
  const h = await startHarness(kind, env, options);
  return { h, audienceId: await seedAudience(h, count) };
}

/** Imports `count` profiles p0001.. with valid emails and puts them in a new audience. */
export async function seedAudience(h: Harness, count: number, prefix = 'p'): Promise<string> {
  const profiles = Array.from({ length: count }, (_, i) => ({
    id: `${prefix}${String(i).padStart(5, '0')}`,
    email: `${prefix}${i}@example.com`,
    firstName: `First${i}`,
  }));
  const imported = await h.api('POST', '/v1/profiles/import', { body: profiles });
  if (imported.status !== 200 || imported.body.imported !== count) throw new Error(`seed import failed: ${JSON.stringify(imported.body)}`);
  const audience = await h.api('POST', '/v1/audiences', { body: { name: `audience ${prefix}`, profileIds: profiles.map((p) => p.id) } });
  if (audience.status !== 201) throw new Error(`seed audience failed: ${JSON.stringify(audience.body)}`);
  return audience.body.id;
}

export function deliveryBody(audienceId: string, extra: Record<string, unknown> = {}) {
  return {
    name: 'Winter sale',
    channel: 'email',
    audienceId,
    content: {
      from: 'Herald Shop <news@shop.example>',
      subject: 'Hello {{profile.firstName}}',
      html: '<p>Hi {{profile.firstName}}, <a href="https://shop.example/sale">see the sale</a></p>',
    },
    ...extra,
  };
}

/** Creates, prepares and approves a delivery; returns its id. */
export async function approvedDelivery(h: Harness, audienceId: string, extra: Record<string, unknown> = {}): Promise<string> {
  const created = await h.api('POST', '/v1/deliveries', { body: deliveryBody(audienceId, extra) });
  if (created.status !== 201) throw new Error(`create failed: ${JSON.stringify(created.body)}`);
  const id = created.body.id as string;
  const prepared = await h.api('POST', `/v1/deliveries/${id}/prepare`);
  if (prepared.status !== 200) throw new Error(`prepare failed: ${JSON.stringify(prepared.body)}`);
  const approved = await h.api('POST', `/v1/deliveries/${id}/approve`);
  if (approved.status !== 200) throw new Error(`approve failed: ${JSON.stringify(approved.body)}`);
  return id;
}

export async function startedCommands(h: Harness, deliveryId: string): Promise<number> {
  await h.gateway.relay.drain();
  return h.commands.filter((m) => (m.value as { type: string; deliveryId: string }).type === 'DeliveryStarted' && (m.value as { deliveryId: string }).deliveryId === deliveryId).length;
}

