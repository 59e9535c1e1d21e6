// In-memory fakes of the control plane's repositories and store, for the services' unit tests:
// the same contracts as the SQL repositories (repositories/*.ts), kept in plain maps. The store
// runs a transaction's work against a snapshot it restores when the work throws, so a refused
// move leaves nothing behind, as a rolled-back transaction does. It runs no SQL: `query` throws.
import type { Database, Queryable, Transaction } from '../src/database.js';
import type { ActionFacts } from '../src/lifecycle.js';
import type { Audience, AudiencesRepository } from '../src/repositories/audiences.repository.js';
import type { AuditEntry, AuditRecord, AuditRepository } from '../src/repositories/audit.repository.js';
import type { Confirmation, ConfirmationsRepository } from '../src/repositories/confirmations.repository.js';
import type { DeliveriesRepository, Delivery, DeliveryChanges, DeliveryTransition, Occurrence, Preparation } from '../src/repositories/deliveries.repository.js';
import type { EngineInstance, EngineInstancesRepository, ReapResult } from '../src/repositories/engine-instances.repository.js';
import type { HealthRepository } from '../src/repositories/health.repository.js';
import type { Repositories } from '../src/repositories/index.js';
import {
  EXCLUSION_REASONS,
  type ExclusionReason,
  type ExclusionRecord,
  type FrozenRecipients,
  type LedgerEntry,
  type LedgerRepository,
  type LocalSendTimes,
  type SentMessage,
} from '../src/repositories/ledger.repository.js';
import type { OutboxCursor, OutboxRepository, OutboxRow } from '../src/repositories/outbox.repository.js';
import type { Profile, ProfilesRepository, ProfileStatus, SoftBounceRule } from '../src/repositories/profiles.repository.js';
import type {
  Claim,
  DomainOutcomeCount,
  LedgerStatus,
  Outcome,
  ProfileMessage,
  Progress,
  QueuedRecipient,
  RunRef,
  SendQueueRepository,
  SendTimeExclusionReason,
} from '../src/repositories/send-queue.repository.js';
import type { Channel, ProfileInput } from '../src/schemas.js';
import type { Store } from '../src/services/context.js';
import { resolveSendAt } from '../src/time.js';

interface ProfileRow extends Profile {
  softBounceCount: number;
  lastSoftBounceAt: Date | null;
}

export interface LedgerRow {
  deliveryId: string;
  occurrence: number;
  profileId: string;
  address: string;
  status: LedgerStatus;
  attempts: number;
  firstAttemptAt: Date | null;
  nextAttemptAt: Date | null;
  sendAfter: Date | null;
  engineId: string | null;
  lastCode: number | null;
  lastError: string | null;
  messageId: string | null;
  sentAt: Date | null;
  bounceType: string | null;
  excludedReason: SendTimeExclusionReason | null;
  complainedAt: Date | null;
  updatedAt: Date;
}

interface ExclusionRow {
  deliveryId: string;
  occurrence: number;
  profileId: string;
  address: string | null;
  reason: ExclusionReason | SendTimeExclusionReason;
  stage: 'preparation' | 'send';
  excludedAt: Date;
}

export interface OutboxRecord {
  id: number;
  commandId: string;
  topic: string;
  key: string;
  payload: unknown;
  fanout: boolean;
  messages: number;
  publishedAt: Date | null;
}

interface EngineRow {
  id: string;
  host: string;
  pid: number;
  startedAt: Date;
  heartbeatAt: Date;
  stats: Record<string, unknown>;
  channels: EngineInstance['channels'];
}

/** Everything the fakes store: what the tables hold. */
export class InMemoryData {
  profiles = new Map<string, ProfileRow>();
  audiences = new Map<string, Omit<Audience, 'size'>>();
  members = new Map<string, Set<string>>();
  deliveries = new Map<string, Delivery>();
  occurrences = new Map<string, Occurrence>();
  confirmations = new Map<string, Confirmation>();
  audit: AuditRecord[] = [];
  outbox: OutboxRecord[] = [];
  processedCommands = new Set<string>();
  ledger = new Map<string, LedgerRow>();
  exclusions = new Map<string, ExclusionRow>();
  links = new Map<string, string[]>();
  proofLinks = new Map<string, string[]>();
  engines = new Map<string, EngineRow>();
  /** Every write of a delivery's or run's state, in order (transition and transitionOccurrence are the only writers). */
  stateWrites: { deliveryId: string; occurrence: number; from: string; to: string }[] = [];
  sequence = 0;

  /** The store's own clock (SQL's now()), for the columns it fills by default. */
  constructor(readonly now: () => Date = () => new Date()) {}

  next(): number {
    return ++this.sequence;
  }

  /** A copy of every table, for a transaction to restore when its work throws. */
  snapshot(): Partial<InMemoryData> {
    return structuredClone(Object.fromEntries(Object.entries(this).filter(([, value]) => typeof value !== 'function')));
  }
}

const key = (...parts: (string | number)[]) => parts.join('\u0000');
const clone = <T>(value: T): T => structuredClone(value);

/** The store: transactions over a snapshot restored when the work throws; advisory locks by key. */
export class InMemoryStore implements Store {
  private depth = 0;
  private readonly locks = new Set<number>();
  private readonly tx: Transaction = {
    query: async () => {
      throw new Error('the in-memory store runs no SQL');
    },
    exec: async () => {
      throw new Error('the in-memory store runs no SQL');
    },
  };

  constructor(
    readonly data: InMemoryData,
    readonly kind: Database['kind'] = 'postgres',
  ) {}

  async query<T>(): Promise<T[]> {
    throw new Error('the in-memory store runs no SQL');
  }

  async transaction<T>(work: (tx: Transaction) => Promise<T>): Promise<T> {
    const snapshot = this.depth === 0 ? this.data.snapshot() : undefined;
    this.depth++;
    try {
      return await work(this.tx);
    } catch (error) {
      if (snapshot) Object.assign(this.data, snapshot);
      throw error;
    } finally {
      this.depth--;
    }
  }

