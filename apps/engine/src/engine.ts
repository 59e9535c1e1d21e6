// The send engine: a planner turns started runs into send batches (keyset pages of the frozen
// ledger, recipients inline); dispatchers hand each batch to a fixed-size Piscina pool and
// settle the outcomes in the ledger, with their message events, in one transaction.
//
// Guarantees: a recipient is settled once (claims: a redelivered batch sends nothing twice);
// after a crash, what was queued or in flight is planned again, so at most the messages in
// flight when the process died go out twice (each with its stable Message-ID); on SIGTERM the
// dispatchers finish the batches in hand, so nothing does. A pause or stop reaches the worker
// threads through a cancellation flag per task (set from the command, or by re-reading the
// state of the runs in the pool every RUN_WATCH_MS): they start no further message.
// The circuit breaker's first wave is held by the planner until it is judged; recipients whose
// throttle slot is far go back to the ledger rather than wait in a worker.
//
// Several engines share one store and one bus: each registers and heartbeats (engine_instances,
// with its figures for GET /v1/ops/engines); the rows it queues or claims carry its id, and the
// live engines requeue the rows of an engine whose heartbeat stopped. Each of N live engines
// enforces 1/N of every throughput limit (per delivery and per domain).
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Bus, Subscription } from '@herald/bus';
import { extractLinks } from '@herald/channels';
import type { DomainLimit } from '@herald/config';
import { type DeliveryCommand, dlqTopic, TOPICS, sendBatchSchema, type SendBatch } from '@herald/contracts';
import {
  type ChannelProvider,
  AuditRepository,
  type Clock,
  CommandDeduplicator,
  DEFAULT_SOFT_BOUNCE_RULE,
  type ControlPlane,
  type Database,
  ENGINE_ACTOR,
  ENGINE_HEARTBEAT_MS,
  ENGINE_LATE_MS,
  ENGINE_STALE_MS,
  EngineInstancesRepository,
  OutboxRepository,
  ProfilesRepository,
  type RunRef,
  SendQueueRepository,
} from '@herald/control-plane';
import {
  batchSizeFor,
  breakerOutcomeOf,
  type BreakerSettings,
  CircuitBreaker,
  classify,
  type ClassifiedOutcome,
  eventsFor,
  excludedEvent,
  firstWaveSize,
  judge,
  PROVIDER_ANSWER_INVALID,
  type RetryPolicy,
  Tally,
  Throttles,
  type Trip,
} from '@herald/sending';
import { Piscina } from 'piscina';
import type { Logger } from 'pino';
import { channelProviders } from './channel-providers.js';
import { runKey, RunStates } from './run-state.js';
import type { SendTask, SendTaskResult, WorkerSettings } from './send-task.js';

export interface EngineOptions {
  db: Database;
  bus: Bus;
  controlPlane: ControlPlane;
  clock: Clock;
  logger: Logger;
  threads: number;
  /** V8 old-generation limit of each worker thread. */
  workerHeapMb: number;
  batchSize: number;
  worker: WorkerSettings;
  domainLimits: DomainLimit[];
  retry: RetryPolicy;
  breaker: BreakerSettings;
  /** What this engine registers it can send (default: from `worker`'s SMTP and sms provider URLs). */
  channels?: ChannelProvider[];
}

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

const WORKER_FILE = new URL('../dist/send-batch.worker.js', import.meta.url).href;
const PLANNER_IDLE_MS = 200;
const DISCOVER_INTERVAL_MS = 1000;
/** How long a readiness probe waits for the store and the bus to answer. */
const READINESS_TIMEOUT_MS = 1000;
const PUBLISH_RETRY_MS = 1000;
/**
 * How often the state of the runs with batches in the pool is read again: a pause or stop
 * reaches this engine's worker threads within this (plus a query) even when another engine
 * received the command.
 */
const RUN_WATCH_MS = 200;
/** Rows queued this long without a dispatcher claiming them go back to pending (their batch was lost). */
const QUEUED_STALE_MS = 120_000;

