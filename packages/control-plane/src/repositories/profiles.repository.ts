// Profiles: bulk upsert by id, reads, and status changes.
import type { Queryable } from '../database.js';
import type { ProfileInput } from '../schemas.js';

export type ProfileStatus = 'active' | 'unsubscribed' | 'quarantined' | 'denylisted';

/** When soft bounces quarantine an address. */
export interface SoftBounceRule {
  /** Consecutive soft bounces that quarantine the address. */
  threshold: number;
  /** A quiet period after which the count starts again. */
  resetAfterMs: number;
}

export interface Profile {
  id: string;
  email: string | null;
  phone: string | null;
  firstName: string | null;
  lastName: string | null;
  locale: string | null;
  timezone: string | null;
  attributes: Record<string, unknown>;
  status: ProfileStatus;
  createdAt: string;
  updatedAt: string;
}

interface ProfileRow {
  id: string;
  email: string | null;
  phone: string | null;
  first_name: string | null;
  last_name: string | null;
  locale: string | null;
  timezone: string | null;
  attributes: Record<string, unknown>;
  status: ProfileStatus;
  created_at: Date;
  updated_at: Date;
}

const toProfile = (r: ProfileRow): Profile => ({
  id: r.id,
  email: r.email,
  phone: r.phone,
  firstName: r.first_name,
  lastName: r.last_name,
  locale: r.locale,
  timezone: r.timezone,
  attributes: r.attributes,
  status: r.status,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
});

export interface ProfilesRepository {
  /**
   * Upserts profiles by id in one statement (arrays unnested server-side). Fields absent from
   * the input keep their stored value; status is never touched by an import.
   */
  upsertMany(db: Queryable, input: ProfileInput[]): Promise<number>;
  get(db: Queryable, id: string): Promise<Profile | undefined>;
  /** Of `ids`, those that are not stored. */
  missing(db: Queryable, ids: string[]): Promise<string[]>;
  setStatus(db: Queryable, id: string, status: ProfileStatus): Promise<void>;
  /**
   * Counts a soft bounce for each profile (the count starts again after `resetAfterMs` without one)
   * and quarantines the active profiles that reach `threshold`. Returns the profiles quarantined.
   */
  recordSoftBounces(db: Queryable, ids: string[], at: Date, rule: SoftBounceRule): Promise<string[]>;
  /** Hard bounces quarantine the address at once (an active profile only). */
  quarantine(db: Queryable, ids: string[]): Promise<number>;
}

export class SqlProfilesRepository implements ProfilesRepository {
  async upsertMany(db: Queryable, input: ProfileInput[]): Promise<number> {
    // The last row of an id wins, as if the rows were applied in order.
    const profiles = [...new Map(input.map((p) => [p.id, p])).values()];
    if (profiles.length === 0) return 0;
    const col = <K extends keyof ProfileInput>(key: K) => profiles.map((p) => (p[key] === undefined ? null : p[key]));
    const present = (key: keyof ProfileInput) => profiles.map((p) => p[key] !== undefined);
    // NOTE: new ids are inserted, known ids updated field by field: the CTEs share one snapshot,
    // so the UPDATE only sees rows that existed before this statement.
    const rows = await db.query<{ n: number }>(
      `WITH input AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[],
                              $9::bool[], $10::bool[], $11::bool[], $12::bool[], $13::bool[], $14::bool[], $15::bool[])
           AS t(id, email, phone, first_name, last_name, locale, timezone, attributes,
                has_email, has_phone, has_first, has_last, has_locale, has_tz, has_attrs)
       ), inserted AS (
         INSERT INTO profiles (id, email, phone, first_name, last_name, locale, timezone, attributes)
         SELECT id, email, phone, first_name, last_name, locale, timezone, coalesce(attributes, '{}'::jsonb) FROM input
         ON CONFLICT (id) DO NOTHING
         RETURNING 1
       ), updated AS (
         UPDATE profiles p SET
           email      = CASE WHEN i.has_email  THEN i.email      ELSE p.email END,
           phone      = CASE WHEN i.has_phone  THEN i.phone      ELSE p.phone END,
           first_name = CASE WHEN i.has_first  THEN i.first_name ELSE p.first_name END,
           last_name  = CASE WHEN i.has_last   THEN i.last_name  ELSE p.last_name END,
           locale     = CASE WHEN i.has_locale THEN i.locale     ELSE p.locale END,
           timezone   = CASE WHEN i.has_tz     THEN i.timezone   ELSE p.timezone END,
           attributes = CASE WHEN i.has_attrs  THEN i.attributes ELSE p.attributes END,
           updated_at = now()
         FROM input i WHERE p.id = i.id
         RETURNING 1
       )
       SELECT ((SELECT count(*) FROM inserted) + (SELECT count(*) FROM updated))::int AS n`,
      [
        col('id'),
        col('email'),
        col('phone'),
        col('firstName'),
        col('lastName'),
        col('locale'),
        col('timezone'),
        profiles.map((p) => (p.attributes === undefined ? null : JSON.stringify(p.attributes))),
        present('email'),
        present('phone'),
        present('firstName'),
        present('lastName'),
        present('locale'),
        present('timezone'),
        present('attributes'),
      ],
    );
    return rows[0]?.n ?? 0;
  }

  async get(db: Queryable, id: string): Promise<Profile | undefined> {
    const [row] = await db.query<ProfileRow>('SELECT * FROM profiles WHERE id = $1', [id]);
    return row && toProfile(row);
  }

  async missing(db: Queryable, ids: string[]): Promise<string[]> {
    const rows = await db.query<{ id: string }>(
      'SELECT id FROM unnest($1::text[]) AS t(id) WHERE NOT EXISTS (SELECT 1 FROM profiles p WHERE p.id = t.id)',
      [ids],
    );
    return rows.map((r) => r.id);
  }

  async setStatus(db: Queryable, id: string, status: ProfileStatus): Promise<void> {
    await db.query('UPDATE profiles SET status = $2, updated_at = now() WHERE id = $1', [id, status]);
  }

  async recordSoftBounces(db: Queryable, ids: string[], at: Date, rule: SoftBounceRule): Promise<string[]> {
    if (ids.length === 0) return [];
    const rows = await db.query<{ id: string; was: ProfileStatus; status: ProfileStatus }>(
      `UPDATE profiles p
          SET soft_bounce_count = n.count, last_soft_bounce_at = $2, updated_at = now(),
              status = CASE WHEN p.status = 'active' AND n.count >= $4 THEN 'quarantined' ELSE p.status END
         FROM (SELECT id, status AS was,
                      CASE WHEN last_soft_bounce_at IS NULL
                                OR last_soft_bounce_at < $2::timestamptz - make_interval(secs => $3::double precision / 1000)
                           THEN 1 ELSE soft_bounce_count + 1 END AS count
                 FROM profiles WHERE id = ANY($1::text[]) FOR UPDATE) n
        WHERE p.id = n.id
        RETURNING p.id, n.was, p.status`,
      [ids, at, rule.resetAfterMs, rule.threshold],
    );
    return rows.filter((r) => r.was === 'active' && r.status === 'quarantined').map((r) => r.id);
  }

  async quarantine(db: Queryable, ids: string[]): Promise<number> {
    if (ids.length === 0) return 0;
    const rows = await db.query(
      `UPDATE profiles SET status = 'quarantined', updated_at = now() WHERE id = ANY($1::text[]) AND status = 'active' RETURNING 1`,
      [ids],
    );
    return rows.length;
  }
}
