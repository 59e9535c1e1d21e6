// The settings every process of one platform must share, resolved once per process, here and
// nowhere else, by what starts the process (the CLI's role composition, `herald token`): the
// public URL of the links in messages and the
// signing secrets (tracking and unsubscribe links, the bounce webhook, bearer tokens). A link
// signed by one process is verified by another; two values would make dead links, silently.
//
// One place holds them: the `platform_settings` table on PostgreSQL. The embedded store (PGlite)
// serves one process, under one HERALD_HOME: there they are the files of that HERALD_HOME (as
// they always were), which `herald token` can read while `herald start` holds the database.
//
// A secret is the environment's when set (the store keeps only its fingerprint: a process
// given another value is refused), else the store's, else generated once and stored (seeded
// from a secret file under HERALD_HOME when there is one, so links already sent keep working).
// To change one: set the new value in the environment of every process and delete the stored
// entry (`DELETE FROM platform_settings WHERE name = ...`, or the file under HERALD_HOME), then
// restart them; links signed with the old one stop working.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Queryable } from './database.js';
import { type SettingKey, type SettingsStore, type StoredSetting, TableSettingsStore } from './repositories/platform-settings.repository.js';

/** The signing secrets every role resolves. */
export interface PlatformSecrets {
  /** HMAC key of tracking (open, click) and unsubscribe links. */
  tracking: string;
  /** HMAC key of the bounce webhook's signature. */
  webhook: string;
  /** HS256 key of bearer tokens. */
  jwt: string;
}

/** A platform that cannot run as configured: the process refuses to start with this message (exit code 2). */
export class PlatformSettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PlatformSettingsError';
  }
}

interface SecretSpec extends SettingKey {
  key: keyof PlatformSecrets;
  variable: 'HERALD_TRACKING_SECRET' | 'HERALD_WEBHOOK_SECRET' | 'HERALD_JWT_SECRET';
  what: string;
}

const SECRETS: readonly SecretSpec[] = [
  { key: 'tracking', name: 'tracking_secret', file: 'tracking-secret', variable: 'HERALD_TRACKING_SECRET', what: 'tracking and unsubscribe links' },
  { key: 'webhook', name: 'webhook_secret', file: 'webhook-secret', variable: 'HERALD_WEBHOOK_SECRET', what: "the bounce webhook's signature" },
  { key: 'jwt', name: 'jwt_secret', file: 'jwt-secret', variable: 'HERALD_JWT_SECRET', what: 'bearer tokens' },
];

const PUBLIC_URL: SettingKey = { name: 'public_url', file: 'public-url' };

/** The files of one HERALD_HOME: `<file>` holds a value, `<file>.sha256` a fingerprint. */
class HomeSettingsStore implements SettingsStore {
  constructor(private readonly home: string) {}

  describe({ file }: SettingKey, fingerprintOnly = false): string {
    return join(this.home, fingerprintOnly ? `${file}.sha256` : file);
  }

  async read({ file }: SettingKey): Promise<StoredSetting | undefined> {
    const value = readText(join(this.home, file));
    if (value !== undefined) return { value, fingerprint: fingerprintOf(value) };
    const fingerprint = readText(join(this.home, `${file}.sha256`));
    return fingerprint === undefined ? undefined : { value: null, fingerprint };
  }

  async putIfAbsent(key: SettingKey, setting: StoredSetting): Promise<StoredSetting> {
    const { file } = key;
    mkdirSync(this.home, { recursive: true });
    const [path, text] = setting.value !== null ? [join(this.home, file), setting.value] : [join(this.home, `${file}.sha256`), setting.fingerprint!];
    try {
      writeFileSync(path, `${text}\n`, { mode: 0o600, flag: 'wx' });
    } catch (error) {
      if ((error as { code?: string }).code !== 'EEXIST') throw error;
    }
    return (await this.read(key))!;
  }

  async put({ file }: SettingKey, value: string): Promise<void> {
    mkdirSync(this.home, { recursive: true });
    writeFileSync(join(this.home, file), `${value}\n`, { mode: 0o600 });
  }
}

function readText(path: string): string | undefined {
  if (!existsSync(path)) return undefined;
  const text = readFileSync(path, 'utf8').trim();
  return text === '' ? undefined : text;
}

/** What the store keeps of a secret given by the environment: enough to tell another value, not to sign. */
function fingerprintOf(secret: string): string {
  return `sha256:${createHash('sha256').update(secret).digest('hex')}`;
}

/**
 * The configuration the settings are resolved from, named as the environment names them (the
 * messages tell an operator which variable to set). The caller passes its validated
 * configuration in: the control plane does not read the environment.
 */