  async withAdvisoryLock<T>(lock: number, work: () => Promise<T>): Promise<T | undefined> {
    if (this.locks.has(lock)) return undefined;
    this.locks.add(lock);
    try {
      return await work();
    } finally {
      this.locks.delete(lock);
    }
  }
}

class InMemoryProfiles implements ProfilesRepository {
  constructor(private readonly d: InMemoryData) {}

  async upsertMany(_db: Queryable, input: ProfileInput[]): Promise<number> {
    const profiles = [...new Map(input.map((p) => [p.id, p])).values()];
    for (const p of profiles) {
      const now = this.d.now().toISOString();
      const current = this.d.profiles.get(p.id);
      const field = <K extends keyof ProfileInput>(k: K, fallback: ProfileInput[K] | null) => (p[k] === undefined ? fallback : p[k]);
      this.d.profiles.set(p.id, {
        id: p.id,
        email: field('email', current?.email ?? null) ?? null,
        phone: field('phone', current?.phone ?? null) ?? null,
        firstName: field('firstName', current?.firstName ?? null) ?? null,
        lastName: field('lastName', current?.lastName ?? null) ?? null,
        locale: field('locale', current?.locale ?? null) ?? null,
        timezone: field('timezone', current?.timezone ?? null) ?? null,
        attributes: field('attributes', current?.attributes ?? {}) ?? {},
        status: current?.status ?? 'active',
        createdAt: current?.createdAt ?? now,
        updatedAt: now,
        softBounceCount: current?.softBounceCount ?? 0,
        lastSoftBounceAt: current?.lastSoftBounceAt ?? null,
      });
    }
    return profiles.length;
  }

  async get(_db: Queryable, id: string): Promise<Profile | undefined> {
    const row = this.d.profiles.get(id);
    if (!row) return undefined;
    const { softBounceCount: _, lastSoftBounceAt: __, ...profile } = row;
    return clone(profile);
  }

  async missing(_db: Queryable, ids: string[]): Promise<string[]> {
    return ids.filter((id) => !this.d.profiles.has(id));
  }

  async setStatus(_db: Queryable, id: string, status: ProfileStatus): Promise<void> {
    const row = this.d.profiles.get(id);
    if (row) Object.assign(row, { status, updatedAt: this.d.now().toISOString() });
  }

  async recordSoftBounces(_db: Queryable, ids: string[], at: Date, rule: SoftBounceRule): Promise<string[]> {
    const quarantined: string[] = [];
    for (const id of new Set(ids)) {
      const row = this.d.profiles.get(id);
      if (!row) continue;
      const fresh = !row.lastSoftBounceAt || row.lastSoftBounceAt.getTime() < at.getTime() - rule.resetAfterMs;
      row.softBounceCount = fresh ? 1 : row.softBounceCount + 1;
      row.lastSoftBounceAt = at;
      if (row.status === 'active' && row.softBounceCount >= rule.threshold) {
        row.status = 'quarantined';
        quarantined.push(id);
      }
    }
    return quarantined;
  }

  async quarantine(_db: Queryable, ids: string[]): Promise<number> {
    let n = 0;
    for (const id of new Set(ids)) {
      const row = this.d.profiles.get(id);
      if (row?.status === 'active') {
        row.status = 'quarantined';
        n++;
      }
    }
    return n;
  }
}

/** Whether `attributes` contain every pair of `filter` (jsonb @> on flat values). */
const matches = (attributes: Record<string, unknown>, filter: Record<string, unknown>) =>
  Object.entries(filter).every(([k, v]) => JSON.stringify(attributes[k]) === JSON.stringify(v));

class InMemoryAudiences implements AudiencesRepository {
  constructor(private readonly d: InMemoryData) {}

  async insert(_db: Queryable, audience: { id: string; name: string; filter: Record<string, unknown> | null; createdBy: string }): Promise<void> {
    this.d.audiences.set(audience.id, { ...clone(audience), createdAt: this.d.now().toISOString() });
    this.d.members.set(audience.id, new Set());
  }

  async addMembers(_db: Queryable, audienceId: string, profileIds: string[]): Promise<number> {
    const members = this.d.members.get(audienceId)!;
    let added = 0;
    for (const id of profileIds) {
      if (this.d.profiles.has(id) && !members.has(id)) {
        members.add(id);
        added++;
      }
    }
    return added;
  }

  async get(_db: Queryable, id: string): Promise<Audience | undefined> {
    const audience = this.d.audiences.get(id);
    if (!audience) return undefined;
    return { ...clone(audience), size: this.membersOf(id).length };
  }

  async exists(_db: Queryable, id: string): Promise<boolean> {
    return this.d.audiences.has(id);
  }

  /** The profiles an audience holds now, by id. */
  membersOf(id: string): ProfileRow[] {
    const filter = this.d.audiences.get(id)?.filter;
    if (filter) return [...this.d.profiles.values()].filter((p) => matches(p.attributes, filter));
    return [...(this.d.members.get(id) ?? [])].map((profileId) => this.d.profiles.get(profileId)!).filter(Boolean);
  }
}

class InMemoryDeliveries implements DeliveriesRepository {
  constructor(private readonly d: InMemoryData) {}

  async insert(_tx: Queryable, delivery: Parameters<DeliveriesRepository['insert']>[1], at: Date): Promise<void> {
    this.d.deliveries.set(delivery.id, {
      ...clone(delivery),
      nextRunAt: delivery.nextRunAt ? new Date(delivery.nextRunAt).toISOString() : null,
      version: 1,
      startedAt: null,
      finishedAt: null,
      occurrenceCount: 0,
      createdAt: at.toISOString(),
      updatedAt: at.toISOString(),
    });
  }

