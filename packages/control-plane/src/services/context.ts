// What every control-plane service shares: the store, the clock, the settings, the repositories
// (the SQL ones by default; in-memory fakes in unit tests) and the transition primitive.
import { createHash } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { Database } from '../database.js';
import { type Repositories, sqlRepositories } from '../repositories/index.js';
import type { SoftBounceRule } from '../repositories/profiles.repository.js';
import { Transitions } from './transitions.js';

/** What services need of the database: a handle for reads, transactions, and leader locks. */
export type Store = Pick<Database, 'kind' | 'query' | 'transaction' | 'withAdvisoryLock'>;

export interface ControlPlaneSettings {
  confirmationTtlMs: number;
  scheduleStalenessMs: number;
  /** Runs of a recurring delivery that may wait for a confirmation at once (default 5); the oldest past it expire. */
  recurrenceMaxPending?: number;
  /** When soft bounces quarantine an address (default: 5 in a row, counted again after 10 days). */
  softBounces?: SoftBounceRule;
}

export class ControlPlaneContext {
  readonly repositories: Repositories;
  readonly transitions: Transitions;

  constructor(
    readonly db: Store,
    readonly clock: Clock,
    readonly settings: ControlPlaneSettings,
    repositories: Repositories = sqlRepositories(),
  ) {
    this.repositories = repositories;
    this.transitions = new Transitions(repositories, clock);
  }

  get profiles() {
    return this.repositories.profiles;
  }
  get audiences() {
    return this.repositories.audiences;
  }
  get deliveries() {
    return this.repositories.deliveries;
  }
  get confirmations() {
    return this.repositories.confirmations;
  }
  get audit() {
    return this.repositories.audit;
  }
  get outbox() {
    return this.repositories.outbox;
  }
  get ledger() {
    return this.repositories.ledger;
  }
  get sendQueue() {
    return this.repositories.sendQueue;
  }
  get engines() {
    return this.repositories.engines;
  }
  get health() {
    return this.repositories.health;
  }
}

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