export class Engine {
  private readonly queue = new SendQueueRepository();
  private readonly outbox = new OutboxRepository();
  private readonly profiles = new ProfilesRepository();
  private readonly audit = new AuditRepository();
  private readonly runs: RunStates;
  private readonly pool: Piscina;
  private readonly throttles: Throttles;
  private readonly breaker: CircuitBreaker;
  private readonly planners = new Map<string, Promise<void>>();
  private readonly dedupe: CommandDeduplicator;
  private readonly subscriptions: Subscription[] = [];
  /** Cancellation flags of the tasks in the pool, by run: set when the run stops sending. */
  private readonly cancellations = new Map<string, { run: RunRef; flags: Set<Int32Array> }>();
  private watchTimer?: NodeJS.Timeout;
  private watching = false;
  /** Batches handed out and not yet settled, across dispatchers: the pool's backpressure. */
  private inFlight = 0;
  private readonly waiting: (() => void)[] = [];
  private stopping = false;
  private discoverTimer?: NodeJS.Timeout;
  private heartbeatTimer?: NodeJS.Timeout;
  private beating = false;
  private storeCheck?: Promise<void>;
  private busCheck?: Promise<void>;
  private readonly instances = new EngineInstancesRepository();
  /** This process's id in engine_instances and on the ledger rows it holds. */
  readonly instanceId = randomUUID();
  readonly stats: EngineStats = { batches: 0, messages: 0 };
  report: EngineReport;
  private lastBeat = { at: Date.now(), messages: 0, count: 0 };

  constructor(private readonly options: EngineOptions) {
    this.runs = new RunStates(options.db);
    this.throttles = new Throttles(options.domainLimits);
    this.report = { threads: options.threads, messages: 0, batches: 0, messagesPerSecond: 0, measuredPerSecond: 0, inFlightBatches: 0, partitions: null, lag: null, share: 1 };
    this.breaker = new CircuitBreaker(options.breaker);
    this.dedupe = new CommandDeduplicator(options.db, 'engine-planner');
    this.pool = new Piscina({
      filename: WORKER_FILE,
      minThreads: options.threads,
      maxThreads: options.threads,
      idleTimeout: Number.POSITIVE_INFINITY,
      // NOTE: without limits each thread's V8 heap grows far past what a batch needs (measured:
      // ~780 MiB RSS for the engine on a 1M send); a batch needs a few MiB.
      resourceLimits: { maxOldGenerationSizeMb: options.workerHeapMb, maxYoungGenerationSizeMb: 16 },
      workerData: options.worker,
      // NOTE: Piscina's default ('sync') parks an idle thread in Atomics.wait, which freezes its
      // event loop: its SMTP connections never saw the server's idle "421 Timeout" and close, nor
      // ran their idle timers, and the next batch wrote MAIL FROM into the dead session first.
      // Threads wait for tasks on their message port instead, with their event loop running.
      atomics: 'disabled',
    });
  }

  /** Whether this process's dispatchers take every batch its planners publish (the in-process bus). */
  private get dispatchesAll(): boolean {
    return !this.options.bus.sharedAcrossProcesses;
  }

  /** Batches that may be in the pool or waiting for it at once. */
  private get maxInFlight(): number {
    return this.options.threads * 2;
  }

  async start(): Promise<void> {
    const { bus } = this.options;
    await this.register();
    await this.recover();
    this.heartbeatTimer = setInterval(() => {
      this.beat().catch((error) => this.options.logger.warn({ err: error }, 'engine heartbeat failed'));
    }, ENGINE_HEARTBEAT_MS);
    this.heartbeatTimer.unref();
    // NOTE: commands start runs at once; this scan also finds runs started by a gateway on
    // another bus (a separate `herald engine` process) or whose command was lost.
    this.discoverTimer = setInterval(() => {
      this.discover().catch((error) => this.options.logger.warn({ err: error }, 'run discovery failed'));
    }, DISCOVER_INTERVAL_MS);
    this.discoverTimer.unref();
    this.watchTimer = setInterval(() => {
      this.watchRuns().catch((error) => this.options.logger.warn({ err: error }, 'run state check failed'));
    }, RUN_WATCH_MS);
    this.watchTimer.unref();
    this.subscriptions.push(
      await bus.subscribe({ topic: TOPICS.deliveryCommands, group: 'engine-planner', handler: (batch) => this.onCommands(batch.map((m) => m.value as DeliveryCommand)) }),
      await bus.subscribe({ topic: TOPICS.sendBatches, group: 'engine-dispatchers', maxBatchSize: 1, handler: (batch) => this.onSendBatches(batch.map((m) => m.value)) }),
    );
  }

