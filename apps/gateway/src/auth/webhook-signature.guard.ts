// The bounce webhook's authentication: its body must carry a valid Herald-Signature (see
// http/webhook-signature.ts). A guard runs before the body is validated, so an unsigned, forged
// or stale request answers 401 and learns nothing about what a valid body looks like.
import { type CanActivate, type ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { DomainError } from '@herald/control-plane';
import type { FastifyRequest } from 'fastify';
import { rawBodyOf } from '../http/body-parsers.js';
import { SIGNATURE_HEADER, verifyWebhook } from '../http/webhook-signature.js';
import { WEBHOOK_SECRET } from '../tokens.js';

const SIGNATURE_PROBLEMS = {
  missing: `The request has no ${SIGNATURE_HEADER} header.`,
  malformed: `The ${SIGNATURE_HEADER} header is not t=<unix seconds>,v1=<hex HMAC-SHA256>.`,
  expired: 'The signature timestamp is more than 5 minutes away from now.',
  mismatch: 'The signature does not match the body.',
} as const;

@Injectable()
export class WebhookSignatureGuard implements CanActivate {
  constructor(@Inject(WEBHOOK_SECRET) private readonly secret: string) {}

  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    const check = verifyWebhook(this.secret, headerOf(request), rawBodyOf(request) ?? '');
    if (check !== 'ok') throw new DomainError('WEBHOOK_SIGNATURE_INVALID', SIGNATURE_PROBLEMS[check], { problem: check });
    return true;
  }
}

function headerOf(request: FastifyRequest): string | undefined {
  const value = request.headers[SIGNATURE_HEADER];
  return Array.isArray(value) ? value[0] : value;
}
