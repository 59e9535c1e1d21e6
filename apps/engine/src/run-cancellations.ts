// How a pause or stop reaches the worker threads: each task in the pool carries a cancellation
// flag (one Int32 in shared memory) registered under its run. The flags of a run are set when
// a command pauses or stops it, or when re-reading the state of the runs in the pool (every
// RUN_WATCH_MS) finds it no longer sending — even when another engine received the command.
// A thread whose flag is set starts no further message.
import type { RunRef } from '@herald/control-plane';
import type { Logger } from 'pino';
import { runKey, type RunStates } from './run-state.js';

/**
 * How often the state of the runs with batches in the pool is read again: a pause or stop
 * reaches this engine's worker threads within this (plus a query) even when another engine
 * received the command.
 */
const RUN_WATCH_MS = 200;

export class RunCancellations {
  /** Cancellation flags of the tasks in the pool, by run: set when the run stops sending. */
  private readonly runs = new Map<string, { run: RunRef; flags: Set<Int32Array> }>();
  private watchTimer?: NodeJS.Timeout;
  private watching = false;

  constructor(
    private readonly states: RunStates,
    private readonly logger: Logger,
  ) {}

  /** A new flag for a task of `run`, registered until the task is done (`release`). */
  register(run: RunRef): { cancel: Int32Array; release(): void } {
    const key = runKey(run.deliveryId, run.occurrence);
    const cancel = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
    let entry = this.runs.get(key);
    if (!entry) {
      entry = { run, flags: new Set() };
      this.runs.set(key, entry);
    }
    entry.flags.add(cancel);
    const registered = entry;
    return {
      cancel,
      release: () => {
        registered.flags.delete(cancel);
        if (registered.flags.size === 0 && this.runs.get(key) === registered) this.runs.delete(key);
      },
    };
  }

  /** Sets the flags of every task of the run (`runKey`) in the pool. */
  cancel(key: string): void {
    for (const flag of this.runs.get(key)?.flags ?? []) Atomics.store(flag, 0, 1);
  }

  startWatching(): void {
    this.watchTimer = setInterval(() => {
      this.watch().catch((error) => this.logger.warn({ err: error }, 'run state check failed'));
    }, RUN_WATCH_MS);
    this.watchTimer.unref();
  }

  stopWatching(): void {
    clearInterval(this.watchTimer);
  }

  /** Reads again the state of every run with tasks in the pool; cancels those no longer sending. */
  private async watch(): Promise<void> {
    if (this.watching) return;
    this.watching = true;
    try {
      await Promise.all(
        [...this.runs].map(async ([key, { run }]) => {
          const info = await this.states.get(run.deliveryId, run.occurrence, true);
          if (info?.state !== 'sending') this.cancel(key);
        }),
      );
    } finally {
      this.watching = false;
    }
  }
}
