// This engine among the others sharing the store and the bus: it registers in engine_instances
// and heartbeats there with its figures (GET /v1/ops/engines, its /metrics); each heartbeat
// sets its share of every throughput limit (1/N for N live engines). Every third heartbeat it
// requeues the rows queued too long without a dispatcher and the work of engines whose
// heartbeat stopped (then plans the sending runs again). Stopping, it deregisters.
import { hostname } from 'node:os';
import { TOPICS } from '@herald/contracts';
import { ENGINE_HEARTBEAT_MS } from '@herald/control-plane';
import type { Throttles } from '@herald/sending';
import { channelProviders } from './channel-providers.js';
import type { EngineOptions } from './engine-options.js';
import type { InFlightBatches } from './in-flight.js';
import { withTimeout } from './timeouts.js';

/** Totals since this engine started (its heartbeat reports them with the live figures). */
export interface EngineStats {
  batches: number;
  messages: number;
}

/** What an engine reports with each heartbeat (GET /v1/ops/engines, and its /metrics). */
export interface EngineReport {
  threads: number;
  messages: number;
  batches: number;
  messagesPerSecond: number;
  /**
   * The send rate while this engine had work (a moving average over the heartbeat intervals in
   * which it sent): what Confirm send projects a finish time from. 0 until it first sent.
   */
  measuredPerSecond: number;
  inFlightBatches: number;
  /** Partitions of herald.send-batches this process consumes (null on the in-process bus: all of them). */
  partitions: number[] | null;
  /** Send batches waiting on the bus for the engines' group. */
  lag: number | null;
  /** Share of every throughput limit this engine enforces (1 / live engines). */
  share: number;
}

/** Rows queued this long without a dispatcher claiming them go back to pending (their batch was lost). */
const QUEUED_STALE_MS = 120_000;

export class EngineRegistry {
  private heartbeatTimer?: NodeJS.Timeout;
  private beating = false;
  private lastBeat = { at: Date.now(), messages: 0, count: 0 };
  report: EngineReport;

  constructor(
    private readonly options: Pick<EngineOptions, 'controlPlane' | 'bus' | 'clock' | 'logger' | 'threads' | 'worker' | 'channels'>,
    /** This process's id in engine_instances and on the ledger rows it holds. */
    private readonly instanceId: string,
    private readonly parts: {
      stats: EngineStats;
      inFlight: InFlightBatches;
      throttles: Throttles;
      /** Plans the sending runs again (after the work of dead engines was requeued). */
      discover: () => Promise<void>;
    },
  ) {
    this.report = { threads: options.threads, messages: 0, batches: 0, messagesPerSecond: 0, measuredPerSecond: 0, inFlightBatches: 0, partitions: null, lag: null, share: 1 };
  }

  /** This process in engine_instances (again, after another engine declared it dead). */
  async register(): Promise<void> {
    const { controlPlane, clock } = this.options;
    const channels = this.options.channels ?? channelProviders(this.options.worker);
    await controlPlane.engines.register({ id: this.instanceId, host: hostname(), pid: process.pid, startedAt: clock.now().toISOString(), channels }, clock.now());
  }

  startHeartbeat(): void {
    this.heartbeatTimer = setInterval(() => {
      this.beat().catch((error) => this.options.logger.warn({ err: error }, 'engine heartbeat failed'));
    }, ENGINE_HEARTBEAT_MS);
    this.heartbeatTimer.unref();
  }

  stopHeartbeat(): void {
    clearInterval(this.heartbeatTimer);
  }

  /** Everything in hand is settled or released: the others need not wait for this one to go stale. */
  async deregister(): Promise<void> {
    await this.options.controlPlane.engines.deregister(this.instanceId);
  }

  /** Heartbeat with this engine's figures; adjust the limits' share; requeue the rows of dead engines. */
  private async beat(): Promise<void> {
    if (this.beating) return; // the previous one is still running (a slow store)
    this.beating = true;
    try {
      await this.beatOnce();
    } finally {
      this.beating = false;
    }
  }

  private async beatOnce(): Promise<void> {
    const { controlPlane, clock, bus } = this.options;
    const { stats, throttles } = this.parts;
    const now = Date.now();
    const perSecond = ((stats.messages - this.lastBeat.messages) * 1000) / Math.max(1, now - this.lastBeat.at);
    // NOTE: idle intervals say nothing of the rate: they leave the average as it was.
    const measured = stats.messages === this.lastBeat.messages ? this.report.measuredPerSecond : this.report.measuredPerSecond > 0 ? 0.7 * this.report.measuredPerSecond + 0.3 * perSecond : perSecond;
    this.lastBeat = { at: now, messages: stats.messages, count: this.lastBeat.count + 1 };
    // On the in-process bus this process's dispatchers own every partition: reported as null.
    const assignments = bus.sharedAcrossProcesses ? bus.assignments(TOPICS.sendBatches) : [];
    const live = await controlPlane.engines.live(clock.now());
    const share = 1 / Math.max(1, live.length);
    throttles.setShare(share);
    throttles.prune(now);
    this.report = {
      threads: this.options.threads,
      messages: stats.messages,
      batches: stats.batches,
      messagesPerSecond: Math.round(perSecond),
      measuredPerSecond: Math.round(measured * 10) / 10,
      inFlightBatches: this.parts.inFlight.size,
      partitions: assignments.length > 0 ? assignments.flatMap((a) => a.partitions).sort((a, b) => a - b) : null,
      lag: this.report.lag,
      share,
    };
    // The bus's lag is read after the heartbeat and for the next one, within a second: a broker
    // that does not answer must not stop this engine from heartbeating (it would be declared dead).
    void withTimeout(bus.lag(TOPICS.sendBatches, 'engine-dispatchers'), 1000).then((lag) => {
      if (lag !== undefined) this.report.lag = lag;
    });
    if (!(await controlPlane.engines.heartbeat(this.instanceId, { ...this.report }, clock.now()))) {
      this.options.logger.warn({ instanceId: this.instanceId }, 'this engine was declared dead by another (a long pause?); registering again');
      await this.register();
    }
    if (this.lastBeat.count % 3 === 0) {
      // Safe at any time: a queued row is not being sent (claiming it is atomic), so at worst
      // an old batch that turns up later finds nothing to claim.
      const stale = await controlPlane.engines.requeueStaleQueued(QUEUED_STALE_MS, clock.now());
      if (stale > 0) this.options.logger.warn({ requeued: stale }, 'recipients queued too long without a dispatcher went back to pending');
      const reaped = await controlPlane.engines.reapDead(this.instanceId, clock.now());
      if (reaped.engines.length > 0) {
        this.options.logger.warn({ ...reaped }, 'engine requeued the work of dead engines');
        await this.parts.discover();
      }
    }
  }
}
