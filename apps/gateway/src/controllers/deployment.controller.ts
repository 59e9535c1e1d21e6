// The Deployment block: progress from the send ledger, and the six KPIs of the reference from
// the KPI store. Counters are live; open and click-through rates change only when the hourly
// refresh runs or on Compute stats, and every answer says when each was computed. The same
// block per run of a recurring delivery (`?occurrence=n`, and in the occurrences list).
import { Controller, Inject, Param, Query, UseGuards } from '@nestjs/common';
import { type ControlPlane, DomainError } from '@herald/control-plane';
import type { KpiStore } from '@herald/kpi-store';
import { z } from 'zod';
import { AuthGuard } from '../auth/auth.guard.js';
import { deliveryIdParam } from '../http/params.js';
import { occurrenceListSchema } from '../http/responses.js';
import { Route } from '../http/route.js';
import type { KpiPipeline } from '../kpi-pipeline.js';
import { CONTROL_PLANE, KPI_PIPELINE, KPI_STORE } from '../tokens.js';

const params = { id: deliveryIdParam };

const deploymentQuerySchema = z.strictObject({
  /** One run of a recurring delivery; without it, the whole delivery (every run). */
  occurrence: z.coerce.number().int().min(0).max(1_000_000_000).optional(),
});
type DeploymentQuery = z.infer<typeof deploymentQuerySchema>;

@Controller('v1/deliveries/:id')
@UseGuards(AuthGuard)
export class DeploymentController {
  constructor(
    @Inject(CONTROL_PLANE) private readonly cp: ControlPlane,
    @Inject(KPI_STORE) private readonly kpi: KpiStore | null,
    @Inject(KPI_PIPELINE) private readonly pipeline: KpiPipeline,
  ) {}

  @Route({
    method: 'get',
    path: 'deployment',
    summary:
      'Deployment: progress (toSend, sent, excludedAtSend, pending, stopped) and the six KPIs (a rate with a 0 denominator is null), with when counters and rates were computed (?occurrence=n: one run)',
    role: 'delivery:view',
    params,
    query: deploymentQuerySchema,
    // INVALID_STATE: this gateway runs without a KPI store.
    errors: ['INVALID_STATE'],
    tag: 'kpis',
  })
  async deployment(@Param('id') id: string, @Query() query: DeploymentQuery) {
    return this.build(id, query.occurrence);
  }

  /**
   * Compute stats: brings the KPI store up to date with every event recorded so far (relays the
   * outbox, flushes the KPI consumer), reconciles the delivery's live counters with its raw events
   * (repairs what a crash left), refreshes the rates now, and answers the fresh deployment.
   */
  @Route({
    method: 'post',
    path: 'compute-stats',
    summary:
      'Compute stats: reconcile the live counters with the raw events, refresh the open and click rates now; answers the fresh deployment',
    role: 'delivery:view',
    params,
    query: deploymentQuerySchema,
    status: 200,
    errors: ['INVALID_STATE'],
    tag: 'kpis',
  })
  async computeStats(@Param('id') id: string, @Query() query: DeploymentQuery) {
    await this.cp.deliveries.get(id);
    const store = this.store();
    await this.pipeline.catchUp();
    await this.pipeline.reconcile(id);
    await store.refreshRates();
    return this.build(id, query.occurrence);
  }

  /**
   * Runs of a recurring delivery, newest first, each with its state (a run that waited too long
   * for its confirmation: stopped, EXPIRED_UNCONFIRMED), its actions and Deployment KPIs.
   */
  @Route({
    method: 'get',
    path: 'occurrences',
    summary:
      'Runs of a recurring delivery, newest first, each with its state, actions and Deployment KPIs; at most RECURRENCE_MAX_PENDING wait for a confirmation at once, the oldest beyond it is stopped with stateReason EXPIRED_UNCONFIRMED',
    role: 'delivery:view',
    params,
    response: occurrenceListSchema,
    tag: 'confirmation',
  })
  async occurrences(@Param('id') id: string) {
    const occurrences = await this.cp.deliveries.occurrences(id);
    const items = await Promise.all(
      occurrences.map(async (occurrence) => {
        // Without a KPI store (a gateway run alone, without CLICKHOUSE_URL) the runs are listed without KPIs.
        if (!this.kpi) return { ...occurrence, kpis: null, countersAsOf: null, ratesComputedAt: null };
        const { kpis, countersAsOf, ratesComputedAt } = await this.kpisOf(id, occurrence.n, occurrence.preparation?.toSend ?? 0);
        return { ...occurrence, kpis, countersAsOf, ratesComputedAt };
      }),
    );
    return { items };
  }

  private store(): KpiStore {
    if (!this.kpi) throw new DomainError('INVALID_STATE', 'This gateway runs without a KPI store (set CLICKHOUSE_URL, or use herald start).');
    return this.kpi;
  }

  private async build(id: string, occurrence: number | undefined) {
    const delivery = await this.cp.deliveries.get(id);
    const runs = delivery.recurrence ? await this.cp.deliveries.runs(id) : [];
    const exists = occurrence === undefined || (delivery.recurrence ? runs.some((r) => r.n === occurrence) : occurrence === 0);
    if (!exists) throw new DomainError('NOT_FOUND', `Occurrence ${occurrence} of delivery ${id} does not exist.`);
    const run = runs.find((r) => r.n === occurrence);
    const toSend = run
      ? (run.preparation?.toSend ?? 0)
      : delivery.recurrence
        ? runs.reduce((sum, r) => sum + (r.preparation?.toSend ?? 0), 0)
        : (delivery.preparation?.toSend ?? 0);
    const state = run?.state ?? delivery.state;
    const stateReason = run ? run.stateReason : delivery.stateReason;
    const [progress, block] = await Promise.all([
      this.cp.logs.progress(id, occurrence),
      this.kpisOf(id, occurrence, toSend),
    ]);
    const settled = progress.sent + progress.bounced + progress.failed + progress.in_doubt;
    // Recipients suppressed after preparation are settled without being sent: neither sent nor pending.
    const excludedAtSend = progress.excluded_at_send;
    return {
      state,
      stateReason,
      ...(occurrence !== undefined ? { occurrence } : {}),
      // Recipients a stop left unsent are `stopped`, and those suppressed since preparation are
      // `excludedAtSend`: neither is pending.
      progress: { toSend, sent: settled, excludedAtSend, pending: Math.max(0, toSend - settled - excludedAtSend - progress.stopped), stopped: progress.stopped },
      ...block,
    };
  }

  private async kpisOf(id: string, occurrence: number | undefined, toSend: number) {
    const store = this.store();
    const countersAsOf = new Date().toISOString();
    const [counters, rates] = await Promise.all([store.deliveryCounters(id, { occurrence }), store.deliveryRates(id, { occurrence })]);
    return {
      kpis: {
        toSend,
        sent: counters.sent,
        delivered: counters.delivered,
        deliveredRate: counters.deliveredRate,
        bouncesAndErrors: counters.bounces + counters.errors,
        bounceRate: counters.bounceErrorRate,
        opens: rates?.uniqueOpens ?? null,
        openRate: rates?.openRate ?? null,
        clicks: rates?.uniqueClicks ?? null,
        clickRate: rates?.clickRate ?? null,
        // The six KPIs count every hit, as the reference does; these say how many of those messages
        // were opened or clicked by machines (computed with the rates).
        machineOpens: rates?.machineOpens ?? null,
        machineClicks: rates?.machineClicks ?? null,
        complaints: counters.complaints,
      },
      countersAsOf,
      ratesComputedAt: rates?.computedAt ?? null,
    };
  }
}
