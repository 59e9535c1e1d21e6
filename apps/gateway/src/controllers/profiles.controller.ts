// Profiles and audiences (API.md "Profiles and audiences").
import { Body, Controller, Get, HttpCode, Inject, Param, Post, Query, Req, UseGuards } from '@nestjs/common';
import { addMembersSchema, type Actor, type ControlPlane, createAudienceSchema, DomainError, importFormat } from '@herald/control-plane';
import type { FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import type { KpiStore } from '@herald/kpi-store';
import { z as zod, type z } from 'zod';
import { AuthGuard, RequireRole } from '../auth/auth.guard.js';
import { CurrentActor } from '../http/actor.decorator.js';
import type { Metrics } from '../http/metrics.js';
import { UuidPipe } from '../http/params.js';
import { ZodPipe } from '../http/zod.pipe.js';
import { CONTROL_PLANE, KPI_STORE, METRICS } from '../tokens.js';

const historyQuery = zod.strictObject({ limit: zod.coerce.number().int().min(1).max(500).default(100) });

@Controller('v1')
@UseGuards(AuthGuard)
export class ProfilesController {
  constructor(
    @Inject(CONTROL_PLANE) private readonly cp: ControlPlane,
    @Inject(METRICS) private readonly metrics: Metrics,
    @Inject(KPI_STORE) private readonly kpi: KpiStore | null,
  ) {}

  /** Streams the body (JSON array or NDJSON); bad rows are reported, good rows land. */
  @Post('profiles/import')
  @HttpCode(200)
  @RequireRole('delivery:prepare')
  async import(@Req() request: FastifyRequest) {
    const format = importFormat(request.headers['content-type']);
    const body = request.body as Readable | undefined;
    if (!body || typeof (body as Readable)[Symbol.asyncIterator] !== 'function') {
      throw new DomainError('INVALID_INPUT', 'The import body is empty.');
    }
    const result = await this.cp.profiles.import(body, format);
    this.metrics.profilesImported.inc(result.imported);
    return result;
  }

  @Get('profiles/:id')
  @RequireRole('delivery:view')
  async profile(@Param('id') id: string) {
    return this.cp.profiles.get(id);
  }

  /** Messages sent to this profile, newest first, with when each was first opened and clicked. */
  @Get('profiles/:id/history')
  @RequireRole('delivery:view')
  async history(@Param('id') id: string, @Query(new ZodPipe(historyQuery, 'query')) query: z.infer<typeof historyQuery>) {
    await this.cp.profiles.get(id);
    const [messages, engagement] = await Promise.all([
      this.cp.context.sendQueue.historyOf(this.cp.db, id, query.limit),
      this.kpi ? this.kpi.engagementOf(id) : Promise.resolve(new Map()),
    ]);
    return {
      items: messages.map((m) => {
        const seen = m.messageId ? engagement.get(m.messageId) : undefined;
        return { ...m, openedAt: seen?.openedAt ?? null, clickedAt: seen?.clickedAt ?? null };
      }),
    };
  }

  @Post('audiences')
  @RequireRole('delivery:prepare')
  async createAudience(@Body(new ZodPipe(createAudienceSchema)) body: z.infer<typeof createAudienceSchema>, @CurrentActor() actor: Actor) {
    const { audience, members } = await this.cp.audiences.create(body, actor);
    return { ...audience, members };
  }

  @Get('audiences/:id')
  @RequireRole('delivery:view')
  async audience(@Param('id', new UuidPipe('Audience')) id: string) {
    return this.cp.audiences.get(id);
  }

  @Post('audiences/:id/members')
  @HttpCode(200)
  @RequireRole('delivery:prepare')
  async addMembers(@Param('id', new UuidPipe('Audience')) id: string, @Body(new ZodPipe(addMembersSchema)) body: z.infer<typeof addMembersSchema>) {
    return this.cp.audiences.addMembers(id, body.profileIds);
  }
}
