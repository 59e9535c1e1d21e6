// Rate limits as schedules (GCRA): each message gets the earliest time it may leave so that
// the rate holds. The dispatcher assigns these times in the main thread, so limits hold across
// every worker thread without shared memory.
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
    const tat = Math.max(this.tat, now);
    this.tat = tat + this.intervalMs;
    return Math.max(now, tat - (this.burst - 1) * this.intervalMs);
  }
}

/** The limits of one engine: per receiving domain (from configuration) and per delivery. */
export class Throttles {
  private readonly domains = new Map<string, RateSchedule>();
  private readonly deliveries = new Map<string, { perHour: number; schedule: RateSchedule }>();

  private share = 1;

  constructor(private readonly domainLimits: { domain: string; perSecond: number }[]) {
    this.setShare(1);
  }

  /** This engine's share of every limit (1/N when N engines share the sends). */
  setShare(share: number): void {
    if (share === this.share && this.domains.size === this.domainLimits.length) return;
    this.share = share;
    for (const limit of this.domainLimits) this.domains.set(limit.domain, new RateSchedule(limit.perSecond * share));
    this.deliveries.clear();
  }

  /** When each address may be sent: the later of its delivery's and its domain's slot. */
  schedule(deliveryKey: string, perHour: number | null, addresses: string[], now: number): number[] {
    const delivery = perHour ? this.deliverySchedule(deliveryKey, perHour) : undefined;
    return addresses.map((address) => {
      const domain = this.domains.get(address.slice(address.lastIndexOf('@') + 1).toLowerCase());
      const a = delivery?.reserve(now) ?? now;
      const b = domain?.reserve(now) ?? now;
      return Math.max(a, b);
    });
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

/** Recipients per batch for a throttled delivery: about one second of its rate, so pause acts fast. */
export function batchSizeFor(perHour: number | null, defaultSize: number): number {
  if (!perHour) return defaultSize;
  return Math.max(1, Math.min(defaultSize, Math.ceil(perHour / 3600)));
}
