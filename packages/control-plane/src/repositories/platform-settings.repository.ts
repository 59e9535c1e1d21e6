// The platform's shared settings in the control-plane store (PostgreSQL): the platform_settings
// table. platform-settings.ts says what they are and when the table is used.
import type { Queryable } from '../database.js';

/** A stored setting: its value, or (a secret given by the environment) only its fingerprint. */
export interface StoredSetting {
  value: string | null;
  fingerprint: string | null;
}

/** A setting's name in the store's table, and its file under HERALD_HOME. */
export interface SettingKey {
  name: string;
  file: string;
}

/** Where a platform's settings live: the store's table, or the files of the embedded HERALD_HOME. */
export interface SettingsStore {
  /** Said in messages: where an operator finds the setting (`fingerprintOnly`: a secret given by the environment). */
  describe(key: SettingKey, fingerprintOnly?: boolean): string;
  read(key: SettingKey): Promise<StoredSetting | undefined>;
  /** Stores `setting` unless one is there already; returns the one there afterwards. */
  putIfAbsent(key: SettingKey, setting: StoredSetting): Promise<StoredSetting>;
  put(key: SettingKey, value: string): Promise<void>;
}

export class TableSettingsStore implements SettingsStore {
  constructor(private readonly db: Queryable) {}

  describe({ name }: SettingKey): string {
    return `the control-plane store (platform_settings '${name}')`;
  }

  async read({ name }: SettingKey): Promise<StoredSetting | undefined> {
    const [row] = await this.db.query<StoredSetting>('SELECT value, fingerprint FROM platform_settings WHERE name = $1', [name]);
    return row;
  }

  async putIfAbsent(key: SettingKey, setting: StoredSetting): Promise<StoredSetting> {
    // Two processes starting at once: the first insert wins, the other reads it.
    await this.db.query('INSERT INTO platform_settings (name, value, fingerprint) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING', [
      key.name,
      setting.value,
      setting.fingerprint,
    ]);
    return (await this.read(key))!;
  }

  async put({ name }: SettingKey, value: string): Promise<void> {
    await this.db.query(
      `INSERT INTO platform_settings (name, value) VALUES ($1, $2)
       ON CONFLICT (name) DO UPDATE SET value = excluded.value, fingerprint = NULL, updated_at = now()`,
      [name, value],
    );
  }
}
