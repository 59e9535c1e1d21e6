// The Deployment block: progress from the send ledger, and the six KPIs of the reference from
// the KPI store. Counters are live; open and click-through rates change only when the hourly
// refresh runs or on Compute stats, and every answer says when each was computed.
import { Controller, Get, HttpCode, Inject, Param, Post, UseGuards } from '@nestjs/common';
import { type ControlPlane, DomainError } from '@herald/control-plane';
import type { KpiStore } from '@herald/kpi-store';
import { AuthGuard, RequireRole } from '../auth/auth.guard.js';
import { UuidPipe } from '../http/params.js';
import { CONTROL_PLANE, KPI_STORE } from '../tokens.js';

const deliveryId = new UuidPipe('Delivery');

@Controller('v1/deliveries/:id')
@UseGuards(AuthGuard)
export class DeploymentController {
  constructor(
    @Inject(CONTROL_PLANE) private readonly cp: ControlPlane,
    @Inject(KPI_STORE) private readonly kpi: KpiStore | null,
  ) {}

  @Get('deployment')
  @RequireRole('delivery:view')
  async deployment(@Param('id', deliveryId) id: string) {
    return this.build(id);
  }

  /** Compute stats: refreshes the rates now and answers the fresh deployment. */
  @Post('compute-stats')
  @HttpCode(200)
  @RequireRole('delivery:view')
  async computeStats(@Param('id', deliveryId) id: string) {
    await this.cp.deliveries.get(id);
    await this.store().refreshRates();
    return this.build(id);
  }

  private store(): KpiStore {
    if (!this.kpi) throw new DomainError('INVALID_STATE', 'This gateway runs without a KPI store (set CLICKHOUSE_URL, or use herald start).');
    return this.kpi;
  }

  private async build(id: string) {
    const delivery = await this.cp.deliveries.get(id);
    const store = this.store();
    const countersAsOf = new Date().toISOString();
    const [progress, counters, rates, machine] = await Promise.all([
      this.cp.context.sendQueue.progress(this.cp.db, { deliveryId: id, occurrence: 0 }),
      store.deliveryCounters(id),
      store.deliveryRates(id),
      store.machineHits(id),
    ]);
    const toSend = delivery.preparation?.toSend ?? 0;
    const settled = progress.sent + progress.bounced + progress.failed + progress.in_doubt;
    return {
      state: delivery.state,
      stateReason: delivery.stateReason,
      progress: { toSend, sent: settled, pending: Math.max(0, toSend - settled) },
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
        // The six KPIs count every hit, as the reference does; these say how much of them were machines.
        machineOpens: machine.machineOpens,
        machineClicks: machine.machineClicks,
      },
      countersAsOf,
      ratesComputedAt: rates?.computedAt ?? null,
    };
  }
}
