// The circuit breaker as the engine applies it: what this engine sent of each run is observed
// (the rules: @herald/sending), and a trip pauses the run, unless it was resumed since or
// nothing is left to hand out. The first wave, judged on the ledger for every engine, is the
// planner's (planner.ts); it pauses through here too.
import type { RunRef } from '@herald/control-plane';
import { type BreakerOutcome, CircuitBreaker, type Trip } from '@herald/sending';
import type { EngineOptions } from './engine-options.js';
import { type RunInfo, runKey, type RunStates } from './run-state.js';

export class RunBreaker {
  private readonly breaker: CircuitBreaker;

  constructor(
    private readonly options: Pick<EngineOptions, 'controlPlane' | 'logger' | 'breaker'>,
    private readonly runs: RunStates,
  ) {
    this.breaker = new CircuitBreaker(options.breaker);
  }

  /** Records outcomes this engine settled for the run; pauses it if the breaker trips. */
  async observe(run: RunRef, info: RunInfo, outcomes: BreakerOutcome[]): Promise<void> {
    const trip = this.breaker.observe(runKey(run.deliveryId, run.occurrence), info.epoch, info.toSend, outcomes);
    if (trip) await this.pause(run, info.epoch, trip);
  }

  /**
   * Pauses a run the breaker tripped on in `epoch`, unless it was resumed since, or nothing is
   * left to hand out (it finishes, or waits for its retries).
   */
  async pause(run: RunRef, epoch: number, trip: Trip): Promise<void> {
    const { sending } = this.options.controlPlane;
    if (!(await sending.hasUnsent(run))) {
      this.options.logger.debug({ ...run, reason: trip.reason }, 'circuit breaker tripped on a run with nothing left to send: not paused');
      return;
    }
    const paused = await sending.pause(run, trip.reason, trip.details, epoch);
    if (paused) {
      this.options.logger.warn({ ...run, reason: trip.reason }, 'circuit breaker paused the run');
      this.runs.forget(run.deliveryId, run.occurrence);
    }
  }

  /** Forgets what was observed of a run (`runKey`): it ended. */
  forget(key: string): void {
    this.breaker.forget(key);
  }
}