  /** Stops taking work, lets the batches in hand finish and settle, then stops the pool. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.discoverTimer);
    clearInterval(this.heartbeatTimer);
    clearInterval(this.watchTimer);
    for (const subscription of this.subscriptions) await subscription.close();
    await Promise.allSettled(this.planners.values());
    await this.pool.destroy();
    // Everything in hand is settled or released: the others need not wait for this one to go stale.
    await this.instances.deregister(this.options.db, this.instanceId);
  }

  /**
   * Whether this engine can reach its store and its bus now: each is asked (a `SELECT 1`, the
   * broker's metadata) and given `timeoutMs` to answer. A check still unanswered is shared by
   * the next probes, so a dead store or broker never piles them up.
   */
  async readiness(timeoutMs = READINESS_TIMEOUT_MS): Promise<{ ready: true } | { ready: false; reason: string }> {
    const { db, bus } = this.options;
    this.storeCheck ??= db.query('SELECT 1').then(() => undefined).finally(() => (this.storeCheck = undefined));
    this.busCheck ??= bus.ping?.().finally(() => (this.busCheck = undefined));
    const [store, broker] = await Promise.all([failureOf(this.storeCheck, timeoutMs), failureOf(this.busCheck, timeoutMs)]);
    if (store !== undefined) return { ready: false, reason: `store: ${store}` };
    if (broker !== undefined) return { ready: false, reason: `bus: ${broker}` };
    return { ready: true };
  }

  /** This process in engine_instances (again, after another engine declared it dead). */
  private async register(): Promise<void> {
    const { db, clock } = this.options;
    const channels = this.options.channels ?? channelProviders(this.options.worker);
    await this.instances.register(db, { id: this.instanceId, host: hostname(), pid: process.pid, startedAt: clock.now().toISOString(), channels }, clock.now());
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
    const { db, clock, bus } = this.options;
    const now = Date.now();
    const perSecond = ((this.stats.messages - this.lastBeat.messages) * 1000) / Math.max(1, now - this.lastBeat.at);
    // NOTE: idle intervals say nothing of the rate: they leave the average as it was.
    const measured = this.stats.messages === this.lastBeat.messages ? this.report.measuredPerSecond : this.report.measuredPerSecond > 0 ? 0.7 * this.report.measuredPerSecond + 0.3 * perSecond : perSecond;
    this.lastBeat = { at: now, messages: this.stats.messages, count: this.lastBeat.count + 1 };
    const kafka = bus as Partial<{ assignments(): { topic: string; partitions: number[] }[]; lag(topic: string, group: string): number | Promise<number> }>;
    const assignments = kafka.assignments?.().filter((a) => a.topic === TOPICS.sendBatches);
    const live = await this.instances.live(db, ENGINE_STALE_MS, clock.now());
    const share = 1 / Math.max(1, live.length);
    this.throttles.setShare(share);
    this.throttles.prune(now);
    this.report = {
      threads: this.options.threads,
      messages: this.stats.messages,
      batches: this.stats.batches,
      messagesPerSecond: Math.round(perSecond),
      measuredPerSecond: Math.round(measured * 10) / 10,
      inFlightBatches: this.inFlight,
      partitions: assignments && assignments.length > 0 ? assignments.flatMap((a) => a.partitions).sort((a, b) => a - b) : null,
      lag: this.report.lag,
      share,
    };
    // The bus's lag is read after the heartbeat and for the next one, within a second: a broker
    // that does not answer must not stop this engine from heartbeating (it would be declared dead).
    void withTimeout(kafka.lag?.(TOPICS.sendBatches, 'engine-dispatchers'), 1000).then((lag) => {
      if (lag !== undefined) this.report.lag = lag;
    });
    if (!(await this.instances.heartbeat(db, this.instanceId, { ...this.report }, clock.now()))) {
      this.options.logger.warn({ instanceId: this.instanceId }, 'this engine was declared dead by another (a long pause?); registering again');
      await this.register();
    }
    if (this.lastBeat.count % 3 === 0) {
      // Safe at any time: a queued row is not being sent (claiming it is atomic), so at worst
      // an old batch that turns up later finds nothing to claim.
      const stale = await this.queue.requeueStaleQueued(db, QUEUED_STALE_MS, clock.now());
      if (stale > 0) this.options.logger.warn({ requeued: stale }, 'recipients queued too long without a dispatcher went back to pending');
      const reaped = await this.instances.reapDead(db, this.instanceId, ENGINE_STALE_MS, clock.now());
      if (reaped.engines.length > 0) {
        this.options.logger.warn({ ...reaped }, 'engine requeued the work of dead engines');
        await this.discover();
      }
    }
  }