  async get(_db: Queryable, id: string): Promise<Delivery | undefined> {
    const delivery = this.d.deliveries.get(id);
    return delivery && clone(delivery);
  }

  async list(_db: Queryable, options: { limit: number; state?: string; before?: { createdAt: string; id: string } }): Promise<Delivery[]> {
    const { before } = options;
    return [...this.d.deliveries.values()]
      .filter((d) => !options.state || d.state === options.state)
      .filter((d) => !before || d.createdAt < before.createdAt || (d.createdAt === before.createdAt && d.id < before.id))
      .sort((a, b) => (a.createdAt === b.createdAt ? b.id.localeCompare(a.id) : b.createdAt.localeCompare(a.createdAt)))
      .slice(0, options.limit)
      .map(clone);
  }

  async update(_tx: Queryable, id: string, changes: DeliveryChanges, at: Date): Promise<Delivery> {
    // As the SQL one: no state column among what an update writes (transition() alone writes it).
    if ('state' in changes || 'stateReason' in changes) throw new Error('update() does not write the state: use transition()');
    const delivery = this.d.deliveries.get(id)!;
    this.write(delivery, changes, at);
    return clone(delivery);
  }

  async transition(_tx: Queryable, id: string, move: DeliveryTransition, at: Date): Promise<Delivery | undefined> {
    const delivery = this.d.deliveries.get(id);
    if (delivery?.state !== move.from) return undefined;
    delivery.state = move.to;
    if (move.reason !== undefined) delivery.stateReason = move.reason;
    this.write(delivery, move.changes, at);
    this.d.stateWrites.push({ deliveryId: id, occurrence: 0, from: move.from, to: move.to });
    return clone(delivery);
  }

  async actionFacts(_db: Queryable, ids: string[], now: Date): Promise<Map<string, ActionFacts>> {
    const facts = new Map<string, ActionFacts>();
    for (const id of ids) {
      if (!this.d.deliveries.has(id)) continue;
      facts.set(id, {
        liveConfirmation: this.liveConfirmations(id, now).some((c) => c.occurrence === 0),
        pausedRuns: this.occurrencesOf(id).some((o) => o.state === 'paused'),
      });
    }
    return facts;
  }

  async awaitingExpiredOk(_db: Queryable, now: Date, limit: number, id?: string): Promise<string[]> {
    return [...this.d.deliveries.values()]
      .filter((d) => d.state === 'pending_ok' && (!id || d.id === id))
      .filter((d) => !this.liveConfirmations(d.id, now).some((c) => c.occurrence === 0))
      .slice(0, limit)
      .map((d) => d.id);
  }

  async occurrencesAwaitingOk(_db: Queryable, deliveryId: string, now: Date): Promise<Set<number>> {
    return new Set(this.liveConfirmations(deliveryId, now).filter((c) => c.occurrence > 0).map((c) => c.occurrence));
  }

  async due(_db: Queryable, now: Date, limit: number): Promise<Delivery[]> {
    return [...this.d.deliveries.values()]
      .filter((d) => d.state === 'scheduled' && d.nextRunAt !== null && new Date(d.nextRunAt) <= now)
      .sort((a, b) => a.nextRunAt!.localeCompare(b.nextRunAt!))
      .slice(0, limit)
      .map(clone);
  }

  async insertOccurrence(_tx: Queryable, o: Parameters<DeliveriesRepository['insertOccurrence']>[1], at: Date): Promise<void> {
    this.d.occurrences.set(key(o.deliveryId, o.n), {
      deliveryId: o.deliveryId,
      n: o.n,
      state: o.state,
      stateReason: null,
      version: 1,
      scheduledFor: o.scheduledFor.toISOString(),
      preparation: clone(o.preparation) as Preparation,
      createdAt: at.toISOString(),
      updatedAt: at.toISOString(),
    });
  }

  async getOccurrence(_db: Queryable, deliveryId: string, n: number): Promise<Occurrence | undefined> {
    const run = this.d.occurrences.get(key(deliveryId, n));
    return run && clone(run);
  }

  async listOccurrences(_db: Queryable, deliveryId: string): Promise<Occurrence[]> {
    return this.occurrencesOf(deliveryId)
      .sort((a, b) => b.n - a.n)
      .map(clone);
  }

  async transitionOccurrence(_tx: Queryable, deliveryId: string, n: number, move: Parameters<DeliveriesRepository['transitionOccurrence']>[3], at: Date) {
    const run = this.d.occurrences.get(key(deliveryId, n));
    if (run?.state !== move.from) return undefined;
    Object.assign(run, { state: move.to, stateReason: move.reason, version: run.version + 1, updatedAt: at.toISOString() });
    this.d.stateWrites.push({ deliveryId, occurrence: n, from: move.from, to: move.to });
    return clone(run);
  }

  async waitingBeyond(_db: Queryable, deliveryId: string, keep: number): Promise<number[]> {
    return this.occurrencesOf(deliveryId)
      .filter((o) => o.state === 'pending_confirmation')
      .map((o) => o.n)
      .sort((a, b) => b - a)
      .slice(keep)
      .reverse();
  }

  async sendingRuns(): Promise<{ deliveryId: string; occurrence: number }[]> {
    return [
      ...[...this.d.deliveries.values()].filter((d) => d.state === 'sending').map((d) => ({ deliveryId: d.id, occurrence: 0 })),
      ...[...this.d.occurrences.values()].filter((o) => o.state === 'sending').map((o) => ({ deliveryId: o.deliveryId, occurrence: o.n })),
    ];
  }

  private write(delivery: Delivery, changes: DeliveryChanges, at: Date): void {
    for (const [field, value] of Object.entries(changes)) {
      if (value === undefined) continue;
      (delivery as unknown as Record<string, unknown>)[field] = value instanceof Date ? value.toISOString() : clone(value);
    }
    delivery.version++;
    delivery.updatedAt = at.toISOString();
  }

