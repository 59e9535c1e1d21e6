// The control plane's migrations through the stores' one runner, on PGlite (in memory and on
// disk, as under HERALD_HOME) and PostgreSQL, including stores migrated by the runner this
// package had before @herald/migrations: they must not apply anything twice.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, describeEachStore, describeOnStore, type TestDatabase } from '@herald/testing';
import { type Database, openDatabase } from './database.js';
import { migrate } from './migrate.js';

const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations/', import.meta.url));
const FILES = readdirSync(MIGRATIONS_DIR)
  .filter((f) => /^\d+_.*\.sql$/.test(f))
  .sort();

/**
 * The runner this package had before @herald/migrations, as it was (its own regex splitter, one
 * statement per query): a store it migrated is what an existing installation has. `upTo`: stop
 * after that version, as an older release would have.
 */
async function migrateAsBefore(db: Database, upTo = Number.POSITIVE_INFINITY): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [0x4845_5241]);
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set((await tx.query<{ version: number }>('SELECT version FROM schema_migrations')).map((r) => r.version));
    for (const file of FILES) {
      const version = Number.parseInt(file, 10);
      if (done.has(version) || version > upTo) continue;
      const sql = readFileSync(MIGRATIONS_DIR + file, 'utf8');
      const statements = sql
        .replace(/^\s*--.*$/gm, '')
        .split(/;\s*$/m)
        .map((s) => s.trim())
        .filter(Boolean);
      for (const statement of statements) await tx.query(statement);
      await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [version, file]);
    }
  });
}

const bookkeeping = (db: Database) => db.query<{ version: number; name: string; applied_at: Date }>('SELECT version, name, applied_at FROM schema_migrations ORDER BY version');

describeEachStore('control-plane migrations', (kind) => {
  let database: TestDatabase;

  beforeEach(async () => {
    database = await createTestDatabase(kind);
    // An empty store: the test database comes migrated.
    await database.db.query('DROP SCHEMA public CASCADE');
    await database.db.query('CREATE SCHEMA public');
  });
  afterEach(async () => database.drop());

  it('applies every migration once, in the order of their numbers, recording each', async () => {
    const applied = await migrate(database.db);
    expect(applied.map((m) => m.name)).toEqual(FILES);
    expect(applied.map((m) => m.version)).toEqual(FILES.map((f) => Number.parseInt(f, 10)));
    expect((await bookkeeping(database.db)).map(({ version, name }) => ({ version, name }))).toEqual(applied);
    expect(await migrate(database.db)).toEqual([]);
    // What the migrations made is there: a table of the last one.
    expect(await database.db.query('SELECT name FROM platform_settings')).toEqual([]);
  });

  it('applies nothing again on a store the previous runner migrated', async () => {
    await migrateAsBefore(database.db);
    const before = await bookkeeping(database.db);
    expect(before).toHaveLength(FILES.length);
    expect(await migrate(database.db)).toEqual([]);
    expect(await bookkeeping(database.db)).toEqual(before);
  });

  it('applies only the later migrations on a store the previous runner left at an older release', async () => {
    await migrateAsBefore(database.db, 5);
    const applied = await migrate(database.db);
    expect(applied.map((m) => m.name)).toEqual(FILES.filter((f) => Number.parseInt(f, 10) > 5));
    expect((await bookkeeping(database.db)).map((r) => r.name)).toEqual(FILES);
  });

  it('applies each migration once when several processes migrate at once', async () => {
    // A second connection (pool) to the same store on PostgreSQL; PGlite is one process's.
    const other = database.url ? await openDatabase({ url: database.url }) : database.db;
    try {
      const [a, b] = await Promise.all([migrate(database.db), migrate(other)]);
      expect([...a, ...b].map((m) => m.name).sort()).toEqual(FILES);
    } finally {
      if (other !== database.db) await other.close();
    }
  });
});

describeOnStore('pglite', 'control-plane migrations of an embedded store on disk (HERALD_HOME)', () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'herald-pglite-'));
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  it('applies nothing again when reopened after the previous runner migrated it, and keeps its data', async () => {
    const old = await openDatabase({ dataDir });
    await migrateAsBefore(old);
    await old.query("INSERT INTO platform_settings (name, value) VALUES ('public_url', 'http://kept.test')");
    const before = await bookkeeping(old);
    await old.close();

    const reopened = await openDatabase({ dataDir });
    try {
      expect(await migrate(reopened)).toEqual([]);
      expect(await bookkeeping(reopened)).toEqual(before);
      expect(await reopened.query('SELECT value FROM platform_settings')).toEqual([{ value: 'http://kept.test' }]);
    } finally {
      await reopened.close();
    }
  });
});