  private async sendingRuns(): Promise<RunRef[]> {
    const runs = await this.options.db.query<{ delivery_id: string; occurrence: number }>(
      `SELECT id AS delivery_id, 0 AS occurrence FROM deliveries WHERE state = 'sending'
       UNION ALL SELECT delivery_id, n FROM delivery_occurrences WHERE state = 'sending'`,
    );
    return runs.map((r) => ({ deliveryId: r.delivery_id, occurrence: r.occurrence }));
  }

  private async discover(): Promise<void> {
    if (this.stopping) return;
    for (const run of await this.sendingRuns()) this.plan(run);
  }

  /**
   * At start: requeue what dead engines held (on PGlite, one process per store, every other
   * engine is dead; on PostgreSQL, those silent for ENGINE_STALE_MS) and what no engine holds,
   * then plan the sending runs again.
   */
  private async recover(): Promise<void> {
    const { db, clock, logger } = this.options;
    const staleAfter = db.kind === 'pglite' ? 0 : ENGINE_STALE_MS;
    const { inFlight, requeued, engines } = await this.instances.reapDead(db, this.instanceId, staleAfter, clock.now(), true);
    const refs = await this.sendingRuns();
    if (refs.length > 0 || requeued > 0) logger.info({ runs: refs.length, requeued, inFlight, deadEngines: engines.length }, 'engine recovered runs');
    for (const run of refs) this.plan(run);
  }

  private async onCommands(commands: DeliveryCommand[]): Promise<void> {
    for (const command of commands) {
      const key = runKey(command.deliveryId, command.occurrence);
      // Paused or stopped: the worker threads start nothing more of this run, first of all.
      if (command.type === 'DeliveryPaused' || command.type === 'DeliveryStopped') this.cancelRun(key);
      await this.dedupe.once(command.commandId, async () => undefined);
      this.runs.forget(command.deliveryId, command.occurrence);
      if (command.type === 'DeliveryStarted' || command.type === 'DeliveryResumed') {
        this.plan({ deliveryId: command.deliveryId, occurrence: command.occurrence });
      } else if (command.type === 'DeliveryStopped') {
        this.breaker.forget(key);
      }
    }
  }

  /** Starts the planner of a run unless it is already running in this process. */
  private plan(run: RunRef): void {
    const key = runKey(run.deliveryId, run.occurrence);
    if (this.planners.has(key) || this.stopping) return;
    const planner = this.planRun(run)
      .catch((error) => this.options.logger.error({ err: error, ...run }, 'planner failed'))
      .finally(() => this.planners.delete(key));
    this.planners.set(key, planner);
  }

