// A control plane over the in-memory fakes (in-memory.ts), with a manual clock, and the steps the
// services' unit tests share: profiles, an audience, a delivery taken to a given state.
import { TOPICS } from '@herald/contracts';
import { ManualClock } from '../src/clock.js';
import { ControlPlane } from '../src/control-plane.js';
import type { Database } from '../src/database.js';
import type { Delivery } from '../src/repositories/deliveries.repository.js';
import type { Repositories } from '../src/repositories/index.js';
import type { ProfileInput } from '../src/schemas.js';
import type { ControlPlaneSettings } from '../src/services/context.js';
import type { Actor } from '../src/services/transitions.js';
import { InMemoryData, InMemoryStore, inMemoryRepositories } from './in-memory.js';

export const ALICE: Actor = { id: 'alice', roles: ['delivery:prepare', 'delivery:approve', 'delivery:start', 'delivery:view'] };
export const BOB: Actor = { id: 'bob', roles: ['delivery:start'] };

export const SETTINGS: ControlPlaneSettings = { confirmationTtlMs: 10 * 60_000, scheduleStalenessMs: 60 * 60_000, recurrenceMaxPending: 2 };

/** The links of an HTML content: its href values, in order (what the channels' renderer tracks). */
export const hrefs = (html: string) => [...html.matchAll(/href="([^"]+)"/g)].map((match) => match[1]!);

export interface TestControlPlane {
  cp: ControlPlane;
  data: InMemoryData;
  /** The fakes the control plane was given (a test may make one fail). */
  repositories: Repositories;
  store: InMemoryStore;
  clock: ManualClock;
}

export function inMemoryControlPlane(options: { now?: string; settings?: Partial<ControlPlaneSettings>; kind?: Database['kind'] } = {}): TestControlPlane {
  const clock = new ManualClock(new Date(options.now ?? '2026-12-01T08:00:00Z'));
  const data = new InMemoryData(() => clock.now());
  const store = new InMemoryStore(data, options.kind);
  const repositories = inMemoryRepositories(data);
  const cp = new ControlPlane(store, clock, { ...SETTINGS, ...options.settings }, { extractLinks: hrefs, repositories });
  return { cp, data, repositories, store, clock };
}

/** Imports `profiles` (default: three with email addresses) and returns an audience of them. */
export async function audienceOf(cp: ControlPlane, profiles: ProfileInput[] = people(3)): Promise<string> {
  await cp.profiles.import(body(JSON.stringify(profiles)), 'json');
  const { audience } = await cp.audiences.create({ name: 'customers', profileIds: profiles.map((p) => p.id) }, ALICE);
  return audience.id;
}

/** A request body of `text`, as the gateway streams it to an import. */
export async function* body(text: string): AsyncGenerator<string> {
  yield text;
}

/** `n` profiles p1…pn with addresses pN@example.com. */
export const people = (n: number, extra: Partial<ProfileInput> = {}): ProfileInput[] =>
  Array.from({ length: n }, (_, i) => ({ id: `p${i + 1}`, email: `p${i + 1}@example.com`, firstName: `P${i + 1}`, ...extra }));

export function deliveryInput(audienceId: string, extra: Record<string, unknown> = {}) {
  return {
    name: 'Winter sale',
    channel: 'email' as const,
    audienceId,
    content: {
      from: 'Herald Shop <news@shop.example>',
      subject: 'Hello',
      html: '<p>Hi, <a href="https://shop.example/sale">see the sale</a> or <a href="https://shop.example/u">leave</a></p>',
    },
    ...extra,
  };
}

/** A delivery created, prepared and approved. */
export async function approved(cp: ControlPlane, audienceId: string, extra: Record<string, unknown> = {}): Promise<Delivery> {
  const { id } = await cp.deliveries.create(deliveryInput(audienceId, extra), ALICE);
  await cp.deliveries.prepare(id, ALICE);
  return cp.deliveries.approve(id, ALICE);
}

/** A delivery confirmed and OK'd by ALICE: sending (or scheduled, by its schedule). */
export async function started(cp: ControlPlane, audienceId: string, extra: Record<string, unknown> = {}): Promise<Delivery> {
  const { id } = await approved(cp, audienceId, extra);
  const ticket = await cp.confirmations.confirm(id, ALICE);
  await cp.confirmations.ok(id, ticket.confirmationId, ALICE);
  return cp.deliveries.get(id);
}

/** An engine registered now on real time (the confirmation summary reads live engines on real time). */
export async function liveEngine(cp: ControlPlane, id = '00000000-0000-4000-8000-000000000001'): Promise<string> {
  await cp.engines.register({ id, host: 'test', pid: 1, startedAt: new Date().toISOString(), channels: [{ channel: 'email', kind: 'smtp', host: 'mx', port: 25, url: 'smtp://mx:25' }] }, new Date());
  return id;
}

/** What a refused call must leave as it was: states, audit, outbox, confirmations, ledger. */
export function footprint(data: InMemoryData): string {
  return JSON.stringify({
    deliveries: [...data.deliveries.values()],
    occurrences: [...data.occurrences.values()],
    audit: data.audit,
    outbox: data.outbox,
    confirmations: [...data.confirmations.values()],
    ledger: [...data.ledger.values()],
  });
}

/** The delivery commands in the outbox, oldest first, as `type:deliveryId:occurrence`. */
export const commands = (data: InMemoryData) =>
  data.outbox
    .filter((row) => row.topic === TOPICS.deliveryCommands)
    .map((row) => row.payload as { type: string; deliveryId: string; occurrence: number })
    .map((c) => `${c.type}:${c.occurrence}`);

/** The audit entries of a delivery as `action:from->to` (occurrence > 0 prefixed `#n `). */
export const auditTrail = (data: InMemoryData, deliveryId: string) =>
  data.audit.filter((e) => e.deliveryId === deliveryId).map((e) => `${e.occurrence ? `#${e.occurrence} ` : ''}${e.action}:${e.fromState ?? ''}->${e.toState ?? ''}`);
