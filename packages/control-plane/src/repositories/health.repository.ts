// Whether the store answers, migrated.
import type { Queryable } from '../database.js';

export class HealthRepository {
  /** Throws unless the store answers and holds Herald's schema. */
  async ping(db: Queryable): Promise<void> {
    await db.query('SELECT 1 FROM schema_migrations LIMIT 1');
  }
}