  private async planRun(run: RunRef): Promise<void> {
    const { db, bus, clock } = this.options;
    // The first read is fresh (a planner started by resume must not see the cached 'paused');
    // then the run's state is at most the cache's age old, as the dispatchers see it.
    let fresh = true;
    // Until the first wave is judged, no more than it is handed out. A run the breaker paused
    // and someone resumed was judged already: its first wave is not held again.
    let waveJudged = await this.audit.pausedBy(db, run.deliveryId, run.occurrence, ENGINE_ACTOR.id);
    while (!this.stopping) {
      const info = await this.runs.get(run.deliveryId, run.occurrence, fresh);
      fresh = false;
      if (!info || !['sending', 'paused'].includes(info.state)) return;
      if (info.state === 'paused') {
        // NOTE: a paused run keeps its planner only briefly; resume starts a new one.
        return;
      }
      const size = batchSizeFor(info.delivery.throughput?.perHour ?? null, this.options.batchSize);
      // Backpressure on what every live engine has in hand for this run (the batches may be sent by
      // another engine). The count of batches in this process's hands holds only when its own
      // dispatchers take every batch it publishes (the in-process bus): on a shared bus, part of
      // them go to other engines' partitions (a dead engine's until the group rebalances), and
      // waiting on them stopped this engine sending while it had room.
      const window = this.maxInFlight * size * Math.max(1, Math.round(1 / this.report.share));
      const localFull = this.dispatchesAll && this.inFlight >= this.maxInFlight;
      if (localFull || (await this.queue.inFlightCount(db, run, clock.now(), ENGINE_LATE_MS)) >= window) {
        await this.waitForRoom();
        continue;
      }
      const wave = waveJudged ? undefined : firstWaveSize(info.toSend, this.options.breaker);
      const recipients = await db.transaction(async (tx) => {
        if (wave === undefined) return this.queue.queueNext(tx, run, size, clock.now(), this.instanceId);
        // The planners of every engine count the wave one at a time.
        await this.queue.lockRun(tx, run);
        const handedOut = await this.queue.handedOutCount(tx, run);
        if (handedOut < wave) return this.queue.queueNext(tx, run, Math.min(size, wave - handedOut), clock.now(), this.instanceId);
        return handedOut > wave ? 'judged' : 'wave out';
      });
      if (recipients === 'judged') {
        waveJudged = true; // by another planner: it let more out
        continue;
      }
      if (recipients === 'wave out') {
        if (await this.judgeFirstWave(run, wave!)) {
          waveJudged = true;
          fresh = true; // a trip paused the run: see it before handing anything out
        } else {
          await sleep(PLANNER_IDLE_MS);
        }
        continue;
      }
      if (recipients.length === 0) {
        if (await this.queue.isSettled(db, run)) {
          const finished = await this.options.controlPlane.deliveries.finish(run.deliveryId, run.occurrence, ENGINE_ACTOR);
          if (finished) this.options.logger.info({ ...run }, 'run finished');
          this.breaker.forget(runKey(run.deliveryId, run.occurrence));
          return;
        }
        const nextRetry = await this.queue.nextRetryAt(db, run);
        const wait = nextRetry ? Math.min(Math.max(nextRetry.getTime() - clock.now().getTime(), 10), 1000) : PLANNER_IDLE_MS;
        await sleep(wait);
        continue;
      }
      const batch: SendBatch = {
        batchId: `${run.deliveryId}:${run.occurrence}:${recipients[0]!.profileId}:${recipients[0]!.attempts}`,
        deliveryId: run.deliveryId,
        occurrence: run.occurrence,
        recipients: recipients.map((r) => ({ profileId: r.profileId, address: r.address, profile: r.profile })),
      };
      this.inFlight++;
      try {
        await bus.publish(TOPICS.sendBatches, [{ key: batch.batchId, value: batch }]);
      } catch (error) {
        // The bus refused the batch (a broker down longer than the producer's retries): give
        // its recipients back, wait, and plan them again; nothing was sent.
        this.batchDone();
        await this.queue.release(db, run, batch.recipients.map((r) => r.profileId), clock.now());
        this.options.logger.warn({ err: error, ...run, recipients: batch.recipients.length }, 'send batch not published; recipients released, retrying');
        await sleep(PUBLISH_RETRY_MS);
      }
    }
  }

