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

/**
 * What a setting's documentation says besides its description: what leaving it unset means,
 * where the schema's own default does not say it (no default, or one computed where the process runs).
 * Rendered into docs/configuration.md (see docs.ts).
 */
declare module 'zod' {
  interface GlobalMeta {
    whenUnset?: string;
  }
}

const secret = () => z.string().min(32, 'must be at least 32 characters').optional();

// NOTE: each setting's description is data (.describe / .meta), not a comment: `npm run
// docs:config` renders them, with the defaults, into docs/configuration.md, and a unit test fails
// when that file is not what they render now.
export const environmentSchema = z.object({
  HERALD_HOME: z
    .string()
    .min(1)
    .default('./.herald')
    .describe('Where the embedded defaults keep their data: the PGlite database, captured mail, chDB, and (on the embedded store) the generated secrets.'),
  PORT: z.coerce
    .number()
    .int()
    .min(0)
    .max(65535)
    .default(8080)
    .describe("The gateway's port (an engine process serves its health and metrics on it); 0: any free port."),
  HOST: z.string().min(1).default('127.0.0.1').describe('The address it binds (`0.0.0.0` to expose it).'),
  LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
    .default('info')
    .describe('pino log level (`fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`); logs go to stderr as JSON lines.'),
  DATABASE_URL: optionalUrl
    .describe('The PostgreSQL control-plane store, e.g. `postgres://herald@db:5432/herald`.')
    .meta({ whenUnset: 'PGlite under `HERALD_HOME` (one process)' }),
  HERALD_JWT_SECRET: secret()
    .describe(
      'HS256 key of bearer tokens (at least 32 characters). Like every secret, resolved once per process: the control-plane store keeps the platform\'s (on PostgreSQL; the files of `HERALD_HOME` on the embedded store), and a process given a value that differs from it refuses to start.',
    )
    .meta({ whenUnset: "the platform's, generated once" }),
  HERALD_JWKS_URL: optionalUrl.describe("Verify RS256/ES256 bearer tokens of your identity provider through its JWKS instead of Herald's HS256 key."),
  PUBLIC_URL: optionalUrl
    .describe(
      'The base of the links in messages (tracking, unsubscribe). A gateway records it (else its own address) in the store at start, and engine processes read it from there; an engine with neither refuses to start.',
    )
    .meta({ whenUnset: "the gateway's own `http://HOST:PORT`" }),
  CONFIRMATION_TTL: duration('10m').describe('How long a *Confirm send* stays valid for its *OK*.'),
  SCHEDULE_STALENESS: duration('1h').describe('How late a schedule may be found (the platform was down) before the delivery is paused (`STALE_SCHEDULE`) instead of sent.'),
  SCHEDULER_INTERVAL: duration('1s').describe("The scheduler's tick."),
  RECURRENCE_MAX_PENDING: z.coerce
    .number()
    .int()
    .min(1)
    .max(1000)
    .default(5)
    .describe('Runs of a recurring delivery that may wait for their confirmation at once; past it, the oldest waiting run expires (`stopped`, `EXPIRED_UNCONFIRMED`).'),
  OUTBOX_RELAY_INTERVAL: duration('200ms').describe('How often the outbox relay looks for rows to publish.'),
  OUTBOX_RETENTION: duration('7d').describe('How long published outbox rows are kept (for the KPI recovery and audits); the relay deletes older ones once a minute.'),
  API_RATE_LIMIT: z.coerce
    .number()
    .int()
    .min(0)
    .default(60_000)
    .describe('Requests per minute each API client (one bearer token, or one address without a token) may make to `/v1/`; `0` turns the limit off.'),
  BODY_LIMIT_BYTES: positiveInt(1024 * 1024).describe('Largest JSON request body (imports excepted).'),
  IMPORT_BODY_LIMIT_BYTES: positiveInt(512 * 1024 * 1024).describe('Largest profile import body (streamed).'),
  SMTP_URL: optionalUrl
    .describe(
      'The SMTP relay the engines send through, e.g. `smtp://user:pass@mta:587` (`smtps://` for implicit TLS; STARTTLS is used when offered; query options `?requireTLS=true`, `?ignoreTLS=true`, `?opportunisticTLS=true`, or `?tls.rejectUnauthorized=false` for a relay with a self-signed certificate).',
    )
    .meta({ whenUnset: '`herald start` runs the SMTP capture sink' }),
  SMTP_TIMEOUT: duration('30s').describe('Per-connection SMTP timeout (connection, greeting, commands, and the answer after DATA).'),
  SMTP_IDLE_TIMEOUT: duration('30s').describe(
    "An SMTP connection unused this long is closed by Herald (QUIT), before the server's own idle timeout (about a minute for smtp-server and Postfix) ends it with a 421.",
  ),
  HTTP_PROVIDER_URL: optionalUrl.describe("The sms provider's batch endpoint; with no engine that has one, *Confirm send* of an sms delivery answers `409 CHANNEL_NOT_CONFIGURED`."),
  HERALD_TRACKING_SECRET: secret()
    .describe('HMAC key of tracking and unsubscribe links (at least 32 characters; resolved like `HERALD_JWT_SECRET`).')
    .meta({ whenUnset: "the platform's, generated once" }),
  TRACKING_LINK_TTL: duration('180d').describe(
    'How long after a message was rendered its open pixel and click links work; past it they answer 404 and record nothing (a click no longer redirects). Unsubscribe links never expire.',
  ),
  HERALD_WEBHOOK_SECRET: secret()
    .describe("HMAC key of the bounce webhook's signature (at least 32 characters; resolved like `HERALD_JWT_SECRET`).")
    .meta({ whenUnset: "the platform's, generated once" }),
  QUARANTINE_SOFT_BOUNCES: z.coerce
    .number()
    .int()
    .min(1)
    .max(1000)
    .default(5)
    .describe('Soft bounces in a row (webhook reports, or retries given up) that quarantine an address.'),
  QUARANTINE_SOFT_RESET: duration('10d').describe('A quiet period after which the soft-bounce count starts again.'),
  ENGINE_THREADS: z.coerce
    .number()
    .int()
    .min(1)
    .max(256)
    .default(availableParallelism())
    .describe("Worker threads of each engine's Piscina pool.")
    .meta({ whenUnset: 'the core count' }),
  ENGINE_BATCH_SIZE: z.coerce
    .number()
    .int()
    .min(1)
    .max(1000)
    .default(500)
    .describe("Recipients per send batch (a throttled delivery's batches hold about one second of its rate)."),
  ENGINE_WORKER_HEAP_MB: z.coerce
    .number()
    .int()
    .min(32)
    .max(8192)
    .default(96)
    .describe('V8 old-generation limit of each engine worker thread, in MiB (a batch needs a few MiB).'),
  ENGINE_SMTP_CONNECTIONS: z.coerce.number().int().min(1).max(100).default(10).describe('SMTP connections each worker thread keeps open.'),
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
    })
    .describe('Per receiving domain limits, e.g. `gmail.com=200/s,yahoo.com=3000/m` (per second, minute or hour), shared by the live engines.')
    .meta({ whenUnset: 'no limit' }),
  ENGINE_VALIDITY: duration('3.5d').describe("How long soft-bounced messages keep being retried (the delivery's validity period); then they fail as soft bounces."),
  ENGINE_RETRY_DELAY: duration('10m').describe('First retry delay after a soft bounce; it doubles at each attempt.'),
  ENGINE_BREAKER_FIRST_WAVE: z.coerce
    .number()
    .min(0)
    .max(1)
    .default(0.01)
    .describe(
      'Share of the audience sent before the circuit breaker judges the rates (at least `ENGINE_BREAKER_MIN_SAMPLE` recipients): the engines hand out no more until it has judged them.',
    ),
  ENGINE_BREAKER_HARD_BOUNCE_RATE: z.coerce.number().min(0).max(1).default(0.2).describe("Hard-bounce rate of a run's messages above which the circuit breaker pauses it."),
  ENGINE_BREAKER_DOMAIN_4XX_RATE: z.coerce
    .number()
    .min(0)
    .max(1)
    .default(0.5)
    .describe("Share of one receiving domain's messages answered 4xx (or of the run's messages the SMTP server did not answer at all) above which the circuit breaker pauses the run."),
  ENGINE_BREAKER_MIN_SAMPLE: z.coerce
    .number()
    .int()
    .min(1)
    .max(1_000_000)
    .default(50)
    .describe('Messages (in the run, or to one receiving domain) a circuit-breaker rate needs before it can pause a run.'),
  DKIM_DOMAIN: z.string().optional().describe('DKIM signing domain (`d=`); signing needs all three `DKIM_` settings.'),
  DKIM_SELECTOR: z.string().optional().describe('DKIM selector (`s=`).'),
  DKIM_PRIVATE_KEY: z.string().optional().describe('The DKIM private key: PEM text, or a path to a PEM file.'),
  KAFKA_BROKERS: z
    .string()
    .optional()
    .describe('Comma-separated `host:port` list: every role uses Apache Kafka instead of the in-process bus.')
    .meta({ whenUnset: 'the in-process bus' }),
  KAFKA_TOPIC_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9._-]*$/, 'letters, digits, . _ - only')
    .optional()
    .describe('Prefix of every topic and consumer group name (letters, digits, `.`, `_`, `-`), to separate environments on one cluster.'),
  KAFKA_CLIENT_ID: z.string().optional().describe('The kafkajs client id.').meta({ whenUnset: '`herald`' }),
  KAFKA_SEND_BATCH_PARTITIONS: z.coerce
    .number()
    .int()
    .min(1)
    .max(10_000)
    .optional()
    .describe('Partitions of `herald.send-batches` when Herald creates it: the most engine processes that can share the sends.')
    .meta({ whenUnset: '`32`' }),
  KAFKA_MESSAGE_EVENT_PARTITIONS: z.coerce
    .number()
    .int()
    .min(1)
    .max(10_000)
    .optional()
    .describe(
      'Partitions of `herald.message-events` when Herald creates it: events are keyed by message id, so even one delivery spreads over all of them; the most KPI consumers that can share the events.',
    )
    .meta({ whenUnset: '`KAFKA_PARTITIONS`' }),
  KAFKA_PARTITIONS: z.coerce.number().int().min(1).max(10_000).optional().describe('Partitions of the other topics when Herald creates them.').meta({ whenUnset: '`12`' }),
  KAFKA_REPLICATION_FACTOR: z.coerce
    .number()
    .int()
    .min(1)
    .max(16)
    .optional()
    .describe('Replication factor of the topics Herald creates (3 on a production cluster).')
    .meta({ whenUnset: '`1`' }),
  KAFKA_COMPRESSION: z
    .enum(['none', 'gzip', 'zstd'])
    .optional()
    .describe(
      'Compression of the record batches Herald produces (consumers read any). Herald\'s JSON messages shrink about ninefold with `zstd`, which saves network and disk on a cluster, for more CPU in Herald\'s processes (measured in bench/README.md); on a broker on the same machine it does not pay.',
    )
    .meta({ whenUnset: '`none`' }),
  KAFKA_SESSION_TIMEOUT: optionalDuration(1_000, 30 * 60_000)
    .describe(
      "How long the broker waits for a consumer's heartbeat before it gives that process's partitions to the others (each heartbeats every fifth of it): how soon the engines left take over the send batches of one that died. Within the broker's `group.min.session.timeout.ms` (6 s by default) and `group.max.session.timeout.ms`.",
    )
    .meta({ whenUnset: '`10s`' }),
  CLICKHOUSE_URL: optionalUrl
    .describe('The ClickHouse server of the KPIs, e.g. `http://clickhouse:8123`; set it (the same server) for every gateway when several run on one control-plane store.')
    .meta({ whenUnset: 'chDB under `HERALD_HOME/clickhouse` (one gateway per control-plane store)' }),
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
