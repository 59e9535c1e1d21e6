// What the engine needs to know about a delivery run (a delivery, or one occurrence of a
// recurring one): its state, content and limits, read from the control plane and cached
// briefly so a pause or stop is seen within a fraction of a second.
import type { Database, Delivery } from '@herald/control-plane';
import { AuditRepository, DeliveriesRepository } from '@herald/control-plane';

export interface RunInfo {
  deliveryId: string;
  occurrence: number;
  state: string;
  delivery: Delivery;
  toSend: number;
  /** Changes each time the run enters `sending` again (a resume): the circuit breaker judges each epoch afresh. */
  epoch: number;
  readAt: number;
}

export const runKey = (deliveryId: string, occurrence: number) => `${deliveryId}:${occurrence}`;

export class RunStates {
  private readonly deliveries = new DeliveriesRepository();
  private readonly audit = new AuditRepository();
  private readonly cache = new Map<string, RunInfo>();

  constructor(
    private readonly db: Database,
    private readonly maxAgeMs = 250,
  ) {}

  async get(deliveryId: string, occurrence: number, fresh = false): Promise<RunInfo | undefined> {
    const key = runKey(deliveryId, occurrence);
    const cached = this.cache.get(key);
    if (!fresh && cached && Date.now() - cached.readAt < this.maxAgeMs) return cached;
    const delivery = await this.deliveries.get(this.db, deliveryId);
    if (!delivery) return undefined;
    let state = delivery.state as string;
    let toSend = delivery.preparation?.toSend ?? 0;
    if (occurrence > 0) {
      const run = await this.deliveries.getOccurrence(this.db, deliveryId, occurrence);
      if (!run) return undefined;
      state = run.state;
      toSend = run.preparation.toSend;
    }
    const epoch = await this.audit.lastEntryInto(this.db, deliveryId, occurrence, 'sending');
    const info = { deliveryId, occurrence, state, delivery, toSend, epoch, readAt: Date.now() };
    this.cache.set(key, info);
    return info;
  }

  forget(deliveryId: string, occurrence: number): void {
    this.cache.delete(runKey(deliveryId, occurrence));
  }
}
