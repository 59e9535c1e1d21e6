// A process's control-plane store: PostgreSQL (DATABASE_URL) or the embedded PGlite under
// HERALD_HOME, opened and migrated (every process migrates at start; migrations run once).
import { join, resolve } from 'node:path';
import type { HeraldConfig } from '@herald/config';
import { type Database, migrate, openDatabase } from '@herald/control-plane';

export async function openStore(config: HeraldConfig): Promise<Database> {
  const db = await openDatabase({ url: config.DATABASE_URL, dataDir: join(resolve(config.HERALD_HOME), 'pglite') });
  try {
    await migrate(db);
  } catch (error) {
    await db.close().catch(() => undefined);
    throw error;
  }
  return db;
}
