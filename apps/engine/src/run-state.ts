// What the engine needs to know about a delivery run (a delivery, or one occurrence of a
// recurring one): its state, content and limits, read from the control plane and cached
// briefly so a pause or stop is seen within a fraction of a second.
import type { RunSnapshot, SendingService } from '@herald/control-plane';

export interface RunInfo extends RunSnapshot {
  readAt: number;
}

export const runKey = (deliveryId: string, occurrence: number) => `${deliveryId}:${occurrence}`;

export class RunStates {
  private readonly cache = new Map<string, RunInfo>();

  constructor(
    private readonly sending: Pick<SendingService, 'run'>,
    private readonly maxAgeMs = 250,
  ) {}

  async get(deliveryId: string, occurrence: number, fresh = false): Promise<RunInfo | undefined> {
    const key = runKey(deliveryId, occurrence);
    const cached = this.cache.get(key);
    if (!fresh && cached && Date.now() - cached.readAt < this.maxAgeMs) return cached;
    const run = await this.sending.run(deliveryId, occurrence);
    if (!run) return undefined;
    const info = { ...run, readAt: Date.now() };
    this.cache.set(key, info);
    return info;
  }

  forget(deliveryId: string, occurrence: number): void {
    this.cache.delete(runKey(deliveryId, occurrence));
  }
}
