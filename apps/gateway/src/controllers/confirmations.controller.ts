// The two-step confirmation: *Confirm send* (201, a confirmation bound to what the user saw),
// then *OK* (202). The same for one run of a recurring delivery.
import { Body, Controller, HttpCode, Inject, Param, Post, UseGuards } from '@nestjs/common';
import { type Actor, type ControlPlane, emptyBodySchema, DomainError } from '@herald/control-plane';
import { AuthGuard, RequireRole } from '../auth/auth.guard.js';
import { CurrentActor } from '../http/actor.decorator.js';
import type { Metrics } from '../http/metrics.js';
import { OccurrencePipe, UuidPipe } from '../http/params.js';
import { ZodPipe } from '../http/zod.pipe.js';
import { CONTROL_PLANE, METRICS } from '../tokens.js';

const deliveryId = new UuidPipe('Delivery');
const confirmationId = new UuidPipe('Confirmation');
const occurrenceNumber = new OccurrencePipe();

@Controller('v1/deliveries/:id')
@UseGuards(AuthGuard)
export class ConfirmationsController {
  constructor(
    @Inject(CONTROL_PLANE) private readonly cp: ControlPlane,
    @Inject(METRICS) private readonly metrics: Metrics,
  ) {}

  @Post('confirmations')
  @RequireRole('delivery:start', 'confirm')
  async confirm(@Param('id', deliveryId) id: string, @Body(new ZodPipe(emptyBodySchema)) _body: unknown, @CurrentActor() actor: Actor) {
    return this.count('confirm_send', () => this.cp.confirmations.confirm(id, actor));
  }

  @Post('confirmations/:confirmationId/ok')
  @HttpCode(202)
  @RequireRole('delivery:start', 'ok')
  async ok(
    @Param('id', deliveryId) id: string,
    @Param('confirmationId', confirmationId) cid: string,
    @Body(new ZodPipe(emptyBodySchema)) _body: unknown,
    @CurrentActor() actor: Actor,
  ) {
    return this.count('ok', () => this.cp.confirmations.ok(id, cid, actor));
  }

  @Post('occurrences/:n/confirmations')
  @RequireRole('delivery:start', 'confirm')
  async confirmOccurrence(
    @Param('id', deliveryId) id: string,
    @Param('n', occurrenceNumber) n: number,
    @Body(new ZodPipe(emptyBodySchema)) _body: unknown,
    @CurrentActor() actor: Actor,
  ) {
    return this.count('confirm_send', () => this.cp.confirmations.confirm(id, actor, n));
  }

  @Post('occurrences/:n/confirmations/:confirmationId/ok')
  @HttpCode(202)
  @RequireRole('delivery:start', 'ok')
  async okOccurrence(
    @Param('id', deliveryId) id: string,
    @Param('n', occurrenceNumber) n: number,
    @Param('confirmationId', confirmationId) cid: string,
    @Body(new ZodPipe(emptyBodySchema)) _body: unknown,
    @CurrentActor() actor: Actor,
  ) {
    return this.count('ok', () => this.cp.confirmations.ok(id, cid, actor, n));
  }

  private async count<T>(step: string, work: () => Promise<T>): Promise<T> {
    try {
      const result = await work();
      this.metrics.confirmations.inc({ step, outcome: 'ok' });
      return result;
    } catch (error) {
      this.metrics.confirmations.inc({ step, outcome: error instanceof DomainError ? error.code : 'error' });
      throw error;
    }
  }
}
