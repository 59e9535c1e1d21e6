// What every control-plane service shares: the database, the clock, the repositories, and the
// one way a state change is written (state + audit + outbox command in one transaction).
import { createHash, randomUUID } from 'node:crypto';
import { TOPICS, type DeliveryCommand } from '@herald/contracts';
import type { Clock } from '../clock.js';
import type { Database, Queryable } from '../database.js';
import { AudiencesRepository } from '../repositories/audiences.repository.js';
import { AuditRepository } from '../repositories/audit.repository.js';
import { ConfirmationsRepository } from '../repositories/confirmations.repository.js';
import { DeliveriesRepository, type Delivery } from '../repositories/deliveries.repository.js';
import { EngineInstancesRepository } from '../repositories/engine-instances.repository.js';
import { LedgerRepository } from '../repositories/ledger.repository.js';
import { OutboxRepository } from '../repositories/outbox.repository.js';
import { ProfilesRepository, type SoftBounceRule } from '../repositories/profiles.repository.js';
import { SendQueueRepository } from '../repositories/send-queue.repository.js';

export interface Actor {
  id: string;
  name?: string;
  roles: readonly string[];
}

/** The scheduler and other automatic moves act as this actor in the audit log. */
export const SYSTEM_ACTOR: Actor = { id: 'system:scheduler', roles: [] };
/** The send engine, in the audit log. */
export const ENGINE_ACTOR: Actor = { id: 'system:engine', roles: [] };

export interface ControlPlaneSettings {
  confirmationTtlMs: number;
  scheduleStalenessMs: number;
  /** Runs of a recurring delivery that may wait for a confirmation at once (default 5); the oldest past it expire. */
  recurrenceMaxPending?: number;
  /** When soft bounces quarantine an address (default: 5 in a row, counted again after 10 days). */
  softBounces?: SoftBounceRule;
}

export class ControlPlaneContext {
  readonly profiles = new ProfilesRepository();
  readonly audiences = new AudiencesRepository();
  readonly deliveries = new DeliveriesRepository();
  readonly confirmations = new ConfirmationsRepository();
  readonly audit = new AuditRepository();
  readonly outbox = new OutboxRepository();
  readonly ledger = new LedgerRepository();
  readonly sendQueue = new SendQueueRepository();
  readonly engines = new EngineInstancesRepository();

  constructor(
    readonly db: Database,
    readonly clock: Clock,
    readonly settings: ControlPlaneSettings,
  ) {}

  /** Writes a delivery command to the outbox (inside the caller's transaction). */
  async enqueueCommand(tx: Queryable, command: DistributiveOmit<DeliveryCommand, 'commandId' | 'issuedAt'>): Promise<DeliveryCommand> {
    const full = { ...command, commandId: randomUUID(), issuedAt: this.clock.now().toISOString() } as DeliveryCommand;
    await this.outbox.enqueue(tx, { commandId: full.commandId, topic: TOPICS.deliveryCommands, key: full.deliveryId, payload: full });
    return full;
  }

  startedCommand(delivery: Delivery, occurrence: number, toSend: number, actor: Actor) {
    return {
      type: 'DeliveryStarted' as const,
      deliveryId: delivery.id,
      occurrence,
      issuedBy: actor.id,
      channel: delivery.channel,
      toSend,
      contentHash: delivery.contentHash ?? '',
      throughputPerHour: delivery.throughput?.perHour ?? null,
    };
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A stable hash of JSON-like data (keys sorted), for content and summary hashes. */
export function stableHash(value: unknown): string {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(canonical)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
              .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
          )
        : v;
  return `sha256:${createHash('sha256').update(JSON.stringify(canonical(value))).digest('hex')}`;
}
