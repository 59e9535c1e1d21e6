// The OpenAPI document, built from the same zod schemas that validate requests. Every route the
// gateway serves is listed here; a test checks the two lists against each other.
import {
  addMembersSchema,
  OCCURRENCE_ACTIONS,
  OCCURRENCE_STATES,
  bounceReportSchema,
  createAudienceSchema,
  createDeliverySchema,
  listQuerySchema,
  profileSchema,
  proofRequestSchema,
  updateDeliverySchema,
} from '@herald/control-plane';
import { z } from 'zod';
import { ROLE_LABELS, type Role } from './auth/roles.js';
import { deploymentQuerySchema } from './controllers/deployment.controller.js';
import { isRateLimited } from './http/rate-limit.js';

interface Operation {
  method: 'get' | 'post' | 'patch';
  path: string;
  summary: string;
  role?: Role;
  public?: boolean;
  body?: z.ZodType;
  bodyTypes?: string[];
  query?: z.ZodObject;
  status?: number;
  /** The success answer's body, where it is worth describing field by field. */
  response?: z.ZodType;
  tag: string;
}

const page = z.strictObject({ limit: z.number().int().min(1).max(1000).optional(), after: z.string().optional() });

// Documentation of answers (the control plane's types are the source; these describe them).
const isoInstant = z.iso.datetime();
const warnings = z.array(z.object({ code: z.string(), message: z.string() })).describe('What the user should know before OK: SEND_TIME_PAST (sendNow applied), NO_ENGINE (none running: not refused), PROVIDERS_DIFFER');
const confirmationTicket = z.object({
  confirmationId: z.uuid(),
  deliveryId: z.uuid(),
  occurrence: z.number().int(),
  expiresAt: isoInstant,
  summaryHash: z.string(),
  summary: z.object({
    toSend: z.number().int().describe('Recipients that will be sent: the frozen ones less those suppressed since preparation'),
    excluded: z.record(z.string(), z.number().int()).describe('Exclusions as of now, by reason'),
    exclusionsChangedSincePreparation: z.boolean(),
    exclusionsSincePreparation: z.record(z.string(), z.number().int()).describe('Profiles suppressed since preparation, by reason'),
    sendAt: isoInstant.nullable().describe('When the send starts; null: at OK (also when sendNow applied to a past sendAt), or per recipient time zone'),
    sendWindow: z
      .object({ first: isoInstant, last: isoInstant })
      .optional()
      .describe('Per recipient time zone: the first and last local send instants of the frozen recipients'),
    recipientLocalTime: z.string().optional(),
    contentHash: z.string(),
    projectedFinishAt: isoInstant.nullable().describe('Always present; null when no send rate is known (projectedFinishBasis.reason says why)'),
    projectedFinishBasis: z.object({
      source: z.enum(['throughput.perHour', 'engines']).nullable().describe("throughput.perHour: the delivery's own rate; engines: the rate the live engines measured while sending"),
      perHour: z.number().nullable(),
      reason: z.string().optional(),
    }),
    provider: z
      .object({
        channel: z.enum(['email', 'sms']),
        kind: z.enum(['smtp', 'capture-sink', 'http']),
        url: z.string().describe('User, password and query values redacted (***)'),
        host: z.string().optional(),
        port: z.number().int().optional(),
      })
      .nullable()
      .describe('What the live engines will send the channel through; null when no engine runs (warning NO_ENGINE)'),
    warnings,
  }),
});
const okResult = z.object({
  state: z.string().describe('The state of the delivery (or run) now'),
  startedAs: z.enum(['sending', 'scheduled']).describe('What this OK started; the same on every repeat'),
  deliveryId: z.uuid(),
  occurrence: z.number().int(),
  confirmationId: z.uuid(),
});