  private occurrencesOf(deliveryId: string): Occurrence[] {
    return [...this.d.occurrences.values()].filter((o) => o.deliveryId === deliveryId);
  }

  private liveConfirmations(deliveryId: string, now: Date): Confirmation[] {
    return [...this.d.confirmations.values()].filter((c) => c.deliveryId === deliveryId && c.status === 'pending' && c.expiresAt > now);
  }
}

class InMemoryConfirmations implements ConfirmationsRepository {
  constructor(private readonly d: InMemoryData) {}

  async insert(_tx: Queryable, c: Omit<Confirmation, 'status' | 'result'>): Promise<void> {
    this.d.confirmations.set(c.id, { ...clone(c), status: 'pending', result: null });
  }

  async get(_db: Queryable, id: string): Promise<Confirmation | undefined> {
    const confirmation = this.d.confirmations.get(id);
    return confirmation && clone(confirmation);
  }

  async accept(_tx: Queryable, id: string, result: { state: string }): Promise<void> {
    Object.assign(this.d.confirmations.get(id)!, { status: 'accepted', result: clone(result) });
  }

  async voidPending(_tx: Queryable, deliveryId: string, occurrence?: number): Promise<string[]> {
    const voided: string[] = [];
    for (const c of this.d.confirmations.values()) {
      if (c.deliveryId === deliveryId && c.status === 'pending' && (occurrence === undefined || c.occurrence === occurrence)) {
        c.status = 'void';
        voided.push(c.id);
      }
    }
    return voided;
  }
}

class InMemoryAudit implements AuditRepository {
  constructor(private readonly d: InMemoryData) {}

  async record(_tx: Queryable, entry: AuditEntry): Promise<void> {
    this.d.audit.push({
      id: this.d.next(),
      at: entry.at.toISOString(),
      actor: entry.actor,
      deliveryId: entry.deliveryId,
      occurrence: entry.occurrence ?? 0,
      action: entry.action,
      fromState: entry.fromState ?? null,
      toState: entry.toState ?? null,
      summaryHash: entry.summaryHash ?? null,
      ...(entry.details ? { details: clone(entry.details) } : {}),
    });
  }

  async pausedBy(_db: Queryable, deliveryId: string, occurrence: number, actor: string): Promise<boolean> {
    return this.d.audit.some((e) => e.deliveryId === deliveryId && e.occurrence === occurrence && e.actor === actor && e.toState === 'paused');
  }

  async lastEntryInto(_db: Queryable, deliveryId: string, occurrence: number, state: string): Promise<number> {
    return Math.max(0, ...this.d.audit.filter((e) => e.deliveryId === deliveryId && e.occurrence === occurrence && e.toState === state).map((e) => e.id));
  }

  async forDelivery(_db: Queryable, deliveryId: string): Promise<AuditRecord[]> {
    return this.d.audit.filter((e) => e.deliveryId === deliveryId).map(clone);
  }
}

/** A fanout row's messages, or a row's one message, each with its index (from 1, as outbox_messages numbers them). */
const messagesOfRecord = (row: OutboxRecord) => (row.fanout ? (row.payload as unknown[]) : [row.payload]).map((payload, i) => ({ payload, idx: i + 1 }));

class InMemoryOutbox implements OutboxRepository {
  constructor(private readonly d: InMemoryData) {}

  async enqueue(_tx: Queryable, row: Omit<OutboxRow, 'id' | 'fanout'>): Promise<void> {
    this.d.outbox.push({ id: this.d.next(), ...clone(row), fanout: false, messages: 1, publishedAt: null });
  }

  async enqueueFanout(_tx: Queryable, row: { commandId: string; topic: string; key: string; payloads: unknown[] }): Promise<void> {
    if (row.payloads.length === 0) return;
    const { payloads, ...rest } = row;
    this.d.outbox.push({ id: this.d.next(), ...rest, payload: clone(payloads), fanout: true, messages: payloads.length, publishedAt: null });
  }

  async unpublished(_db: Queryable, limit: number, maxMessages = 20_000): Promise<OutboxRow[]> {
    let upto = 0;
    return this.d.outbox
      .filter((r) => r.publishedAt === null)
      .slice(0, limit)
      .filter((r) => {
        const before = upto;
        upto += r.messages;
        return before < maxMessages;
      })
      .map((r) => ({ id: r.id, commandId: r.commandId, topic: r.topic, key: r.key, payload: clone(r.payload), fanout: r.fanout }));
  }

  async markPublished(_db: Queryable, ids: number[], at: Date): Promise<void> {
    for (const row of this.d.outbox) if (ids.includes(row.id)) row.publishedAt = at;
  }

  async publishedSince(_db: Queryable, topic: string, since: Date, after: OutboxCursor | null, limit: number) {
    return this.d.outbox
      .filter((r) => r.topic === topic && r.publishedAt !== null && r.publishedAt >= since)
      .flatMap((r) => messagesOfRecord(r).map((m) => ({ id: r.id, idx: m.idx, payload: clone(m.payload) })))
      .filter((m) => !after || m.id > after.id || (m.id === after.id && m.idx > after.idx))
      .slice(0, limit);
  }

  async prunePublished(_db: Queryable, before: Date, limit: number): Promise<number> {
    const end = this.d.outbox.find((r) => r.publishedAt === null || r.publishedAt >= before)?.id ?? Number.POSITIVE_INFINITY;
    const gone = new Set(
      this.d.outbox
        .filter((r) => r.id < end && r.publishedAt !== null && r.publishedAt < before)
        .slice(0, limit)
        .map((r) => r.id),
    );
    this.d.outbox = this.d.outbox.filter((r) => !gone.has(r.id));
    return gone.size;
  }

  async claimCommand(_tx: Queryable, consumer: string, commandId: string): Promise<boolean> {
    const claim = key(consumer, commandId);
    if (this.d.processedCommands.has(claim)) return false;
    this.d.processedCommands.add(claim);
    return true;
  }
}

