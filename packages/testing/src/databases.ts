// Test databases: an in-memory PGlite, or a fresh database on the PostgreSQL server named by
// HERALD_TEST_DATABASE_URL (infra/postgres/start.sh prints one). Without that variable the
// PostgreSQL runs are reported as skipped, loudly; with HERALD_REQUIRE_ALL_STORES=1 (set by
// .ci/run) a missing server fails the run instead.
import { randomBytes } from 'node:crypto';
import { type Database, migrate, openDatabase } from '@herald/control-plane';
import { describe } from '@jest/globals';
import pg from 'pg';

export type StoreKind = 'pglite' | 'postgres';

export interface TestDatabase {
  kind: StoreKind;
  db: Database;
  /** The connection string, for PostgreSQL (to start a second process on the same data). */
  url?: string;
  drop(): Promise<void>;
}

const SERVER_URL = process.env.HERALD_TEST_DATABASE_URL;

/** The stores to run a suite against; PostgreSQL only when a server is configured. */
export function storesUnderTest(): StoreKind[] {
  if (SERVER_URL) return ['pglite', 'postgres'];
  if (process.env.HERALD_REQUIRE_ALL_STORES === '1') {
    throw new Error('HERALD_TEST_DATABASE_URL is not set, and HERALD_REQUIRE_ALL_STORES=1 requires the PostgreSQL suite.');
  }
  process.stderr.write(
    '\n*** PostgreSQL suite SKIPPED: set HERALD_TEST_DATABASE_URL (e.g. $(infra/postgres/start.sh)) to run it. ***\n\n',
  );
  return ['pglite'];
}

/** Every store kind, with a flag saying whether it runs here: for describe.each + describe.skip. */
export function storeMatrix(): { kind: StoreKind; available: boolean }[] {
  const available = storesUnderTest();
  return (['pglite', 'postgres'] as const).map((kind) => ({ kind, available: available.includes(kind) }));
}

export async function createTestDatabase(kind: StoreKind): Promise<TestDatabase> {
  if (kind === 'pglite') {
    const db = await openDatabase({});
    await migrate(db);
    return { kind, db, drop: () => db.close() };
  }
  if (!SERVER_URL) throw new Error('HERALD_TEST_DATABASE_URL is not set');
  const name = `herald_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: SERVER_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  const db = await openDatabase({ url: url.toString() });
  await migrate(db);
  return {
    kind,
    db,
    url: url.toString(),
    drop: async () => {
      await db.close();
      const client = new pg.Client({ connectionString: SERVER_URL });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

/**
 * Declares `body` once per store kind, titled "<title> on <kind>". A store that is not available
 * here is declared skipped (reported as such); CI makes every store available.
 */
export function describeEachStore(title: string, body: (kind: StoreKind) => void): void {
  for (const { kind, available } of storeMatrix()) describeOnStore(kind, `${title} on ${kind}`, () => body(kind), available);
}

/** Declares `body` for one store kind: skipped, and reported as such, when that store is not available. */
export function describeOnStore(kind: StoreKind, title: string, body: () => void, available = storesUnderTest().includes(kind)): void {
  (available ? describe : describe.skip)(title, body);
}
