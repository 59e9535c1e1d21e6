// The OpenAPI document, built from the routes the controllers declare (@Route, http/route.ts):
// their paths, roles and summaries, the zod schemas that validate their requests and describe
// their answers. The error answers follow from each declaration (see errorCodes) plus the codes
// a route lists itself; the statuses are those the gateway maps the codes to (ERROR_STATUS).
import { ERROR_STATUS, type ErrorCode } from '@herald/control-plane';
import { z } from 'zod';
import { ROLE_LABELS } from './auth/roles.js';
import { CONTROLLERS } from './controllers/index.js';
import { isRateLimited } from './http/rate-limit.js';
import { type DeclaredRoute, declaredRoutes, needsToken, successStatus } from './http/route.js';
import { SIGNATURE_HEADER } from './http/webhook-signature.js';

type JsonSchema = Record<string, unknown>;

/** What each error code means, where the code alone does not say it. */
const ERROR_NOTES: Partial<Record<ErrorCode, string>> = {
  INVALID_INPUT: 'issues: body field paths, query.<param> for query parameters',
  MISSING_ROLE: 'with requiredRole and the action tried',
  INVALID_STATE: 'with allowed: the actions the delivery offers now',
  CONFIRMATION_STALE: 'the delivery changed, or another user opened this confirmation: confirm again',
  CHANNEL_NOT_CONFIGURED: 'no running engine can send the channel',
  SEND_TIME_PAST: 'the schedule is already past, unless schedule.sendNow',
  CONFIRMATION_EXPIRED: 'click Confirm send again',
  WEBHOOK_SIGNATURE_INVALID: `the ${SIGNATURE_HEADER} header is missing, malformed, expired or does not match the body (problem says which)`,
  PAYLOAD_TOO_LARGE: 'the body is over BODY_LIMIT_BYTES (IMPORT_BODY_LIMIT_BYTES for the import)',
  UNSUPPORTED_MEDIA_TYPE: 'a body type the route does not take',
  RATE_LIMITED: 'more than API_RATE_LIMIT requests in a minute from this client (token, or address without one)',
};

/** The error codes a route answers, by status: those its declaration implies, and those it lists. */
export function errorCodes(route: DeclaredRoute): Map<number, ErrorCode[]> {
  const declaration = route.declaration;
  // Fastify reads a body on every POST and PATCH, whatever the route does with it.
  const takesBody = declaration.method !== 'get';
  const codes: ErrorCode[] = [];
  if (needsToken(declaration)) codes.push('UNAUTHORIZED');
  if (declaration.signed) codes.push('WEBHOOK_SIGNATURE_INVALID');
  if (declaration.role) codes.push('MISSING_ROLE');
  // A malformed JSON body is refused wherever a body is read, as is what a schema refuses.
  if (takesBody || declaration.query) codes.push('INVALID_INPUT');
  // A path parameter names something that may not exist (a malformed one names nothing).
  if (/:\w+/.test(route.path)) codes.push('NOT_FOUND');
  if (takesBody) codes.push('PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE');
  if (isRateLimited(route.path)) codes.push('RATE_LIMITED');
  codes.push(...(declaration.errors ?? []));
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set(codes)) {
    const status = ERROR_STATUS[code];
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return byStatus;
}

function errorResponse(codes: ErrorCode[]): object {
  const issues = { type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, message: { type: 'string' } } } };
  const schema = {
    type: 'object',
    required: ['code', 'message'],
    properties: { code: { type: 'string', enum: codes }, message: { type: 'string' }, ...(codes.includes('INVALID_INPUT') ? { issues } : {}) },
  };
  return {
    description: codes.map((code) => (ERROR_NOTES[code] ? `${code} (${ERROR_NOTES[code]})` : code)).join(' or '),
    ...(codes.includes('RATE_LIMITED') ? { headers: { 'Retry-After': { description: 'Seconds until the client may send again', schema: { type: 'integer' } } } } : {}),
    content: { 'application/json': { schema } },
  };
}

export function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
  return rest;
}

const acceptsUndefined = (schema: z.ZodType) => schema.safeParse(undefined).success;

function operation(route: DeclaredRoute): object {
  const declaration = route.declaration;
  const pathParams = [...route.path.matchAll(/:(\w+)/g)].map(([, name]) => {
    const param = declaration.params?.[name!];
    return { name, in: 'path', required: true, schema: param ? jsonSchema(param.schema, 'input') : { type: 'string' } };
  });
  const queryParams = Object.entries(declaration.query?.shape ?? {}).map(([name, field]) => ({
    name,
    in: 'query',
    required: !acceptsUndefined(field as z.ZodType),
    schema: jsonSchema(field as z.ZodType, 'input'),
  }));
  const headerParams = declaration.signed
    ? [{ name: 'Herald-Signature', in: 'header', required: true, description: 't=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>', schema: { type: 'string' } }]
    : [];
  const body = declaration.body;
  const responses: Record<string, object> = {
    [String(successStatus(declaration))]: {
      description: 'Success',
      ...(declaration.response ? { content: { 'application/json': { schema: jsonSchema(declaration.response, 'output') } } } : {}),
    },
  };
  for (const [status, description] of Object.entries(declaration.alsoAnswers ?? {})) responses[status] = { description };
  for (const [status, codes] of errorCodes(route)) responses[String(status)] = errorResponse(codes);
  return {
    summary: declaration.summary,
    tags: [declaration.tag],
    ...(declaration.role ? { description: `Requires the '${ROLE_LABELS[declaration.role]}' role (${declaration.role}).` } : {}),
    ...(needsToken(declaration) ? {} : { security: [] }),
    parameters: [...pathParams, ...queryParams, ...headerParams],
    ...(body
      ? {
          requestBody: {
            required: !acceptsUndefined(body),
            content: Object.fromEntries((declaration.bodyTypes ?? ['application/json']).map((type) => [type, { schema: jsonSchema(body, 'input') }])),
          },
        }
      : {}),
    responses,
  };
}

/** The OpenAPI path of a Nest path: /v1/deliveries/:id → /v1/deliveries/{id}. */
export const openApiPath = (path: string): string => path.replace(/:(\w+)/g, '{$1}');

export function buildOpenApiDocument(routes: readonly DeclaredRoute[]): object {
  const paths: Record<string, Record<string, object>> = {};
  for (const route of routes) {
    const path = openApiPath(route.path);
    paths[path] ??= {};
    paths[path][route.declaration.method] = operation(route);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Herald API',
      version: '1.0.0',
      description: 'Campaign send platform: prepare, approve, and confirm a send in two steps (Confirm send, then OK).',
    },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
    security: [{ bearer: [] }],
    paths,
  };
}

let cached: object | undefined;

/** The document of every route the gateway serves. */
export function openApiDocument(): object {
  cached ??= buildOpenApiDocument(declaredRoutes(CONTROLLERS));
  return cached;
}
