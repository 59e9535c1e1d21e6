// Deliveries: lifecycle endpoints of API.md ("Deliveries"). Thin: validate, call one service.
import { Body, Controller, Get, HttpCode, Inject, Param, Patch, Post, Query, UseGuards } from '@nestjs/common';
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
import { AuthGuard, RequireRole } from '../auth/auth.guard.js';
import { CurrentActor } from '../http/actor.decorator.js';
import { UuidPipe } from '../http/params.js';
import { ZodPipe } from '../http/zod.pipe.js';
import { sendProof } from '../proofs.js';
import { BUS, CONTROL_PLANE } from '../tokens.js';
import { presentDelivery } from './presenters.js';

const deliveryId = new UuidPipe('Delivery');
const pageQuery = z.strictObject({ limit: z.coerce.number().int().min(1).max(1000).default(100), after: z.string().optional() });

@Controller('v1/deliveries')
@UseGuards(AuthGuard)
export class DeliveriesController {
  constructor(
    @Inject(CONTROL_PLANE) private readonly cp: ControlPlane,
    @Inject(BUS) private readonly bus: Bus,
  ) {}

  @Post()
  @RequireRole('delivery:prepare', 'create')
  async create(@Body(new ZodPipe(createDeliverySchema)) body: z.infer<typeof createDeliverySchema>, @CurrentActor() actor: Actor) {
    return this.present(await this.cp.deliveries.create(body, actor));
  }

  @Get()
  @RequireRole('delivery:view')
  async list(@Query(new ZodPipe(listQuerySchema, 'query')) query: z.infer<typeof listQuerySchema>) {
    const page = await this.cp.deliveries.list(query);
    return { items: page.items.map(presentDelivery), nextCursor: page.nextCursor };
  }

  @Get(':id')
  @RequireRole('delivery:view')
  async get(@Param('id', deliveryId) id: string) {
    return presentDelivery(await this.cp.deliveries.view(id));
  }

  @Patch(':id')
  @RequireRole('delivery:prepare', 'edit')
  async update(
    @Param('id', deliveryId) id: string,
    @Body(new ZodPipe(updateDeliverySchema)) body: z.infer<typeof updateDeliverySchema>,
    @CurrentActor() actor: Actor,
  ) {
    return this.present(await this.cp.deliveries.update(id, body, actor));
  }

  @Post(':id/prepare')
  @HttpCode(200)
  @RequireRole('delivery:prepare', 'prepare')
  async prepare(@Param('id', deliveryId) id: string, @Body(new ZodPipe(emptyBodySchema)) _body: unknown, @CurrentActor() actor: Actor) {
    return this.present(await this.cp.deliveries.prepare(id, actor));
  }

  @Post(':id/proofs')
  @HttpCode(202)
  @RequireRole('delivery:prepare', 'proof')
  async proofs(
    @Param('id', deliveryId) id: string,
    @Body(new ZodPipe(proofRequestSchema)) body: z.infer<typeof proofRequestSchema>,
    @CurrentActor() actor: Actor,
  ) {
    return sendProof(this.cp, this.bus, id, body, actor);
  }

  @Post(':id/approve')
  @HttpCode(200)
  @RequireRole('delivery:approve', 'approve')
  async approve(@Param('id', deliveryId) id: string, @Body(new ZodPipe(emptyBodySchema)) _body: unknown, @CurrentActor() actor: Actor) {
    return this.present(await this.cp.deliveries.approve(id, actor));
  }

  @Post(':id/pause')
  @HttpCode(200)
  @RequireRole('delivery:start', 'pause')
  async pause(@Param('id', deliveryId) id: string, @Body(new ZodPipe(emptyBodySchema)) _body: unknown, @CurrentActor() actor: Actor) {
    return this.present(await this.cp.deliveries.pause(id, actor));
  }

  @Post(':id/resume')
  @HttpCode(200)
  @RequireRole('delivery:start', 'resume')
  async resume(@Param('id', deliveryId) id: string, @Body(new ZodPipe(emptyBodySchema)) _body: unknown, @CurrentActor() actor: Actor) {
    return this.present(await this.cp.deliveries.resume(id, actor));
  }

  @Post(':id/stop')
  @HttpCode(200)
  @RequireRole('delivery:start', 'stop')
  async stop(@Param('id', deliveryId) id: string, @Body(new ZodPipe(emptyBodySchema)) _body: unknown, @CurrentActor() actor: Actor) {
    return this.present(await this.cp.deliveries.stop(id, actor));
  }

  @Get(':id/exclusions')
  @RequireRole('delivery:view')
  async exclusions(@Param('id', deliveryId) id: string, @Query(new ZodPipe(pageQuery, 'query')) page: z.infer<typeof pageQuery>) {
    await this.cp.deliveries.get(id);
    const items = await this.cp.context.ledger.exclusions(this.cp.db, id, 0, page);
    return { items, next: items.length === page.limit ? items.at(-1)!.profileId : null };
  }

  @Get(':id/logs')
  @RequireRole('delivery:view')
  async logs(@Param('id', deliveryId) id: string, @Query(new ZodPipe(pageQuery, 'query')) page: z.infer<typeof pageQuery>) {
    await this.cp.deliveries.get(id);
    const items = await this.cp.context.ledger.entries(this.cp.db, id, 0, page);
    return { items, next: items.length === page.limit ? items.at(-1)!.profileId : null };
  }

  @Get(':id/audit')
  @RequireRole('delivery:view')
  async audit(@Param('id', deliveryId) id: string) {
    await this.cp.deliveries.get(id);
    return { items: await this.cp.context.audit.forDelivery(this.cp.db, id) };
  }

  private async present(delivery: Delivery) {
    return presentDelivery(await this.cp.deliveries.withActions(delivery));
  }
}
