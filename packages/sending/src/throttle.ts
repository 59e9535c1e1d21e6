// Rate limits as schedules (GCRA): each message gets the earliest time it may leave so that
// the rate holds. The dispatcher assigns these times in the main thread, so limits hold across
// every worker thread without shared memory.
// A limited domain must never hold up anyone else: a message whose time is more than a horizon
// (a quarter of a second) away does not wait in a worker thread — where it would hold the
// batch's pool slot and the engine's in-flight budget — but goes back to the ledger until a
// little before its time, its slot kept for it (reserved once: when it comes back to this
// engine, it waits in the worker for that slot).
export class RateSchedule {
  /** The theoretical arrival time of the next message at the exact rate. */
  private tat = 0;
  private readonly intervalMs: number;

  /** `perSecond` messages per second, with bursts of up to `burst` messages at once. */
  constructor(
    perSecond: number,
    private readonly burst = 1,
  ) {
    this.intervalMs = 1000 / perSecond;
  }

  /** The time (ms since epoch) the next message may go, reserving its slot. */
  reserve(now: number): number {
    const slot = this.peek(now);
    this.tat = Math.max(this.tat, now) + this.intervalMs;
    return slot;
  }

  /** The time the next message would get, without reserving it. */
  peek(now: number): number {
    return Math.max(now, Math.max(this.tat, now) - (this.burst - 1) * this.intervalMs);
  }
}

/** When one recipient may be sent. */
export interface Slot {
  at: number;
  /**
   * Past the horizon: give the recipient back to the ledger until `requeueAt` (half a horizon
   * before `at`, so that it is back in a worker in time); its slot stays reserved for it.
   */
  later: boolean;
  requeueAt: number;
}

/** The limits of one engine: per receiving domain (from configuration) and per delivery. */
export class Throttles {
  private readonly domains = new Map<string, RateSchedule>();
  private readonly deliveries = new Map<string, { perHour: number; schedule: RateSchedule }>();
  /** Slots reserved for recipients given back to the ledger, by delivery run and recipient. */
  private readonly held = new Map<string, { at: number; deliveryReserved: boolean }>();

  private share = 1;

  constructor(
    private readonly domainLimits: { domain: string; perSecond: number }[],
    /** How far ahead a message may be scheduled and still wait in a worker thread. */
    private readonly horizonMs = 250,
  ) {
    this.setShare(1);
  }

  /** This engine's share of every limit (1/N when N engines share the sends). */
  setShare(share: number): void {
    if (share === this.share && this.domains.size === this.domainLimits.length) return;
    this.share = share;
    for (const limit of this.domainLimits) this.domains.set(limit.domain, new RateSchedule(limit.perSecond * share));
    this.deliveries.clear();
    this.held.clear();
  }

  /**
   * When each recipient may be sent: the later of its delivery's and its domain's slot, or, past
   * the horizon, when to hand it out again. A recipient whose domain slot is far reserves that
   * slot only (not a delivery slot it would hold unused meanwhile); it takes its delivery slot
   * when it comes back.
   */
  schedule(deliveryKey: string, perHour: number | null, recipients: { id: string; address: string }[], now: number): Slot[] {
    const delivery = perHour ? this.deliverySchedule(deliveryKey, perHour) : undefined;
    return recipients.map(({ id, address }) => {
      const key = `${deliveryKey}\u0000${id}`;
      let held = this.held.get(key);
      this.held.delete(key);
      // A held slot missed by more than half a horizon is lost (sending now would burst): reserve again.
      if (held && held.at < now - this.horizonMs / 2) held = undefined;
      if (held && (held.deliveryReserved || held.at - now > this.horizonMs)) return this.hold(key, held, now);
      const domain = this.domains.get(address.slice(address.lastIndexOf('@') + 1).toLowerCase());
      let domainSlot = held?.at ?? now;
      if (!held && domain) {
        domainSlot = domain.reserve(now);
        if (domainSlot - now > this.horizonMs) return this.hold(key, { at: domainSlot, deliveryReserved: false }, now);
      }
      const at = Math.max(domainSlot, delivery?.reserve(now) ?? now);
      return at - now > this.horizonMs ? this.hold(key, { at, deliveryReserved: true }, now) : { at, later: false, requeueAt: at };
    });
  }

  /** Forgets held slots already missed (their recipients went to another engine, or the run stopped). */
  prune(now: number): void {
    for (const [key, held] of this.held) if (held.at < now - this.horizonMs / 2) this.held.delete(key);
  }

  private hold(key: string, held: { at: number; deliveryReserved: boolean }, now: number): Slot {
    if (held.at - now <= this.horizonMs) return { at: held.at, later: false, requeueAt: held.at };
    this.held.set(key, held);
    return { at: held.at, later: true, requeueAt: held.at - this.horizonMs / 2 };
  }

  private deliverySchedule(key: string, perHour: number): RateSchedule {
    let entry = this.deliveries.get(key);
    if (!entry || entry.perHour !== perHour) {
      entry = { perHour, schedule: new RateSchedule((perHour * this.share) / 3600) };
      this.deliveries.set(key, entry);
    }
    return entry.schedule;
  }
}

/** Recipients per batch for a throttled delivery: about one second of its rate (the horizon a worker waits). */
export function batchSizeFor(perHour: number | null, defaultSize: number): number {
  if (!perHour) return defaultSize;
  return Math.max(1, Math.min(defaultSize, Math.ceil(perHour / 3600)));
}