const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;
const PHONE = /^\+[1-9][0-9]{6,14}$/;

/** A recipient's address on `channel` as preparation normalizes it, and whether it is valid. */
function addressOf(profile: ProfileRow, channel: Channel): { address: string | null; valid: boolean } {
  if (channel === 'email') {
    const address = profile.email === null ? null : profile.email.trim().toLowerCase();
    return { address, valid: address !== null && EMAIL.test(address) };
  }
  const raw = profile.phone ?? (typeof profile.attributes.phone === 'string' ? profile.attributes.phone : null);
  const address = raw === null ? null : raw.replace(/[\s().-]/g, '');
  return { address, valid: address !== null && PHONE.test(address) };
}

/** The calendar day of `instant` on the wall clock of `timeZone` (YYYY-MM-DD). */
const dayIn = (instant: Date, timeZone: string) => new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(instant);

class InMemoryLedger implements LedgerRepository {
  constructor(
    private readonly d: InMemoryData,
    private readonly audiences: InMemoryAudiences,
  ) {}

  async freeze(tx: Queryable, run: Parameters<LedgerRepository['freeze']>[1]): Promise<FrozenRecipients> {
    await this.discard(tx, run.deliveryId, run.occurrence);
    const members =
      run.filter === null
        ? this.audiences.membersOf(run.audienceId)
        : [...this.d.profiles.values()].filter((p) => matches(p.attributes, run.filter!));
    const excluded = Object.fromEntries(EXCLUSION_REASONS.map((r) => [r, 0])) as Record<ExclusionReason, number>;
    const taken = new Set<string>();
    let toSend = 0;
    for (const profile of [...members].sort((a, b) => a.id.localeCompare(b.id))) {
      const { address, valid } = addressOf(profile, run.channel);
      let reason: ExclusionReason | undefined;
      if (profile.status !== 'active') reason = profile.status as ExclusionReason;
      else if (!valid) reason = 'invalid_address';
      else if (taken.has(address!)) reason = 'duplicate_address';
      const at = this.d.now();
      if (reason) {
        excluded[reason]++;
        this.d.exclusions.set(key(run.deliveryId, run.occurrence, profile.id), {
          deliveryId: run.deliveryId,
          occurrence: run.occurrence,
          profileId: profile.id,
          address,
          reason,
          stage: 'preparation',
          excludedAt: at,
        });
        continue;
      }
      taken.add(address!);
      toSend++;
      this.d.ledger.set(key(run.deliveryId, run.occurrence, profile.id), {
        deliveryId: run.deliveryId,
        occurrence: run.occurrence,
        profileId: profile.id,
        address: address!,
        status: 'pending',
        attempts: 0,
        firstAttemptAt: null,
        nextAttemptAt: null,
        sendAfter: null,
        engineId: null,
        lastCode: null,
        lastError: null,
        messageId: null,
        sentAt: null,
        bounceType: null,
        excludedReason: null,
        complainedAt: null,
        updatedAt: at,
      });
    }
    return { audienceCount: toSend + Object.values(excluded).reduce((a, b) => a + b, 0), toSend, excluded };
  }

  async discard(_tx: Queryable, deliveryId: string, occurrence: number): Promise<void> {
    for (const [k, row] of this.d.ledger) if (row.deliveryId === deliveryId && row.occurrence === occurrence) this.d.ledger.delete(k);
    for (const [k, row] of this.d.exclusions) if (row.deliveryId === deliveryId && row.occurrence === occurrence) this.d.exclusions.delete(k);
  }

  async exclusions(_db: Queryable, deliveryId: string, occurrence: number, page: { limit: number; after?: string }): Promise<ExclusionRecord[]> {
    return [...this.d.exclusions.values()]
      .filter((e) => e.deliveryId === deliveryId && e.occurrence === occurrence && (!page.after || e.profileId > page.after))
      .sort((a, b) => a.profileId.localeCompare(b.profileId))
      .slice(0, page.limit)
      .map((e) => ({ profileId: e.profileId, address: e.address, reason: e.reason, stage: e.stage, excludedAt: e.excludedAt.toISOString() }));
  }

  async excludedNow(_db: Queryable, deliveryId: string, occurrence: number): Promise<Partial<Record<SendTimeExclusionReason, number>>> {
    const counts: Partial<Record<SendTimeExclusionReason, number>> = {};
    for (const row of ledgerOf(this.d, { deliveryId, occurrence })) {
      const status = this.d.profiles.get(row.profileId)?.status;
      const reason =
        row.status === 'excluded_at_send'
          ? row.excludedReason
          : ['pending', 'queued', 'retry'].includes(row.status) && status && status !== 'active'
            ? (status as SendTimeExclusionReason)
            : null;
      if (reason) counts[reason] = (counts[reason] ?? 0) + 1;
    }
    return counts;
  }

  async entries(_db: Queryable, deliveryId: string, occurrence: number, page: { limit: number; after?: string }): Promise<LedgerEntry[]> {
    return ledgerOf(this.d, { deliveryId, occurrence })
      .filter((r) => !page.after || r.profileId > page.after)
      .sort((a, b) => a.profileId.localeCompare(b.profileId))
      .slice(0, page.limit)
      .map((r) => ({
        profileId: r.profileId,
        address: r.address,
        status: r.status,
        bounceType: r.bounceType ?? (r.status === 'bounced' && r.lastCode ? (r.lastCode >= 500 ? 'hard' : 'soft') : null),
        reason: r.excludedReason,
        messageId: r.messageId,
        attempts: r.attempts,
        lastError: r.lastError,
        updatedAt: r.updatedAt.toISOString(),
      }));
  }

