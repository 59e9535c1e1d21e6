// The migration runner of both of Herald's stores (the control plane's PostgreSQL or PGlite, the
// KPI store's ClickHouse or chDB). A store's migrations are the numbered files `NNN_name.sql` of
// one folder, applied in the order of their numbers, each once. The runner decides what is
// pending; the store says what it has applied (its own `schema_migrations` table) and applies one
// migration: how (one transaction, the driver's multi-statement execution, one statement per
// request) is the store's, as only it knows what its engine can do.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Migration {
  /** The file's number: what a store records as applied. */
  version: number;
  /** The file's name, e.g. `001_control_plane.sql`. */
  name: string;
  /** The file's text. */
  sql: string;
}

/** What the runner needs of a store. */
export interface MigrationStore {
  /** The versions this store has applied (the numbers it recorded). */
  appliedVersions(): Promise<Iterable<number>>;
  /** Applies one migration and records its version (in one transaction where the store has them). */
  apply(migration: Migration): Promise<void>;
}

const MIGRATION_FILE = /^(\d+)_.*\.sql$/;

/** The migrations of `dir`, in the order of their numbers; two files with one number are refused. */
export async function readMigrations(dir: string | URL): Promise<Migration[]> {
  const folder = dir instanceof URL ? fileURLToPath(dir) : dir;
  const files = (await readdir(folder))
    .map((name) => ({ name, match: MIGRATION_FILE.exec(name) }))
    .filter((file): file is { name: string; match: RegExpExecArray } => file.match !== null)
    .map(({ name, match }) => ({ name, version: Number.parseInt(match[1]!, 10) }))
    .sort((a, b) => a.version - b.version);
  for (let i = 1; i < files.length; i++) {
    if (files[i]!.version === files[i - 1]!.version) {
      throw new Error(`two migrations are numbered ${files[i]!.version} in ${folder}: ${files[i - 1]!.name} and ${files[i]!.name}`);
    }
  }
  return Promise.all(files.map(async ({ name, version }) => ({ version, name, sql: await readFile(join(folder, name), 'utf8') })));
}

/**
 * Applies the migrations of `dir` that `store` has not applied, in order, one at a time (a
 * failure stops the run: the later ones are not tried). Versions the store recorded that no file
 * has (a newer release's) are left alone. Returns the migrations applied now.
 */
export async function runMigrations(dir: string | URL, store: MigrationStore): Promise<Migration[]> {
  const applied = new Set(await store.appliedVersions());
  const pending = (await readMigrations(dir)).filter((migration) => !applied.has(migration.version));
  for (const migration of pending) await store.apply(migration);
  return pending;
}
