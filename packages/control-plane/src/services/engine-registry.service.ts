// The send engines sharing the store: each registers and heartbeats with its figures; one whose
// heartbeat is late is listed `stale`, one silent for ENGINE_STALE_MS is dead: the live engines
// requeue the ledger rows it held (at most what it had in flight may have left twice) and forget
// it. Times are the engines' own (`now`): heartbeats are on real time.
import type { ChannelProvider, EngineInstance, ReapResult } from '../repositories/engine-instances.repository.js';
import type { ControlPlaneContext } from './context.js';

/** How often a live engine heartbeats. */
export const ENGINE_HEARTBEAT_MS = 2_000;
/**
 * An engine whose heartbeat is older than this is late: listed `stale` (two missed heartbeats
 * and a margin for a slow store). Its work is not touched yet.
 */
export const ENGINE_LATE_MS = 2 * ENGINE_HEARTBEAT_MS + 1_000;
/**
 * An engine whose heartbeat is older than this is dead: its rows are requeued. Longer than
 * ENGINE_LATE_MS: a pause (GC, a slow store) must not send its in-flight messages twice.
 */
export const ENGINE_STALE_MS = 15_000;

/** An engine as operators see it: `live`, or `stale` once its heartbeat is late (ENGINE_LATE_MS). */
export type EngineStatus = EngineInstance & { status: 'live' | 'stale'; heartbeatAgeMs: number };

export class EngineRegistryService {
  constructor(private readonly ctx: ControlPlaneContext) {}

  /** Registers an engine process (again, after another declared it dead). */
  async register(engine: { id: string; host: string; pid: number; startedAt: string; channels: ChannelProvider[] }, now: Date): Promise<void> {
    await this.ctx.engines.register(this.ctx.db, engine, now);
  }

  /** Records a heartbeat with the engine's figures; false when the engine was declared dead meanwhile (it must register again). */
  async heartbeat(id: string, stats: Record<string, unknown>, now: Date): Promise<boolean> {
    return this.ctx.engines.heartbeat(this.ctx.db, id, stats, now);
  }

  /** An engine that stops with nothing in hand: the others need not wait for it to go stale. */
  async deregister(id: string): Promise<void> {
    await this.ctx.engines.deregister(this.ctx.db, id);
  }

  /** The engines whose heartbeat is on time (not dead), oldest first. */
  async live(now: Date): Promise<EngineInstance[]> {
    return this.ctx.engines.live(this.ctx.db, ENGINE_STALE_MS, now);
  }

  /** Every registered engine not forgotten yet, oldest first, with its status. */
  async list(now: Date): Promise<EngineStatus[]> {
    const engines = await this.ctx.engines.all(this.ctx.db, now);
    return engines.map((engine) => ({ ...engine, status: engine.heartbeatAgeMs > ENGINE_LATE_MS ? 'stale' : 'live' }));
  }

  /** Requeues what the engines silent for ENGINE_STALE_MS held, and forgets them (`selfId` is the caller). */
  async reapDead(selfId: string, now: Date): Promise<ReapResult> {
    return this.ctx.db.transaction((tx) => this.ctx.engines.reapDead(tx, selfId, ENGINE_STALE_MS, now, false));
  }

  /**
   * At an engine's start: requeues what dead engines held and what no engine holds (rows of an
   * engine that died before it registered). On the embedded store, which serves one process, every
   * other engine is dead.
   */
  async reapAtStart(selfId: string, now: Date): Promise<ReapResult> {
    const staleAfterMs = this.ctx.db.kind === 'pglite' ? 0 : ENGINE_STALE_MS;
    return this.ctx.db.transaction((tx) => this.ctx.engines.reapDead(tx, selfId, staleAfterMs, now, true));
  }

  /** Recipients queued longer than `olderThanMs` and never claimed go back to pending (their batch was lost). */
  async requeueStaleQueued(olderThanMs: number, now: Date): Promise<number> {
    return this.ctx.sendQueue.requeueStaleQueued(this.ctx.db, olderThanMs, now);
  }
}