  async sentMessage(_db: Queryable, recipient: { deliveryId: string; occurrence: number; profileId: string }) {
    const row = this.d.ledger.get(key(recipient.deliveryId, recipient.occurrence, recipient.profileId));
    const delivery = this.d.deliveries.get(recipient.deliveryId);
    return row && delivery ? { messageId: row.messageId, channel: delivery.channel } : undefined;
  }

  async messageForUpdate(_tx: Queryable, messageId: string): Promise<SentMessage | undefined> {
    const row = [...this.d.ledger.values()].find((r) => r.messageId === messageId);
    const delivery = row && this.d.deliveries.get(row.deliveryId);
    const profile = row && this.d.profiles.get(row.profileId);
    if (!row || !delivery || !profile) return undefined;
    return {
      messageId,
      deliveryId: row.deliveryId,
      occurrence: row.occurrence,
      profileId: row.profileId,
      status: row.status,
      complainedAt: row.complainedAt,
      channel: delivery.channel,
      profileStatus: profile.status,
    };
  }

  async markComplained(_tx: Queryable, messageId: string, at: Date): Promise<void> {
    for (const row of this.d.ledger.values()) if (row.messageId === messageId) row.complainedAt = at;
  }

  async markBounced(_tx: Queryable, messageId: string, bounce: { type: string; reason: string | null }, at: Date): Promise<void> {
    for (const row of this.d.ledger.values()) {
      if (row.messageId === messageId) Object.assign(row, { status: 'bounced', bounceType: bounce.type, lastError: bounce.reason ?? row.lastError, updatedAt: at });
    }
  }

  async assignLocalSendTimes(_tx: Queryable, t: LocalSendTimes): Promise<Date | null> {
    const times = this.localSendTimes(t);
    for (const { row, at } of times) row.sendAfter = at;
    return times.length === 0 ? null : new Date(Math.min(...times.map((s) => s.at.getTime())));
  }

  async localSendWindow(_db: Queryable, t: LocalSendTimes): Promise<{ first: Date; last: Date; past: number } | null> {
    const times = this.localSendTimes(t).map((s) => s.at.getTime());
    if (times.length === 0) return null;
    return { first: new Date(Math.min(...times)), last: new Date(Math.max(...times)), past: times.filter((at) => at < t.now.getTime()).length };
  }

  /** Each frozen recipient's send instant: `localTime` on `date` (or the next such time after `now`) on its wall clock. */
  private localSendTimes(t: LocalSendTimes): { row: LedgerRow; at: Date }[] {
    return ledgerOf(this.d, t).map((row) => {
      const zone = this.d.profiles.get(row.profileId)?.timezone ?? 'UTC';
      const at = resolveSendAt(`${t.date ?? dayIn(t.now, zone)}T${t.localTime}`, zone);
      return { row, at: t.date === null && at < t.now ? new Date(at.getTime() + 86_400_000) : at };
    });
  }
}

const ledgerOf = (d: InMemoryData, run: { deliveryId: string; occurrence?: number }) =>
  [...d.ledger.values()].filter((r) => r.deliveryId === run.deliveryId && (run.occurrence === undefined || r.occurrence === run.occurrence));

/** What a recipient handed out but not sent goes back to: `stopped` when its run was stopped (it never plans again), else `pending`. */
function unsentStatus(d: InMemoryData, run: RunRef): LedgerStatus {
  const state = run.occurrence > 0 ? d.occurrences.get(key(run.deliveryId, run.occurrence))?.state : undefined;
  return (state ?? d.deliveries.get(run.deliveryId)?.state) === 'stopped' ? 'stopped' : 'pending';
}

const SENT_OR_TRIED: readonly LedgerStatus[] = ['sent', 'bounced', 'in_doubt', 'retry', 'failed'];

class InMemorySendQueue implements SendQueueRepository {
  constructor(private readonly d: InMemoryData) {}

  async queueNext(_tx: Queryable, run: RunRef, size: number, now: Date, engineId: string | null = null): Promise<QueuedRecipient[]> {
    const due = ledgerOf(this.d, run)
      .filter((r) => (r.status === 'pending' || r.status === 'retry') && (!r.nextAttemptAt || r.nextAttemptAt <= now) && (!r.sendAfter || r.sendAfter <= now))
      .sort((a, b) => a.profileId.localeCompare(b.profileId))
      .slice(0, size);
    return due.map((row) => {
      Object.assign(row, { status: 'queued', engineId, updatedAt: now });
      const p = this.d.profiles.get(row.profileId);
      return {
        profileId: row.profileId,
        address: row.address,
        attempts: row.attempts,
        profile: {
          id: row.profileId,
          email: p?.email ?? null,
          firstName: p?.firstName ?? null,
          lastName: p?.lastName ?? null,
          locale: p?.locale ?? null,
          timezone: p?.timezone ?? null,
          attributes: p?.attributes ?? {},
        },
      };
    });
  }

  async claim(_db: Queryable, run: RunRef, profileIds: string[], now: Date, engineId: string | null = null): Promise<Claim> {
    const claim: Claim = { toSend: new Map(), excluded: [] };
    for (const profileId of profileIds) {
      const row = this.d.ledger.get(key(run.deliveryId, run.occurrence, profileId));
      if (row?.status !== 'queued') continue;
      const status = this.d.profiles.get(profileId)?.status;
      const reason = status && status !== 'active' ? (status as SendTimeExclusionReason) : null;
      Object.assign(row, { engineId, updatedAt: now, excludedReason: reason });
      if (reason) {
        row.status = 'excluded_at_send';
        const k = key(run.deliveryId, run.occurrence, profileId);
        if (!this.d.exclusions.has(k)) {
          this.d.exclusions.set(k, { ...run, profileId, address: row.address, reason, stage: 'send', excludedAt: now });
        }
        claim.excluded.push({ profileId, address: row.address, reason });
      } else {
        Object.assign(row, { status: 'sending', attempts: row.attempts + 1, firstAttemptAt: row.firstAttemptAt ?? now });
        claim.toSend.set(profileId, { attempts: row.attempts, firstAttemptAt: row.firstAttemptAt! });
      }
    }
    return claim;
  }

