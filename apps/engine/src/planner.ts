// The planner: turns each sending run into send batches (keyset pages of the frozen ledger,
// recipients inline) published on herald.send-batches, one planner loop per run in this
// process. It holds back when the pool is full (backpressure on what every live engine has in
// hand for the run), holds the circuit breaker's first wave until it is judged on the ledger,
// waits for retries, and finishes the run once every recipient is settled.
// Runs are found from the delivery commands (start, resume; pause and stop cancel what is in
// the pool first), by a scan of the sending runs every DISCOVER_INTERVAL_MS (runs started on
// another bus, or whose command was lost), and at start, after requeueing what dead engines held.
import { setTimeout as sleep } from 'node:timers/promises';
import { type MessageResult, ok, retry } from '@herald/bus';
import { type DeliveryCommand, type SendBatch, TOPICS } from '@herald/contracts';
import type { CommandDeduplicator, RunRef } from '@herald/control-plane';
import { batchSizeFor, breakerOutcomeOf, firstWaveSize, judge, Tally } from '@herald/sending';
import type { EngineOptions } from './engine-options.js';
import type { InFlightBatches } from './in-flight.js';
import type { RunBreaker } from './run-breaker.js';
import type { RunCancellations } from './run-cancellations.js';
import { runKey, type RunStates } from './run-state.js';

const PLANNER_IDLE_MS = 200;
const DISCOVER_INTERVAL_MS = 1000;
const PUBLISH_RETRY_MS = 1000;

export class Planner {
  private readonly dedupe: CommandDeduplicator;
  private readonly planners = new Map<string, Promise<void>>();
  private discoverTimer?: NodeJS.Timeout;

  constructor(
    private readonly options: Pick<EngineOptions, 'bus' | 'clock' | 'logger' | 'controlPlane' | 'batchSize' | 'breaker'>,
    /** This process's id on the ledger rows it queues. */
    private readonly instanceId: string,
    private readonly parts: {
      runs: RunStates;
      inFlight: InFlightBatches;
      cancellations: RunCancellations;
      breaker: RunBreaker;
      /** This engine's share of every throughput limit (1 / live engines). */
      share: () => number;
      stopping: () => boolean;
    },
  ) {
    this.dedupe = options.controlPlane.commandDeduplicator('engine-planner');
  }

  /** Whether this process's dispatchers take every batch its planners publish (the in-process bus). */
  private get dispatchesAll(): boolean {
    return !this.options.bus.sharedAcrossProcesses;
  }

  /**
   * At start: requeue what dead engines held (on PGlite, one process per store, every other
   * engine is dead; on PostgreSQL, those silent for ENGINE_STALE_MS) and what no engine holds,
   * then plan the sending runs again.
   */
  async recover(): Promise<void> {
    const { controlPlane, clock, logger } = this.options;
    const { inFlight, requeued, engines } = await controlPlane.engines.reapAtStart(this.instanceId, clock.now());
    const refs = await controlPlane.sending.sendingRuns();
    if (refs.length > 0 || requeued > 0) logger.info({ runs: refs.length, requeued, inFlight, deadEngines: engines.length }, 'engine recovered runs');
    for (const run of refs) this.plan(run);
  }

  startDiscovery(): void {
    // NOTE: commands start runs at once; this scan also finds runs started by a gateway on
    // another bus (a separate `herald engine` process) or whose command was lost.
    this.discoverTimer = setInterval(() => {
      this.discover().catch((error) => this.options.logger.warn({ err: error }, 'run discovery failed'));
    }, DISCOVER_INTERVAL_MS);
    this.discoverTimer.unref();
  }

  stopDiscovery(): void {
    clearInterval(this.discoverTimer);
  }

  /** Until every planner of this process has returned (they stop once the engine is stopping). */
  async drain(): Promise<void> {
    await Promise.allSettled(this.planners.values());
  }

  /** Plans every sending run not planned in this process yet. */
  async discover(): Promise<void> {
    if (this.parts.stopping()) return;
    for (const run of await this.options.controlPlane.sending.sendingRuns()) this.plan(run);
  }

  /**
   * Applies the delivery commands (the bus checked them against their contract), in order: a
   * result for each. One that fails asks for a retry, and so do those after it (order per
   * delivery): the bus delivers them again, and past the retry budget puts the failing one in
   * the DLQ (the discovery scan still finds a run whose start was lost).
   */
  async onCommands(commands: DeliveryCommand[]): Promise<MessageResult[]> {
    const results: MessageResult[] = [];
    for (const command of commands) {
      try {
        await this.apply(command);
        results.push(ok());
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        results.push(retry(reason), ...commands.slice(results.length + 1).map(() => retry('after a command that failed')));
        break;
      }
    }
    return results;
  }

