// Body parsing: JSON bodies are buffered up to BODY_LIMIT_BYTES; the profile import takes its
// body as a stream (JSON array or NDJSON) up to IMPORT_BODY_LIMIT_BYTES, never buffered whole.
import { Transform, type TransformCallback, type Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';

export const NDJSON_TYPES = ['application/x-ndjson', 'application/ndjson', 'application/jsonl'];

/** Routes (full paths, as Fastify names them) whose bodies are not parsed the usual way. */
export interface BodyRoutes {
  /** Handed to the handler as a stream (the profile import: `streamed` in its declaration). */
  streamed: readonly string[];
  /** Parsed, and kept as received for the signature check (signed webhooks: `signed` in their declaration). */
  raw: readonly string[];
}

const rawBodies = new WeakMap<FastifyRequest, string>();
/** The JSON body as received, for the {@link BodyRoutes.raw} routes. */
export const rawBodyOf = (request: FastifyRequest): string | undefined => rawBodies.get(request);

class TooLarge extends Error {
  readonly code = 'FST_ERR_CTP_BODY_TOO_LARGE';
  readonly statusCode = 413;
  constructor(limit: number) {
    super(`The request body is larger than ${limit} bytes.`);
  }
}

/** A pass-through that fails with 413 once more than `limit` bytes went through. */
export function limitStream(source: Readable, limit: number): Readable {
  let seen = 0;
  const limiter = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      seen += chunk.length;
      if (seen > limit) callback(new TooLarge(limit));
      else callback(null, chunk);
    },
  });
  source.on('error', (error) => limiter.destroy(error));
  return source.pipe(limiter);
}

async function readLimited(source: Readable, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let seen = 0;
  for await (const chunk of source) {
    seen += (chunk as Buffer).length;
    if (seen > limit) throw new TooLarge(limit);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The streamed body, refused upfront when its declared length is over the limit (nothing lands). */
function streamedBody(request: FastifyRequest, payload: Readable, limit: number): Readable | TooLarge {
  if (Number(request.headers['content-length'] ?? 0) > limit) return new TooLarge(limit);
  return limitStream(payload, limit);
}

export function registerBodyParsers(fastify: FastifyInstance, limits: { body: number; import: number }, routes: BodyRoutes): void {
  const streamed = new Set(routes.streamed);
  const raw = new Set(routes.raw);
  const isStreamed = (request: FastifyRequest) => streamed.has(request.routeOptions.url ?? '');
  const parseJson = fastify.getDefaultJsonParser('error', 'error');
  fastify.removeContentTypeParser('application/json');
  fastify.addContentTypeParser('application/json', (request, payload, done) => {
    if (isStreamed(request)) {
      const body = streamedBody(request, payload, limits.import);
      return body instanceof TooLarge ? done(body, undefined) : done(null, body);
    }
    const declared = Number(request.headers['content-length'] ?? 0);
    if (declared > limits.body) return done(new TooLarge(limits.body), undefined);
    readLimited(payload, limits.body).then(
      // An empty JSON body on an action endpoint means "no options".
      (text) => {
        if (raw.has(request.routeOptions.url ?? '')) rawBodies.set(request, text);
        return text.trim() === '' ? done(null, undefined) : parseJson(request, text, done);
      },
      (error: Error) => done(error, undefined),
    );
  });
  // RFC 8058 one-click unsubscribe posts "List-Unsubscribe=One-Click" as a form: nothing in it is needed.
  fastify.addContentTypeParser(['application/x-www-form-urlencoded', 'multipart/form-data'], (_request, payload, done) => {
    readLimited(payload, limits.body).then(
      () => done(null, undefined),
      (error: Error) => done(error, undefined),
    );
  });
  fastify.addContentTypeParser(NDJSON_TYPES, (request, payload, done) => {
    if (isStreamed(request)) {
      const body = streamedBody(request, payload, limits.import);
      return body instanceof TooLarge ? done(body, undefined) : done(null, body);
    }
    done(Object.assign(new Error(`${request.headers['content-type']} is only accepted by the import`), { code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE' }), undefined);
  });
}
