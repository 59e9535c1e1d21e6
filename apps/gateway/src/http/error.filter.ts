// One place maps errors to HTTP: domain codes to their status, framework errors to the same
// shape ({code, message, ...}), and anything unknown to a 500 with a correlation id, logged once.
import { randomUUID } from 'node:crypto';
import { type ArgumentsHost, Catch, type ExceptionFilter, HttpException } from '@nestjs/common';
import { DomainError, type ErrorCode, ERROR_STATUS } from '@herald/control-plane';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Metrics } from './metrics.js';

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_INPUT',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_INPUT',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'INVALID_INPUT',
};

export interface ErrorBody {
  code: string;
  message: string;
  [detail: string]: unknown;
}

export function toErrorBody(error: unknown, logger: Logger): { status: number; body: ErrorBody } {
  if (error instanceof DomainError) {
    return { status: error.status, body: { code: error.code, message: error.message, ...error.details } };
  }
  const fastifyCode = (error as { code?: string })?.code;
  if (fastifyCode && FASTIFY_CODES[fastifyCode]) {
    const code = FASTIFY_CODES[fastifyCode];
    return { status: ERROR_STATUS[code], body: { code, message: (error as Error).message } };
  }
  if (error instanceof SyntaxError || (error as { statusCode?: number })?.statusCode === 400) {
    return { status: 400, body: { code: 'INVALID_INPUT', message: `The body is not valid JSON: ${(error as Error).message}` } };
  }
  if (error instanceof HttpException) {
    const status = error.getStatus();
    if (status === 404) return { status, body: { code: 'NOT_FOUND', message: 'No such endpoint (see /docs).' } };
    if (status < 500) return { status, body: { code: status === 413 ? 'PAYLOAD_TOO_LARGE' : 'INVALID_INPUT', message: error.message } };
  }
  const correlationId = randomUUID();
  logger.error({ err: error, correlationId }, 'unhandled error');
  return { status: 500, body: { code: 'INTERNAL', message: 'Something went wrong on our side.', correlationId } };
}

@Catch()
export class ErrorFilter implements ExceptionFilter {
  constructor(
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {}

  catch(error: unknown, host: ArgumentsHost): void {
    const reply = host.switchToHttp().getResponse<FastifyReply>();
    const request = host.switchToHttp().getRequest<FastifyRequest>();
    const { status, body } = toErrorBody(error, this.logger);
    this.metrics.errors.inc({ code: body.code });
    // NOTE: an import streams its body; on an early error the rest must still be drained or the
    // client would block writing it.
    if (request.raw.readable) request.raw.resume();
    void reply.status(status).header('content-type', 'application/json; charset=utf-8').send(body);
  }
}
