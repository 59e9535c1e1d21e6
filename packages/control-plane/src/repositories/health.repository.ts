// Whether the store answers, migrated.
import type { Queryable } from '../database.js';

export interface HealthRepository {
  /** Throws unless the store answers and holds Herald's schema. */
  ping(db: Queryable): Promise<void>;
}

export class SqlHealthRepository implements HealthRepository {
  async ping(db: Queryable): Promise<void> {
    await db.query('SELECT 1 FROM schema_migrations LIMIT 1');
  }
}