const occurrenceList = z.object({
  items: z.array(
    z.object({
      n: z.number().int(),
      state: z.enum(OCCURRENCE_STATES),
      stateReason: z
        .string()
        .nullable()
        .describe('Why it stopped or paused: EXPIRED_UNCONFIRMED (it waited for a confirmation while RECURRENCE_MAX_PENDING newer runs did), STOPPED_BY_USER, DELIVERY_STOPPED, CIRCUIT_BREAKER: …'),
      actions: z.array(z.enum(OCCURRENCE_ACTIONS)).describe('confirm while it waits for a confirmation; ok while a confirmation of it is live'),
      scheduledFor: isoInstant,
      kpis: z.record(z.string(), z.unknown()).nullable(),
    }),
  ),
});

export const OPERATIONS: Operation[] = [
  { method: 'get', path: '/', summary: 'Redirects to /docs (no console is served yet)', public: true, status: 302, tag: 'operations' },
  { method: 'get', path: '/health/live', summary: 'Liveness', public: true, tag: 'operations' },
  { method: 'get', path: '/health/ready', summary: 'Readiness (the store answers)', public: true, tag: 'operations' },
  { method: 'get', path: '/metrics', summary: 'Prometheus metrics', public: true, tag: 'operations' },
  { method: 'get', path: '/v1/ops/engines', summary: 'Engine processes: host, pid, channels (providers, credentials redacted), partitions, threads, messages per second (last heartbeat, and measured while sending), lag, and status (live, or stale once their heartbeat is late)', role: 'admin', tag: 'operations' },
  { method: 'get', path: '/openapi.json', summary: 'This document', public: true, tag: 'operations' },
  { method: 'get', path: '/docs', summary: 'Browsable API documentation', public: true, tag: 'operations' },
  { method: 'get', path: '/docs/{asset}', summary: 'Assets of the documentation page', public: true, tag: 'operations' },
  { method: 'get', path: '/t/o/{token}', summary: 'Open pixel: a 1×1 GIF; records an open (a bad signature: 404, nothing recorded; a proof: nothing recorded)', public: true, tag: 'tracking' },
  { method: 'get', path: '/t/c/{token}', summary: 'Click: 302 to the URL stored for that link (for a proof, the links kept with it); records a click (a proof: nothing)', public: true, tag: 'tracking' },
  { method: 'get', path: '/u/{token}', summary: 'Unsubscribe page with a button; changes nothing', public: true, tag: 'tracking' },
  { method: 'post', path: '/u/{token}', summary: 'RFC 8058 one-click unsubscribe: the profile is unsubscribed (a proof: {unsubscribed: false, proof: true}, nothing changes)', public: true, status: 200, tag: 'tracking' },
  {
    method: 'post',
    path: '/v1/webhooks/bounces',
    summary: 'Asynchronous bounce or complaint; signed: Herald-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "t.body")>',
    public: true,
    body: bounceReportSchema,
    status: 200,
    tag: 'tracking',
  },
  { method: 'get', path: '/v1/me', summary: 'The authenticated user and roles', tag: 'auth' },
  {
    method: 'post',
    path: '/v1/profiles/import',
    summary: 'Upsert profiles by id from a JSON array or NDJSON stream; bad rows are reported by index, good rows land',
    role: 'delivery:prepare',
    body: z.array(profileSchema),
    bodyTypes: ['application/json', 'application/x-ndjson'],
    status: 200,
    tag: 'profiles',
  },
  { method: 'get', path: '/v1/profiles/{id}', summary: 'One profile with its status', role: 'delivery:view', tag: 'profiles' },
  { method: 'get', path: '/v1/profiles/{id}/history', summary: 'Messages sent to this profile, newest first, with first open and click', role: 'delivery:view', tag: 'profiles' },
  { method: 'post', path: '/v1/audiences', summary: 'Create an audience from profile ids or an attribute filter', role: 'delivery:prepare', body: createAudienceSchema, status: 201, tag: 'audiences' },
  { method: 'get', path: '/v1/audiences/{id}', summary: 'One audience with its size', role: 'delivery:view', tag: 'audiences' },
  { method: 'post', path: '/v1/audiences/{id}/members', summary: 'Add profiles to an audience in bulk', role: 'delivery:prepare', body: addMembersSchema, status: 200, tag: 'audiences' },
  { method: 'post', path: '/v1/deliveries', summary: 'Create a draft delivery', role: 'delivery:prepare', body: createDeliverySchema, status: 201, tag: 'deliveries' },
  { method: 'get', path: '/v1/deliveries', summary: 'List deliveries, newest first (cursor paging)', role: 'delivery:view', query: listQuerySchema, tag: 'deliveries' },
  { method: 'get', path: '/v1/deliveries/{id}', summary: 'One delivery with its state, preparation and actions (exactly those the API accepts now)', role: 'delivery:view', tag: 'deliveries' },
  { method: 'patch', path: '/v1/deliveries/{id}', summary: 'Edit; a prepared delivery goes back to draft and pending confirmations die', role: 'delivery:prepare', body: updateDeliverySchema, tag: 'deliveries' },
  { method: 'post', path: '/v1/deliveries/{id}/prepare', summary: 'Count the audience, apply exclusions, freeze the recipients: draft → ready', role: 'delivery:prepare', status: 200, tag: 'deliveries' },
  { method: 'post', path: '/v1/deliveries/{id}/proofs', summary: 'Send a proof (subject prefix; its links work, in any state, and are never counted in the KPIs)', role: 'delivery:prepare', body: proofRequestSchema, status: 202, tag: 'deliveries' },
  { method: 'post', path: '/v1/deliveries/{id}/approve', summary: 'ready → approved', role: 'delivery:approve', status: 200, tag: 'deliveries' },
  {
    method: 'post',
    path: '/v1/deliveries/{id}/confirmations',
    summary: 'Step 1, Confirm send: a confirmation bound to the summary shown (exclusions counted now, with what changed since preparation); earlier pending ones are voided. 400 SEND_TIME_PAST: the schedule is already past (unless schedule.sendNow); 409 CHANNEL_NOT_CONFIGURED: no running engine can send the channel',
    role: 'delivery:start',
    status: 201,
    response: confirmationTicket,
    tag: 'confirmation',
  },
  {
    method: 'post',
    path: '/v1/deliveries/{id}/confirmations/{confirmationId}/ok',
    summary: 'Step 2, OK: start or schedule the send; a repeat starts nothing and answers {state: the state now, startedAs}',
    role: 'delivery:start',
    status: 202,
    response: okResult,
    tag: 'confirmation',
  },
  { method: 'post', path: '/v1/deliveries/{id}/pause', summary: 'Pause a send, or a schedule and its runs in progress', role: 'delivery:start', status: 200, tag: 'deliveries' },
  { method: 'post', path: '/v1/deliveries/{id}/resume', summary: 'Resume a paused delivery (and its paused runs)', role: 'delivery:start', status: 200, tag: 'deliveries' },
  { method: 'post', path: '/v1/deliveries/{id}/stop', summary: 'Stop (cancel) a delivery and its runs not finished', role: 'delivery:start', status: 200, tag: 'deliveries' },
  { method: 'get', path: '/v1/deliveries/{id}/deployment', summary: 'Deployment: progress (toSend, sent, excludedAtSend, pending, stopped) and the six KPIs (a rate with a 0 denominator is null), with when counters and rates were computed (?occurrence=n: one run)', role: 'delivery:view', query: deploymentQuerySchema, tag: 'kpis' },
  { method: 'post', path: '/v1/deliveries/{id}/compute-stats', summary: 'Compute stats: reconcile the live counters with the raw events, refresh the open and click rates now; answers the fresh deployment', role: 'delivery:view', query: deploymentQuerySchema, status: 200, tag: 'kpis' },
  { method: 'get', path: '/v1/deliveries/{id}/exclusions', summary: 'Exclusion log: reason per excluded profile, and whether at preparation or at send time (stage, excludedAt)', role: 'delivery:view', query: page, tag: 'deliveries' },
  { method: 'get', path: '/v1/deliveries/{id}/logs', summary: 'Sending logs: one row per recipient with its latest status (excluded_at_send and stopped with the reason)', role: 'delivery:view', query: page, tag: 'deliveries' },
  { method: 'get', path: '/v1/deliveries/{id}/audit', summary: 'Audit log: every confirmation step and state change', role: 'delivery:view', tag: 'deliveries' },
  { method: 'get', path: '/v1/deliveries/{id}/occurrences', summary: 'Runs of a recurring delivery, newest first, each with its state, actions and Deployment KPIs; at most RECURRENCE_MAX_PENDING wait for a confirmation at once, the oldest beyond it is stopped with stateReason EXPIRED_UNCONFIRMED', role: 'delivery:view', response: occurrenceList, tag: 'confirmation' },
  { method: 'post', path: '/v1/deliveries/{id}/occurrences/{n}/confirmations', summary: 'Confirm send for one run of a recurring delivery', role: 'delivery:start', status: 201, response: confirmationTicket, tag: 'confirmation' },
  { method: 'post', path: '/v1/deliveries/{id}/occurrences/{n}/confirmations/{confirmationId}/ok', summary: 'OK for one run of a recurring delivery', role: 'delivery:start', status: 202, response: okResult, tag: 'confirmation' },
];

