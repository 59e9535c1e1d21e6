// The two-step confirmation: *Confirm send* (201, a confirmation bound to what the user saw),
// then *OK* (202). The same for one run of a recurring delivery.
import { Body, Controller, Inject, Param, UseGuards } from '@nestjs/common';
import { type Actor, type ControlPlane, emptyBodySchema, DomainError } from '@herald/control-plane';
import { AuthGuard } from '../auth/auth.guard.js';
import { CurrentActor } from '../http/actor.decorator.js';
import type { Metrics } from '../http/metrics.js';
import { confirmationIdParam, deliveryIdParam, occurrenceParam } from '../http/params.js';
import { confirmationTicketSchema, okResultSchema } from '../http/responses.js';
import { Route } from '../http/route.js';
import { CONTROL_PLANE, METRICS } from '../tokens.js';

// CONFIRMATION_STALE: the delivery changed, another Confirm send voided this one, or another user opened it.
const OK_ERRORS = ['INVALID_STATE', 'CONFIRMATION_STALE', 'CONFIRMATION_EXPIRED'] as const;

@Controller('v1/deliveries/:id')
@UseGuards(AuthGuard)
export class ConfirmationsController {
  constructor(
    @Inject(CONTROL_PLANE) private readonly cp: ControlPlane,
    @Inject(METRICS) private readonly metrics: Metrics,
  ) {}

  @Route({
    method: 'post',
    path: 'confirmations',
    summary:
      'Step 1, Confirm send: a confirmation bound to the summary shown (exclusions counted now, with what changed since preparation); earlier pending ones are voided. 400 SEND_TIME_PAST: the schedule is already past (unless schedule.sendNow); 409 CHANNEL_NOT_CONFIGURED: no running engine can send the channel',
    role: 'delivery:start',
    action: 'confirm',
    params: { id: deliveryIdParam },
    body: emptyBodySchema,
    response: confirmationTicketSchema,
    errors: ['INVALID_STATE', 'SEND_TIME_PAST', 'CHANNEL_NOT_CONFIGURED'],
    tag: 'confirmation',
  })
  async confirm(@Param('id') id: string, @Body() _body: unknown, @CurrentActor() actor: Actor) {
    return this.count('confirm_send', () => this.cp.confirmations.confirm(id, actor));
  }

  @Route({
    method: 'post',
    path: 'confirmations/:confirmationId/ok',
    summary: 'Step 2, OK: start or schedule the send; a repeat starts nothing and answers {state: the state now, startedAs}',
    role: 'delivery:start',
    action: 'ok',
    params: { id: deliveryIdParam, confirmationId: confirmationIdParam },
    body: emptyBodySchema,
    status: 202,
    response: okResultSchema,
    errors: OK_ERRORS,
    tag: 'confirmation',
  })
  async ok(
    @Param('id') id: string,
    @Param('confirmationId') cid: string,
    @Body() _body: unknown,
    @CurrentActor() actor: Actor,
  ) {
    return this.count('ok', () => this.cp.confirmations.ok(id, cid, actor));
  }

  @Route({
    method: 'post',
    path: 'occurrences/:n/confirmations',
    summary: 'Confirm send for one run of a recurring delivery',
    role: 'delivery:start',
    action: 'confirm',
    params: { id: deliveryIdParam, n: occurrenceParam },
    body: emptyBodySchema,
    response: confirmationTicketSchema,
    errors: ['INVALID_STATE', 'CHANNEL_NOT_CONFIGURED'],
    tag: 'confirmation',
  })
  async confirmOccurrence(
    @Param('id') id: string,
    @Param('n') n: number,
    @Body() _body: unknown,
    @CurrentActor() actor: Actor,
  ) {
    return this.count('confirm_send', () => this.cp.confirmations.confirm(id, actor, n));
  }

  @Route({
    method: 'post',
    path: 'occurrences/:n/confirmations/:confirmationId/ok',
    summary: 'OK for one run of a recurring delivery',
    role: 'delivery:start',
    action: 'ok',
    params: { id: deliveryIdParam, n: occurrenceParam, confirmationId: confirmationIdParam },
    body: emptyBodySchema,
    status: 202,
    response: okResultSchema,
    errors: OK_ERRORS,
    tag: 'confirmation',
  })
  async okOccurrence(
    @Param('id') id: string,
    @Param('n') n: number,
    @Param('confirmationId') cid: string,
    @Body() _body: unknown,
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
