// The pool's backpressure: the send batches this engine's planners handed out and its
// dispatchers have not settled yet, across every run. A planner with no room waits until a
// dispatcher settles a batch, or a short while (on a shared bus another engine may have taken
// the batch it waits on).
export class InFlightBatches {
  private count = 0;
  private readonly waiting: (() => void)[] = [];

  /** `max`: batches that may be in the pool or waiting for it at once. */
  constructor(readonly max: number) {}

  /** Batches handed out and not yet settled. */
  get size(): number {
    return this.count;
  }

  get full(): boolean {
    return this.count >= this.max;
  }

  /** A batch was handed out. */
  add(): void {
    this.count++;
  }

  /** A batch was settled (or given back): wakes one waiting planner. */
  done(): void {
    this.count = Math.max(0, this.count - 1);
    this.waiting.shift()?.();
  }

  waitForRoom(): Promise<void> {
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
}