export interface PlatformSettingsConfig {
  HERALD_HOME: string;
  PUBLIC_URL?: string;
  HERALD_TRACKING_SECRET?: string;
  HERALD_WEBHOOK_SECRET?: string;
  HERALD_JWT_SECRET?: string;
}

export interface PlatformSettings {
  secrets: PlatformSecrets;
  /** A gateway at start: the base of the links every engine puts in messages. */
  publishPublicUrl(url: string): Promise<void>;
  /**
   * The base of the links an engine puts in messages: PUBLIC_URL, else what a gateway published;
   * a PlatformSettingsError when there is neither.
   */
  publicUrl(): Promise<string>;
}

/**
 * Resolves this process's platform settings (once per process: every role calls this at start).
 * `db`: the control-plane store when it is PostgreSQL; omitted or PGlite, the files of
 * HERALD_HOME. Throws a PlatformSettingsError when a secret of the environment differs from the
 * platform's, or is missing here while the platform's other processes were given one.
 */
export async function resolvePlatformSettings(
  config: PlatformSettingsConfig,
  db?: Queryable & { kind: 'pglite' | 'postgres' },
  warn: (message: string) => void = () => undefined,
): Promise<PlatformSettings> {
  const store: SettingsStore = db?.kind === 'postgres' ? new TableSettingsStore(db) : new HomeSettingsStore(config.HERALD_HOME);
  const secrets = {} as PlatformSecrets;
  for (const spec of SECRETS) secrets[spec.key] = await resolveSecret(store, spec, config, warn);
  return {
    secrets,
    async publishPublicUrl(url) {
      await store.put(PUBLIC_URL, url.replace(/\/$/, ''));
    },
    async publicUrl() {
      const stored = (await store.read(PUBLIC_URL))?.value ?? undefined;
      if (config.PUBLIC_URL) {
        const explicit = config.PUBLIC_URL.replace(/\/$/, '');
        if (stored && stored !== explicit) warn(`PUBLIC_URL (${explicit}) differs from the public URL a gateway published (${stored}); the links use PUBLIC_URL`);
        return explicit;
      }
      if (!stored) {
        throw new PlatformSettingsError(
          'no public URL for the links in messages: start a gateway first (it records its URL in the control-plane store) or set PUBLIC_URL.',
        );
      }
      return stored;
    },
  };
}

async function resolveSecret(store: SettingsStore, spec: SecretSpec, config: PlatformSettingsConfig, warn: (message: string) => void): Promise<string> {
  const explicit = config[spec.variable];
  if (explicit) {
    const fingerprint = fingerprintOf(explicit);
    const stored = (await store.read(spec)) ?? (await store.putIfAbsent(spec, { value: null, fingerprint }));
    const where = store.describe(spec, stored.value === null);
    if (stored.fingerprint !== fingerprint) {
      throw new PlatformSettingsError(
        `${spec.variable} differs from the secret this platform signs ${spec.what} with (kept in ${where}): ` +
          `every process must use the same one. Unset ${spec.variable} to use the platform's, or, to change it, ` +
          `set the new value for every process and delete the stored one (docs/operations.md, "Shared settings and secrets").`,
      );
    }
    return explicit;
  }
  const stored = await store.read(spec);
  const where = store.describe(spec, stored?.value === null);
  if (stored && stored.value === null) {
    throw new PlatformSettingsError(
      `${spec.variable} is not set here, but the platform's other processes were given one (its fingerprint is kept in ${where}): set the same ${spec.variable} for this process.`,
    );
  }
  if (stored?.value) {
    // A secret file under this HERALD_HOME from before the platform kept them in one place.
    const legacy = store instanceof TableSettingsStore ? readText(join(config.HERALD_HOME, spec.file)) : undefined;
    if (legacy !== undefined && legacy !== stored.value) {
      warn(`${join(config.HERALD_HOME, spec.file)} differs from the platform's ${spec.what} secret (kept in ${where}); the platform's is used`);
    }
    return stored.value;
  }
  // None yet: this HERALD_HOME's file when there is one (links signed with it keep verifying), else a new one.
  const seed = readText(join(config.HERALD_HOME, spec.file)) ?? randomBytes(48).toString('base64url');
  const kept = await store.putIfAbsent(spec, { value: seed, fingerprint: fingerprintOf(seed) });
  if (kept.value === null) {
    throw new PlatformSettingsError(`${spec.variable} is not set here, but another process of the platform just stored one's fingerprint: set the same ${spec.variable} for this process.`);
  }
  return kept.value;
}
