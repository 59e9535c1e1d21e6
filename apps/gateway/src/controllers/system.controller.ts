// Health, metrics, the current user, and the API description (OpenAPI + a browsable UI).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Controller, Header, Inject, Param, Res, UseGuards } from '@nestjs/common';
import type { Actor, ControlPlane } from '@herald/control-plane';
import { DomainError } from '@herald/control-plane';
import type { FastifyReply } from 'fastify';
import { AuthGuard } from '../auth/auth.guard.js';
import { CurrentActor } from '../http/actor.decorator.js';
import type { Metrics } from '../http/metrics.js';
import { Route } from '../http/route.js';
import { CONTROL_PLANE, METRICS, OPENAPI_DOCUMENT } from '../tokens.js';

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
    @Inject(OPENAPI_DOCUMENT) private readonly document: object,
  ) {}

  /** The root: no console is served yet, so a browser lands on the API documentation. */
  @Route({ method: 'get', path: '/', summary: 'Redirects to /docs (no console is served yet)', public: true, status: 302, tag: 'operations' })
  root(@Res() reply: FastifyReply) {
    return reply.redirect('/docs', 302);
  }

  @Route({ method: 'get', path: 'health/live', summary: 'Liveness', public: true, tag: 'operations' })
  live() {
    return { status: 'ok' };
  }

  @Route({
    method: 'get',
    path: 'health/ready',
    summary: 'Readiness (the store answers)',
    public: true,
    alsoAnswers: { 503: 'The store does not answer: {status: unavailable, store, reason}' },
    tag: 'operations',
  })
  async ready(@Res() reply: FastifyReply) {
    const { health } = this.cp;
    try {
      await health.ping();
      return reply.send({ status: 'ok', store: health.store });
    } catch (error) {
      return reply.status(503).send({ status: 'unavailable', store: health.store, reason: String(error) });
    }
  }

  @Route({ method: 'get', path: 'metrics', summary: 'Prometheus metrics', public: true, tag: 'operations' })
  async metricsText(@Res() reply: FastifyReply) {
    return reply.header('content-type', this.metrics.registry.contentType).send(await this.metrics.registry.metrics());
  }

  @Route({ method: 'get', path: 'v1/me', summary: 'The authenticated user and roles', tag: 'auth' })
  me(@CurrentActor() actor: Actor) {
    return actor;
  }

  @Route({ method: 'get', path: 'openapi.json', summary: 'This document', public: true, tag: 'operations' })
  openapi() {
    return this.document;
  }

  @Route({ method: 'get', path: 'docs', summary: 'Browsable API documentation', public: true, tag: 'operations' })
  @Header('content-type', 'text/html; charset=utf-8')
  docs() {
    return DOCS_PAGE;
  }

  @Route({ method: 'get', path: 'docs/:asset', summary: 'Assets of the documentation page', public: true, tag: 'operations' })
  asset(@Param('asset') asset: string, @Res() reply: FastifyReply) {
    const type = DOC_ASSETS[asset];
    if (!type) throw new DomainError('NOT_FOUND', `No such file '${asset}'.`);
    return reply.header('content-type', type).header('cache-control', 'public, max-age=86400').send(readFileSync(join(swaggerDir, asset)));
  }
}