  async release(_db: Queryable, run: RunRef, profileIds: string[], now: Date): Promise<number> {
    let n = 0;
    for (const profileId of profileIds) {
      const row = this.d.ledger.get(key(run.deliveryId, run.occurrence, profileId));
      if (row?.status !== 'queued' && row?.status !== 'sending') continue;
      Object.assign(row, { status: unsentStatus(this.d, run), engineId: null, updatedAt: now });
      n++;
    }
    return n;
  }

  async stopUnsent(_tx: Queryable, run: { deliveryId: string; occurrence?: number }, now: Date): Promise<number> {
    let n = 0;
    for (const row of ledgerOf(this.d, run)) {
      if (!['pending', 'retry', 'queued'].includes(row.status)) continue;
      Object.assign(row, { status: 'stopped', engineId: null, nextAttemptAt: null, updatedAt: now });
      n++;
    }
    return n;
  }

  async unclaim(_db: Queryable, run: RunRef, recipients: { profileId: string; dueAt?: Date }[], now: Date): Promise<number> {
    let n = 0;
    for (const { profileId, dueAt } of recipients) {
      const row = this.d.ledger.get(key(run.deliveryId, run.occurrence, profileId));
      if (row?.status !== 'sending') continue;
      Object.assign(row, {
        status: unsentStatus(this.d, run),
        engineId: null,
        nextAttemptAt: dueAt ?? null,
        updatedAt: now,
        attempts: row.attempts - 1,
        firstAttemptAt: row.attempts === 1 ? null : row.firstAttemptAt,
      });
      n++;
    }
    return n;
  }

  async settle(_tx: Queryable, run: RunRef, outcomes: Outcome[], now: Date): Promise<number> {
    let n = 0;
    for (const o of outcomes) {
      const row = this.d.ledger.get(key(run.deliveryId, run.occurrence, o.profileId));
      if (row?.status !== 'sending') continue;
      Object.assign(row, {
        status: o.status,
        lastCode: o.code,
        lastError: o.error,
        messageId: o.messageId ?? row.messageId,
        nextAttemptAt: o.nextAttemptAt,
        sentAt: o.status === 'sent' ? now : row.sentAt,
        updatedAt: now,
      });
      n++;
    }
    return n;
  }

  async requeueStaleQueued(_db: Queryable, olderThanMs: number, now: Date): Promise<number> {
    let n = 0;
    for (const row of this.d.ledger.values()) {
      if (row.status !== 'queued' || row.updatedAt.getTime() >= now.getTime() - olderThanMs) continue;
      Object.assign(row, { status: 'pending', engineId: null, updatedAt: now });
      n++;
    }
    return n;
  }

  async inFlightCount(_db: Queryable, run: RunRef, now: Date, lateAfterMs: number): Promise<number> {
    const onTime = (id: string | null) => {
      const engine = id === null ? undefined : this.d.engines.get(id);
      return engine !== undefined && engine.heartbeatAt.getTime() >= now.getTime() - lateAfterMs;
    };
    return ledgerOf(this.d, run).filter((r) => (r.status === 'queued' || r.status === 'sending') && onTime(r.engineId)).length;
  }

  async handedOutCount(_db: Queryable, run: RunRef): Promise<number> {
    return ledgerOf(this.d, run).filter((r) => r.status !== 'pending').length;
  }

  async hasUnsent(_db: Queryable, run: RunRef): Promise<boolean> {
    return ledgerOf(this.d, run).some((r) => r.status === 'pending' || r.status === 'queued');
  }

  async lockRun(): Promise<void> {
    // One process, one transaction at a time: nothing to lock.
  }

  async outcomesByDomain(_db: Queryable, run: RunRef): Promise<DomainOutcomeCount[]> {
    const groups = new Map<string, DomainOutcomeCount>();
    for (const row of ledgerOf(this.d, run)) {
      if (!SENT_OR_TRIED.includes(row.status)) continue;
      const domain = row.address.replace(/^.*@/, '').toLowerCase();
      const codeClass = row.lastCode === null ? null : row.lastCode >= 500 ? 5 : row.lastCode >= 400 ? 4 : 2;
      const k = key(domain, row.status, String(codeClass));
      const group = groups.get(k) ?? { domain, status: row.status as DomainOutcomeCount['status'], codeClass, count: 0, error: null };
      group.count++;
      if (row.lastError !== null && (group.error === null || row.lastError > group.error)) group.error = row.lastError;
      groups.set(k, group);
    }
    return [...groups.values()];
  }

  async retryNow(_tx: Queryable, run: RunRef): Promise<number> {
    let n = 0;
    for (const row of ledgerOf(this.d, run)) {
      if (row.status === 'retry' && row.nextAttemptAt !== null) {
        row.nextAttemptAt = null;
        n++;
      }
    }
    return n;
  }

  async progress(_db: Queryable, run: { deliveryId: string; occurrence?: number }): Promise<Progress> {
    const progress: Progress = { pending: 0, queued: 0, sending: 0, retry: 0, sent: 0, bounced: 0, failed: 0, in_doubt: 0, excluded_at_send: 0, stopped: 0, total: 0 };
    for (const row of ledgerOf(this.d, run)) {
      progress[row.status]++;
      progress.total++;
    }
    return progress;
  }

  async isSettled(_db: Queryable, run: RunRef): Promise<boolean> {
    return !ledgerOf(this.d, run).some((r) => ['pending', 'queued', 'sending', 'retry'].includes(r.status));
  }

  async nextRetryAt(_db: Queryable, run: RunRef): Promise<Date | null> {
    const times = ledgerOf(this.d, run)
      .filter((r) => r.status === 'pending' || r.status === 'retry')
      .map((r) => r.nextAttemptAt ?? r.sendAfter)
      .filter((at): at is Date => at !== null)
      .map((at) => at.getTime());
    return times.length === 0 ? null : new Date(Math.min(...times));
  }

