// The API's rate limit: each client (one bearer token, or one address when there is none) may
// make API_RATE_LIMIT requests per minute to /v1/. Past it, 429 RATE_LIMITED with Retry-After,
// answered before the body is read or the token checked, so the request changes nothing.
// Not limited: tracking links and unsubscribes (recipients' mail clients, many behind one
// address), the bounce webhook (an MTA reporting what happened), health, metrics and docs.
import { createHash } from 'node:crypto';
import rateLimit from '@fastify/rate-limit';
import { DomainError } from '@herald/control-plane';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyRequest } from 'fastify';

const UNLIMITED_API_PATHS = ['/v1/webhooks/'];

export function isRateLimited(url: string): boolean {
  return url.startsWith('/v1/') && !UNLIMITED_API_PATHS.some((path) => url.startsWith(path));
}

/** One bucket per bearer token (hashed: the limiter keeps no credentials), else per address. */
export function rateLimitKey(request: Pick<FastifyRequest, 'headers' | 'ip'>): string {
  const authorization = request.headers.authorization;
  return authorization ? `token:${createHash('sha256').update(authorization).digest('base64url')}` : `ip:${request.ip}`;
}

export async function registerRateLimit(app: NestFastifyApplication, perMinute: number): Promise<void> {
  if (perMinute === 0) return;
  await app.register(rateLimit, {
    global: true,
    hook: 'onRequest',
    max: perMinute,
    timeWindow: 60_000,
    allowList: (request) => !isRateLimited(request.url),
    keyGenerator: rateLimitKey,
    errorResponseBuilder: (_request, context) =>
      new DomainError('RATE_LIMITED', `More than ${context.max} requests in a minute from this client; retry in ${context.after}.`, {
        limitPerMinute: context.max,
        retryAfterSeconds: Math.ceil(context.ttl / 1000),
      }),
  });
}
