// Deliveries: lifecycle endpoints of API.md ("Deliveries"). Thin: validate, call one service.
import { Body, Controller, Inject, Param, Query, UseGuards } from '@nestjs/common';
import {
  type Actor,
  type ControlPlane,
  type Delivery,
  createDeliverySchema,
  emptyBodySchema,
  listQuerySchema,
  proofRequestSchema,
  updateDeliverySchema,
} from '@herald/control-plane';
import type { Bus } from '@herald/bus';
import { z } from 'zod';
import { AuthGuard } from '../auth/auth.guard.js';
import { CurrentActor } from '../http/actor.decorator.js';
import { deliveryIdParam } from '../http/params.js';
import { Route } from '../http/route.js';
import { sendProof } from '../proofs.js';
import { BUS, CONTROL_PLANE } from '../tokens.js';
import { presentDelivery } from './presenters.js';

const params = { id: deliveryIdParam };
const pageQuery = z.strictObject({ limit: z.coerce.number().int().min(1).max(1000).default(100), after: z.string().optional() });

@Controller('v1/deliveries')
@UseGuards(AuthGuard)
export class DeliveriesController {
  constructor(
    @Inject(CONTROL_PLANE) private readonly cp: ControlPlane,
    @Inject(BUS) private readonly bus: Bus,
  ) {}

  @Route({ method: 'post', path: '/', summary: 'Create a draft delivery', role: 'delivery:prepare', action: 'create', body: createDeliverySchema, tag: 'deliveries' })
  async create(@Body() body: z.infer<typeof createDeliverySchema>, @CurrentActor() actor: Actor) {
    return this.present(await this.cp.deliveries.create(body, actor));
  }

  @Route({ method: 'get', path: '/', summary: 'List deliveries, newest first (cursor paging)', role: 'delivery:view', query: listQuerySchema, tag: 'deliveries' })
  async list(@Query() query: z.infer<typeof listQuerySchema>) {
    const page = await this.cp.deliveries.list(query);
    return { items: page.items.map(presentDelivery), nextCursor: page.nextCursor };
  }

  @Route({
    method: 'get',
    path: ':id',
    summary: 'One delivery with its state, preparation and actions (exactly those the API accepts now)',
    role: 'delivery:view',
    params,
    tag: 'deliveries',
  })
  async get(@Param('id') id: string) {
    return presentDelivery(await this.cp.deliveries.view(id));
  }

  @Route({
    method: 'patch',
    path: ':id',
    summary: 'Edit; a prepared delivery goes back to draft and pending confirmations die',
    role: 'delivery:prepare',
    action: 'edit',
    params,
    body: updateDeliverySchema,
    errors: ['INVALID_STATE'],
    tag: 'deliveries',
  })
  async update(
    @Param('id') id: string,
    @Body() body: z.infer<typeof updateDeliverySchema>,
    @CurrentActor() actor: Actor,
  ) {
    return this.present(await this.cp.deliveries.update(id, body, actor));
  }

  @Route({
    method: 'post',
    path: ':id/prepare',
    summary: 'Count the audience, apply exclusions, freeze the recipients: draft → ready',
    role: 'delivery:prepare',
    action: 'prepare',
    params,
    body: emptyBodySchema,
    status: 200,
    errors: ['INVALID_STATE'],
    tag: 'deliveries',
  })
  async prepare(@Param('id') id: string, @Body() _body: unknown, @CurrentActor() actor: Actor) {
    return this.present(await this.cp.deliveries.prepare(id, actor));
  }

  @Route({
    method: 'post',
    path: ':id/proofs',
    summary: 'Send a proof (subject prefix; its links work, in any state, and are never counted in the KPIs)',
    role: 'delivery:prepare',
    action: 'proof',
    params,
    body: proofRequestSchema,
    status: 202,
    // INVALID_STATE: proofs are sent for email deliveries.
    errors: ['INVALID_STATE'],
    tag: 'deliveries',
  })
  async proofs(
    @Param('id') id: string,
    @Body() body: z.infer<typeof proofRequestSchema>,
    @CurrentActor() actor: Actor,
  ) {
    return sendProof(this.cp, this.bus, id, body, actor);
  }

  @Route({
    method: 'post',
    path: ':id/approve',
    summary: 'ready → approved',
    role: 'delivery:approve',
    action: 'approve',
    params,
    body: emptyBodySchema,
    status: 200,
    errors: ['INVALID_STATE'],
    tag: 'deliveries',
  })
  async approve(@Param('id') id: string, @Body() _body: unknown, @CurrentActor() actor: Actor) {
    return this.present(await this.cp.deliveries.approve(id, actor));
  }

  @Route({
    method: 'post',
    path: ':id/pause',
    summary: 'Pause a send, or a schedule and its runs in progress',
    role: 'delivery:start',
    action: 'pause',
    params,
    body: emptyBodySchema,
    status: 200,
    errors: ['INVALID_STATE'],
    tag: 'deliveries',
  })
  async pause(@Param('id') id: string, @Body() _body: unknown, @CurrentActor() actor: Actor) {
    return this.present(await this.cp.deliveries.pause(id, actor));
  }

  @Route({
    method: 'post',
    path: ':id/resume',
    summary: 'Resume a paused delivery (and its paused runs)',
    role: 'delivery:start',
    action: 'resume',
    params,
    body: emptyBodySchema,
    status: 200,
    errors: ['INVALID_STATE'],
    tag: 'deliveries',
  })
  async resume(@Param('id') id: string, @Body() _body: unknown, @CurrentActor() actor: Actor) {
    return this.present(await this.cp.deliveries.resume(id, actor));
  }

  @Route({
    method: 'post',
    path: ':id/stop',
    summary: 'Stop (cancel) a delivery and its runs not finished',
    role: 'delivery:start',
    action: 'stop',
    params,
    body: emptyBodySchema,
    status: 200,
    errors: ['INVALID_STATE'],
    tag: 'deliveries',
  })
  async stop(@Param('id') id: string, @Body() _body: unknown, @CurrentActor() actor: Actor) {
    return this.present(await this.cp.deliveries.stop(id, actor));
  }

  @Route({
    method: 'get',
    path: ':id/exclusions',
    summary: 'Exclusion log: reason per excluded profile, and whether at preparation or at send time (stage, excludedAt)',
    role: 'delivery:view',
    params,
    query: pageQuery,
    tag: 'deliveries',
  })
  async exclusions(@Param('id') id: string, @Query() page: z.infer<typeof pageQuery>) {
    await this.cp.deliveries.get(id);
    const items = await this.cp.logs.exclusions(id, page);
    return { items, next: items.length === page.limit ? items.at(-1)!.profileId : null };
  }

  @Route({
    method: 'get',
    path: ':id/logs',
    summary: 'Sending logs: one row per recipient with its latest status (excluded_at_send and stopped with the reason)',
    role: 'delivery:view',
    params,
    query: pageQuery,
    tag: 'deliveries',
  })
  async logs(@Param('id') id: string, @Query() page: z.infer<typeof pageQuery>) {
    await this.cp.deliveries.get(id);
    const items = await this.cp.logs.sendingLogs(id, page);
    return { items, next: items.length === page.limit ? items.at(-1)!.profileId : null };
  }

  @Route({ method: 'get', path: ':id/audit', summary: 'Audit log: every confirmation step and state change', role: 'delivery:view', params, tag: 'deliveries' })
  async audit(@Param('id') id: string) {
    await this.cp.deliveries.get(id);
    return { items: await this.cp.logs.audit(id) };
  }

  private async present(delivery: Delivery) {
    return presentDelivery(await this.cp.deliveries.withActions(delivery));
  }
}
