// Health, metrics, the current user, and the API description (OpenAPI + a browsable UI).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Controller, Get, Header, Inject, Param, Res, UseGuards } from '@nestjs/common';
import type { Actor, ControlPlane } from '@herald/control-plane';
import { DomainError } from '@herald/control-plane';
import type { FastifyReply } from 'fastify';
import { AuthGuard, Public } from '../auth/auth.guard.js';
import { CurrentActor } from '../http/actor.decorator.js';
import type { Metrics } from '../http/metrics.js';
import { openApiDocument } from '../openapi.js';
import { CONTROL_PLANE, METRICS } from '../tokens.js';

const swaggerDir = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
const DOC_ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'application/javascript; charset=utf-8',
  'swagger-ui-standalone-preset.js': 'application/javascript; charset=utf-8',
};

const DOCS_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Herald API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="ui"></div><script src="/docs/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({ url: '/openapi.json', dom_id: '#ui', persistAuthorization: true });</script>
</body></html>`;

@Controller()
@UseGuards(AuthGuard)
export class SystemController {
  constructor(
    @Inject(CONTROL_PLANE) private readonly cp: ControlPlane,
    @Inject(METRICS) private readonly metrics: Metrics,
  ) {}

  /** The root: no console is served yet, so a browser lands on the API documentation. */
  @Get()
  @Public()
  root(@Res() reply: FastifyReply) {
    return reply.redirect('/docs', 302);
  }

  @Get('health/live')
  @Public()
  live() {
    return { status: 'ok' };
  }

  @Get('health/ready')
  @Public()
  async ready(@Res() reply: FastifyReply) {
    try {
      await this.cp.db.query('SELECT 1 FROM schema_migrations LIMIT 1');
      return reply.send({ status: 'ok', store: this.cp.db.kind });
    } catch (error) {
      return reply.status(503).send({ status: 'unavailable', store: this.cp.db.kind, reason: String(error) });
    }
  }

  @Get('metrics')
  @Public()
  async metricsText(@Res() reply: FastifyReply) {
    return reply.header('content-type', this.metrics.registry.contentType).send(await this.metrics.registry.metrics());
  }

  @Get('v1/me')
  me(@CurrentActor() actor: Actor) {
    return actor;
  }

  @Get('openapi.json')
  @Public()
  openapi() {
    return openApiDocument();
  }

  @Get('docs')
  @Public()
  @Header('content-type', 'text/html; charset=utf-8')
  docs() {
    return DOCS_PAGE;
  }

  @Get('docs/:asset')
  @Public()
  asset(@Param('asset') asset: string, @Res() reply: FastifyReply) {
    const type = DOC_ASSETS[asset];
    if (!type) throw new DomainError('NOT_FOUND', `No such file '${asset}'.`);
    return reply.header('content-type', type).header('cache-control', 'public, max-age=86400').send(readFileSync(join(swaggerDir, asset)));
  }
}