  /**
   * Judges the first wave once every one of its outcomes is in (false until then), on the
   * ledger: what every engine sent of it. A trip pauses the run before anything more goes out.
   */
  private async judgeFirstWave(run: RunRef, wave: number): Promise<boolean> {
    const { db } = this.options;
    const info = await this.runs.get(run.deliveryId, run.occurrence, true);
    // Not sending any more (the loop sees it), or the breaker spoke already (a dispatcher).
    if (info?.state !== 'sending' || (await this.audit.pausedBy(db, run.deliveryId, run.occurrence, ENGINE_ACTOR.id))) return true;
    if ((await this.queue.inFlightCount(db, run, this.options.clock.now(), ENGINE_LATE_MS)) > 0) return false;
    const tally = new Tally();
    for (const row of await this.queue.outcomesByDomain(db, run)) tally.add(breakerOutcomeOf(row), row.count);
    // Everything handed out is in: judge it even if some of it is no attempt (a status the
    // breaker does not count), rather than let the wave pass unjudged.
    const trip = judge(tally, this.options.breaker, Math.min(wave, tally.attempts));
    if (trip) await this.pauseForBreaker(run, info.epoch, trip);
    return true;
  }

  /**
   * Pauses a run the breaker tripped on in `epoch`, unless it was resumed since, or nothing is
   * left to hand out (it finishes, or waits for its retries).
   */
  private async pauseForBreaker(run: RunRef, epoch: number, trip: Trip): Promise<void> {
    if (!(await this.queue.hasUnsent(this.options.db, run))) {
      this.options.logger.debug({ ...run, reason: trip.reason }, 'circuit breaker tripped on a run with nothing left to send: not paused');
      return;
    }
    const paused = await this.options.controlPlane.deliveries.pauseRun(run.deliveryId, run.occurrence, ENGINE_ACTOR, trip.reason, trip.details, epoch);
    if (paused) {
      this.options.logger.warn({ ...run, reason: trip.reason }, 'circuit breaker paused the run');
      this.runs.forget(run.deliveryId, run.occurrence);
    }
  }

  /** Reads again the state of every run with tasks in the pool; cancels those no longer sending. */
  private async watchRuns(): Promise<void> {
    if (this.watching) return;
    this.watching = true;
    try {
      await Promise.all(
        [...this.cancellations].map(async ([key, { run }]) => {
          const info = await this.runs.get(run.deliveryId, run.occurrence, true);
          if (info?.state !== 'sending') this.cancelRun(key);
        }),
      );
    } finally {
      this.watching = false;
    }
  }

  private cancelRun(key: string): void {
    for (const flag of this.cancellations.get(key)?.flags ?? []) Atomics.store(flag, 0, 1);
  }

  /** Runs a task in the pool with a cancellation flag registered for its run. */
  private async runTask(run: RunRef, task: SendTask): Promise<SendTaskResult> {
    const key = runKey(run.deliveryId, run.occurrence);
    const cancel = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
    let entry = this.cancellations.get(key);
    if (!entry) {
      entry = { run, flags: new Set() };
      this.cancellations.set(key, entry);
    }
    entry.flags.add(cancel);
    try {
      return (await this.pool.run({ ...task, cancel } satisfies SendTask)) as SendTaskResult;
    } finally {
      entry.flags.delete(cancel);
      if (entry.flags.size === 0 && this.cancellations.get(key) === entry) this.cancellations.delete(key);
    }
  }

