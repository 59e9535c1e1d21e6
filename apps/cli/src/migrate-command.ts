// `herald migrate`: applies the control-plane migrations and exits (every start applies them too).
import { resolve } from 'node:path';
import type { HeraldConfig } from '@herald/config';
import { openStore } from './store.js';

export async function migrateCommand(config: HeraldConfig): Promise<number> {
  const db = await openStore(config);
  console.log(`migrations applied (${db.kind === 'pglite' ? `PGlite in ${resolve(config.HERALD_HOME)}` : 'PostgreSQL'})`);
  await db.close();
  return 0;
}