const errorSchema = {
  type: 'object',
  required: ['code', 'message'],
  properties: { code: { type: 'string' }, message: { type: 'string' }, issues: { type: 'array', items: { type: 'object' } } },
};

const ERROR_RESPONSES = {
  '400': 'INVALID_INPUT (issues: body field paths, query.<param> for query parameters) or SEND_TIME_PAST (Confirm send)',
  '401': 'UNAUTHORIZED',
  '403': 'MISSING_ROLE (with requiredRole and the action tried)',
  '404': 'NOT_FOUND',
  '409': 'INVALID_STATE (with allowed: the actions the delivery offers now), CONFIRMATION_STALE, or CHANNEL_NOT_CONFIGURED (Confirm send: no running engine can send the channel)',
  '410': 'CONFIRMATION_EXPIRED',
  '413': 'PAYLOAD_TOO_LARGE',
};

let cached: object | undefined;

export function openApiDocument(): object {
  cached ??= build();
  return cached;
}

function build(): object {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of OPERATIONS) {
    const params = [...op.path.matchAll(/\{(\w+)\}/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    const query = op.query
      ? Object.keys(op.query.shape).map((name) => ({ name, in: 'query', required: false, schema: { type: 'string' } }))
      : [];
    const responses: Record<string, unknown> = {
      [String(op.status ?? 200)]: {
        description: 'Success',
        ...(op.response ? { content: { 'application/json': { schema: z.toJSONSchema(op.response, { io: 'output', unrepresentable: 'any' }) } } } : {}),
      },
    };
    if (!op.public) {
      for (const [status, code] of Object.entries(ERROR_RESPONSES)) {
        responses[status] = { description: code, content: { 'application/json': { schema: errorSchema } } };
      }
    }
    if (isRateLimited(op.path)) {
      responses['429'] = {
        description: 'RATE_LIMITED: more than API_RATE_LIMIT requests in a minute from this client (token, or address without one)',
        headers: { 'Retry-After': { description: 'Seconds until the client may send again', schema: { type: 'integer' } } },
        content: { 'application/json': { schema: errorSchema } },
      };
    }
    paths[op.path] ??= {};
    paths[op.path]![op.method] = {
      summary: op.summary,
      tags: [op.tag],
      ...(op.role ? { description: `Requires the '${ROLE_LABELS[op.role]}' role (${op.role}).` } : {}),
      ...(op.public ? { security: [] } : {}),
      parameters: [...params, ...query],
      ...(op.body
        ? {
            requestBody: {
              required: true,
              content: Object.fromEntries(
                (op.bodyTypes ?? ['application/json']).map((type) => [type, { schema: z.toJSONSchema(op.body!, { io: 'input', unrepresentable: 'any' }) }]),
              ),
            },
          }
        : {}),
      responses,
    };
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