  private async apply(command: DeliveryCommand): Promise<void> {
    const { runs, cancellations, breaker } = this.parts;
    const key = runKey(command.deliveryId, command.occurrence);
    // Paused or stopped: the worker threads start nothing more of this run, first of all, before
    // the dedupe write. A repeated pause or stop sets the flags again: nothing changes while the
    // run is still paused or stopped; after a resume, the tasks in hand stop early and their
    // recipients not yet attempted go back to the ledger, to be sent with the rest.
    if (command.type === 'DeliveryPaused' || command.type === 'DeliveryStopped') cancellations.cancel(key);
    // Applied once per command id across the engines (a relay that died before marking a command
    // publishes it again; the bus delivers at least once).
    if (!(await this.dedupe.once(command.commandId, async () => undefined))) {
      this.options.logger.info({ commandId: command.commandId, type: command.type, deliveryId: command.deliveryId, occurrence: command.occurrence }, 'repeated delivery command skipped');
      return;
    }
    runs.forget(command.deliveryId, command.occurrence);
    if (command.type === 'DeliveryStarted' || command.type === 'DeliveryResumed') {
      this.plan({ deliveryId: command.deliveryId, occurrence: command.occurrence });
    } else if (command.type === 'DeliveryStopped') {
      breaker.forget(key);
    }
  }

  /** Starts the planner of a run unless it is already running in this process. */
  private plan(run: RunRef): void {
    const key = runKey(run.deliveryId, run.occurrence);
    if (this.planners.has(key) || this.parts.stopping()) return;
    this.options.logger.info({ ...run }, 'planning run');
    const planner = this.planRun(run)
      .catch((error) => this.options.logger.error({ err: error, ...run }, 'planner failed'))
      .finally(() => this.planners.delete(key));
    this.planners.set(key, planner);
  }

  private async planRun(run: RunRef): Promise<void> {
    const { bus, clock } = this.options;
    const { sending } = this.options.controlPlane;
    const { runs, inFlight } = this.parts;
    // The first read is fresh (a planner started by resume must not see the cached 'paused');
    // then the run's state is at most the cache's age old, as the dispatchers see it.
    let fresh = true;
    // Until the first wave is judged, no more than it is handed out. A run the breaker paused
    // and someone resumed was judged already: its first wave is not held again.
    let waveJudged = await sending.pausedByEngine(run);
    while (!this.parts.stopping()) {
      const info = await runs.get(run.deliveryId, run.occurrence, fresh);
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
      const window = inFlight.max * size * Math.max(1, Math.round(1 / this.parts.share()));
      const localFull = this.dispatchesAll && inFlight.full;
      if (localFull || (await sending.inFlightCount(run, clock.now())) >= window) {
        await inFlight.waitForRoom();
        continue;
      }
      const wave = waveJudged ? undefined : firstWaveSize(info.toSend, this.options.breaker);
      // The planners of every engine count the first wave one at a time.
      const recipients =
        wave === undefined
          ? await sending.queueNext(run, size, clock.now(), this.instanceId)
          : await sending.queueFirstWave(run, { size, wave }, clock.now(), this.instanceId);
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
        if (await sending.isSettled(run)) {
          const finished = await sending.finish(run);
          if (finished) this.options.logger.info({ ...run }, 'run finished');
          this.parts.breaker.forget(runKey(run.deliveryId, run.occurrence));
          return;
        }
        const nextRetry = await sending.nextRetryAt(run);
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
      inFlight.add();
      try {
        await bus.publish(TOPICS.sendBatches, [{ key: batch.batchId, value: batch }]);
      } catch (error) {
        // The bus refused the batch (a broker down longer than the producer's retries): give
        // its recipients back, wait, and plan them again; nothing was sent.
        inFlight.done();
        await sending.release(run, batch.recipients.map((r) => r.profileId), clock.now());
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
    const { sending } = this.options.controlPlane;
    const info = await this.parts.runs.get(run.deliveryId, run.occurrence, true);
    // Not sending any more (the loop sees it), or the breaker spoke already (a dispatcher).
    if (info?.state !== 'sending' || (await sending.pausedByEngine(run))) return true;
    if ((await sending.inFlightCount(run, this.options.clock.now())) > 0) return false;
    const tally = new Tally();
    for (const row of await sending.outcomesByDomain(run)) tally.add(breakerOutcomeOf(row), row.count);
    // Everything handed out is in: judge it even if some of it is no attempt (a status the
    // breaker does not count), rather than let the wave pass unjudged.
    const trip = judge(tally, this.options.breaker, Math.min(wave, tally.attempts));
    if (trip) await this.parts.breaker.pause(run, info.epoch, trip);
    return true;
  }
}
