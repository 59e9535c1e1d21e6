// Applies the numbered SQL files of ../migrations with the stores' one migration runner
// (@herald/migrations), all in one transaction under an advisory lock, recording each in
// schema_migrations. Safe to run at every start, by several processes at once.
import { runMigrations } from '@herald/migrations';
import type { Database } from './database.js';

const MIGRATIONS_DIR = new URL('../migrations/', import.meta.url);
const MIGRATION_LOCK = 0x4845_5241; // "HERA": serializes concurrent migrators on PostgreSQL

export interface AppliedMigration {
  version: number;
  name: string;
}

export async function migrate(db: Database): Promise<AppliedMigration[]> {
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const applied = await runMigrations(MIGRATIONS_DIR, {
      appliedVersions: async () => (await tx.query<{ version: number }>('SELECT version FROM schema_migrations')).map((row) => row.version),
      apply: async ({ version, name, sql }) => {
        // The whole file at once: pg's simple query protocol and PGlite's exec() run every statement.
        await tx.exec(sql);
        await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [version, name]);
      },
    });
    return applied.map(({ version, name }) => ({ version, name }));
  });
}
