// Audiences: a list of members, or an attribute-equality filter evaluated at preparation.
import type { Queryable } from '../database.js';

export interface Audience {
  id: string;
  name: string;
  filter: Record<string, unknown> | null;
  size: number;
  createdBy: string;
  createdAt: string;
}

interface AudienceRow {
  id: string;
  name: string;
  filter: Record<string, unknown> | null;
  created_by: string;
  created_at: Date;
  size: number;
}

export interface AudiencesRepository {
  insert(db: Queryable, audience: { id: string; name: string; filter: Record<string, unknown> | null; createdBy: string }): Promise<void>;
  /** Adds the members that exist and are not in yet; returns how many were added. */
  addMembers(db: Queryable, audienceId: string, profileIds: string[]): Promise<number>;
  get(db: Queryable, id: string): Promise<Audience | undefined>;
  exists(db: Queryable, id: string): Promise<boolean>;
}

export class SqlAudiencesRepository implements AudiencesRepository {
  async insert(db: Queryable, audience: { id: string; name: string; filter: Record<string, unknown> | null; createdBy: string }): Promise<void> {
    await db.query('INSERT INTO audiences (id, name, filter, created_by) VALUES ($1, $2, $3, $4)', [
      audience.id,
      audience.name,
      audience.filter === null ? null : JSON.stringify(audience.filter),
      audience.createdBy,
    ]);
  }

  async addMembers(db: Queryable, audienceId: string, profileIds: string[]): Promise<number> {
    const [row] = await db.query<{ n: number }>(
      `WITH added AS (
         INSERT INTO audience_members (audience_id, profile_id)
         SELECT $1, p.id FROM profiles p WHERE p.id = ANY($2::text[])
         ON CONFLICT DO NOTHING RETURNING 1)
       SELECT count(*)::int AS n FROM added`,
      [audienceId, profileIds],
    );
    return row?.n ?? 0;
  }

  async get(db: Queryable, id: string): Promise<Audience | undefined> {
    const [row] = await db.query<AudienceRow>(
      `SELECT a.*, CASE WHEN a.filter IS NULL
                        THEN (SELECT count(*)::int FROM audience_members m WHERE m.audience_id = a.id)
                        ELSE (SELECT count(*)::int FROM profiles p WHERE p.attributes @> a.filter) END AS size
         FROM audiences a WHERE a.id = $1`,
      [id],
    );
    return (
      row && {
        id: row.id,
        name: row.name,
        filter: row.filter,
        size: row.size,
        createdBy: row.created_by,
        createdAt: row.created_at.toISOString(),
      }
    );
  }

  async exists(db: Queryable, id: string): Promise<boolean> {
    return (await db.query('SELECT 1 FROM audiences WHERE id = $1', [id])).length > 0;
  }
}
