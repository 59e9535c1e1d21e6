// Herald's environment, described once by a zod schema and parsed once at start.
// A bad environment fails with one error that lists every bad variable.
import { z } from 'zod';
import { parseDuration } from './duration.js';

export { parseDuration, formatDuration } from './duration.js';

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

const optionalUrl = z.url().optional();
const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

export const environmentSchema = z.object({
  HERALD_HOME: z.string().min(1).default('./.herald'),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().min(1).default('127.0.0.1'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DATABASE_URL: optionalUrl,
  HERALD_JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  HERALD_JWKS_URL: optionalUrl,
  PUBLIC_URL: optionalUrl,
  CONFIRMATION_TTL: duration('10m'),
  SCHEDULE_STALENESS: duration('1h'),
  SCHEDULER_INTERVAL: duration('1s'),
  OUTBOX_RELAY_INTERVAL: duration('200ms'),
  BODY_LIMIT_BYTES: positiveInt(1024 * 1024),
  IMPORT_BODY_LIMIT_BYTES: positiveInt(512 * 1024 * 1024),
  SMTP_URL: optionalUrl,
  KAFKA_BROKERS: z.string().optional(),
  CLICKHOUSE_URL: optionalUrl,
});

export type HeraldConfig = z.infer<typeof environmentSchema>;

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
