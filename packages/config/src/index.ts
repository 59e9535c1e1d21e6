// Herald's environment, described once by a zod schema and parsed once at start.
// A bad environment fails with one error that lists every bad variable.
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { formatDuration, parseDuration } from '@herald/contracts';

export { parseDuration, formatDuration } from '@herald/contracts';

const duration = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((value, ctx) => {
      const ms = parseDuration(value);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: `'${value}' is not a duration (e.g. 500ms, 30s, 10m, 1h, 3.5d)` });
        return z.NEVER;
      }
      return ms;
    });

/** A duration between `min` and `max` ms, or undefined when unset (the consumer of the setting has the default). */
const optionalDuration = (min: number, max: number) =>
  z
    .string()
    .optional()
    .transform((value, ctx) => {
      if (value === undefined) return undefined;
      const ms = parseDuration(value);
      if (ms === undefined || ms < min || ms > max) {
        ctx.addIssue({ code: 'custom', message: `'${value}' is not a duration from ${formatDuration(min)} to ${formatDuration(max)} (e.g. 10s)` });
        return z.NEVER;
      }
      return ms;
    });

const optionalUrl = z.url().optional();
const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

export const environmentSchema = z.object({
  HERALD_HOME: z.string().min(1).default('./.herald'),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().min(1).default('127.0.0.1'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DATABASE_URL: optionalUrl,
  /**
   * HS256 key of bearer tokens (default: the platform's, generated once). Like every secret
   * below, resolved by resolvePlatformSettings: the control-plane store keeps the platform's
   * (on PostgreSQL; the files of HERALD_HOME on the embedded store), and a process given a
   * value that differs from it refuses to start.
   */
  HERALD_JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  HERALD_JWKS_URL: optionalUrl,
  /**
   * The base of the links in messages (tracking, unsubscribe). A gateway records it (else its
   * own address) in the store at start, and engine processes read it from there; an engine
   * with neither refuses to start.
   */
  PUBLIC_URL: optionalUrl,
  CONFIRMATION_TTL: duration('10m'),
  SCHEDULE_STALENESS: duration('1h'),
  SCHEDULER_INTERVAL: duration('1s'),
  /**
   * Runs of a recurring delivery that may wait for their confirmation at once; past it, the
   * oldest waiting run expires (stopped, EXPIRED_UNCONFIRMED).
   */
  RECURRENCE_MAX_PENDING: z.coerce.number().int().min(1).max(1000).default(5),
  OUTBOX_RELAY_INTERVAL: duration('200ms'),
  /** How long published outbox rows are kept (then deleted by the relay, once a minute). */
  OUTBOX_RETENTION: duration('7d'),
  /**
   * Requests per minute each API client (one bearer token, or one address without a token) may
   * make to /v1/; 0 turns the limit off.
   */
  API_RATE_LIMIT: z.coerce.number().int().min(0).default(60_000),
  BODY_LIMIT_BYTES: positiveInt(1024 * 1024),
  IMPORT_BODY_LIMIT_BYTES: positiveInt(512 * 1024 * 1024),
  SMTP_URL: optionalUrl,
  /** Per-connection SMTP timeout (greeting, commands, and the answer after DATA). */
  SMTP_TIMEOUT: duration('30s'),
  /**
   * An SMTP connection unused this long is closed by Herald, before the server's own idle
   * timeout (about a minute for smtp-server and Postfix) ends it with a 421.
   */
  SMTP_IDLE_TIMEOUT: duration('30s'),
  HTTP_PROVIDER_URL: optionalUrl,
  /** HMAC key of tracking and unsubscribe links (default: the platform's, generated once; see HERALD_JWT_SECRET). */
  HERALD_TRACKING_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  /** Key of the bounce webhook's HMAC signature (default: the platform's, generated once; see HERALD_JWT_SECRET). */
  HERALD_WEBHOOK_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  /** Consecutive soft bounces (webhook, or retries given up) that quarantine an address. */
  QUARANTINE_SOFT_BOUNCES: z.coerce.number().int().min(1).max(1000).default(5),
  /** Quiet period after which the soft-bounce count starts again. */
  QUARANTINE_SOFT_RESET: duration('10d'),
  ENGINE_THREADS: z.coerce.number().int().min(1).max(256).default(availableParallelism()),
  ENGINE_BATCH_SIZE: z.coerce.number().int().min(1).max(1000).default(500),
  /** V8 old-generation limit of each engine worker thread, in MiB. */
  ENGINE_WORKER_HEAP_MB: z.coerce.number().int().min(32).max(8192).default(96),
  /** SMTP connections each worker thread keeps open. */
  ENGINE_SMTP_CONNECTIONS: z.coerce.number().int().min(1).max(100).default(10),
  /** Receiving-domain limits, e.g. "gmail.com=200/s,yahoo.com=3000/m". */
  ENGINE_DOMAIN_LIMITS: z
    .string()
    .default('')
    .transform((value, ctx) => {
      const limits = parseDomainLimits(value);
      if (typeof limits === 'string') {
        ctx.addIssue({ code: 'custom', message: limits });
        return z.NEVER;
      }
      return limits;
    }),
  /** How long soft-bounced messages keep being retried (the delivery's validity period). */
  ENGINE_VALIDITY: duration('3.5d'),
  /** First retry delay after a soft bounce; doubles at each attempt. */
  ENGINE_RETRY_DELAY: duration('10m'),
  /**
   * Share of the audience sent before the circuit breaker judges the rates (at least
   * ENGINE_BREAKER_MIN_SAMPLE recipients): the engine hands out no more until it has judged them.
   */
  ENGINE_BREAKER_FIRST_WAVE: z.coerce.number().min(0).max(1).default(0.01),
  ENGINE_BREAKER_HARD_BOUNCE_RATE: z.coerce.number().min(0).max(1).default(0.2),
  ENGINE_BREAKER_DOMAIN_4XX_RATE: z.coerce.number().min(0).max(1).default(0.5),
  /** Messages (in the run, or to one receiving domain) a circuit-breaker rate needs before it can pause a run. */
  ENGINE_BREAKER_MIN_SAMPLE: z.coerce.number().int().min(1).max(1_000_000).default(50),
  DKIM_DOMAIN: z.string().optional(),
  DKIM_SELECTOR: z.string().optional(),
  /** PEM text, or a path to a PEM file. */
  DKIM_PRIVATE_KEY: z.string().optional(),
  /** Comma-separated host:port list: every role uses Kafka instead of the in-process bus. */
  KAFKA_BROKERS: z.string().optional(),
  /** Prefix of every topic (and consumer group) name, to separate environments on one cluster. */
  KAFKA_TOPIC_PREFIX: z.string().regex(/^[A-Za-z0-9._-]*$/, 'letters, digits, . _ - only').optional(),
  KAFKA_CLIENT_ID: z.string().optional(),
  /** Partitions of herald.send-batches when Herald creates it: the most engine processes that can share the sends. */
  KAFKA_SEND_BATCH_PARTITIONS: z.coerce.number().int().min(1).max(10_000).optional(),
  /** Partitions of the other topics when Herald creates them. */
  KAFKA_PARTITIONS: z.coerce.number().int().min(1).max(10_000).optional(),
  KAFKA_REPLICATION_FACTOR: z.coerce.number().int().min(1).max(16).optional(),
  /**
   * How long the broker waits for a consumer's heartbeat before it gives that process's
   * partitions to the others (default 10s; heartbeats every fifth of it): how soon the engines
   * left take over the send batches of one that died. Within the broker's
   * group.min.session.timeout.ms (6s by default) and group.max.session.timeout.ms.
   */
  KAFKA_SESSION_TIMEOUT: optionalDuration(1_000, 30 * 60_000),
  CLICKHOUSE_URL: optionalUrl,
});

export type HeraldConfig = z.infer<typeof environmentSchema>;

export interface DomainLimit {
  domain: string;
  perSecond: number;
}

const PER = { s: 1, m: 60, h: 3600 } as const;

/** "gmail.com=200/s,yahoo.com=3000/m" → limits per second; an error message when malformed. */
export function parseDomainLimits(text: string): DomainLimit[] | string {
  const limits: DomainLimit[] = [];
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const match = /^([a-z0-9.-]+\.[a-z]{2,})=(\d+(?:\.\d+)?)\/(s|m|h)$/i.exec(part);
    if (!match) return `'${part}' is not domain=N/s, N/m or N/h (e.g. gmail.com=200/s)`;
    limits.push({ domain: match[1]!.toLowerCase(), perSecond: Number(match[2]) / PER[match[3] as keyof typeof PER] });
  }
  return limits;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid environment:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Parses the environment (process.env by default); throws ConfigError listing every bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): HeraldConfig {
  // NOTE: empty strings mean "unset", as a shell's `FOO= herald start` intends.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const result = environmentSchema.safeParse(present);
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`));
  }
  return result.data;
}