  private waitForRoom(): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        const index = this.waiting.indexOf(wake);
        if (index >= 0) this.waiting.splice(index, 1);
        resolve();
      };
      // NOTE: another process may have taken the batch (shared bus): never wait forever.
      const timer = setTimeout(wake, 100);
      timer.unref();
      this.waiting.push(wake);
    });
  }

  private batchDone(): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
    this.waiting.shift()?.();
  }

  private async onSendBatches(values: unknown[]): Promise<void> {
    for (const value of values) {
      const parsed = sendBatchSchema.safeParse(value);
      if (!parsed.success) {
        const reason = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
        this.options.logger.error({ reason }, 'malformed SendBatch sent to the DLQ');
        const key = String((value as { batchId?: unknown } | null)?.batchId ?? 'poison');
        await this.options.bus.publish(dlqTopic(TOPICS.sendBatches), [{ key, value: { reason, key, value } }]);
        continue;
      }
      try {
        await this.dispatch(parsed.data);
      } finally {
        this.batchDone();
      }
    }
  }

  /** Claims the batch's recipients, sends them through the pool, settles outcomes and events. */
  private async dispatch(batch: SendBatch): Promise<void> {
    if (batch.proof) return this.dispatchProof(batch);
    const { db, clock, logger } = this.options;
    const run = { deliveryId: batch.deliveryId, occurrence: batch.occurrence };
    const ids = batch.recipients.map((r) => r.profileId);
    const info = await this.runs.get(run.deliveryId, run.occurrence);
    if (info?.state !== 'sending' || this.stopping) {
      await this.queue.release(db, run, ids, clock.now());
      return;
    }
    if (info.delivery.channel === 'sms' && !this.options.worker.httpProviderUrl) {
      // Nothing can be sent: say so once, in the run's state, rather than fail each message.
      await this.queue.release(db, run, ids, clock.now());
      const reason = 'CHANNEL_NOT_CONFIGURED: this engine cannot send sms: HTTP_PROVIDER_URL is not set (set it and restart the engine, then resume)';
      if (await this.options.controlPlane.deliveries.pauseRun(run.deliveryId, run.occurrence, ENGINE_ACTOR, reason)) {
        logger.warn({ ...run }, 'sms run paused: no sms provider configured');
        this.runs.forget(run.deliveryId, run.occurrence);
      }
      return;
    }
    const delivery = info.delivery;
    // Suppression is checked again in the claim; the recipients it excludes are settled with
    // their 'excluded' events in the same transaction, so a crash cannot separate the two.
    const { toSend: claimed, excluded } = await db.transaction(async (tx) => {
      const claim = await this.queue.claim(tx, run, ids, clock.now(), this.instanceId);
      if (claim.excluded.length > 0) {
        const now = clock.now();
        const events = claim.excluded.map((e) => excludedEvent(e, run, delivery.channel, now));
        await this.outbox.enqueueFanout(tx, { commandId: randomUUID(), topic: TOPICS.messageEvents, key: run.deliveryId, payloads: events });
      }
      return claim;
    });
    if (excluded.length > 0) logger.info({ ...run, excluded: excluded.length }, 'recipients suppressed since preparation were not sent');
    const recipients = batch.recipients.filter((r) => claimed.has(r.profileId));
    if (recipients.length === 0) return;
    const slots = this.throttles.schedule(
      runKey(run.deliveryId, run.occurrence),
      delivery.throughput?.perHour ?? null,
      recipients.map((r) => ({ id: r.profileId, address: r.address })),
      Date.now(),
    );
    // A recipient whose slot is past the horizon does not wait in a worker thread (it would hold
    // up the others): back to the ledger until its slot, no attempt spent.
    const later = recipients.flatMap((r, i) => (slots[i]!.later ? [{ profileId: r.profileId, dueAt: new Date(slots[i]!.requeueAt) }] : []));
    if (later.length > 0) await this.queue.unclaim(db, run, later, clock.now());
    // The others, those due now first: a lane waits for a send time only behind earlier ones.
    const due = recipients
      .map((r, i) => ({ profileId: r.profileId, address: r.address, profile: r.profile ?? { id: r.profileId }, notBefore: slots[i]!.at, later: slots[i]!.later }))
      .filter((r) => !r.later)
      .sort((a, b) => a.notBefore - b.notBefore)
      .map(({ later: _, ...r }) => r);
    if (due.length === 0) return;
    const task: SendTask = {
      deliveryId: run.deliveryId,
      occurrence: run.occurrence,
      contentKey: `${delivery.id}:${delivery.contentHash}`,
      channel: delivery.channel,
      content: delivery.content,
      recipients: due,
    };
    const result = await this.runTask(run, task);
    const unreadable = result.attempts.find((a) => a.errorCode === PROVIDER_ANSWER_INVALID);
    if (unreadable) {
      logger.warn({ ...run, messages: result.attempts.filter((a) => a.errorCode === PROVIDER_ANSWER_INVALID).length, answer: unreadable.response }, 'the sms provider answered outside its contract; those messages are in doubt');
    }
    const now = clock.now();
    const outcomes: (ClassifiedOutcome & { address: string })[] = result.attempts.map((attempt) => {
      const counts = claimed.get(attempt.profileId) ?? { attempts: 1, firstAttemptAt: now };
      return { ...classify(attempt, counts.attempts, counts.firstAttemptAt, now, this.options.retry), address: attempt.address };
    });
    await db.transaction(async (tx) => {
      await this.queue.settle(tx, run, outcomes, now);
      await this.queue.unclaim(tx, run, result.notAttempted.map((profileId) => ({ profileId })), now);
      await this.profiles.quarantine(tx, outcomes.filter((o) => o.kind === 'hard').map((o) => o.profileId));
      // A soft bounce given up after the validity period counts toward the soft-bounce quarantine.
      const softBounced = outcomes.filter((o) => o.kind === 'soft_final').map((o) => o.profileId);
      await this.profiles.recordSoftBounces(tx, softBounced, now, this.options.controlPlane.context.settings.softBounces ?? DEFAULT_SOFT_BOUNCE_RULE);
      // One outbox row for the batch's events (the relay publishes them one by one, keyed by delivery).
      const events = outcomes.flatMap((o) => eventsFor(o, run, delivery.channel, now));
      await this.outbox.enqueueFanout(tx, { commandId: randomUUID(), topic: TOPICS.messageEvents, key: run.deliveryId, payloads: events });
    });
    this.stats.batches++;
    this.stats.messages += outcomes.length;
    const trip = this.breaker.observe(runKey(run.deliveryId, run.occurrence), info.epoch, info.toSend, outcomes);
    if (trip) await this.pauseForBreaker(run, info.epoch, trip);
  }

  /**
   * A proof goes out like the real message, with its subject prefix, and leaves no trace in the
   * ledger or KPIs. Its links are kept with it (from the very content rendered), so they
   * redirect even before the delivery is prepared, or after its content changed.
   */
  private async dispatchProof(batch: SendBatch): Promise<void> {
    const info = await this.runs.get(batch.deliveryId, batch.occurrence, true);
    if (!info) return;
    const delivery = info.delivery;
    const proofId = batch.proof!.proofId;
    await this.queue.saveProofLinks(this.options.db, { proofId, deliveryId: delivery.id }, delivery.content.html ? extractLinks(delivery.content.html) : []);
    const result = (await this.pool.run({
      deliveryId: batch.deliveryId,
      occurrence: batch.occurrence,
      contentKey: `${delivery.id}:${delivery.version}:proof`,
      channel: delivery.channel,
      content: delivery.content,
      subjectPrefix: batch.proof!.subjectPrefix,
      proofId,
      recipients: batch.recipients.map((r) => ({ profileId: r.profileId, address: r.address, profile: r.profile ?? {}, notBefore: 0 })),
    } satisfies SendTask)) as SendTaskResult;
    for (const attempt of result.attempts) {
      this.options.logger.info(
        { proofId: batch.proof!.proofId, deliveryId: batch.deliveryId, to: attempt.address, ok: attempt.ok, code: attempt.code, response: attempt.response },
        'proof sent',
      );
    }
  }
}

/** Why `check` failed or did not settle within `ms`; undefined when it succeeded (or there is none). */
async function failureOf(check: Promise<unknown> | undefined, ms: number): Promise<string | undefined> {
  if (check === undefined) return undefined;
  const settled = await withTimeout(
    check.then(
      () => ({ ok: true as const }),
      (error: unknown) => ({ ok: false as const, reason: error instanceof Error ? error.message : String(error) }),
    ),
    ms,
  );
  if (settled === undefined) return `no answer within ${ms} ms`;
  return settled.ok ? undefined : settled.reason;
}

/** The value, or undefined if it takes longer than `ms` (or fails). */
async function withTimeout<T>(value: Promise<T> | T | undefined, ms: number): Promise<T | undefined> {
  if (value === undefined) return undefined;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([Promise.resolve(value).catch(() => undefined), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
