// The circuit breaker: a hard-bounce rate, one receiving domain's 4xx rate, or the share of
// messages the SMTP server did not answer at all (down, unreachable, refusing TLS) above its
// threshold pauses the delivery with the reason, before a bad list or a blocking receiver burns
// the sender's reputation; a server refusing the session (a wrong SMTP password, say) pauses it
// at once. A rate is judged only on enough evidence: once a first wave of the run is out
// (`firstWaveSize`), and on at least `minSample` messages (in the run, or to that domain).
// Pure: the engine feeds it outcomes (each engine what it sent) or the ledger's counts by domain
// (the first wave, judged once for every engine; `breakerOutcomeOf`), and decides whether a
// pause makes sense.
export interface BreakerSettings {
  /** Share of the audience sent before the rates are judged. */
  firstWave: number;
  hardBounceRate: number;
  domain4xxRate: number;
  /** Messages (in the run, or to one domain) a rate needs before it can trip. */
  minSample: number;
}

/** An outcome as the breaker sees it; `code` null on a soft failure: the SMTP server never answered. */
export interface BreakerOutcome {
  address: string;
  kind: 'sent' | 'hard' | 'soft' | 'soft_final' | 'in_doubt' | 'session' | string;
  code?: number | null;
  error?: string | null;
}

export interface Trip {
  reason: string;
  details: Record<string, unknown>;
}

/** The recipients sent before the rates are judged: a share of the audience, at least the minimum sample, at most everyone. */
export function firstWaveSize(audience: number, settings: BreakerSettings): number {
  return Math.min(audience, Math.max(Math.ceil(audience * settings.firstWave), settings.minSample));
}

/** Outcomes counted for the rules. */
export class Tally {
  attempts = 0;
  hard = 0;
  /** Soft failures by receiving domain: the ones the receiving side answered with 4xx. */
  readonly domains = new Map<string, { attempts: number; soft: number }>();
  /**
   * Soft failures with no SMTP answer at all (connection refused, TLS refused, no greeting):
   * they say nothing of the recipient's domain, everything of the SMTP server Herald sends to.
   */
  unanswered = 0;
  lastUnanswered: string | null = null;
  /** The server's answer when it refused the session. */
  refusedSession: string | null = null;

  /** Counts `count` outcomes like this one. */
  add(outcome: BreakerOutcome, count = 1): void {
    if (outcome.kind === 'session') {
      this.refusedSession ??= outcome.error ?? 'no answer';
      return;
    }
    this.attempts += count;
    if (outcome.kind === 'hard') this.hard += count;
    const soft = outcome.kind === 'soft' || outcome.kind === 'soft_final';
    if (soft && (outcome.code ?? null) === null) {
      this.unanswered += count;
      this.lastUnanswered = outcome.error ?? this.lastUnanswered;
      return;
    }
    const domain = outcome.address.slice(outcome.address.lastIndexOf('@') + 1).toLowerCase();
    const d = this.domains.get(domain) ?? { attempts: 0, soft: 0 };
    d.attempts += count;
    if (soft) d.soft += count;
    this.domains.set(domain, d);
  }
}

/** Why the run must pause, if it must, from what was counted; `wave`: the run's first wave. */
export function judge(tally: Tally, settings: BreakerSettings, wave: number): Trip | undefined {
  // A server refusing the session refuses every message: no first wave to wait for.
  if (tally.refusedSession !== null) {
    return { reason: `CIRCUIT_BREAKER: the SMTP server refused the session: ${tally.refusedSession}`, details: { smtpAnswer: tally.refusedSession } };
  }
  if (tally.attempts < wave || tally.attempts < settings.minSample) return undefined;
  const hardRate = tally.hard / tally.attempts;
  if (hardRate > settings.hardBounceRate) {
    return {
      reason: `CIRCUIT_BREAKER: hard-bounce rate ${percent(hardRate)} is above ${percent(settings.hardBounceRate)} after ${tally.attempts} messages`,
      details: { hardBounceRate: hardRate, attempts: tally.attempts },
    };
  }
  const unansweredRate = tally.unanswered / tally.attempts;
  if (tally.unanswered >= settings.minSample && unansweredRate > settings.domain4xxRate) {
    return {
      reason: `CIRCUIT_BREAKER: the SMTP server did not answer ${percent(unansweredRate)} of ${tally.attempts} messages (last: ${tally.lastUnanswered ?? 'connection failed'})`,
      details: { unansweredRate, attempts: tally.attempts, lastError: tally.lastUnanswered },
    };
  }
  for (const [domain, d] of tally.domains) {
    const rate = d.soft / d.attempts;
    if (d.attempts >= settings.minSample && rate > settings.domain4xxRate) {
      return {
        reason: `CIRCUIT_BREAKER: ${domain} answered 4xx to ${percent(rate)} of ${d.attempts} messages (above ${percent(settings.domain4xxRate)})`,
        details: { domain, domain4xxRate: rate, attempts: d.attempts },
      };
    }
  }
  return undefined;
}

/** What one engine sent of each run, since the run last entered `sending` (its epoch): a resume judges afresh. */
export class CircuitBreaker {
  private readonly runs = new Map<string, { epoch: number; tally: Tally }>();

  constructor(private readonly settings: BreakerSettings) {}

  /** Records outcomes of a run; returns why it must pause, if it must. */
  observe(runKey: string, epoch: number, audience: number, outcomes: BreakerOutcome[]): Trip | undefined {
    let run = this.runs.get(runKey);
    if (!run || run.epoch !== epoch) {
      run = { epoch, tally: new Tally() };
      this.runs.set(runKey, run);
    }
    for (const outcome of outcomes) run.tally.add(outcome);
    return judge(run.tally, this.settings, firstWaveSize(audience, this.settings));
  }

  /** Forgets a run (it ended). */
  forget(runKey: string): void {
    this.runs.delete(runKey);
  }
}

/** Recipients of a run to one receiving domain with one ledger status (what the first wave is judged on). */
export interface DomainOutcomeCount {
  domain: string;
  status: 'sent' | 'bounced' | 'in_doubt' | 'retry' | 'failed';
  /** The last SMTP reply code's class (2, 4 or 5), null when the server never answered. */
  codeClass: 2 | 4 | 5 | null;
  count: number;
  /** One of their last errors. */
  error: string | null;
}

/** A ledger count as the breaker sees it: a 5xx on a recipient still to retry refused the session. */
export function breakerOutcomeOf(row: DomainOutcomeCount): BreakerOutcome {
  const address = `@${row.domain}`;
  switch (row.status) {
    case 'sent':
      return { address, kind: 'sent' };
    case 'bounced':
      return { address, kind: 'hard' };
    case 'in_doubt':
      return { address, kind: 'in_doubt' };
    default:
      if (row.codeClass === 5) return { address, kind: 'session', error: row.error };
      return { address, kind: 'soft', code: row.codeClass === null ? null : row.codeClass * 100, error: row.error };
  }
}

const percent = (rate: number) => `${Math.round(rate * 1000) / 10}%`;
