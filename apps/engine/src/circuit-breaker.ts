// The circuit breaker: after a first wave of a run (a share of its audience), a hard-bounce rate
// or one receiving domain's 4xx rate above its threshold pauses the delivery with the reason,
// before a bad list or a blocking receiver burns the sender's reputation; a server refusing the
// session (a wrong SMTP password, say) pauses it at once, and one that does not answer at all
// (down, unreachable, refusing TLS) pauses it like a blocking domain, with the error.
export interface BreakerSettings {
  firstWave: number;
  hardBounceRate: number;
  domain4xxRate: number;
  /** A domain is judged only after this many attempts. */
  minDomainAttempts?: number;
}

interface Counts {
  attempts: number;
  hard: number;
  /** Soft failures by receiving domain: the ones the receiving side answered with 4xx. */
  domains: Map<string, { attempts: number; soft: number }>;
  /**
   * Soft failures with no SMTP answer at all (connection refused, TLS refused, no greeting):
   * they say nothing of the recipient's domain, everything of the SMTP server Herald sends to.
   */
  unanswered: number;
  lastUnanswered: string | null;
}

export interface Trip {
  reason: string;
  details: Record<string, unknown>;
}

export class CircuitBreaker {
  private readonly runs = new Map<string, Counts>();

  constructor(private readonly settings: BreakerSettings) {}

  /** Records outcomes of a run; returns why it must pause, if it must. */
  observe(runKey: string, audience: number, outcomes: { address: string; kind: string; code?: number | null; error?: string | null }[]): Trip | undefined {
    // A server refusing the session refuses every message: no first wave to wait for.
    const refused = outcomes.find((o) => o.kind === 'session');
    if (refused) {
      return { reason: `CIRCUIT_BREAKER: the SMTP server refused the session: ${refused.error ?? 'no answer'}`, details: { smtpAnswer: refused.error ?? null } };
    }
    let counts = this.runs.get(runKey);
    if (!counts) {
      counts = { attempts: 0, hard: 0, domains: new Map(), unanswered: 0, lastUnanswered: null };
      this.runs.set(runKey, counts);
    }
    for (const outcome of outcomes) {
      counts.attempts++;
      if (outcome.kind === 'hard') counts.hard++;
      const soft = outcome.kind === 'soft' || outcome.kind === 'soft_final';
      if (soft && outcome.code === null) {
        counts.unanswered++;
        counts.lastUnanswered = outcome.error ?? null;
        continue;
      }
      const domain = outcome.address.slice(outcome.address.lastIndexOf('@') + 1).toLowerCase();
      const d = counts.domains.get(domain) ?? { attempts: 0, soft: 0 };
      d.attempts++;
      if (soft) d.soft++;
      counts.domains.set(domain, d);
    }
    const wave = Math.max(1, Math.ceil(audience * this.settings.firstWave));
    if (counts.attempts < wave) return undefined;
    const hardRate = counts.hard / counts.attempts;
    if (hardRate > this.settings.hardBounceRate) {
      return {
        reason: `CIRCUIT_BREAKER: hard-bounce rate ${percent(hardRate)} is above ${percent(this.settings.hardBounceRate)} after ${counts.attempts} messages`,
        details: { hardBounceRate: hardRate, attempts: counts.attempts },
      };
    }
    const minimum = this.settings.minDomainAttempts ?? Math.min(20, wave);
    const unansweredRate = counts.unanswered / counts.attempts;
    if (counts.unanswered >= minimum && unansweredRate > this.settings.domain4xxRate) {
      return {
        reason: `CIRCUIT_BREAKER: the SMTP server did not answer ${percent(unansweredRate)} of ${counts.attempts} messages (last: ${counts.lastUnanswered ?? 'connection failed'})`,
        details: { unansweredRate, attempts: counts.attempts, lastError: counts.lastUnanswered },
      };
    }
    for (const [domain, d] of counts.domains) {
      const rate = d.soft / d.attempts;
      if (d.attempts >= minimum && rate > this.settings.domain4xxRate) {
        return {
          reason: `CIRCUIT_BREAKER: ${domain} answered 4xx to ${percent(rate)} of ${d.attempts} messages (above ${percent(this.settings.domain4xxRate)})`,
          details: { domain, domain4xxRate: rate, attempts: d.attempts },
        };
      }
    }
    return undefined;
  }

  /** Forgets a run's counts (it was resumed after a trip: judge it afresh). */
  reset(runKey: string): void {
    this.runs.delete(runKey);
  }
}

const percent = (rate: number) => `${Math.round(rate * 1000) / 10}%`;
