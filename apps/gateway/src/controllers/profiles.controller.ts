// Profiles and audiences (API.md "Profiles and audiences").
import { Body, Controller, Inject, Param, Query, Req, UseGuards } from '@nestjs/common';
import { addMembersSchema, type Actor, type ControlPlane, createAudienceSchema, DomainError, importFormat, profileSchema } from '@herald/control-plane';
import type { FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import type { KpiStore } from '@herald/kpi-store';
import { z } from 'zod';
import { AuthGuard } from '../auth/auth.guard.js';
import { CurrentActor } from '../http/actor.decorator.js';
import type { Metrics } from '../http/metrics.js';
import { audienceIdParam } from '../http/params.js';
import { Route } from '../http/route.js';
import { CONTROL_PLANE, KPI_STORE, METRICS } from '../tokens.js';

const historyQuery = z.strictObject({ limit: z.coerce.number().int().min(1).max(500).default(100) });

@Controller('v1')
@UseGuards(AuthGuard)
export class ProfilesController {
  constructor(
    @Inject(CONTROL_PLANE) private readonly cp: ControlPlane,
    @Inject(METRICS) private readonly metrics: Metrics,
    @Inject(KPI_STORE) private readonly kpi: KpiStore | null,
  ) {}

  /** Streams the body (JSON array or NDJSON); bad rows are reported, good rows land. */
  @Route({
    method: 'post',
    path: 'profiles/import',
    summary: 'Upsert profiles by id from a JSON array or NDJSON stream; bad rows are reported by index, good rows land',
    role: 'delivery:prepare',
    body: z.array(profileSchema),
    bodyTypes: ['application/json', 'application/x-ndjson'],
    streamed: true,
    status: 200,
    tag: 'profiles',
  })
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

  @Route({ method: 'get', path: 'profiles/:id', summary: 'One profile with its status', role: 'delivery:view', tag: 'profiles' })
  async profile(@Param('id') id: string) {
    return this.cp.profiles.get(id);
  }

  /** Messages sent to this profile, newest first, with when each was first opened and clicked. */
  @Route({
    method: 'get',
    path: 'profiles/:id/history',
    summary: 'Messages sent to this profile, newest first, with first open and click',
    role: 'delivery:view',
    query: historyQuery,
    tag: 'profiles',
  })
  async history(@Param('id') id: string, @Query() query: z.infer<typeof historyQuery>) {
    await this.cp.profiles.get(id);
    const [messages, engagement] = await Promise.all([
      this.cp.logs.profileHistory(id, query.limit),
      this.kpi ? this.kpi.engagementOf(id) : Promise.resolve(new Map()),
    ]);
    return {
      items: messages.map((m) => {
        const seen = m.messageId ? engagement.get(m.messageId) : undefined;
        return { ...m, openedAt: seen?.openedAt ?? null, clickedAt: seen?.clickedAt ?? null };
      }),
    };
  }

  @Route({
    method: 'post',
    path: 'audiences',
    summary: 'Create an audience from profile ids or an attribute filter',
    role: 'delivery:prepare',
    body: createAudienceSchema,
    tag: 'audiences',
  })
  async createAudience(@Body() body: z.infer<typeof createAudienceSchema>, @CurrentActor() actor: Actor) {
    const { audience, members } = await this.cp.audiences.create(body, actor);
    return { ...audience, members };
  }

  @Route({ method: 'get', path: 'audiences/:id', summary: 'One audience with its size', role: 'delivery:view', params: { id: audienceIdParam }, tag: 'audiences' })
  async audience(@Param('id') id: string) {
    return this.cp.audiences.get(id);
  }

  @Route({
    method: 'post',
    path: 'audiences/:id/members',
    summary: 'Add profiles to an audience in bulk',
    role: 'delivery:prepare',
    params: { id: audienceIdParam },
    body: addMembersSchema,
    status: 200,
    // INVALID_STATE: the audience is defined by a filter.
    errors: ['INVALID_STATE'],
    tag: 'audiences',
  })
  async addMembers(@Param('id') id: string, @Body() body: z.infer<typeof addMembersSchema>) {
    return this.cp.audiences.addMembers(id, body.profileIds);
  }
}
