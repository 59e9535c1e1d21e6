// Asynchronous bounces and complaints from an MTA or a provider. No bearer token: the body is
// authenticated by its HMAC signature (see webhook-signature.ts); an unsigned, forged or stale
// request answers 401 and changes nothing.
import { Body, Controller, HttpCode, Inject, Post, Req, UseGuards } from '@nestjs/common';
import { bounceReportSchema, type ControlPlane, DomainError } from '@herald/control-plane';
import type { FastifyRequest } from 'fastify';
import { AuthGuard, Public } from '../auth/auth.guard.js';
import { rawBodyOf } from '../http/body-parsers.js';
import { SIGNATURE_HEADER, verifyWebhook } from '../http/webhook-signature.js';
import { ZodPipe } from '../http/zod.pipe.js';
import { CONTROL_PLANE, WEBHOOK_SECRET } from '../tokens.js';

const SIGNATURE_PROBLEMS = {
  missing: `The request has no ${SIGNATURE_HEADER} header.`,
  malformed: `The ${SIGNATURE_HEADER} header is not t=<unix seconds>,v1=<hex HMAC-SHA256>.`,
  expired: 'The signature timestamp is more than 5 minutes away from now.',
  mismatch: 'The signature does not match the body.',
} as const;

@Controller('v1/webhooks')
@UseGuards(AuthGuard)
@Public()
export class WebhooksController {
  constructor(
    @Inject(CONTROL_PLANE) private readonly cp: ControlPlane,
    @Inject(WEBHOOK_SECRET) private readonly secret: string,
  ) {}

  @Post('bounces')
  @HttpCode(200)
  async bounce(@Req() request: FastifyRequest, @Body() body: unknown) {
    // The signature is checked before the body is validated: an unsigned caller learns nothing.
    const check = verifyWebhook(this.secret, headerOf(request), rawBodyOf(request) ?? '');
    if (check !== 'ok') throw new DomainError('WEBHOOK_SIGNATURE_INVALID', SIGNATURE_PROBLEMS[check], { problem: check });
    return this.cp.bounces.apply(new ZodPipe(bounceReportSchema).transform(body));
  }
}

function headerOf(request: FastifyRequest): string | undefined {
  const value = request.headers[SIGNATURE_HEADER];
  return Array.isArray(value) ? value[0] : value;
}