  async historyOf(_db: Queryable, profileId: string, limit: number): Promise<ProfileMessage[]> {
    const at = (r: LedgerRow) => (r.sentAt ?? r.updatedAt).getTime();
    return [...this.d.ledger.values()]
      .filter((r) => r.profileId === profileId && !['pending', 'queued', 'excluded_at_send', 'stopped'].includes(r.status))
      .sort((a, b) => at(b) - at(a))
      .slice(0, limit)
      .map((r) => {
        const delivery = this.d.deliveries.get(r.deliveryId)!;
        return {
          deliveryId: r.deliveryId,
          deliveryName: delivery.name,
          channel: delivery.channel,
          occurrence: r.occurrence,
          messageId: r.messageId,
          sentAt: r.sentAt?.toISOString() ?? null,
          status: r.status,
          updatedAt: r.updatedAt.toISOString(),
        };
      });
  }

  async saveLinks(_tx: Queryable, deliveryId: string, links: string[]): Promise<void> {
    this.d.links.set(deliveryId, [...links]);
  }

  async link(_db: Queryable, deliveryId: string, index: number): Promise<string | undefined> {
    return this.d.links.get(deliveryId)?.[index];
  }

  async saveProofLinks(_db: Queryable, proof: { proofId: string; deliveryId: string }, links: string[]): Promise<void> {
    const k = key(proof.proofId, proof.deliveryId);
    const kept = this.d.proofLinks.get(k) ?? [];
    links.forEach((url, i) => {
      kept[i] ??= url;
    });
    if (links.length > 0) this.d.proofLinks.set(k, kept);
  }

  async proofLink(_db: Queryable, proof: { proofId: string; deliveryId: string }, index: number): Promise<string | undefined> {
    return this.d.proofLinks.get(key(proof.proofId, proof.deliveryId))?.[index];
  }
}

class InMemoryEngines implements EngineInstancesRepository {
  constructor(private readonly d: InMemoryData) {}

  async register(_db: Queryable, instance: Omit<EngineInstance, 'heartbeatAt' | 'stats'>, at: Date): Promise<void> {
    const current = this.d.engines.get(instance.id);
    if (current) Object.assign(current, { heartbeatAt: at, channels: clone(instance.channels) });
    else this.d.engines.set(instance.id, { ...clone(instance), startedAt: at, heartbeatAt: at, stats: {} });
  }

  async heartbeat(_db: Queryable, id: string, stats: Record<string, unknown>, at: Date): Promise<boolean> {
    const engine = this.d.engines.get(id);
    if (!engine) return false;
    Object.assign(engine, { heartbeatAt: at, stats: clone(stats) });
    return true;
  }

  async deregister(_db: Queryable, id: string): Promise<void> {
    this.d.engines.delete(id);
  }

  async all(_db: Queryable, now: Date): Promise<(EngineInstance & { heartbeatAgeMs: number })[]> {
    return this.sorted().map((e) => ({ ...toInstance(e), heartbeatAgeMs: Math.max(0, now.getTime() - e.heartbeatAt.getTime()) }));
  }

  async live(_db: Queryable, staleAfterMs: number, now: Date): Promise<EngineInstance[]> {
    return this.sorted()
      .filter((e) => e.heartbeatAt.getTime() >= now.getTime() - staleAfterMs)
      .map(toInstance);
  }

  async reapDead(_tx: Queryable, selfId: string, staleAfterMs: number, now: Date, orphans: boolean): Promise<ReapResult> {
    const dead = [...this.d.engines.values()].filter((e) => e.id !== selfId && e.heartbeatAt.getTime() < now.getTime() - staleAfterMs).map((e) => e.id);
    if (dead.length === 0 && !orphans) return { engines: [], requeued: 0, inFlight: 0 };
    const held = [...this.d.ledger.values()].filter(
      (r) => (r.status === 'queued' || r.status === 'sending') && ((r.engineId !== null && dead.includes(r.engineId)) || (orphans && (r.engineId === null || !this.d.engines.has(r.engineId)))),
    );
    const inFlight = held.filter((r) => r.status === 'sending').length;
    for (const row of held) {
      const run = { deliveryId: row.deliveryId, occurrence: row.occurrence };
      Object.assign(row, { status: unsentStatus(this.d, run), engineId: null, updatedAt: now });
    }
    for (const id of dead) this.d.engines.delete(id);
    return { engines: dead, requeued: held.length, inFlight };
  }

  private sorted(): EngineRow[] {
    return [...this.d.engines.values()].sort((a, b) => a.startedAt.getTime() - b.startedAt.getTime() || a.id.localeCompare(b.id));
  }
}

const toInstance = (e: EngineRow): EngineInstance => ({
  id: e.id,
  host: e.host,
  pid: e.pid,
  startedAt: e.startedAt.toISOString(),
  heartbeatAt: e.heartbeatAt.toISOString(),
  stats: clone(e.stats),
  channels: clone(e.channels),
});

class InMemoryHealth implements HealthRepository {
  /** Set to make the store look down. */
  down?: Error;

  async ping(): Promise<void> {
    if (this.down) throw this.down;
  }
}

/** The fakes over one InMemoryData, as the control plane takes its repositories. */
export function inMemoryRepositories(data: InMemoryData): Repositories {
  const audiences = new InMemoryAudiences(data);
  return {
    profiles: new InMemoryProfiles(data),
    audiences,
    deliveries: new InMemoryDeliveries(data),
    confirmations: new InMemoryConfirmations(data),
    audit: new InMemoryAudit(data),
    outbox: new InMemoryOutbox(data),
    ledger: new InMemoryLedger(data, audiences),
    sendQueue: new InMemorySendQueue(data),
    engines: new InMemoryEngines(data),
    health: new InMemoryHealth(),
  };
}
