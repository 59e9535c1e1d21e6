// The send engine, wired: the planner turns started runs into send batches (planner.ts); the
// dispatchers hand each batch to a fixed-size Piscina pool and settle the outcomes in the
// ledger, with their message events, in one transaction (dispatcher.ts); the registry keeps
// this engine's row among the others sharing the store and bus (registry.ts). The send rules
// themselves (classification, breaker, throttles, events) are @herald/sending's.
// This module owns the pool and the bus subscriptions, and starts and stops the parts in order.
//
// Guarantees: a recipient is settled once (claims: a redelivered batch sends nothing twice);
// after a crash, what was queued or in flight is planned again, so at most the messages in
// flight when the process died go out twice (each with its stable Message-ID); on SIGTERM the
// dispatchers finish the batches in hand, so nothing does. A pause or stop reaches the worker
// threads through a cancellation flag per task (run-cancellations.ts): they start no further
// message. The circuit breaker's first wave is held by the planner until it is judged;
// recipients whose throttle slot is far go back to the ledger rather than wait in a worker.
//
// Several engines share one store and one bus: each registers and heartbeats (engine_instances,
// with its figures for GET /v1/ops/engines); the rows it queues or claims carry its id, and the
// live engines requeue the rows of an engine whose heartbeat stopped. Each of N live engines
// enforces 1/N of every throughput limit (per delivery and per domain).
import { randomUUID } from 'node:crypto';
import type { Subscription } from '@herald/bus';
import { deliveryCommandSchema, sendBatchSchema, TOPICS } from '@herald/contracts';
import { Throttles } from '@herald/sending';
import { Piscina } from 'piscina';
import { Dispatcher } from './dispatcher.js';
import type { EngineOptions } from './engine-options.js';
import { InFlightBatches } from './in-flight.js';
import { Planner } from './planner.js';
import { ProofSender } from './proofs.js';
import { type EngineReport, EngineRegistry, type EngineStats } from './registry.js';
import { RunBreaker } from './run-breaker.js';
import { RunCancellations } from './run-cancellations.js';
import { RunStates } from './run-state.js';
import { failureOf } from './timeouts.js';

const WORKER_FILE = new URL('../dist/send-batch.worker.js', import.meta.url).href;
/** How long a readiness probe waits for the store and the bus to answer. */
const READINESS_TIMEOUT_MS = 1000;

export class Engine {
  private readonly pool: Piscina;
  private readonly registry: EngineRegistry;
  private readonly cancellations: RunCancellations;
  private readonly planner: Planner;
  private readonly dispatcher: Dispatcher;
  private readonly subscriptions: Subscription[] = [];
  private stopping = false;
  private storeCheck?: Promise<void>;
  private busCheck?: Promise<void>;
  /** This process's id in engine_instances and on the ledger rows it holds. */
  readonly instanceId = randomUUID();
  readonly stats: EngineStats = { batches: 0, messages: 0 };

  constructor(private readonly options: EngineOptions) {
    const runs = new RunStates(options.controlPlane.sending);
    const throttles = new Throttles(options.domainLimits);
    // Batches that may be in the pool or waiting for it at once.
    const inFlight = new InFlightBatches(options.threads * 2);
    const breaker = new RunBreaker(options, runs);
    const stopping = () => this.stopping;
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
    this.cancellations = new RunCancellations(runs, options.logger);
    this.registry = new EngineRegistry(options, this.instanceId, { stats: this.stats, inFlight, throttles, discover: () => this.planner.discover() });
    this.planner = new Planner(options, this.instanceId, {
      runs,
      inFlight,
      cancellations: this.cancellations,
      breaker,
      share: () => this.registry.report.share,
      stopping,
    });
    this.dispatcher = new Dispatcher(options, this.instanceId, {
      pool: this.pool,
      runs,
      inFlight,
      throttles,
      cancellations: this.cancellations,
      breaker,
      proofs: new ProofSender(options, runs, this.pool),
      stats: this.stats,
      stopping,
    });
  }

  /** What this engine reported with its last heartbeat. */
  get report(): EngineReport {
    return this.registry.report;
  }

  async start(): Promise<void> {
    const { bus } = this.options;
    await this.registry.register();
    await this.planner.recover();
    this.registry.startHeartbeat();
    this.planner.startDiscovery();
    this.cancellations.startWatching();
    this.subscriptions.push(
      // The bus checks each message against its contract: a malformed one goes to the topic's DLQ.
      await bus.subscribe({ topic: TOPICS.deliveryCommands, group: 'engine-planner', schema: deliveryCommandSchema, handler: (batch) => this.planner.onCommands(batch.map((m) => m.value)) }),
      await bus.subscribe({ topic: TOPICS.sendBatches, group: 'engine-dispatchers', schema: sendBatchSchema, maxBatchSize: 1, handler: (batch) => this.dispatcher.onSendBatches(batch.map((m) => m.value)) }),
    );
  }

  /** Stops taking work, lets the batches in hand finish and settle, then stops the pool. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.planner.stopDiscovery();
    this.registry.stopHeartbeat();
    this.cancellations.stopWatching();
    for (const subscription of this.subscriptions) await subscription.close();
    await this.planner.drain();
    await this.pool.destroy();
    await this.registry.deregister();
  }

  /**
   * Whether this engine can reach its store and its bus now: each is asked (the store's schema, the
   * broker's metadata) and given `timeoutMs` to answer. A check still unanswered is shared by
   * the next probes, so a dead store or broker never piles them up.
   */
  async readiness(timeoutMs = READINESS_TIMEOUT_MS): Promise<{ ready: true } | { ready: false; reason: string }> {
    const { controlPlane, bus } = this.options;
    this.storeCheck ??= controlPlane.health.ping().finally(() => (this.storeCheck = undefined));
    this.busCheck ??= bus.ping?.().finally(() => (this.busCheck = undefined));
    const [store, broker] = await Promise.all([failureOf(this.storeCheck, timeoutMs), failureOf(this.busCheck, timeoutMs)]);
    if (store !== undefined) return { ready: false, reason: `store: ${store}` };
    if (broker !== undefined) return { ready: false, reason: `bus: ${broker}` };
    return { ready: true };
  }
}
